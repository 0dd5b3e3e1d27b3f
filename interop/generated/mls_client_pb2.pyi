# mypy: ignore-errors
# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NameRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NameResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SupportedCiphersuitesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SupportedCiphersuitesResponse(_message.Message):
    __slots__ = ("ciphersuites",)
    CIPHERSUITES_FIELD_NUMBER: _ClassVar[int]
    ciphersuites: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ciphersuites: _Optional[_Iterable[int]] = ...) -> None: ...

class CreateGroupRequest(_message.Message):
    __slots__ = ("group_id", "cipher_suite", "encrypt_handshake", "identity")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHER_SUITE_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_HANDSHAKE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    group_id: bytes
    cipher_suite: int
    encrypt_handshake: bool
    identity: bytes
    def __init__(self, group_id: _Optional[bytes] = ..., cipher_suite: _Optional[int] = ..., encrypt_handshake: _Optional[bool] = ..., identity: _Optional[bytes] = ...) -> None: ...

class CreateGroupResponse(_message.Message):
    __slots__ = ("state_id",)
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    def __init__(self, state_id: _Optional[int] = ...) -> None: ...

class CreateKeyPackageRequest(_message.Message):
    __slots__ = ("cipher_suite", "identity")
    CIPHER_SUITE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    cipher_suite: int
    identity: bytes
    def __init__(self, cipher_suite: _Optional[int] = ..., identity: _Optional[bytes] = ...) -> None: ...

class CreateKeyPackageResponse(_message.Message):
    __slots__ = ("transaction_id", "key_package", "init_priv", "encryption_priv", "signature_priv")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    INIT_PRIV_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_PRIV_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_PRIV_FIELD_NUMBER: _ClassVar[int]
    transaction_id: int
    key_package: bytes
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes
    def __init__(self, transaction_id: _Optional[int] = ..., key_package: _Optional[bytes] = ..., init_priv: _Optional[bytes] = ..., encryption_priv: _Optional[bytes] = ..., signature_priv: _Optional[bytes] = ...) -> None: ...

class JoinGroupRequest(_message.Message):
    __slots__ = ("transaction_id", "welcome", "encrypt_handshake", "identity", "ratchet_tree")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_HANDSHAKE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    RATCHET_TREE_FIELD_NUMBER: _ClassVar[int]
    transaction_id: int
    welcome: bytes
    encrypt_handshake: bool
    identity: bytes
    ratchet_tree: bytes
    def __init__(self, transaction_id: _Optional[int] = ..., welcome: _Optional[bytes] = ..., encrypt_handshake: _Optional[bool] = ..., identity: _Optional[bytes] = ..., ratchet_tree: _Optional[bytes] = ...) -> None: ...

class JoinGroupResponse(_message.Message):
    __slots__ = ("state_id", "epoch_authenticator")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_AUTHENTICATOR_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    epoch_authenticator: bytes
    def __init__(self, state_id: _Optional[int] = ..., epoch_authenticator: _Optional[bytes] = ...) -> None: ...

class PreSharedKey(_message.Message):
    __slots__ = ("psk_id", "psk_secret")
    PSK_ID_FIELD_NUMBER: _ClassVar[int]
    PSK_SECRET_FIELD_NUMBER: _ClassVar[int]
    psk_id: bytes
    psk_secret: bytes
    def __init__(self, psk_id: _Optional[bytes] = ..., psk_secret: _Optional[bytes] = ...) -> None: ...

class ExternalJoinRequest(_message.Message):
    __slots__ = ("group_info", "ratchet_tree", "encrypt_handshake", "identity", "remove_prior", "psks")
    GROUP_INFO_FIELD_NUMBER: _ClassVar[int]
    RATCHET_TREE_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_HANDSHAKE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REMOVE_PRIOR_FIELD_NUMBER: _ClassVar[int]
    PSKS_FIELD_NUMBER: _ClassVar[int]
    group_info: bytes
    ratchet_tree: bytes
    encrypt_handshake: bool
    identity: bytes
    remove_prior: bool
    psks: _containers.RepeatedCompositeFieldContainer[PreSharedKey]
    def __init__(self, group_info: _Optional[bytes] = ..., ratchet_tree: _Optional[bytes] = ..., encrypt_handshake: _Optional[bool] = ..., identity: _Optional[bytes] = ..., remove_prior: _Optional[bool] = ..., psks: _Optional[_Iterable[_Union[PreSharedKey, _Mapping]]] = ...) -> None: ...

