"""Key schedule (RFC 9420 §8): GroupContext, epoch secrets, exporter, welcome secret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar

from .codec import Struct, Uint8, Uint16, Uint64, VarBytes, Vec
from .errors import DecodeError, UsageError, VerificationError
from .extensions import Extension

if TYPE_CHECKING:
    from .ciphersuite import CipherSuite

PROTOCOL_VERSION_MLS10 = 1
#: HPKE exporter label of the external init secret (§8.3)
EXTERNAL_INIT_LABEL = b"MLS 1.0 external init secret"


@dataclass(frozen=True)
class GroupContext(Struct):
    """struct {
        ProtocolVersion version = mls10;
        CipherSuite cipher_suite;
        opaque group_id<V>;
        uint64 epoch;
        opaque tree_hash<V>;
        opaque confirmed_transcript_hash<V>;
        Extension extensions<V>;
    } GroupContext;                                                      (§8.1)"""

    # Encoded into every FramedContentTBS (§6.1) and every UpdatePath EncryptContext
    # (§12.4.1): the wire form is kept with the (immutable) value of the epoch.
    _memoize_wire: ClassVar[bool] = True

    version: Uint16
    cipher_suite: Uint16
    group_id: VarBytes
    epoch: Uint64
    tree_hash: VarBytes
    confirmed_transcript_hash: VarBytes
    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]


# --------------------------------------------------------------------------- epoch secrets

#: Labels of the secrets derived from epoch_secret with DeriveSecret (§8, Table 4).
_EPOCH_LABELS: dict[str, bytes] = {
    "sender_data_secret": b"sender data",
    "encryption_secret": b"encryption",
    "exporter_secret": b"exporter",
    "external_secret": b"external",
    "confirmation_key": b"confirm",
    "membership_key": b"membership",
    "resumption_psk": b"resumption",
    "epoch_authenticator": b"authentication",
    "init_secret": b"init",
}

_STORAGE_VERSION = 1


@dataclass(frozen=True, repr=False)
class EpochSecrets:
    """The secrets of one epoch derived from its ``epoch_secret`` (§8).

    ``init_secret`` is the *next* epoch's ``init_secret_[n]``. ``epoch_secret`` itself is
    not kept: every value the group needs is derived from it once, then it is dropped
    (§9.2 deletion schedule). The repr never shows key material.
    """

    sender_data_secret: bytes
    encryption_secret: bytes
    exporter_secret: bytes
    external_secret: bytes
    confirmation_key: bytes
    membership_key: bytes
    resumption_psk: bytes
    epoch_authenticator: bytes
    init_secret: bytes

    def __repr__(self) -> str:
        return "EpochSecrets(<redacted>)"

    def to_bytes(self) -> bytes:
        """Versioned storage encoding (not a wire format)."""
        stored = _StoredEpochSecrets(_STORAGE_VERSION, *(getattr(self, f) for f in _EPOCH_LABELS))
        return stored.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> EpochSecrets:
        """Inverse of :meth:`to_bytes`; raises DecodeError on bad or unknown-version input."""
        stored = _StoredEpochSecrets.decode(data)
        if stored.version != _STORAGE_VERSION:
            raise DecodeError(f"EpochSecrets: unknown storage version {stored.version}")
        return cls(*(getattr(stored, f) for f in _EPOCH_LABELS))


@dataclass(frozen=True)
class _StoredEpochSecrets(Struct):
    """Storage layout of EpochSecrets: a version byte, then each secret as opaque<V>."""

    version: Uint8
    sender_data_secret: VarBytes
    encryption_secret: VarBytes
    exporter_secret: VarBytes
    external_secret: VarBytes
    confirmation_key: VarBytes
    membership_key: VarBytes
    resumption_psk: VarBytes
    epoch_authenticator: VarBytes
    init_secret: VarBytes


@dataclass(frozen=True, repr=False)
class EpochTransition:
    """Everything one run of the key schedule (§8) yields for a new epoch.

    ``joiner_secret`` and ``welcome_secret`` are only needed by a committer that builds a
    Welcome (§12.4.3.1); the group layer keeps ``secrets`` and drops this wrapper.
    """

    joiner_secret: bytes
    welcome_secret: bytes
    secrets: EpochSecrets

    def __repr__(self) -> str:
        return "EpochTransition(<redacted>)"


def _check_secret(suite: CipherSuite, name: str, value: bytes) -> None:
    if len(value) != suite.hash_length:
        raise UsageError(f"{name} must be KDF.Nh = {suite.hash_length} bytes")


def _psk_or_zero(suite: CipherSuite, psk_secret: bytes | None) -> bytes:
    """``psk_secret (or 0)``: no PSKs means the all-zero vector of length KDF.Nh (§8)."""
    if psk_secret is None:
        return bytes(suite.hash_length)
    _check_secret(suite, "psk_secret", psk_secret)
    return psk_secret


def derive_joiner_secret(suite: CipherSuite, init_secret: bytes, commit_secret: bytes | None,
                         group_context: bytes) -> bytes:
    """joiner_secret = ExpandWithLabel(KDF.Extract(init_secret_[n-1], commit_secret),
    "joiner", GroupContext_[n], KDF.Nh) (§8). ``group_context`` is the encoded
    GroupContext of the new epoch; ``commit_secret`` None means the all-zero vector."""
    _check_secret(suite, "init_secret", init_secret)
    if commit_secret is None:
        commit_secret = bytes(suite.hash_length)
    _check_secret(suite, "commit_secret", commit_secret)
    prk = suite.extract(init_secret, commit_secret)
    return suite.expand_with_label(prk, b"joiner", group_context, suite.hash_length)


def _member_secret(suite: CipherSuite, joiner_secret: bytes, psk_secret: bytes | None) -> bytes:
    """The unnamed intermediate KDF.Extract(joiner_secret, psk_secret (or 0)) (§8)."""
    _check_secret(suite, "joiner_secret", joiner_secret)
    return suite.extract(joiner_secret, _psk_or_zero(suite, psk_secret))


def welcome_secret(suite: CipherSuite, joiner_secret: bytes, psk_secret: bytes | None) -> bytes:
    """welcome_secret = DeriveSecret(KDF.Extract(joiner_secret, psk_secret), "welcome") (§8)."""
    return suite.derive_secret(_member_secret(suite, joiner_secret, psk_secret), b"welcome")


def welcome_key_nonce(suite: CipherSuite, welcome_secret: bytes) -> tuple[bytes, bytes]:
    """welcome_key and welcome_nonce that encrypt the GroupInfo of a Welcome (§12.4.3.1)."""
    key = suite.expand_with_label(welcome_secret, b"key", b"", suite.aead_key_size)
    nonce = suite.expand_with_label(welcome_secret, b"nonce", b"", suite.aead_nonce_size)
    return key, nonce


def secrets_from_epoch_secret(suite: CipherSuite, epoch_secret: bytes) -> EpochSecrets:
    """Every DeriveSecret(epoch_secret, <label>) of §8, including the next init_secret.

    Used directly at group creation, where epoch 0's epoch_secret is random (§11)."""
    _check_secret(suite, "epoch_secret", epoch_secret)
    return EpochSecrets(
        **{name: suite.derive_secret(epoch_secret, label) for name, label in _EPOCH_LABELS.items()}
    )


