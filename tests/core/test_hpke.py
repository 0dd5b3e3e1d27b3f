"""HPKE (RFC 9180) mode_base: known answers, DeriveKeyPair, round trips, interop with
cryptography's own HPKE, and rejection of bad keys and tampered ciphertexts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from mls_core import hpke
from mls_core.ciphersuite import SUPPORTED_SUITES, get_suite
from mls_core.errors import CryptoError, DecryptionError, UnsupportedError, UsageError

VECTOR_DIR = Path(
    os.environ.get("MLS_TEST_VECTORS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "test-vectors"
)

# (kem, kdf, aead) of the seven MLS cipher suites (RFC 9420 §17.1)
MLS_HPKE = {sid: (get_suite(sid).kem_id, get_suite(sid).kdf_id, get_suite(sid).aead_id)
            for sid in SUPPORTED_SUITES}
ALL_KEMS = (hpke.KEM_P256, hpke.KEM_P384, hpke.KEM_P521, hpke.KEM_X25519, hpke.KEM_X448)
NIST_KEMS = (hpke.KEM_P256, hpke.KEM_P384, hpke.KEM_P521)
X_KEMS = (hpke.KEM_X25519, hpke.KEM_X448)


def _hpke(sid: int) -> hpke.Hpke:
    return hpke.Hpke(*MLS_HPKE[sid])


def _flip(data: bytes, index: int = -1) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# --------------------------------------------------------------------------- RFC 9180 A.1

# RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, mode_base
A1 = {
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "ikmE": "7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234",
    "pkEm": "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
    "skEm": "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736",
    "ikmR": "6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037",
    "pkRm": "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
    "skRm": "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
    "shared_secret": "fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc",
    "key": "4531685d41d65f03dc48f6b8302c05b0",
    "base_nonce": "56d890e5accaaf011cff4b7d",
    "exporter_secret": "45ff1c2e220db587171952c0592d5f5ebe103f1561a2614e38f2ffd47e99e3f8",
    "pt": "4265617574792069732074727574682c20747275746820626561757479",
    "ct0": "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a9"
           "6d8770ac83d07bea87e13c512a",
    "ct1": "af2d7e9ac9ae7e270f46ba1f975be53c09f8d875bdc8535458c2494e8a6eab25"
           "1c03d0c22a56b8ca42c2063b84",
}
A1_EXPORTS = (
    (b"", "3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee"),
    (b"\x00", "2e8f0b54673c7029649d4eb9d5e33bf1872cf76d623ff164ac185da9e88c21a5"),
    (b"TestContext", "e9e43065102c3836401bed8c3c3c75ae46be1639869391d62c61f1ec7af54931"),
)


def _a1(name: str) -> bytes:
    return bytes.fromhex(A1[name])


def test_a1_derive_key_pair() -> None:
    kem = hpke.Hpke(hpke.KEM_X25519, 1, 1).kem
    assert kem.derive_key_pair(_a1("ikmE")) == (_a1("skEm"), _a1("pkEm"))
    assert kem.derive_key_pair(_a1("ikmR")) == (_a1("skRm"), _a1("pkRm"))


def test_a1_encap_decap() -> None:
    kem = hpke.Hpke(hpke.KEM_X25519, 1, 1).kem
    shared, enc = kem.encap(_a1("pkRm"), _a1("ikmE"))
    assert enc == _a1("pkEm")
    assert shared == _a1("shared_secret")
    assert kem.decap(enc, _a1("skRm")) == shared


def test_a1_key_schedule_and_sequence() -> None:
    suite = hpke.Hpke(hpke.KEM_X25519, 1, 1)
    enc, sender = suite.setup_base_s(_a1("pkRm"), _a1("info"), ikm_e=_a1("ikmE"))
    assert enc == _a1("pkEm")
    assert (sender.key, sender.base_nonce) == (_a1("key"), _a1("base_nonce"))
    assert sender.exporter_secret == _a1("exporter_secret")
    assert sender.seal(b"Count-0", _a1("pt")) == _a1("ct0")
    assert sender.seal(b"Count-1", _a1("pt")) == _a1("ct1")
    receiver = suite.setup_base_r(enc, _a1("skRm"), _a1("info"))
    with pytest.raises(DecryptionError):
        receiver.open(b"Count-1", _a1("ct1"))  # out of order: seq is still 0
    assert receiver.seq == 0
    assert receiver.open(b"Count-0", _a1("ct0")) == _a1("pt")
    assert receiver.open(b"Count-1", _a1("ct1")) == _a1("pt")
    for ctx, want in A1_EXPORTS:
        assert receiver.export(ctx, 32).hex() == want


def test_a1_single_shot() -> None:
    suite = hpke.Hpke(hpke.KEM_X25519, 1, 1)
    enc, ct = suite.seal_base(_a1("pkRm"), _a1("info"), b"Count-0", _a1("pt"), _a1("ikmE"))
    assert (enc, ct) == (_a1("pkEm"), _a1("ct0"))
    assert suite.open_base(enc, _a1("skRm"), _a1("info"), b"Count-0", ct) == _a1("pt")


def test_hkdf_rfc5869_case1_multi_block() -> None:
    """RFC 5869 A.1: 42-byte output takes two SHA-256 blocks."""
    kdf = hpke.Hpke(hpke.KEM_X25519, 1, 1).kdf
    prk = kdf.extract(bytes(range(13)), b"\x0b" * 22)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = kdf.expand(prk, bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


# --------------------------------------------------------------------------- DeriveKeyPair


def _key_schedule_vectors() -> list[Any]:
    path = VECTOR_DIR / "key-schedule.json"
    if not path.exists():
        return []
    return [pytest.param(v, id=f"suite{v['cipher_suite']}") for v in json.loads(path.read_text())]


@pytest.mark.parametrize("vector", _key_schedule_vectors())
def test_derive_key_pair_matches_external_pub(vector: dict[str, Any]) -> None:
    """external_pub = DeriveKeyPair(external_secret).pk (RFC 9420 §8), every suite."""
    kem = _hpke(vector["cipher_suite"]).kem
    assert vector["epochs"]
    for epoch in vector["epochs"]:
        sk, pk = kem.derive_key_pair(bytes.fromhex(epoch["external_secret"]))
        assert pk.hex() == epoch["external_pub"]
        assert len(sk) == kem.n_sk
        assert kem.public_key(sk) == pk


@pytest.mark.parametrize("kem_id", ALL_KEMS)
@settings(max_examples=20, deadline=None)
@given(ikm=st.binary(min_size=0, max_size=100))
def test_derive_key_pair_shape(kem_id: int, ikm: bytes) -> None:
    kem = hpke.Hpke(kem_id, 1, 1).kem
    sk, pk = kem.derive_key_pair(ikm)
    assert (len(sk), len(pk)) == (kem.n_sk, kem.n_pk)
    assert kem.public_key(sk) == pk
    assert kem.derive_key_pair(ikm) == (sk, pk)
    kem.validate_public_key(pk)
    if kem_id == hpke.KEM_P521:
        assert sk[0] <= 0x01  # bitmask 0x01 keeps the scalar within 521 bits
    if kem_id in NIST_KEMS:
        assert pk[0] == 0x04


def _nist_kem(kem_id: int, order: int) -> hpke.DHKem:
    real = hpke.Hpke(kem_id, 1, 1).kem
    assert isinstance(real, hpke._NistKem)
    return hpke._NistKem(kem_id, real._labeled.kdf, real.n_secret, real._curve, order,
                         real._bitmask)


def _candidate(kem: hpke.DHKem, ikm: bytes, counter: int) -> int:
    prk = kem._labeled.extract(b"", b"dkp_prk", ikm)
    return int.from_bytes(kem._labeled.expand(prk, b"candidate", bytes((counter,)), kem.n_sk),
                          "big")


def test_derive_key_pair_rejection_sampling_skips_out_of_range() -> None:
    """A candidate >= order is discarded and the counter moves on (RFC 9180 §7.1.3)."""
    real = hpke.Hpke(hpke.KEM_P256, 1, 1).kem
    ikm = next(bytes([i]) * 32 for i in range(256)
               if _candidate(real, bytes([i]) * 32, 1) < _candidate(real, bytes([i]) * 32, 0))
    first, second = _candidate(real, ikm, 0), _candidate(real, ikm, 1)
    assert real.derive_key_pair(ikm)[0] == first.to_bytes(32, "big")
    narrowed = _nist_kem(hpke.KEM_P256, order=first)  # the first candidate is now too big
    sk, pk = narrowed.derive_key_pair(ikm)
    assert sk == second.to_bytes(32, "big")
    assert real.public_key(sk) == pk


def test_derive_key_pair_gives_up_after_256_candidates() -> None:
    impossible = _nist_kem(hpke.KEM_P384, order=1)  # no candidate lies in [1, 1)
    with pytest.raises(CryptoError, match="DeriveKeyPairError"):
        impossible.derive_key_pair(b"\x00" * 48)


@pytest.mark.parametrize("kem_id", NIST_KEMS)
def test_curve_orders_are_the_group_orders(kem_id: int) -> None:
    """(n-1)·G = -G shares G's x coordinate only when n is the order of G."""
    kem = hpke.Hpke(kem_id, 1, 1).kem
    assert isinstance(kem, hpke._NistKem)
    n = kem._order
    one = kem.public_key((1).to_bytes(kem.n_sk, "big"))
    minus_one = kem.public_key((n - 1).to_bytes(kem.n_sk, "big"))
    half = (kem.n_pk - 1) // 2
    assert one[1:1 + half] == minus_one[1:1 + half]
    assert one != minus_one
    with pytest.raises(CryptoError):
        kem.public_key(n.to_bytes(kem.n_sk, "big"))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("sid", SUPPORTED_SUITES)
