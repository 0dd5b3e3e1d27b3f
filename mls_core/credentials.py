"""Credentials (RFC 9420 §5.3, §17.5): Credential, Certificate and credential types.

Other credential types (application-defined, §13.3 "Credential Extensibility") are
decoded as an ``opaque<V>`` body, the convention the official test vectors and other
implementations (mls-rs "custom" credentials, MLSpp) use; whether such a credential is
acceptable is the Authentication Service's decision (§5.3.1), not the codec's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, ClassVar

from .codec import VAR_BYTES, Select, Struct, Uint16, VarBytes, Vec


class CredentialType(IntEnum):
    """MLS Credential Types registry (§17.5); the wire field stays a plain ``uint16``."""

    RESERVED = 0x0000
    BASIC = 0x0001
    X509 = 0x0002


@dataclass(frozen=True)
class Certificate(Struct):
    """struct {
        opaque cert_data<V>;
    } Certificate;                                                       (§5.3)"""

    cert_data: VarBytes


@dataclass(frozen=True)
class Credential(Struct):
    """struct {
        CredentialType credential_type;
        select (Credential.credential_type) {
            case basic:
                opaque identity<V>;
            case x509:
                Certificate certificates<V>;
        };
    } Credential;                                                        (§5.3)

    ``body`` holds the selected case: ``bytes`` (the identity) for ``basic``, a tuple of
    :class:`Certificate` for ``x509``. Build instances with :meth:`basic` / :meth:`x509`.
    """

    _memoize_wire: ClassVar[bool] = True  # encoded again for signatures and hashes

    credential_type: Uint16
    body: Annotated[
        bytes | tuple[Certificate, ...],
        Select(
            "credential_type",
            {CredentialType.BASIC: VAR_BYTES, CredentialType.X509: Vec(Certificate)},
            default=VAR_BYTES,
        ),
    ]

    @classmethod
    def basic(cls, identity: bytes) -> Credential:
        """A ``basic`` credential: a bare identity assertion (§5.3)."""
        return cls(CredentialType.BASIC, bytes(identity))

    @classmethod
    def x509(cls, certificates: list[bytes] | tuple[bytes, ...]) -> Credential:
        """An ``x509`` credential from DER certificates, end-entity first (§5.3)."""
        return cls(CredentialType.X509, tuple(Certificate(bytes(c)) for c in certificates))

    @property
    def identity(self) -> bytes | None:
        """The identity of a ``basic`` credential, else ``None``."""
        return self.body if isinstance(self.body, bytes) else None

    @property
    def certificates(self) -> tuple[Certificate, ...] | None:
        """The certificate chain of an ``x509`` credential, else ``None``."""
        return self.body if isinstance(self.body, tuple) else None
