"""The X.509 Authentication Service (RFC 9420 §5.3, §5.3.1) against a small test PKI:
root CA -> intermediate CA -> end entity, for MLS suites 1 (Ed25519) and 2 (ECDSA P-256)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mls_core.authentication import BasicCredentialValidator
from mls_core.ciphersuite import get_suite
from mls_core.config import GroupConfig
from mls_core.credentials import Certificate, Credential, CredentialType
from mls_core.errors import UsageError, ValidationError
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add
from mls_core.x509 import IdentityOf, X509CredentialValidator, default_identity

NOW = 1_800_000_000
DAY = 24 * 3600
SUITES = (1, 2)

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def _new_key(suite_id: int) -> PrivateKey:
    if suite_id == 1:
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _mls_private(key: PrivateKey) -> bytes:
    """The MLS signature private key encoding (raw Ed25519, big-endian P-256 scalar)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.private_bytes_raw()
    return key.private_numbers().private_value.to_bytes(32, "big")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: PrivateKey, issuer: str, issuer_key: PrivateKey, *,
          ca: bool, path_length: int | None = None, san: list[x509.GeneralName] | None = None,
          not_before: int = NOW - 30 * DAY, not_after: int = NOW + 365 * DAY,
          with_bc: bool = True) -> bytes:
    b = (x509.CertificateBuilder()
         .subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(datetime.datetime.fromtimestamp(not_before, datetime.UTC))
         .not_valid_after(datetime.datetime.fromtimestamp(not_after, datetime.UTC)))
    if with_bc:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                            critical=True)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    alg = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(issuer_key, alg).public_bytes(Encoding.DER)


@dataclass
class Pki:
    suite_id: int
    root_key: PrivateKey
    inter_key: PrivateKey
    root: bytes
    inter: bytes

    def leaf(self, name: str = "alice", *, key: PrivateKey | None = None,
             not_before: int = NOW - 30 * DAY, not_after: int = NOW + 365 * DAY,
             ) -> tuple[bytes, bytes]:
        """A leaf certificate for ``name`` issued by the intermediate, and the MLS
        signature private key for it."""
        key = key or _new_key(self.suite_id)
        san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"mls:{name}")]
        der = _cert(name, key, "inter", self.inter_key, ca=False, san=san,
                    not_before=not_before, not_after=not_after)
        return der, _mls_private(key)

    def validator(self, *, now: int | None = None, allow_basic: bool = False,
                  identity_of: IdentityOf | None = None) -> X509CredentialValidator:
        return X509CredentialValidator([self.root], now=now, allow_basic=allow_basic,
                                       identity_of=identity_of)


def _pki(suite_id: int) -> Pki:
    root_key, inter_key = _new_key(suite_id), _new_key(suite_id)
    root = _cert("root", root_key, "root", root_key, ca=True)
    inter = _cert("inter", inter_key, "root", root_key, ca=True, path_length=0)
    return Pki(suite_id, root_key, inter_key, root, inter)


@pytest.fixture(params=SUITES)
def pki(request: pytest.FixtureRequest) -> Pki:
    return _pki(request.param)


def _sig_pub(pki: Pki, priv: bytes) -> bytes:
    return get_suite(pki.suite_id).signature_public_key(priv)


def _rejects(v: X509CredentialValidator, cred: Credential, key: bytes, what: str) -> None:
    with pytest.raises(ValidationError, match=r"§5\.3\.1") as info:
        v.validate(cred, key)
    assert what in str(info.value)


# ---------------------------------------------------------------------- validate


def test_valid_chain_passes(pki: Pki) -> None:
    leaf, priv = pki.leaf()
    v = pki.validator(now=NOW)
    v.validate(Credential.x509([leaf, pki.inter]), _sig_pub(pki, priv))
    # the chain may also include the anchor itself (§5.3)
    v.validate(Credential.x509([leaf, pki.inter, pki.root]), _sig_pub(pki, priv))
    assert v.end_entity(Credential.x509([leaf, pki.inter])).public_bytes(Encoding.DER) == leaf