def test_seal_open_round_trip(sid: int) -> None:
    suite = _hpke(sid)
    sk, pk = suite.kem.generate_key_pair()
    enc, ct = suite.seal_base(pk, b"info", b"aad", b"attack at dawn")
    assert len(enc) == suite.kem.n_enc
    assert len(ct) == len(b"attack at dawn") + suite.aead.n_t
    assert suite.open_base(enc, sk, b"info", b"aad", ct) == b"attack at dawn"
    enc2, ct2 = suite.seal_base(pk, b"info", b"aad", b"attack at dawn")
    assert enc2 != enc and ct2 != ct  # fresh ephemeral key per seal


@pytest.mark.parametrize("kem_id", ALL_KEMS)
@pytest.mark.parametrize("kdf_id", (1, 2, 3))
@pytest.mark.parametrize("aead_id", (1, 2, 3))
def test_every_algorithm_combination(kem_id: int, kdf_id: int, aead_id: int) -> None:
    suite = hpke.Hpke(kem_id, kdf_id, aead_id)
    sk, pk = suite.kem.derive_key_pair(b"recipient" * 8)
    enc, ct = suite.seal_base(pk, b"", b"", b"", ikm_e=b"ephemeral" * 8)
    assert suite.open_base(enc, sk, b"", b"", ct) == b""
    assert suite.seal_base(pk, b"", b"", b"", ikm_e=b"ephemeral" * 8) == (enc, ct)


