"""The one exception hierarchy of ``mls_core``.

Every failure that ``mls_core`` reports to a caller is an :class:`MLSError`. The families
follow the split h11 makes between "the peer sent garbage" and "we misused the API":

``MLSError``
    ``DecodeError``          bytes that do not parse as the named struct (RFC 9420 §2.1):
                             truncated, oversized, non-minimal varint, trailing bytes,
                             unknown enum value where the struct cannot be skipped.
        ``VersionError``        an MLSMessage or GroupContext whose protocol version is
                                not mls10 (§6); also a ``ProtocolError``.
    ``CryptoError``          a cryptographic operation failed.
        ``VerificationError``   a signature, MAC, membership tag, confirmation tag or
                                parent/tree hash did not verify.
        ``DecryptionError``     AEAD or HPKE decryption failed.
    ``ProtocolError``        well-formed input that breaks an RFC 9420 rule (the message
                             names the section), e.g. wrong epoch or wrong group_id.
        ``EpochError``          message for an epoch we do not (or no longer) hold.
        ``ReplayError``         a generation that was already consumed (§9.2).
        ``ValidationError``     a proposal list, commit, tree or KeyPackage is invalid.
        ``RemovedSenderError``  a past epoch's application message from a member that a
                                Commit we processed since removed (§15.3, docs/security.md).
    ``PolicyError``          the application's policy refused an otherwise valid change.
    ``UsageError``           the caller misused the API (our side's fault).
    ``UnsupportedError``     valid but not supported here (unknown cipher suite, ...).
        ``LimitError``          larger than a configured bound (``config.InputLimits``),
                                refused before the work it would cost.

Errors never carry key material or plaintext in their messages.
"""

from __future__ import annotations


class MLSError(Exception):
    """Base class of every error raised by mls_core."""


class DecodeError(MLSError):
    """Bytes do not decode as the named struct (RFC 9420 §2.1)."""


class CryptoError(MLSError):
    """A cryptographic primitive failed."""


class VerificationError(CryptoError):
    """A signature, MAC or hash did not verify."""


class DecryptionError(CryptoError):
    """AEAD or HPKE decryption failed (wrong key, tampered ciphertext)."""


class ProtocolError(MLSError):
    """Well-formed input that violates an RFC 9420 rule."""


class EpochError(ProtocolError):
    """The message belongs to an epoch whose keys we do not hold."""


class ReplayError(ProtocolError):
    """The message reuses a generation whose key was already consumed (§9.2)."""


class ValidationError(ProtocolError):
    """A proposal list, commit, tree, credential or KeyPackage is invalid."""


class RemovedSenderError(ProtocolError):
    """An authentic application message of a retained past epoch (§15.3) whose sender a
    Commit we have processed since removed: refused by default, because the removed
    member may have kept that epoch's keys and written it after its removal
    (``GroupConfig.accept_removed_senders``; docs/security.md)."""


class VersionError(DecodeError, ProtocolError):
    """A protocol version other than mls10 (§6). The rest of an MLSMessage is laid out
    by its version, so it is a DecodeError (callers that drop undecodable bytes drop
    it too) as well as a ProtocolError (what ``Group.process`` always raised for it)."""


class PolicyError(MLSError):
    """The application's policy rejected an otherwise valid operation."""


class UsageError(MLSError):
    """The caller used the API incorrectly."""


class UnsupportedError(MLSError):
    """A valid but unsupported value (e.g. an unknown cipher suite)."""


class LimitError(UnsupportedError):
    """The input exceeds a bound of :class:`mls_core.config.InputLimits` (a tree with
    too many leaves or bytes): refused before decoding, hashing or verifying it."""
