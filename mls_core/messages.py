"""Key packages, group info, Welcome and group extension bodies (RFC 9420 §10, §11.1,
§12.1.8.1, §12.4.3).

Extension bodies (``extension_data`` of an :class:`~mls_core.extensions.Extension`):
``required_capabilities`` is a :class:`RequiredCapabilities`, ``external_pub`` an
:class:`ExternalPub`, ``external_senders`` an ``ExternalSender external_senders<V>``
(:data:`EXTERNAL_SENDERS`) and ``ratchet_tree`` an ``optional<Node> ratchet_tree<V>``
(:data:`mls_core.nodes.RATCHET_TREE`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar

from .codec import (
    U16,
    Codec,
    LazyVec,
    Opt,
    Struct,
    Uint16,
    Uint32,
    VarBytes,
    Vec,
    decode_value,
    encode_value,
)
from .credentials import Credential
from .extensions import Extension, ExtensionType
from .key_schedule import GroupContext
from .nodes import HPKECiphertext, LeafNode, Node, decode_ratchet_tree, encode_ratchet_tree
from .psk import PreSharedKeyID


@dataclass(frozen=True)
class KeyPackageTBS(Struct):
    """struct {
        ProtocolVersion version;
        CipherSuite cipher_suite;
        HPKEPublicKey init_key;
        LeafNode leaf_node;
        Extension extensions<V>;
    } KeyPackageTBS;                                                     (§10)"""

    version: Uint16
    cipher_suite: Uint16
    init_key: VarBytes
    leaf_node: LeafNode
    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]

    def signed(self, signature: bytes) -> KeyPackage:
        """The KeyPackage carrying these fields and ``signature``."""
        return KeyPackage(self.version, self.cipher_suite, self.init_key, self.leaf_node,
                          self.extensions, signature)


@dataclass(frozen=True)
class KeyPackage(Struct):
    """struct {
        ProtocolVersion version;
        CipherSuite cipher_suite;
        HPKEPublicKey init_key;
        LeafNode leaf_node;
        Extension extensions<V>;
        /* SignWithLabel(., "KeyPackageTBS", KeyPackageTBS) */
        opaque signature<V>;
    } KeyPackage;                                                        (§10)"""

    _memoize_wire: ClassVar[bool] = True  # encoded again for signatures and hashes

    version: Uint16
    cipher_suite: Uint16
    init_key: VarBytes
    leaf_node: LeafNode
    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]
    signature: VarBytes

    def to_be_signed(self) -> KeyPackageTBS:
        """The KeyPackageTBS covered by :attr:`signature` (§10)."""
        return KeyPackageTBS(self.version, self.cipher_suite, self.init_key, self.leaf_node,
                             self.extensions)


@dataclass(frozen=True)
class GroupInfoTBS(Struct):
    """struct {
        GroupContext group_context;
        Extension extensions<V>;
        MAC confirmation_tag;
        uint32 signer;
    } GroupInfoTBS;                                                      (§12.4.3)"""

    group_context: GroupContext
    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]
    confirmation_tag: VarBytes
    signer: Uint32

    def signed(self, signature: bytes) -> GroupInfo:
        """The GroupInfo carrying these fields and ``signature``."""
        return GroupInfo(self.group_context, self.extensions, self.confirmation_tag,
                         self.signer, signature)


@dataclass(frozen=True)
class GroupInfo(Struct):
    """struct {
        GroupContext group_context;
        Extension extensions<V>;
        MAC confirmation_tag;
        uint32 signer;
        /* SignWithLabel(., "GroupInfoTBS", GroupInfoTBS) */
        opaque signature<V>;
    } GroupInfo;                                                         (§12.4.3)"""

    group_context: GroupContext
    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]
    confirmation_tag: VarBytes
    signer: Uint32
    signature: VarBytes

    def to_be_signed(self) -> GroupInfoTBS:
        """The GroupInfoTBS covered by :attr:`signature` (§12.4.3)."""
        return GroupInfoTBS(self.group_context, self.extensions, self.confirmation_tag,
                            self.signer)


@dataclass(frozen=True)
class PathSecret(Struct):
    """struct {
      opaque path_secret<V>;
    } PathSecret;                                                        (§12.4.3.1)"""

    path_secret: VarBytes


@dataclass(frozen=True)
class GroupSecrets(Struct):
    """struct {
      opaque joiner_secret<V>;
      optional<PathSecret> path_secret;
      PreSharedKeyID psks<V>;
    } GroupSecrets;                                                      (§12.4.3.1)"""

    joiner_secret: VarBytes
    path_secret: Annotated[PathSecret | None, Opt(PathSecret)]
    psks: Annotated[tuple[PreSharedKeyID, ...], Vec(PreSharedKeyID)]


@dataclass(frozen=True)
class EncryptedGroupSecrets(Struct):
    """struct {
      KeyPackageRef new_member;
      HPKECiphertext encrypted_group_secrets;
    } EncryptedGroupSecrets;                                             (§12.4.3.1)

    ``KeyPackageRef`` is a ``HashReference``, i.e. ``opaque <V>`` (§5.2)."""

    new_member: VarBytes
    encrypted_group_secrets: HPKECiphertext


@dataclass(frozen=True)
class Welcome(Struct):
    """struct {
      CipherSuite cipher_suite;
      EncryptedGroupSecrets secrets<V>;
      opaque encrypted_group_info<V>;
    } Welcome;                                                           (§12.4.3.1)"""

    cipher_suite: Uint16
    # One entry per new member; a joiner needs only its own (§12.4.3.1). Validated
    # whole, decoded on access.
    secrets: Annotated[Sequence[EncryptedGroupSecrets], LazyVec(EncryptedGroupSecrets)]
    encrypted_group_info: VarBytes


@dataclass(frozen=True)
class RequiredCapabilities(Struct):
    """struct {
        ExtensionType extension_types<V>;
        ProposalType proposal_types<V>;
        CredentialType credential_types<V>;
    } RequiredCapabilities;                                              (§11.1)"""

    extension_types: Annotated[tuple[int, ...], Vec(U16)]
    proposal_types: Annotated[tuple[int, ...], Vec(U16)]
    credential_types: Annotated[tuple[int, ...], Vec(U16)]


@dataclass(frozen=True)
class ExternalSender(Struct):
    """struct {
      SignaturePublicKey signature_key;
      Credential credential;
    } ExternalSender;                                                    (§12.1.8.1)"""

    signature_key: VarBytes
    credential: Credential


#: ``ExternalSender external_senders<V>;`` (§12.1.8.1), the external_senders body.
EXTERNAL_SENDERS: Codec[tuple[ExternalSender, ...]] = Vec(ExternalSender)


@dataclass(frozen=True)
class ExternalPub(Struct):
    """struct {
        HPKEPublicKey external_pub;
    } ExternalPub;                                                       (§12.4.3.2)"""

    external_pub: VarBytes


# --------------------------------------------------------------------- extension bodies


def ratchet_tree_extension(nodes: Sequence[Node | None]) -> Extension:
    """A ``ratchet_tree`` extension carrying ``nodes`` (trailing blanks dropped)."""
    return Extension(ExtensionType.RATCHET_TREE, encode_ratchet_tree(list(nodes)))


def parse_ratchet_tree(extension_data: bytes) -> tuple[Node | None, ...]:
    """The nodes of a ``ratchet_tree`` extension body, shape-checked (§12.4.3.3)."""
    return decode_ratchet_tree(extension_data)


def external_senders_extension(senders: Sequence[ExternalSender]) -> Extension:
    """An ``external_senders`` extension listing ``senders`` (§12.1.8.1)."""
    return Extension(ExtensionType.EXTERNAL_SENDERS, encode_value(EXTERNAL_SENDERS,
                                                                  tuple(senders)))


def parse_external_senders(extension_data: bytes) -> tuple[ExternalSender, ...]:
    """The senders listed in an ``external_senders`` extension body (§12.1.8.1)."""
    return decode_value(EXTERNAL_SENDERS, extension_data, "external_senders")


def external_senders(extensions: Sequence[Extension]) -> tuple[ExternalSender, ...]:
    """The senders of a list's ``external_senders`` extension, or none (§12.1.8.1)."""
    for ext in extensions:
        if ext.extension_type == ExtensionType.EXTERNAL_SENDERS:
            return parse_external_senders(ext.extension_data)
    return ()


def with_external_sender(extensions: Sequence[Extension], sender: ExternalSender,
                         ) -> tuple[Extension, ...]:
    """``extensions`` with ``sender`` appended to ``external_senders`` (added if absent),
    other extensions kept in place."""
    senders = (*external_senders(extensions), sender)
    new = external_senders_extension(senders)
    out = [new if e.extension_type == ExtensionType.EXTERNAL_SENDERS else e
           for e in extensions]
    if new not in out:
        out.append(new)
    return tuple(out)


def external_pub_extension(external_pub: bytes) -> Extension:
    """An ``external_pub`` GroupInfo extension (§12.4.3.2)."""
    return Extension(ExtensionType.EXTERNAL_PUB, ExternalPub(external_pub).encode())


def required_capabilities_extension(caps: RequiredCapabilities) -> Extension:
    """A ``required_capabilities`` GroupContext extension (§11.1)."""
    return Extension(ExtensionType.REQUIRED_CAPABILITIES, caps.encode())