@pytest.mark.parametrize("sid", SUPPORTED_SUITES)
@settings(max_examples=10, deadline=None)
@given(info=st.binary(max_size=64), aad=st.binary(max_size=64), pt=st.binary(max_size=300))
def test_round_trip_property(sid: int, info: bytes, aad: bytes, pt: bytes) -> None:
    suite = _hpke(sid)
    sk, pk = suite.kem.derive_key_pair(b"k" * 64)
    enc, ct = suite.seal_base(pk, info, aad, pt)
    assert suite.open_base(enc, sk, info, aad, ct) == pt


def test_context_nonce_sequence_differs() -> None:
    suite = _hpke(3)
    sk, pk = suite.kem.derive_key_pair(b"r" * 32)
    enc, sender = suite.setup_base_s(pk, b"info")
    c0, c1 = sender.seal(b"", b"same"), sender.seal(b"", b"same")
    assert c0 != c1 and sender.seq == 2
    receiver = suite.setup_base_r(enc, sk, b"info")
    assert [receiver.open(b"", c0), receiver.open(b"", c1)] == [b"same", b"same"]
    assert receiver.export(b"x", 17) == sender.export(b"x", 17)
    assert len(receiver.export(b"x", 100)) == 100


# --------------------------------------------------------------------------- interop


