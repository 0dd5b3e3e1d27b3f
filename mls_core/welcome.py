"""GroupInfo signing and Welcome encryption (RFC 9420 §12.4.3, §12.4.3.1).

The committer signs a GroupInfo for the new epoch, encrypts it under the welcome key
derived from ``joiner_secret`` and the PSKs, and seals a GroupSecrets to each new member's
``init_key``. A joiner reverses the steps. Tree validation and building the group state
live in the group layer; this module only handles the cryptographic envelope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .ciphersuite import CipherSuite
from .codec import LazyVector
from .errors import DecryptionError, ValidationError
from .key_schedule import welcome_key_nonce, welcome_secret
from .messages import (
    EncryptedGroupSecrets,
    GroupInfo,
    GroupInfoTBS,
    GroupSecrets,
    KeyPackage,
    PathSecret,
    Welcome,
)
from .nodes import HPKECiphertext
from .psk import PreSharedKeyID

GROUP_INFO_TBS_LABEL = b"GroupInfoTBS"
KEY_PACKAGE_TBS_LABEL = b"KeyPackageTBS"
WELCOME_LABEL = b"Welcome"


def sign_group_info(suite: CipherSuite, signature_priv: bytes, tbs: GroupInfoTBS) -> GroupInfo:
    """SignWithLabel(., "GroupInfoTBS", GroupInfoTBS) (§12.4.3)."""
    return tbs.signed(suite.sign_with_label(signature_priv, GROUP_INFO_TBS_LABEL, tbs.encode()))


def verify_group_info(suite: CipherSuite, group_info: GroupInfo, signer_pub: bytes) -> None:
    """Verify the GroupInfo signature with the signer's leaf key (§12.4.3)."""
    suite.check_signature(signer_pub, GROUP_INFO_TBS_LABEL, group_info.to_be_signed().encode(),
                          group_info.signature, "GroupInfo (§12.4.3)")


@dataclass(frozen=True)
class WelcomeRecipient:
    """A new member: its KeyPackage and, if the commit had a path, the path secret of
    the lowest common ancestor of the committer and the new member (§12.4.3.1)."""

    key_package: KeyPackage
    path_secret: bytes | None = None


def encrypt_welcome(
    suite: CipherSuite,
    group_info: GroupInfo,
    joiner_secret: bytes,
    psk_secret: bytes | None,
    psks: Sequence[PreSharedKeyID],
    recipients: Sequence[WelcomeRecipient],
) -> Welcome:
    """Build a Welcome for ``recipients`` (§12.4.3.1)."""
    key, nonce = welcome_key_nonce(suite, welcome_secret(suite, joiner_secret, psk_secret))
    encrypted_group_info = suite.seal(key, nonce, b"", group_info.encode())
    plaintexts = []
    for r in recipients:
        path = PathSecret(r.path_secret) if r.path_secret is not None else None
        plaintexts.append((r.key_package.init_key,
                           GroupSecrets(joiner_secret, path, tuple(psks)).encode()))
    # The context (encrypted_group_info) holds the whole tree: hash it once, not per
    # recipient, so a Welcome for k members of an n-member group costs O(n + k).
    sealed = suite.encrypt_with_label_many(WELCOME_LABEL, encrypted_group_info, plaintexts)
    secrets = [
        EncryptedGroupSecrets(suite.make_key_package_ref(r.key_package.encode()),
                              HPKECiphertext(kem_output, ciphertext))
        for r, (kem_output, ciphertext) in zip(recipients, sealed, strict=True)
    ]
    return Welcome(suite.id, tuple(secrets), encrypted_group_info)


def decrypt_group_secrets(
    suite: CipherSuite, welcome: Welcome, key_package: KeyPackage, init_priv: bytes
) -> GroupSecrets:
    """Find our entry by KeyPackageRef and decrypt its GroupSecrets (§12.4.3.1)."""
    if welcome.cipher_suite != suite.id or key_package.cipher_suite != suite.id:
        raise ValidationError("§12.4.3.1: Welcome and KeyPackage cipher suites differ")
    ref = suite.make_key_package_ref(key_package.encode())
    entry = _own_entry(welcome.secrets, ref)
    if entry is None:
        raise ValidationError("§12.4.3.1: the Welcome has no entry for our KeyPackage")
    ct = entry.encrypted_group_secrets
    plaintext = suite.decrypt_with_label(init_priv, WELCOME_LABEL, welcome.encrypted_group_info,
                                         ct.kem_output, ct.ciphertext)
    return GroupSecrets.decode(plaintext)


def _own_entry(secrets: Sequence[EncryptedGroupSecrets], ref: bytes,
               ) -> EncryptedGroupSecrets | None:
    """The first entry whose ``new_member`` is ``ref``. In a received Welcome (a
    :class:`~mls_core.codec.LazyVector`, already validated whole) only that entry is
    decoded: the others are never needed by this joiner."""
    if isinstance(secrets, LazyVector):
        index = secrets.index_of_first_field(ref)
        return None if index is None else secrets[index]
    return next((entry for entry in secrets if entry.new_member == ref), None)


def decrypt_group_info(
    suite: CipherSuite, welcome: Welcome, joiner_secret: bytes, psk_secret: bytes | None
) -> GroupInfo:
    """Decrypt the Welcome's GroupInfo with the welcome key and nonce (§12.4.3.1)."""
    key, nonce = welcome_key_nonce(suite, welcome_secret(suite, joiner_secret, psk_secret))
    try:
        plaintext = suite.open(key, nonce, b"", welcome.encrypted_group_info)
    except DecryptionError:
        raise DecryptionError("§12.4.3.1: cannot decrypt the Welcome's GroupInfo") from None
    return GroupInfo.decode(plaintext)


def verify_key_package_signature(suite: CipherSuite, key_package: KeyPackage) -> None:
    """KeyPackage signature by its leaf's signature key (§10.1)."""
    suite.check_signature(key_package.leaf_node.signature_key, KEY_PACKAGE_TBS_LABEL,
                          key_package.to_be_signed().encode(), key_package.signature,
                          "KeyPackage (§10.1)")