def derive_epoch_secrets(suite: CipherSuite, joiner_secret: bytes, psk_secret: bytes | None,
                         group_context: bytes) -> EpochSecrets:
    """From joiner_secret (e.g. out of a Welcome's GroupSecrets) to the epoch's secrets:
    epoch_secret = ExpandWithLabel(KDF.Extract(joiner_secret, psk_secret (or 0)), "epoch",
    GroupContext_[n], KDF.Nh), then the DeriveSecret outputs (§8)."""
    member = _member_secret(suite, joiner_secret, psk_secret)
    epoch_secret = suite.expand_with_label(member, b"epoch", group_context, suite.hash_length)
    return secrets_from_epoch_secret(suite, epoch_secret)


def next_epoch(suite: CipherSuite, init_secret: bytes, commit_secret: bytes | None,
               psk_secret: bytes | None, group_context: bytes) -> EpochTransition:
    """init_secret_[n-1] + commit_secret + psk_secret + GroupContext_[n] -> epoch n (§8)."""
    joiner = derive_joiner_secret(suite, init_secret, commit_secret, group_context)
    return EpochTransition(
        joiner_secret=joiner,
        welcome_secret=welcome_secret(suite, joiner, psk_secret),
        secrets=derive_epoch_secrets(suite, joiner, psk_secret, group_context),
    )


# --------------------------------------------------------------------------- uses of secrets


def mls_exporter(suite: CipherSuite, exporter_secret: bytes, label: bytes | str,
                 context: bytes, length: int) -> bytes:
    """MLS-Exporter(Label, Context, Length) = ExpandWithLabel(DeriveSecret(exporter_secret,
    Label), "exported", Hash(Context), Length) (§8.5)."""
    if not 0 <= length <= 0xFFFF:
        raise UsageError("exporter length must fit in a uint16")
    derived = suite.derive_secret(exporter_secret, label)
    return suite.expand_with_label(derived, b"exported", suite.hash(context), length)


def external_key_pair(suite: CipherSuite, external_secret: bytes) -> tuple[bytes, bytes]:
    """(external_priv, external_pub) = KEM.DeriveKeyPair(external_secret) (§8)."""
    return suite.derive_key_pair(external_secret)


def confirmation_tag(suite: CipherSuite, confirmation_key: bytes,
                     confirmed_transcript_hash: bytes) -> bytes:
    """confirmation_tag = MAC(confirmation_key, GroupContext.confirmed_transcript_hash)
    (§6.1)."""
    return suite.mac(confirmation_key, confirmed_transcript_hash)


def verify_confirmation_tag(suite: CipherSuite, confirmation_key: bytes,
                            confirmed_transcript_hash: bytes, tag: bytes) -> None:
    """Raise VerificationError unless ``tag`` is the confirmation_tag (§6.1, §12.4.2)."""
    if not suite.verify_mac(confirmation_key, confirmed_transcript_hash, tag):
        raise VerificationError("invalid confirmation_tag")