def _crypto_hpke() -> Any:
    try:
        from cryptography.hazmat.primitives import hpke as chpke
    except ImportError:  # pragma: no cover - older cryptography
        return None
    return chpke


_CHPKE = _crypto_hpke()
_CURVES = {hpke.KEM_P256: ec.SECP256R1(), hpke.KEM_P384: ec.SECP384R1(),
           hpke.KEM_P521: ec.SECP521R1()}


def _their_suite(sid: int) -> Any:
    kem_id, kdf_id, aead_id = MLS_HPKE[sid]
    names = {0x10: "P256", 0x11: "P384", 0x12: "P521", 0x20: "X25519"}
    if _CHPKE is None or kem_id not in names or not hasattr(_CHPKE.KEM, names[kem_id]):
        pytest.skip("cryptography's hpke module lacks this KEM")
    kdf = {1: "HKDF_SHA256", 2: "HKDF_SHA384", 3: "HKDF_SHA512"}[kdf_id]
    aead = {1: "AES_128_GCM", 2: "AES_256_GCM", 3: "CHACHA20_POLY1305"}[aead_id]
    return _CHPKE.Suite(getattr(_CHPKE.KEM, names[kem_id]), getattr(_CHPKE.KDF, kdf),
                        getattr(_CHPKE.AEAD, aead))


def _their_private_key(kem_id: int, sk: bytes) -> Any:
    if kem_id == hpke.KEM_X25519:
        return x25519.X25519PrivateKey.from_private_bytes(sk)
    return ec.derive_private_key(int.from_bytes(sk, "big"), _CURVES[kem_id])


@pytest.mark.parametrize("sid", SUPPORTED_SUITES)
def test_interop_with_cryptography_hpke(sid: int) -> None:
    """An independent RFC 9180 implementation opens ours and we open theirs."""
    theirs = _their_suite(sid)
    ours = hpke.Hpke(*MLS_HPKE[sid], native=False)
    sk, pk = ours.kem.derive_key_pair(b"interop" * 10)
    their_sk = _their_private_key(ours.kem.id, sk)
    enc, ct = ours.seal_base(pk, b"info", b"", b"from us")
    assert theirs.decrypt(enc + ct, their_sk, info=b"info") == b"from us"
    blob = theirs.encrypt(b"from them", their_sk.public_key(), info=b"info")
    n = ours.kem.n_enc
    assert ours.open_base(blob[:n], sk, b"info", b"", blob[n:]) == b"from them"


@pytest.mark.parametrize("sid", SUPPORTED_SUITES)
def test_native_and_ours_agree(sid: int) -> None:
    """Where ``cryptography``'s HPKE has the suite, seal/open use it; ours opens what it
    seals and the other way round, one by one and in batches (a small ``info`` sealed
    natively, a large one by ours), and both refuse the same tampering. X448 stays ours."""
    native = _hpke(sid)
    ours = hpke.Hpke(*MLS_HPKE[sid], native=False)
    assert not ours.native
    if hpke.native_suite(*MLS_HPKE[sid]) is None:
        assert native.kem.id == hpke.KEM_X448 and not native.native
        pytest.skip("cryptography's hpke module lacks this KEM: ours is used")
    assert native.native
    sk, pk = ours.kem.derive_key_pair(b"agree" * 13)
    for sealer, opener in ((native, ours), (ours, native)):
        enc, ct = sealer.seal_base(pk, b"info", b"", b"pt")
        assert opener.open_base(enc, sk, b"info", b"", ct) == b"pt"
        with pytest.raises(DecryptionError):
            opener.open_base(enc, sk, b"info", b"", _flip(ct))
        for info in (b"i" * 100, b"I" * (hpke.NATIVE_BATCH_INFO_MAX + 1)):
            sealed = sealer.seal_base_many([(pk, b"a"), (pk, b"bb")], info, b"")
            assert [opener.open_base(e, sk, info, b"", c) for e, c in sealed] == [b"a", b"bb"]
    suite = get_suite(sid)
    kem_output, ct = suite.encrypt_with_label(pk, "UpdatePathNode", b"ctx", b"secret")
    assert ours.open_base(kem_output, sk, _encrypt_context(b"UpdatePathNode", b"ctx"), b"",
                          ct) == b"secret"


