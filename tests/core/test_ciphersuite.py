"""CipherSuite (RFC 9420 §5.1): labeled derivations, RefHash, AEAD, signatures and
EncryptWithLabel for every supported suite, and the errors bad input raises."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls_core.ciphersuite import SUPPORTED_SUITES, CipherSuite, CipherSuiteId, get_suite
from mls_core.errors import DecryptionError, UnsupportedError, UsageError, VerificationError

SUITES = [pytest.param(get_suite(s), id=f"suite{s}") for s in SUPPORTED_SUITES]


def _vec(data: bytes) -> bytes:
    """opaque<V> with a one-byte varint length (data shorter than 64 bytes)."""
    assert len(data) < 64
    return bytes((len(data),)) + data


def _flip(data: bytes, index: int = -1) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# --------------------------------------------------------------------------- registry


def test_supported_suites_are_the_seven_rfc_suites() -> None:
    assert tuple(int(s) for s in CipherSuiteId) == SUPPORTED_SUITES
    for sid in SUPPORTED_SUITES:
        assert get_suite(sid).id == sid
        assert get_suite(sid).name == CipherSuiteId(sid).name


@pytest.mark.parametrize("sid", [0, 8, 0x0A0A, 0xF000, 0xFFFF, -1])
def test_unknown_suite_unsupported(sid: int) -> None:
    with pytest.raises(UnsupportedError):
        get_suite(sid)


@pytest.mark.parametrize(
    ("sid", "nh", "nk", "kem"),
    [(1, 32, 16, 0x20), (2, 32, 16, 0x10), (3, 32, 32, 0x20), (4, 64, 32, 0x21),
     (5, 64, 32, 0x12), (6, 64, 32, 0x21), (7, 48, 32, 0x11)],
)
def test_suite_parameters(sid: int, nh: int, nk: int, kem: int) -> None:
    suite = get_suite(sid)
    assert (suite.hash_length, suite.aead_key_size, suite.aead_nonce_size) == (nh, nk, 12)
    assert suite.kem_id == kem
    assert len(suite.hash(b"")) == nh


# --------------------------------------------------------------------------- labels (§8)


@pytest.mark.parametrize("suite", SUITES)
def test_expand_with_label_encodes_kdf_label(suite: CipherSuite) -> None:
    secret, context = b"s" * suite.hash_length, b"ctx"
    info = (7).to_bytes(2, "big") + _vec(b"MLS 1.0 my label") + _vec(context)
    manual = hmac.digest(secret, info + b"\x01", suite.hash_name)[:7]
    assert suite.expand_with_label(secret, "my label", context, 7) == manual
    assert suite.expand_with_label(secret, b"my label", context, 7) == manual
    assert suite.expand_with_label(secret, "my labeL", context, 7) != manual


@pytest.mark.parametrize("suite", SUITES)
def test_derive_secret_and_tree_secret(suite: CipherSuite) -> None:
    secret = bytes(range(suite.hash_length))
    derived = suite.derive_secret(secret, "epoch")
    assert len(derived) == suite.hash_length
    assert derived == suite.expand_with_label(secret, "epoch", b"", suite.hash_length)
    tree = suite.derive_tree_secret(secret, "key", 0x01020304, 16)
    assert tree == suite.expand_with_label(secret, "key", b"\x01\x02\x03\x04", 16)
    assert tree != suite.derive_tree_secret(secret, "key", 0x01020305, 16)


@pytest.mark.parametrize("suite", SUITES)
def test_expand_long_output_and_limit(suite: CipherSuite) -> None:
    nh = suite.hash_length
    long = suite.expand(b"p" * nh, b"info", 3 * nh + 1)
    assert len(long) == 3 * nh + 1
    assert long[:nh] == suite.expand(b"p" * nh, b"info", nh)
    with pytest.raises(UsageError):
        suite.expand(b"p" * nh, b"info", 255 * nh + 1)


@pytest.mark.parametrize("suite", SUITES)
def test_ref_hash_and_refs(suite: CipherSuite) -> None:
    value = b"some encoded struct"
    want = hashlib.new(suite.hash_name, _vec(b"lbl") + _vec(value)).digest()
    assert suite.ref_hash("lbl", value) == want
    assert suite.make_key_package_ref(value) == suite.ref_hash(
        b"MLS 1.0 KeyPackage Reference", value)
    assert suite.make_proposal_ref(value) == suite.ref_hash(
        b"MLS 1.0 Proposal Reference", value)
    assert suite.make_key_package_ref(value) != suite.make_proposal_ref(value)


@pytest.mark.parametrize("suite", SUITES)
def test_mac_and_extract(suite: CipherSuite) -> None:
    tag = suite.mac(b"key", b"data")
    assert suite.verify_mac(b"key", b"data", tag)
    assert not suite.verify_mac(b"key", b"datA", tag)
    assert not suite.verify_mac(b"key", b"data", _flip(tag))
    assert suite.extract(b"", b"ikm") == suite.extract(bytes(suite.hash_length), b"ikm")


# --------------------------------------------------------------------------- AEAD


@pytest.mark.parametrize("suite", SUITES)
def test_aead_round_trip_and_failures(suite: CipherSuite) -> None:
    key, nonce = b"k" * suite.aead_key_size, b"n" * suite.aead_nonce_size
    ct = suite.seal(key, nonce, b"aad", b"plaintext")
    assert len(ct) == len(b"plaintext") + 16
    assert suite.open(key, nonce, b"aad", ct) == b"plaintext"
    for args in (
        (key, nonce, b"aad", _flip(ct)),
        (key, nonce, b"aad", _flip(ct, 0)),
        (key, nonce, b"aaD", ct),
        (_flip(key), nonce, b"aad", ct),
        (key, _flip(nonce), b"aad", ct),
        (key, nonce, b"aad", ct[:15]),
        (key[:-1], nonce, b"aad", ct),  # wrong key size
    ):
        with pytest.raises(DecryptionError):
            suite.open(*args)
    with pytest.raises(UsageError):
        suite.seal(key[:-1], nonce, b"", b"x")


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("suite", SUITES)
def test_sign_verify_with_label(suite: CipherSuite) -> None:
    sk, pk = suite.generate_signature_key_pair()
    assert suite.signature_public_key(sk) == pk
    sig = suite.sign_with_label(sk, "LeafNodeTBS", b"content")
    assert suite.verify_with_label(pk, "LeafNodeTBS", b"content", sig)
    assert suite.verify_with_label(pk, b"LeafNodeTBS", b"content", sig)
    suite.check_signature(pk, "LeafNodeTBS", b"content", sig, "leaf node")
    _, other_pk = suite.generate_signature_key_pair()
    rejected = [
        (pk, "LeafNodeTBS", b"contenT", sig),
        (pk, "GroupInfoTBS", b"content", sig),
        (pk, "LeafNodeTBS", b"content", _flip(sig)),
        (pk, "LeafNodeTBS", b"content", sig[:-1]),
        (pk, "LeafNodeTBS", b"content", b""),
        (other_pk, "LeafNodeTBS", b"content", sig),
        (_flip(pk), "LeafNodeTBS", b"content", sig),  # maybe not even a valid key
        (b"", "LeafNodeTBS", b"content", sig),
    ]
    for pub, label, content, signature in rejected:
        assert not suite.verify_with_label(pub, label, content, signature)
        with pytest.raises(VerificationError, match="leaf node"):
            suite.check_signature(pub, label, content, signature, "leaf node")


def _openssl_ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(message=st.binary(max_size=300), flip=st.integers(min_value=-1, max_value=95))
def test_ed25519_verifier_agrees_with_openssl(message: bytes, flip: int) -> None:
    """Suite 1 verifies Ed25519 with libsodium; on honest keys it must answer exactly as
    the OpenSSL verifier does, for valid signatures and for each single-bit change of
    the signature (S canonical or not) or the public key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signer = get_suite(1)._signer
    sk, pk = signer.generate()
    sig = signer.sign(sk, message)
    # libsodium signs: deterministic, so the very bytes OpenSSL's signer gives
    assert sig == Ed25519PrivateKey.from_private_bytes(sk).sign(message)
    assert signer.sign(bytearray(sk), message) == sig
    if 0 <= flip < 64:
        sig = _flip(sig, flip)
    elif flip >= 64:
        pk = _flip(pk, flip - 64)
    assert signer.verify(pk, message, sig) == _openssl_ed25519_verify(pk, message, sig)
    assert signer.verify(pk, message, sig) == (flip == -1)


