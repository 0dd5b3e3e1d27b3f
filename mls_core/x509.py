"""An X.509 Authentication Service for ``x509`` credentials (RFC 9420 §5.3, §5.3.1).

§5.3: "each entry in the ``certificates`` field represents a single DER-encoded X.509
certificate. The chain is ordered such that the first entry (certificates[0]) is the
end-entity certificate. The public key encoded in the ``subjectPublicKeyInfo`` of the
end-entity certificate MUST be identical to the ``signature_key`` in the LeafNode
containing this credential. A chain MAY omit any non-leaf certificates that supported
peers are known to already possess."

:class:`X509CredentialValidator` checks that each certificate is signed by the next one,
that the chain ends at (or is issued by) a configured trust anchor, that every issuer is a
CA (basicConstraints cA, pathLenConstraint, keyUsage keyCertSign), optionally the validity
periods, and that the end-entity key equals the LeafNode's ``signature_key`` in the MLS
encoding (Ed25519/Ed448 raw, ECDSA uncompressed point; see ``ciphersuite``).

Path validation is done here rather than with ``cryptography.x509.verification``: its
ClientVerifier applies the Web PKI profile, which requires a subjectAltName and an
authorityKeyIdentifier on the end-entity, forbids Ed25519/Ed448 keys (MLS suites 1, 3, 4,
6) and always checks time against a clock. Unrecognised critical extensions (including
nameConstraints and policy constraints, which this validator does not process) make the
path fail, as RFC 5280 §4.2 requires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .credentials import Credential, CredentialType
from .errors import UsageError, ValidationError

IdentityOf = Callable[[x509.Certificate], bytes]

#: Critical extensions this validator processes; any other critical one fails the path.
_HANDLED_CRITICAL = frozenset({
    x509.BasicConstraints.oid,
    x509.KeyUsage.oid,
    x509.SubjectAlternativeName.oid,
})
#: ECDSA curves of the MLS cipher suites (§17.1).
_MLS_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_WEAK_HASHES = (hashes.MD5, hashes.SHA1)

_E = TypeVar("_E", bound=x509.ExtensionType)


def _reject(what: str) -> ValidationError:
    return ValidationError(f"§5.3.1: x509 credential rejected: {what}")


_PARSE_ERRORS = (ValueError, x509.InvalidVersion, x509.DuplicateExtension,
                 x509.UnsupportedGeneralNameType, UnsupportedAlgorithm)


def _parse_der(der: bytes) -> x509.Certificate:
    """Parse ``der`` and force the lazily decoded fields the validator reads, so that
    malformed input fails here rather than deep inside a check."""
    cert = x509.load_der_x509_certificate(der)
    _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc,
         list(cert.extensions))
    # The DER ends with the signatureValue BIT STRING's contents: the unused-bits octet,
    # then the signature. cryptography accepts a non-zero unused-bits count and verifies
    # the padded octets, which would give one certificate several valid encodings.
    sig = cert.signature
    if not der.endswith(sig) or der[-len(sig) - 1] != 0:
        raise ValueError("signatureValue is not a whole number of octets")
    return cert


def _load(der: bytes, where: str) -> x509.Certificate:
    try:
        return _parse_der(der)
    except Exception:  # cryptography raises assorted types (ValueError, TypeError, ...)
        raise _reject(f"{where} is not a DER X.509 certificate") from None


def _extension(cert: x509.Certificate, cls: type[_E], where: str) -> _E | None:
    """The value of extension ``cls`` in ``cert``, or ``None`` if absent."""
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except _PARSE_ERRORS:
        raise _reject(f"{where} has malformed extensions") from None


def _check_extensions(cert: x509.Certificate, where: str) -> None:
    """RFC 5280 §4.2: a certificate with a critical extension the validator does not
    process must be rejected."""
    try:
        exts = list(cert.extensions)
    except _PARSE_ERRORS:
        raise _reject(f"{where} has malformed extensions") from None
    for ext in exts:
        if ext.critical and ext.oid not in _HANDLED_CRITICAL:
            raise _reject(f"{where} has an unsupported critical extension {ext.oid.dotted_string}")


def _check_signature_algorithm(cert: x509.Certificate, where: str) -> None:
    try:
        alg = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise _reject(f"{where} uses an unsupported signature algorithm") from None
    if isinstance(alg, _WEAK_HASHES):
        raise _reject(f"{where} is signed with the weak hash {alg.name}")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s subject is ``cert``'s issuer and its key signed ``cert``."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_validity(cert: x509.Certificate, where: str, now: int) -> None:
    if now < cert.not_valid_before_utc.timestamp():
        raise _reject(f"{where} is not valid yet (notBefore)")
    if now > cert.not_valid_after_utc.timestamp():
        raise _reject(f"{where} has expired (notAfter)")


def _check_issuer(cert: x509.Certificate, where: str, cas_below: int) -> None:
    """An issuing certificate must be a CA whose pathLenConstraint admits the
    ``cas_below`` intermediate CAs between it and the end entity (RFC 5280 §4.2.1.9)."""
    bc = _extension(cert, x509.BasicConstraints, where)
    if bc is None or not bc.ca:
        raise _reject(f"{where} issues certificates but is not a CA (basicConstraints)")
    if bc.path_length is not None and cas_below > bc.path_length:
        raise _reject(f"{where} pathLenConstraint exceeded")
    ku = _extension(cert, x509.KeyUsage, where)
    if ku is not None and not ku.key_cert_sign:
        raise _reject(f"{where} keyUsage lacks keyCertSign")


def mls_signature_key(cert: x509.Certificate) -> bytes:
    """``cert``'s public key in the MLS ``signature_key`` encoding (§5.1.2): raw for
    Ed25519/Ed448, the uncompressed point for ECDSA on an MLS curve."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise _reject("end-entity public key cannot be parsed") from None
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key.public_bytes_raw()
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _MLS_CURVES):
        return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    raise _reject("end-entity key type is not used by any MLS cipher suite")