def _encrypt_context(label: bytes, context: bytes) -> bytes:
    """EncryptContext (RFC 9420 §5.1.3), written out independently of mls_core."""
    full = b"MLS 1.0 " + label
    return bytes((len(full),)) + full + bytes((len(context),)) + context


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("sid", SUPPORTED_SUITES)
@pytest.mark.parametrize("aad", [b"aad", b""])  # b"": the native path, where it exists
def test_tampering_raises_decryption_error(sid: int, aad: bytes) -> None:
    suite = _hpke(sid)
    sk, pk = suite.kem.derive_key_pair(b"a" * 66)
    other_sk, _ = suite.kem.derive_key_pair(b"b" * 66)
    enc, ct = suite.seal_base(pk, b"info", aad, b"secret")
    bad_inputs = [
        (enc, sk, b"info", aad, _flip(ct)),  # tag
        (enc, sk, b"info", aad, _flip(ct, 0)),  # body
        (enc, sk, b"info", aad, ct[:-1]),  # truncated
        (enc, sk, b"info", aad, b""),  # shorter than a tag
        (enc, sk, b"infO", aad, ct),  # info
        (enc, sk, b"info", aad + b"!", ct),  # aad
        (enc, other_sk, b"info", aad, ct),  # wrong recipient
        (_flip(enc, 5), sk, b"info", aad, ct),  # enc: another or an invalid point
        (enc[:-1], sk, b"info", aad, ct),  # enc: wrong length
        (enc[:-1], sk, b"info", aad, enc[-1:] + ct),  # enc || ct split one byte early
        (b"", sk, b"info", aad, ct),
    ]
    for args in bad_inputs:
        with pytest.raises(DecryptionError):
            suite.open_base(*args)


@pytest.mark.parametrize("kem_id", NIST_KEMS)
def test_nist_public_key_validation(kem_id: int) -> None:
    suite = hpke.Hpke(kem_id, 1, 1)
    sk, pk = suite.kem.derive_key_pair(b"v" * 66)
    off_curve = _flip(pk)  # y ^ 1 no longer satisfies the curve equation
    coord = (len(pk) - 1) // 2
    compressed = bytes((0x02 + (pk[-1] & 1),)) + pk[1:1 + coord]
    for bad in (off_curve, compressed, b"\x00", pk[:-1], pk + b"\x00", b"\x05" + pk[1:],
                b"\x04" + bytes(len(pk) - 1)):
        with pytest.raises(CryptoError):
            suite.seal_base(bad, b"", b"", b"x")
        with pytest.raises(CryptoError):
            suite.kem.validate_public_key(bad)
    enc, ct = suite.seal_base(pk, b"", b"", b"x")
    with pytest.raises(DecryptionError):
        suite.open_base(_flip(enc), sk, b"", b"", ct)


# Small-order points of Curve25519 / Curve448: DH with them gives all zeros (§7.1.4).
_SMALL_ORDER = {
    hpke.KEM_X25519: (bytes(32), b"\x01" + bytes(31)),
    hpke.KEM_X448: (bytes(56), b"\x01" + bytes(55)),
}


@pytest.mark.parametrize("kem_id", X_KEMS)
def test_x_small_order_points_rejected(kem_id: int) -> None:
    suite = hpke.Hpke(kem_id, 1, 1)
    sk, pk = suite.kem.derive_key_pair(b"w" * 56)
    _, ct = suite.seal_base(pk, b"", b"", b"x")
    for point in _SMALL_ORDER[kem_id]:
        with pytest.raises(CryptoError):
            suite.seal_base(point, b"", b"", b"x")
        with pytest.raises(DecryptionError):
            suite.open_base(point, sk, b"", b"", ct)
    for bad in (pk[:-1], pk + b"\x00", b""):
        with pytest.raises(CryptoError):
            suite.seal_base(bad, b"", b"", b"x")


