"""Credentials (RFC 9420 §5.3, §17.5): Credential, Certificate and credential types.

Unknown credential types: a Credential whose ``credential_type`` is not ``basic`` or
``x509`` raises :class:`~mls_core.errors.DecodeError`. The body of an unknown type has no
length prefix, so it cannot be skipped, and §13.5 forbids GREASE values in
``Credential.credential_type`` precisely because an unsupported value there causes the
enclosing message to be rejected. Unknown credential types *listed* in capabilities
(``Capabilities.credentials``, ``RequiredCapabilities.credential_types``) are plain
``uint16`` values and decode fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

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

    credential_type: Uint16
    body: Annotated[
        bytes | tuple[Certificate, ...],
        Select(
            "credential_type",
            {CredentialType.BASIC: VAR_BYTES, CredentialType.X509: Vec(Certificate)},
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
