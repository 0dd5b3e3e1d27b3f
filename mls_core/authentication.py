"""The Authentication Service interface (RFC 9420 §5.3.1, RFC 9750 §"Authentication
Service"): the application decides whether a credential is acceptable and binds it to
the signature key. ``mls_core`` calls the validator wherever §5.3.1 requires it (leaf
nodes in KeyPackages, Add/Update proposals, UpdatePaths, trees on join).
An X.509 validator (chain to trust anchors, §5.3) is ``mls_core.x509.X509CredentialValidator``.
"""

from __future__ import annotations

from typing import Protocol

from .credentials import Credential, CredentialType
from .errors import ValidationError


class CredentialValidator(Protocol):
    """Validates a credential and its binding to ``signature_key`` (§5.3.1).

    Raise :class:`~mls_core.errors.ValidationError` to reject. ``identity_changed`` tells
    whether an Update/Commit replaces ``previous`` with a credential of another identity
    (§5.3.1: the AS decides whether that is allowed)."""

    def validate(self, credential: Credential, signature_key: bytes) -> None: ...

    def may_replace(self, previous: Credential, new: Credential) -> bool: ...


class BasicCredentialValidator:
    """Accepts any ``basic`` credential with a non-empty identity (and x509 chains only
    if ``allow_x509``); identities may not change on Update/Commit. Suitable for tests
    and for applications that authenticate identities out of band."""

    def __init__(self, allow_x509: bool = False) -> None:
        self.allow_x509 = allow_x509

    def validate(self, credential: Credential, signature_key: bytes) -> None:
        if credential.credential_type == CredentialType.BASIC:
            if not credential.identity:
                raise ValidationError("§5.3: basic credential with an empty identity")
            return
        if credential.credential_type == CredentialType.X509 and self.allow_x509:
            if not credential.body:
                raise ValidationError("§5.3: x509 credential with no certificate")
            return
        raise ValidationError(f"§5.3.1: credential type {credential.credential_type} "
                              "not accepted by this Authentication Service")

    def may_replace(self, previous: Credential, new: Credential) -> bool:
        return previous == new


DEFAULT_VALIDATOR: CredentialValidator = BasicCredentialValidator(allow_x509=True)