def test_intermediate_as_anchor_allows_short_chain(pki: Pki) -> None:
    leaf, priv = pki.leaf()
    v = X509CredentialValidator([pki.inter], now=NOW)
    v.validate(Credential.x509([leaf]), _sig_pub(pki, priv))
    with pytest.raises(ValidationError):
        pki.validator(now=NOW).validate(Credential.x509([leaf]), _sig_pub(pki, priv))


def test_wrong_trust_anchor(pki: Pki) -> None:
    leaf, priv = pki.leaf()
    other = _pki(pki.suite_id)
    _rejects(other.validator(now=NOW), Credential.x509([leaf, pki.inter]),
             _sig_pub(pki, priv), "trust anchor")


def test_same_name_different_key_anchor(pki: Pki) -> None:
    """An anchor with the right subject name but another key does not verify."""
    leaf, priv = pki.leaf()
    k = _new_key(pki.suite_id)
    impostor = _cert("root", k, "root", k, ca=True)
    _rejects(X509CredentialValidator([impostor]), Credential.x509([leaf, pki.inter]),
             _sig_pub(pki, priv), "not issued by a trust anchor")


def test_broken_chain_order(pki: Pki) -> None:
    leaf, priv = pki.leaf()
    v = pki.validator(now=NOW)
    _rejects(v, Credential.x509([pki.inter, leaf]), _sig_pub(pki, priv),
             "certificates[0] is not signed by certificates[1]")
    _rejects(v, Credential.x509([leaf, pki.root, pki.inter]), _sig_pub(pki, priv),
             "not signed by")


def test_expired_and_not_yet_valid_leaf(pki: Pki) -> None:
    leaf, priv = pki.leaf(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    cred = Credential.x509([leaf, pki.inter])
    _rejects(pki.validator(now=NOW), cred, _sig_pub(pki, priv), "expired")
    pki.validator(now=NOW - 2 * DAY).validate(cred, _sig_pub(pki, priv))
    pki.validator().validate(cred, _sig_pub(pki, priv))  # now=None: no time checks
    _rejects(pki.validator(now=NOW - 11 * DAY), cred, _sig_pub(pki, priv), "not valid yet")


def test_expired_intermediate(pki: Pki) -> None:
    leaf, priv = pki.leaf()
    inter = _cert("inter", pki.inter_key, "root", pki.root_key, ca=True,
                  not_after=NOW - DAY)
    _rejects(pki.validator(now=NOW), Credential.x509([leaf, inter]), _sig_pub(pki, priv),
             "certificates[1] has expired")


def test_leaf_key_differs_from_signature_key(pki: Pki) -> None:
    leaf, _ = pki.leaf()
    _, other_pub = get_suite(pki.suite_id).generate_signature_key_pair()
    _rejects(pki.validator(now=NOW), Credential.x509([leaf, pki.inter]), other_pub,
             "does not match the LeafNode signature_key")


def test_ecdsa_key_must_be_uncompressed_point() -> None:
    pki = _pki(2)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf, _ = pki.leaf(key=key)
    compressed = key.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    _rejects(pki.validator(), Credential.x509([leaf, pki.inter]), compressed, "signature_key")


@pytest.mark.parametrize("with_bc", [True, False])
def test_non_ca_intermediate(pki: Pki, with_bc: bool) -> None:
    inter_key = _new_key(pki.suite_id)
    inter = _cert("inter", inter_key, "root", pki.root_key, ca=False, with_bc=with_bc)
    leaf, priv = Pki(pki.suite_id, pki.root_key, inter_key, pki.root, inter).leaf()
    _rejects(pki.validator(now=NOW), Credential.x509([leaf, inter]), _sig_pub(pki, priv),
             "certificates[1] issues certificates but is not a CA")


def test_path_length_constraint(pki: Pki) -> None:
    """The intermediate has pathLenConstraint 0: it may not issue another CA."""
    sub_key = _new_key(pki.suite_id)
    sub = _cert("sub", sub_key, "inter", pki.inter_key, ca=True)
    leaf_key = _new_key(pki.suite_id)
    leaf = _cert("alice", leaf_key, "sub", sub_key, ca=False)
    _rejects(pki.validator(now=NOW), Credential.x509([leaf, sub, pki.inter]),
             _sig_pub(pki, _mls_private(leaf_key)), "certificates[2] pathLenConstraint")


def test_unknown_critical_extension(pki: Pki) -> None:
    key = _new_key(pki.suite_id)
    leaf = (x509.CertificateBuilder()
            .subject_name(_name("alice")).issuer_name(_name("inter"))
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(datetime.datetime.fromtimestamp(NOW - DAY, datetime.UTC))
            .not_valid_after(datetime.datetime.fromtimestamp(NOW + DAY, datetime.UTC))
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"),
                                                      b"\x05\x00"), critical=True)
            .sign(pki.inter_key, None if pki.suite_id == 1 else hashes.SHA256())
            .public_bytes(Encoding.DER))
    _rejects(pki.validator(), Credential.x509([leaf, pki.inter]),
             _sig_pub(pki, _mls_private(key)), "unsupported critical extension 1.2.3.4")


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x02\x01\x01", b"not a certificate"])
def test_garbage_der(pki: Pki, garbage: bytes) -> None:
    leaf, priv = pki.leaf()
    v = pki.validator(now=NOW)
    _rejects(v, Credential.x509([garbage, pki.inter]), _sig_pub(pki, priv),
             "certificates[0] is not a DER X.509 certificate")
    _rejects(v, Credential.x509([leaf, garbage]), _sig_pub(pki, priv), "certificates[1]")
    _rejects(v, Credential.x509([leaf + b"\x00", pki.inter]), _sig_pub(pki, priv),
             "certificates[0] is not a DER X.509 certificate")
    with pytest.raises(ValidationError, match=r"§5\.3\.1"):
        v.may_replace(Credential.x509([garbage]), Credential.x509([leaf, pki.inter]))