def test_ed25519_verifier_refuses_malformed_input_without_raising() -> None:
    signer = get_suite(1)._signer
    sk, pk = signer.generate()
    sig = signer.sign(sk, b"m")
    assert signer.verify(pk, b"m", sig)
    assert signer.verify(pk, bytearray(b"m"), sig)
    for bad_pk, bad_sig in [(pk, sig[:63]), (pk, sig + b"\0"), (pk[:31], sig), (pk + b"\0", sig),
                            (b"", b""), (bytearray(pk), sig), (pk, bytearray(sig)),
                            (None, sig), (pk, None)]:
        assert not signer.verify(bad_pk, b"m", bad_sig)  # type: ignore[arg-type]
        assert not signer.verify_uncached(bad_pk, b"m", bad_sig)  # type: ignore[arg-type]


def test_ed25519_small_order_public_key_is_refused() -> None:
    """The identity point as a public key "verifies" the signature (R = identity, S = 0)
    on every message under OpenSSL's cofactorless check; libsodium refuses public keys of
    small order, so no leaf can carry a key whose signatures anyone can forge."""
    identity = b"\x01" + bytes(31)
    forged = identity + bytes(32)
    assert _openssl_ed25519_verify(identity, b"any message", forged)  # the hole closed here
    suite = get_suite(1)
    assert not suite.verify_with_label(identity, "LeafNodeTBS", b"any message", forged)
    assert suite.verify_many_with_label("LeafNodeTBS", [(identity, b"x", forged)] * 300) == [
        False] * 300