class ExternalJoinResponse(_message.Message):
    __slots__ = ("state_id", "commit", "epoch_authenticator")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_AUTHENTICATOR_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    commit: bytes
    epoch_authenticator: bytes
    def __init__(self, state_id: _Optional[int] = ..., commit: _Optional[bytes] = ..., epoch_authenticator: _Optional[bytes] = ...) -> None: ...

class GroupInfoRequest(_message.Message):
    __slots__ = ("state_id", "external_tree")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_TREE_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    external_tree: bool
    def __init__(self, state_id: _Optional[int] = ..., external_tree: _Optional[bool] = ...) -> None: ...

class GroupInfoResponse(_message.Message):
    __slots__ = ("group_info", "ratchet_tree")
    GROUP_INFO_FIELD_NUMBER: _ClassVar[int]
    RATCHET_TREE_FIELD_NUMBER: _ClassVar[int]
    group_info: bytes
    ratchet_tree: bytes
    def __init__(self, group_info: _Optional[bytes] = ..., ratchet_tree: _Optional[bytes] = ...) -> None: ...

class StateAuthRequest(_message.Message):
    __slots__ = ("state_id",)
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    def __init__(self, state_id: _Optional[int] = ...) -> None: ...

class StateAuthResponse(_message.Message):
    __slots__ = ("state_auth_secret",)
    STATE_AUTH_SECRET_FIELD_NUMBER: _ClassVar[int]
    state_auth_secret: bytes
    def __init__(self, state_auth_secret: _Optional[bytes] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("state_id", "label", "context", "key_length")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_LENGTH_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    label: str
    context: bytes
    key_length: int
    def __init__(self, state_id: _Optional[int] = ..., label: _Optional[str] = ..., context: _Optional[bytes] = ..., key_length: _Optional[int] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("exported_secret",)
    EXPORTED_SECRET_FIELD_NUMBER: _ClassVar[int]
    exported_secret: bytes
    def __init__(self, exported_secret: _Optional[bytes] = ...) -> None: ...

class ProtectRequest(_message.Message):
    __slots__ = ("state_id", "authenticated_data", "plaintext")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATED_DATA_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    authenticated_data: bytes
    plaintext: bytes
    def __init__(self, state_id: _Optional[int] = ..., authenticated_data: _Optional[bytes] = ..., plaintext: _Optional[bytes] = ...) -> None: ...

class ProtectResponse(_message.Message):
    __slots__ = ("ciphertext",)
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    def __init__(self, ciphertext: _Optional[bytes] = ...) -> None: ...

class UnprotectRequest(_message.Message):
    __slots__ = ("state_id", "ciphertext")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    ciphertext: bytes
    def __init__(self, state_id: _Optional[int] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class UnprotectResponse(_message.Message):
    __slots__ = ("authenticated_data", "plaintext")
    AUTHENTICATED_DATA_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    authenticated_data: bytes
    plaintext: bytes
    def __init__(self, authenticated_data: _Optional[bytes] = ..., plaintext: _Optional[bytes] = ...) -> None: ...

class StorePSKRequest(_message.Message):
    __slots__ = ("state_or_transaction_id", "psk_id", "psk_secret")
    STATE_OR_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PSK_ID_FIELD_NUMBER: _ClassVar[int]
    PSK_SECRET_FIELD_NUMBER: _ClassVar[int]
    state_or_transaction_id: int
    psk_id: bytes
    psk_secret: bytes
    def __init__(self, state_or_transaction_id: _Optional[int] = ..., psk_id: _Optional[bytes] = ..., psk_secret: _Optional[bytes] = ...) -> None: ...

class StorePSKResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AddProposalRequest(_message.Message):
    __slots__ = ("state_id", "key_package")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    key_package: bytes
    def __init__(self, state_id: _Optional[int] = ..., key_package: _Optional[bytes] = ...) -> None: ...

class ProposalResponse(_message.Message):
    __slots__ = ("proposal",)
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    proposal: bytes
    def __init__(self, proposal: _Optional[bytes] = ...) -> None: ...

class UpdateProposalRequest(_message.Message):
    __slots__ = ("state_id",)
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    def __init__(self, state_id: _Optional[int] = ...) -> None: ...

class RemoveProposalRequest(_message.Message):
    __slots__ = ("state_id", "removed_id")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ID_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    removed_id: bytes
    def __init__(self, state_id: _Optional[int] = ..., removed_id: _Optional[bytes] = ...) -> None: ...

class ExternalPSKProposalRequest(_message.Message):
    __slots__ = ("state_id", "psk_id")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    PSK_ID_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    psk_id: bytes
    def __init__(self, state_id: _Optional[int] = ..., psk_id: _Optional[bytes] = ...) -> None: ...

class ResumptionPSKProposalRequest(_message.Message):
    __slots__ = ("state_id", "epoch_id")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    epoch_id: int
    def __init__(self, state_id: _Optional[int] = ..., epoch_id: _Optional[int] = ...) -> None: ...

class Extension(_message.Message):
    __slots__ = ("extension_type", "extension_data")
    EXTENSION_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_DATA_FIELD_NUMBER: _ClassVar[int]
    extension_type: int
    extension_data: bytes
    def __init__(self, extension_type: _Optional[int] = ..., extension_data: _Optional[bytes] = ...) -> None: ...

class GroupContextExtensionsProposalRequest(_message.Message):
    __slots__ = ("state_id", "extensions")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    extensions: _containers.RepeatedCompositeFieldContainer[Extension]
    def __init__(self, state_id: _Optional[int] = ..., extensions: _Optional[_Iterable[_Union[Extension, _Mapping]]] = ...) -> None: ...

class ProposalDescription(_message.Message):
    __slots__ = ("proposal_type", "key_package", "removed_id", "psk_id", "epoch_id", "extensions", "group_id", "cipher_suite")
    PROPOSAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ID_FIELD_NUMBER: _ClassVar[int]
    PSK_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHER_SUITE_FIELD_NUMBER: _ClassVar[int]
    proposal_type: bytes
    key_package: bytes
    removed_id: bytes
    psk_id: bytes
    epoch_id: int
    extensions: _containers.RepeatedCompositeFieldContainer[Extension]
    group_id: bytes
    cipher_suite: int
    def __init__(self, proposal_type: _Optional[bytes] = ..., key_package: _Optional[bytes] = ..., removed_id: _Optional[bytes] = ..., psk_id: _Optional[bytes] = ..., epoch_id: _Optional[int] = ..., extensions: _Optional[_Iterable[_Union[Extension, _Mapping]]] = ..., group_id: _Optional[bytes] = ..., cipher_suite: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("state_id", "by_reference", "by_value", "force_path", "external_tree")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    BY_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    BY_VALUE_FIELD_NUMBER: _ClassVar[int]
    FORCE_PATH_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_TREE_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    by_reference: _containers.RepeatedScalarFieldContainer[bytes]
    by_value: _containers.RepeatedCompositeFieldContainer[ProposalDescription]
    force_path: bool
    external_tree: bool
    def __init__(self, state_id: _Optional[int] = ..., by_reference: _Optional[_Iterable[bytes]] = ..., by_value: _Optional[_Iterable[_Union[ProposalDescription, _Mapping]]] = ..., force_path: _Optional[bool] = ..., external_tree: _Optional[bool] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("commit", "welcome", "ratchet_tree")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    RATCHET_TREE_FIELD_NUMBER: _ClassVar[int]
    commit: bytes
    welcome: bytes
    ratchet_tree: bytes
    def __init__(self, commit: _Optional[bytes] = ..., welcome: _Optional[bytes] = ..., ratchet_tree: _Optional[bytes] = ...) -> None: ...

class HandleCommitRequest(_message.Message):
    __slots__ = ("state_id", "proposal", "commit")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    proposal: _containers.RepeatedScalarFieldContainer[bytes]
    commit: bytes
    def __init__(self, state_id: _Optional[int] = ..., proposal: _Optional[_Iterable[bytes]] = ..., commit: _Optional[bytes] = ...) -> None: ...

class HandleCommitResponse(_message.Message):
    __slots__ = ("state_id", "epoch_authenticator")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_AUTHENTICATOR_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    epoch_authenticator: bytes
    def __init__(self, state_id: _Optional[int] = ..., epoch_authenticator: _Optional[bytes] = ...) -> None: ...

class HandlePendingCommitRequest(_message.Message):
    __slots__ = ("state_id",)
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    def __init__(self, state_id: _Optional[int] = ...) -> None: ...

class ReInitProposalRequest(_message.Message):
    __slots__ = ("state_id", "cipher_suite", "group_id", "extensions")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHER_SUITE_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    cipher_suite: int
    group_id: bytes
    extensions: _containers.RepeatedCompositeFieldContainer[Extension]
    def __init__(self, state_id: _Optional[int] = ..., cipher_suite: _Optional[int] = ..., group_id: _Optional[bytes] = ..., extensions: _Optional[_Iterable[_Union[Extension, _Mapping]]] = ...) -> None: ...

class HandleReInitCommitResponse(_message.Message):
    __slots__ = ("reinit_id", "key_package", "epoch_authenticator")
    REINIT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_AUTHENTICATOR_FIELD_NUMBER: _ClassVar[int]
    reinit_id: int
    key_package: bytes
    epoch_authenticator: bytes
    def __init__(self, reinit_id: _Optional[int] = ..., key_package: _Optional[bytes] = ..., epoch_authenticator: _Optional[bytes] = ...) -> None: ...

class ReInitWelcomeRequest(_message.Message):
    __slots__ = ("reinit_id", "key_package", "force_path", "external_tree")
    REINIT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    FORCE_PATH_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_TREE_FIELD_NUMBER: _ClassVar[int]
    reinit_id: int
    key_package: _containers.RepeatedScalarFieldContainer[bytes]
    force_path: bool
    external_tree: bool
    def __init__(self, reinit_id: _Optional[int] = ..., key_package: _Optional[_Iterable[bytes]] = ..., force_path: _Optional[bool] = ..., external_tree: _Optional[bool] = ...) -> None: ...

class CreateSubgroupResponse(_message.Message):
    __slots__ = ("state_id", "welcome", "ratchet_tree", "epoch_authenticator")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    RATCHET_TREE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_AUTHENTICATOR_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    welcome: bytes
    ratchet_tree: bytes
    epoch_authenticator: bytes
    def __init__(self, state_id: _Optional[int] = ..., welcome: _Optional[bytes] = ..., ratchet_tree: _Optional[bytes] = ..., epoch_authenticator: _Optional[bytes] = ...) -> None: ...

class HandleReInitWelcomeRequest(_message.Message):
    __slots__ = ("reinit_id", "welcome", "ratchet_tree")
    REINIT_ID_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    RATCHET_TREE_FIELD_NUMBER: _ClassVar[int]
    reinit_id: int
    welcome: bytes
    ratchet_tree: bytes
    def __init__(self, reinit_id: _Optional[int] = ..., welcome: _Optional[bytes] = ..., ratchet_tree: _Optional[bytes] = ...) -> None: ...

class CreateBranchRequest(_message.Message):
    __slots__ = ("state_id", "group_id", "extensions", "key_packages", "force_path", "external_tree")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    KEY_PACKAGES_FIELD_NUMBER: _ClassVar[int]
    FORCE_PATH_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_TREE_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    group_id: bytes
    extensions: _containers.RepeatedCompositeFieldContainer[Extension]
    key_packages: _containers.RepeatedScalarFieldContainer[bytes]
    force_path: bool
    external_tree: bool
    def __init__(self, state_id: _Optional[int] = ..., group_id: _Optional[bytes] = ..., extensions: _Optional[_Iterable[_Union[Extension, _Mapping]]] = ..., key_packages: _Optional[_Iterable[bytes]] = ..., force_path: _Optional[bool] = ..., external_tree: _Optional[bool] = ...) -> None: ...

class HandleBranchRequest(_message.Message):
    __slots__ = ("state_id", "transaction_id", "welcome", "ratchet_tree")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    RATCHET_TREE_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    transaction_id: int
    welcome: bytes
    ratchet_tree: bytes
    def __init__(self, state_id: _Optional[int] = ..., transaction_id: _Optional[int] = ..., welcome: _Optional[bytes] = ..., ratchet_tree: _Optional[bytes] = ...) -> None: ...

class HandleBranchResponse(_message.Message):
    __slots__ = ("state_id", "epoch_authenticator")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_AUTHENTICATOR_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    epoch_authenticator: bytes
    def __init__(self, state_id: _Optional[int] = ..., epoch_authenticator: _Optional[bytes] = ...) -> None: ...

class NewMemberAddProposalRequest(_message.Message):
    __slots__ = ("group_info", "identity")
    GROUP_INFO_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    group_info: bytes
    identity: bytes
    def __init__(self, group_info: _Optional[bytes] = ..., identity: _Optional[bytes] = ...) -> None: ...

class NewMemberAddProposalResponse(_message.Message):
    __slots__ = ("transaction_id", "proposal", "init_priv", "encryption_priv", "signature_priv")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    INIT_PRIV_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_PRIV_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_PRIV_FIELD_NUMBER: _ClassVar[int]
    transaction_id: int
    proposal: bytes
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes
    def __init__(self, transaction_id: _Optional[int] = ..., proposal: _Optional[bytes] = ..., init_priv: _Optional[bytes] = ..., encryption_priv: _Optional[bytes] = ..., signature_priv: _Optional[bytes] = ...) -> None: ...

class CreateExternalSignerRequest(_message.Message):
    __slots__ = ("cipher_suite", "identity")
    CIPHER_SUITE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    cipher_suite: int
    identity: bytes
    def __init__(self, cipher_suite: _Optional[int] = ..., identity: _Optional[bytes] = ...) -> None: ...

class CreateExternalSignerResponse(_message.Message):
    __slots__ = ("signer_id", "external_sender")
    SIGNER_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SENDER_FIELD_NUMBER: _ClassVar[int]
    signer_id: int
    external_sender: bytes
    def __init__(self, signer_id: _Optional[int] = ..., external_sender: _Optional[bytes] = ...) -> None: ...

class AddExternalSignerRequest(_message.Message):
    __slots__ = ("state_id", "external_sender")
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SENDER_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    external_sender: bytes
    def __init__(self, state_id: _Optional[int] = ..., external_sender: _Optional[bytes] = ...) -> None: ...

class AddExternalSignerResponse(_message.Message):
    __slots__ = ("proposal", "signer_index")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    SIGNER_INDEX_FIELD_NUMBER: _ClassVar[int]
    proposal: bytes
    signer_index: int
    def __init__(self, proposal: _Optional[bytes] = ..., signer_index: _Optional[int] = ...) -> None: ...

class ExternalSignerProposalRequest(_message.Message):
    __slots__ = ("signer_id", "signer_index", "group_info", "ratchet_tree", "description")
    SIGNER_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNER_INDEX_FIELD_NUMBER: _ClassVar[int]
    GROUP_INFO_FIELD_NUMBER: _ClassVar[int]
    RATCHET_TREE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    signer_id: int
    signer_index: int
    group_info: bytes
    ratchet_tree: bytes
    description: ProposalDescription
    def __init__(self, signer_id: _Optional[int] = ..., signer_index: _Optional[int] = ..., group_info: _Optional[bytes] = ..., ratchet_tree: _Optional[bytes] = ..., description: _Optional[_Union[ProposalDescription, _Mapping]] = ...) -> None: ...

class FreeRequest(_message.Message):
    __slots__ = ("state_id",)
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    state_id: int
    def __init__(self, state_id: _Optional[int] = ...) -> None: ...

class FreeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