def default_identity(cert: x509.Certificate) -> bytes:
    """The presented identifier of ``cert`` (§5.3): its first subjectAltName URI, email
    address or DNS name, else its subject as an RFC 4514 string, UTF-8 encoded."""
    san = _extension(cert, x509.SubjectAlternativeName, "end-entity certificate")
    for name in san or ():
        if isinstance(name, x509.UniformResourceIdentifier | x509.RFC822Name | x509.DNSName):
            return name.value.encode()
    return cert.subject.rfc4514_string().encode()


class X509CredentialValidator:
    """A :class:`~mls_core.authentication.CredentialValidator` for ``x509`` credentials
    (§5.3.1) rooted in ``trust_anchors`` (DER certificates).

    ``now`` (seconds since the epoch) is the time validity periods are checked against;
    ``None`` skips time checks (the core reads no clock, so the application updates
    :attr:`now`). ``identity_of`` maps an end-entity certificate to the identity that
    :meth:`may_replace` compares (default :func:`default_identity`). ``basic``
    credentials are rejected unless ``allow_basic``.
    """

    def __init__(self, trust_anchors: Sequence[bytes], *, now: int | None = None,
                 identity_of: IdentityOf | None = None, allow_basic: bool = False) -> None:
        if not trust_anchors:
            raise UsageError("X509CredentialValidator needs at least one trust anchor")
        try:
            self._anchors = tuple(_parse_der(bytes(d)) for d in trust_anchors)
        except Exception:
            raise UsageError("a trust anchor is not a DER X.509 certificate") from None
        self._anchor_ders = frozenset(bytes(d) for d in trust_anchors)
        self.now = now
        self.identity_of: IdentityOf = identity_of or default_identity
        self.allow_basic = allow_basic

    # ------------------------------------------------------------------ Protocol

    def validate(self, credential: Credential, signature_key: bytes) -> None:
        """Accept ``credential`` for ``signature_key`` or raise ValidationError (§5.3.1)."""
        if credential.credential_type == CredentialType.BASIC:
            self._validate_basic(credential)
            return
        leaf = self.end_entity(credential)
        if mls_signature_key(leaf) != bytes(signature_key):
            raise _reject("end-entity public key does not match the LeafNode signature_key")

    def may_replace(self, previous: Credential, new: Credential) -> bool:
        """Whether ``new`` presents the same identity as ``previous`` (§5.3.1)."""
        if previous.credential_type != new.credential_type:
            return False
        return self._identity(previous) == self._identity(new)

    # ------------------------------------------------------------------ helpers

    def end_entity(self, credential: Credential) -> x509.Certificate:
        """The end-entity certificate of ``credential`` after validating its chain up to a
        trust anchor (§5.3, §5.3.1)."""
        chain = self._parse(credential)
        path = self._path(chain)
        for i, cert in enumerate(path):
            where = _where(i, len(chain))
            _check_extensions(cert, where)
            if i < len(path) - 1:  # the anchor's own (self-)signature is not relied on
                _check_signature_algorithm(cert, where)
            if self.now is not None:
                _check_validity(cert, where, self.now)
            if i > 0:
                _check_issuer(cert, where, cas_below=i - 1)
        ku = _extension(path[0], x509.KeyUsage, "end-entity certificate")
        if ku is not None and not ku.digital_signature:
            raise _reject("end-entity keyUsage lacks digitalSignature")
        return path[0]

    def _validate_basic(self, credential: Credential) -> None:
        if not self.allow_basic:
            raise ValidationError("§5.3.1: basic credentials are not accepted by this "
                                  "X.509 Authentication Service")
        if not credential.identity:
            raise ValidationError("§5.3.1: basic credential with an empty identity")

    def _identity(self, credential: Credential) -> bytes:
        if credential.credential_type == CredentialType.BASIC:
            self._validate_basic(credential)
            return credential.identity or b""
        return self.identity_of(self._parse(credential)[0])

    @staticmethod
    def _parse(credential: Credential) -> list[x509.Certificate]:
        if credential.credential_type != CredentialType.X509:
            raise ValidationError(f"§5.3.1: credential type {credential.credential_type} "
                                  "not accepted by this X.509 Authentication Service")
        certs = credential.certificates
        if not certs:
            raise _reject("empty certificate chain")
        return [_load(c.cert_data, f"certificates[{i}]") for i, c in enumerate(certs)]

    def _path(self, chain: list[x509.Certificate]) -> list[x509.Certificate]:
        """The certification path from the end entity to a trust anchor: ``chain`` up to
        its first trust anchor, or all of ``chain`` plus the anchor that issued its last
        certificate (§5.3 lets the chain omit certificates peers already hold)."""
        ders = [c.public_bytes(Encoding.DER) for c in chain]
        end = next((i for i, d in enumerate(ders) if d in self._anchor_ders), None)
        path = chain if end is None else chain[:end + 1]
        for i in range(len(path) - 1):
            if not _signed_by(path[i], path[i + 1]):
                raise _reject(f"certificates[{i}] is not signed by certificates[{i + 1}]")
        if end is not None:
            return path
        anchor = next((a for a in self._anchors if _signed_by(path[-1], a)), None)
        if anchor is None:
            raise _reject(f"certificates[{len(path) - 1}] is not issued by a trust anchor")
        return [*path, anchor]


def _where(index: int, chain_length: int) -> str:
    return "trust anchor" if index >= chain_length else f"certificates[{index}]"