def test_signature_bit_string_must_be_octet_aligned(pki: Pki) -> None:
    """A non-zero unused-bits count in signatureValue is another encoding of the same
    certificate (cryptography would still verify it); only the DER form is accepted."""
    leaf, priv = pki.leaf()
    sig = x509.load_der_x509_certificate(leaf).signature
    mutated = bytearray(leaf)
    mutated[-len(sig) - 1] = 1
    _rejects(pki.validator(now=NOW), Credential.x509([bytes(mutated), pki.inter]),
             _sig_pub(pki, priv), "certificates[0] is not a DER X.509 certificate")


_FUZZ_PKI = _pki(2)
_FUZZ_LEAF, _FUZZ_PRIV = _FUZZ_PKI.leaf()


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(_FUZZ_LEAF) - 1), st.integers(1, 255))
def test_mutated_certificate_is_rejected_typed(position: int, xor: int) -> None:
    """Any single-byte corruption of the leaf DER is a ValidationError (never a bare
    ValueError or a silent accept): DER is strict and every byte is signed or is the
    signature."""
    mutated = bytearray(_FUZZ_LEAF)
    mutated[position] ^= xor
    with pytest.raises(ValidationError, match=r"§5\.3\.1"):
        _FUZZ_PKI.validator(now=NOW).validate(
            Credential.x509([bytes(mutated), _FUZZ_PKI.inter]), _sig_pub(_FUZZ_PKI, _FUZZ_PRIV))


def test_empty_chain(pki: Pki) -> None:
    _rejects(pki.validator(), Credential.x509([]), b"\x00" * 32, "empty certificate chain")


def test_basic_credentials_need_allow_basic(pki: Pki) -> None:
    with pytest.raises(ValidationError, match=r"§5\.3\.1: basic credentials are not accepted"):
        pki.validator().validate(Credential.basic(b"alice"), b"\x00" * 32)
    pki.validator(allow_basic=True).validate(Credential.basic(b"alice"), b"\x00" * 32)
    with pytest.raises(ValidationError, match="empty identity"):
        pki.validator(allow_basic=True).validate(Credential.basic(b""), b"\x00" * 32)


def test_other_credential_type_rejected(pki: Pki) -> None:
    with pytest.raises(ValidationError, match=r"§5\.3\.1: credential type 4660"):
        pki.validator().validate(Credential(0x1234, b"opaque"), b"\x00" * 32)