@pytest.mark.parametrize("suite", SUITES)
def test_signing_with_invalid_key_is_usage_error(suite: CipherSuite) -> None:
    sk, _ = suite.generate_signature_key_pair()
    for bad in (b"", sk + b"\x00" * 70):
        with pytest.raises(UsageError):
            suite.sign_with_label(bad, "x", b"y")
        with pytest.raises(UsageError):
            suite.signature_public_key(bad)


# --------------------------------------------------------------------------- HPKE (§5.1.3)


@pytest.mark.parametrize("suite", SUITES)
def test_encrypt_decrypt_with_label(suite: CipherSuite) -> None:
    sk, pk = suite.generate_key_pair()
    assert suite.hpke_public_key(sk) == pk
    assert suite.derive_key_pair(b"seed" * 16) == suite.derive_key_pair(b"seed" * 16)
    kem_output, ct = suite.encrypt_with_label(pk, "UpdatePathNode", b"ctx", b"path secret")
    assert suite.decrypt_with_label(sk, "UpdatePathNode", b"ctx", kem_output, ct) == (
        b"path secret")
    other_sk, _ = suite.generate_key_pair()
    for args in (
        (sk, "Welcome", b"ctx", kem_output, ct),  # label is bound through info
        (sk, "UpdatePathNode", b"ctX", kem_output, ct),
        (sk, "UpdatePathNode", b"ctx", kem_output, _flip(ct)),
        (other_sk, "UpdatePathNode", b"ctx", kem_output, ct),
        (sk, "UpdatePathNode", b"ctx", kem_output[:-1], ct),
    ):
        with pytest.raises(DecryptionError):
            suite.decrypt_with_label(*args)


@settings(max_examples=25, deadline=None)
@given(sid=st.sampled_from(SUPPORTED_SUITES), label=st.binary(max_size=40),
       context=st.binary(max_size=200), pt=st.binary(max_size=200))
def test_encrypt_with_label_round_trip_property(sid: int, label: bytes, context: bytes,
                                                pt: bytes) -> None:
    suite = get_suite(sid)
    sk, pk = suite.derive_key_pair(b"fixed recipient" * 4)
    kem_output, ct = suite.encrypt_with_label(pk, label, context, pt)
    assert suite.decrypt_with_label(sk, label, context, kem_output, ct) == pt


@pytest.mark.parametrize("suite_id", SUPPORTED_SUITES)
def test_fused_derivations_equal_the_labeled_ones(suite_id: int) -> None:
    """ratchet_step and sender_data_key_nonce are DeriveTreeSecret (§9.1) and
    ExpandWithLabel (§6.3.2) with the labels built once: the same bytes."""
    suite = get_suite(suite_id)
    secret = bytes(range(suite.hash_length))
    for gen in (0, 1, 0x01020304, 0xFFFFFFFF):
        expected = tuple(suite.derive_tree_secret(secret, label, gen, size) for label, size in
                         (("key", suite.aead_key_size), ("nonce", suite.aead_nonce_size),
                          ("secret", suite.hash_length)))
        assert suite.ratchet_step(secret, gen) == expected
        assert suite.ratchet_step(secret, gen, last=True) == (*expected[:2], b"")
    for ciphertext in (b"", b"c" * 5, bytes(range(100))):
        sample = ciphertext[:suite.hash_length]
        assert suite.sender_data_key_nonce(secret, ciphertext) == (
            suite.expand_with_label(secret, "key", sample, suite.aead_key_size),
            suite.expand_with_label(secret, "nonce", sample, suite.aead_nonce_size))