@pytest.mark.parametrize("kem_id", ALL_KEMS)
def test_invalid_private_keys(kem_id: int) -> None:
    suite = hpke.Hpke(kem_id, 1, 1)
    sk, pk = suite.kem.derive_key_pair(b"z" * 66)
    enc, ct = suite.seal_base(pk, b"", b"", b"x")
    bad_keys = [sk + b"\x00", b""]
    if kem_id in NIST_KEMS:
        assert isinstance(suite.kem, hpke._NistKem)
        bad_keys += [bytes(suite.kem.n_sk), suite.kem._order.to_bytes(suite.kem.n_sk, "big")]
        # A NIST scalar with its leading zero bytes dropped is the same key (the official
        # P-521 vectors encode keys that way).
        short = int.from_bytes(sk, "big").to_bytes(suite.kem.n_sk + 1, "big").lstrip(b"\0")
        assert suite.kem.public_key(short or b"\0") == pk
    else:
        bad_keys.append(sk[:-1])
    for bad in bad_keys:
        with pytest.raises(CryptoError):
            suite.kem.public_key(bad)
        with pytest.raises(CryptoError):
            suite.open_base(enc, bad, b"", b"", ct)


def test_unknown_algorithms_unsupported() -> None:
    for ids in ((0x0022, 1, 1), (0x0020, 4, 1), (0x0020, 1, 0xFFFF), (0, 0, 0)):
        with pytest.raises(UnsupportedError):
            hpke.Hpke(*ids)


def test_labeled_expand_length_limits() -> None:
    suite = hpke.Hpke(hpke.KEM_X25519, 1, 1)
    assert len(suite._labeled.expand(b"k" * 32, b"l", b"", 255 * 32)) == 255 * 32
    with pytest.raises(UsageError):
        suite._labeled.expand(b"k" * 32, b"l", b"", 255 * 32 + 1)


@pytest.mark.parametrize("suite_id", [1, 2, 4])
def test_encrypt_with_label_many_matches_single(suite_id: int) -> None:
    """Sealing to many recipients with one shared context opens like EncryptWithLabel."""
    from mls_core.ciphersuite import get_suite

    suite = get_suite(suite_id)
    keys = [suite.generate_key_pair() for _ in range(3)]
    context = b"encrypted group info" * 50
    sealed = suite.encrypt_with_label_many(
        "Welcome", context, [(pk, f"secret {i}".encode()) for i, (_, pk) in enumerate(keys)])
    assert len({enc for enc, _ in sealed}) == 3  # fresh ephemeral key per recipient
    for i, ((sk, _), (enc, ct)) in enumerate(zip(keys, sealed, strict=True)):
        assert suite.decrypt_with_label(sk, "Welcome", context, enc, ct) == f"secret {i}".encode()
        with pytest.raises(CryptoError):
            suite.decrypt_with_label(sk, "Welcome", context + b"x", enc, ct)


@pytest.mark.parametrize("kdf_id", [hpke.KDF_HKDF_SHA256, hpke.KDF_HKDF_SHA384,
                                    hpke.KDF_HKDF_SHA512])
def test_hmac_equals_the_standard_library(kdf_id: int) -> None:
    """The written-out HMAC (RFC 2104) is ``hmac.digest`` for keys shorter than, equal
    to and longer than the hash's block, and for empty and long messages."""
    import hmac as std_hmac

    kdf = hpke._KDFS[kdf_id]
    for key_len in (0, 1, 32, kdf._block - 1, kdf._block, kdf._block + 1, 300):
        key = bytes((7 * i + 1) % 256 for i in range(key_len))
        for msg in (b"", b"m", b"x" * 1000):
            assert kdf.hmac(key, msg) == std_hmac.digest(key, msg, kdf.hash_name)