def test_bad_trust_anchor_config() -> None:
    with pytest.raises(UsageError):
        X509CredentialValidator([])
    with pytest.raises(UsageError):
        X509CredentialValidator([b"garbage"])


def test_credential_type_value() -> None:
    cred = Credential(CredentialType.X509, (Certificate(b"x"),))
    with pytest.raises(ValidationError, match="certificates\\[0\\] is not a DER"):
        _pki(1).validator().validate(cred, b"")


# ---------------------------------------------------------------------- may_replace


def test_may_replace_same_identity(pki: Pki) -> None:
    """A renewed certificate (new key, same SAN) is a valid successor (§5.3.1)."""
    old, _ = pki.leaf("alice")
    new, _ = pki.leaf("alice")
    assert old != new
    v = pki.validator(now=NOW)
    assert v.may_replace(Credential.x509([old, pki.inter]), Credential.x509([new, pki.inter]))


def test_may_replace_different_identity(pki: Pki) -> None:
    alice, _ = pki.leaf("alice")
    bob, _ = pki.leaf("bob")
    v = pki.validator(now=NOW)
    assert not v.may_replace(Credential.x509([alice, pki.inter]),
                             Credential.x509([bob, pki.inter]))
    assert not pki.validator(allow_basic=True).may_replace(
        Credential.x509([alice, pki.inter]), Credential.basic(b"mls:alice"))


def test_default_identity_and_override(pki: Pki) -> None:
    alice, _ = pki.leaf("alice")
    assert default_identity(x509.load_der_x509_certificate(alice)) == b"mls:alice"
    k = _new_key(pki.suite_id)
    no_san = x509.load_der_x509_certificate(_cert("carol", k, "inter", pki.inter_key,
                                                  ca=False))
    assert default_identity(no_san) == b"CN=carol"
    bob, _ = pki.leaf("bob")
    same_ca = pki.validator(identity_of=lambda c: c.issuer.rfc4514_string().encode())
    assert same_ca.may_replace(Credential.x509([alice, pki.inter]),
                               Credential.x509([bob, pki.inter]))


# ---------------------------------------------------------------------- end to end


def _client(pki: Pki, name: str) -> tuple[Credential, bytes]:
    leaf, priv = pki.leaf(name)
    return Credential.x509([leaf, pki.inter]), priv


@pytest.mark.parametrize("suite_id", SUITES)
def test_group_with_x509_validator(suite_id: int) -> None:
    pki = _pki(suite_id)
    suite = get_suite(suite_id)
    config = GroupConfig(validator=pki.validator(now=NOW))
    alice_cred, alice_priv = _client(pki, "alice")
    alice = Group.create(suite_id, alice_cred, alice_priv, group_id=b"x509", now=NOW,
                         config=config)

    bob_cred, bob_priv = _client(pki, "bob")
    kp, kp_priv = create_key_package(suite, bob_cred, bob_priv, now=NOW)
    result = alice.commit([Add(kp)], now=NOW)
    alice.merge_pending_commit()
    assert result.welcome is not None
    bob = Group.join(result.welcome, kp, kp_priv, config=GroupConfig(
        validator=pki.validator(now=NOW)), now=NOW)
    assert bob.epoch_authenticator == alice.epoch_authenticator
    assert [m.credential for m in bob.members] == [alice_cred, bob_cred]

    rogue = _pki(suite_id)  # a chain to a root the group does not trust
    mallory_cred, mallory_priv = _client(rogue, "mallory")
    bad_kp, _ = create_key_package(suite, mallory_cred, mallory_priv, now=NOW)
    with pytest.raises(ValidationError, match=r"§5\.3\.1.*trust anchor"):
        alice.commit([Add(bad_kp)], now=NOW)
    assert not alice.has_pending_commit

    # a basic credential is rejected by the X.509 AS (but accepted by the default AS)
    carol_priv, _ = suite.generate_signature_key_pair()
    basic_kp, _ = create_key_package(suite, Credential.basic(b"carol"), carol_priv, now=NOW)
    with pytest.raises(ValidationError, match="basic credentials are not accepted"):
        alice.commit([Add(basic_kp)], now=NOW)
    BasicCredentialValidator().validate(Credential.basic(b"carol"), b"")
