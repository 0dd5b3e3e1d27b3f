"""Post-quantum HPKE KEMs (mls_core/hpke.py): ML-KEM-768/1024 and X-Wing
(draft-ietf-hpke-pq), both DeriveKeyPair profiles, and their failure modes."""

from __future__ import annotations

import hashlib

import pytest

from mls_core import hpke
from mls_core.errors import CryptoError, DecryptionError, UnsupportedError

PQ = [(hpke.KEM_MLKEM768, 1184, 1088, 64), (hpke.KEM_MLKEM1024, 1568, 1568, 64),
      (hpke.KEM_XWING, 1216, 1120, 32)]


@pytest.mark.parametrize(("kem_id", "n_pk", "n_enc", "n_sk"), PQ)
@pytest.mark.parametrize("profile", hpke.KEM_PROFILES)
def test_pq_seal_open_round_trip(kem_id: int, n_pk: int, n_enc: int, n_sk: int,
                                 profile: str) -> None:
    suite = hpke.Hpke(kem_id, hpke.KDF_HKDF_SHA512, hpke.AEAD_AES256GCM, kem_profile=profile)
    sk, pk = suite.kem.derive_key_pair(bytes(range(64)))
    assert (len(sk), len(pk)) == (n_sk, n_pk)
    assert suite.native  # cryptography 51's hpke.Suite has these KEMs
    enc, ct = suite.seal_base(pk, b"info", b"aad", b"secret message")
    assert len(enc) == n_enc
    assert suite.open_base(enc, sk, b"info", b"aad", ct) == b"secret message"
    with pytest.raises(DecryptionError):
        suite.open_base(enc, sk, b"other info", b"aad", ct)
    many = suite.seal_base_many([(pk, b"a"), (pk, b"b")], b"i", b"")
    assert [suite.open_base(e, sk, b"i", b"", c) for e, c in many] == [b"a", b"b"]


@pytest.mark.parametrize("kem_id", [hpke.KEM_MLKEM768, hpke.KEM_MLKEM1024, hpke.KEM_XWING])
def test_native_and_ours_agree(kem_id: int) -> None:
    """cryptography's single-shot HPKE and ours (KEM + RFC 9180 key schedule here) open
    each other's ciphertexts, so the fast path changes nothing on the wire."""
    native = hpke.Hpke(kem_id, hpke.KDF_HKDF_SHA512, hpke.AEAD_CHACHA20POLY1305)
    ours = hpke.Hpke(kem_id, hpke.KDF_HKDF_SHA512, hpke.AEAD_CHACHA20POLY1305, native=False)
    assert native.native and not ours.native
    sk, pk = ours.kem.generate_key_pair()
    enc, ct = native.seal_base(pk, b"info", b"", b"pt")
    assert ours.open_base(enc, sk, b"info", b"", ct) == b"pt"
    enc, ct = ours.seal_base(pk, b"info", b"", b"pt")
    assert native.open_base(enc, sk, b"info", b"", ct) == b"pt"
    with pytest.raises(DecryptionError):
        native.open_base(enc[:-1], sk, b"info", b"", ct)
    with pytest.raises(DecryptionError):
        native.open_base(enc, sk, b"info", b"", ct[:-1] + bytes([ct[-1] ^ 1]))
    with pytest.raises(CryptoError):
        native.seal_base(pk[:-1], b"info", b"", b"pt")


def test_ts_mls_profile_derivation() -> None:
    """ts-mls: the 64-byte ikm is the ML-KEM seed; X-Wing's seed is SHAKE256(ikm, 32)."""
    ikm = bytes(range(64))
    sk, _ = hpke.get_kem(hpke.KEM_MLKEM768, hpke.PROFILE_TS_MLS).derive_key_pair(ikm)
    assert sk == ikm
    sk, _ = hpke.get_kem(hpke.KEM_XWING, hpke.PROFILE_TS_MLS).derive_key_pair(ikm)
    assert sk == hashlib.shake_256(ikm).digest(32)
    other, _ = hpke.get_kem(hpke.KEM_XWING, hpke.PROFILE_HPKE_PQ).derive_key_pair(ikm)
    assert other != sk
    with pytest.raises(CryptoError):  # ML-KEM under ts-mls needs a 64-byte ikm
        hpke.get_kem(hpke.KEM_MLKEM1024, hpke.PROFILE_TS_MLS).derive_key_pair(ikm[:48])


@pytest.mark.parametrize(("kem_id", "n_pk", "n_enc", "n_sk"), PQ)
def test_pq_bad_inputs(kem_id: int, n_pk: int, n_enc: int, n_sk: int) -> None:
    kem = hpke.get_kem(kem_id)
    sk, pk = kem.generate_key_pair()
    with pytest.raises(CryptoError):
        kem.validate_public_key(pk[:-1])
    with pytest.raises(CryptoError):
        kem.public_key(sk + b"\0")
    with pytest.raises(DecryptionError):
        kem.decap(b"\0" * (n_enc - 1), sk)
    with pytest.raises(UnsupportedError):  # no fixed-randomness encapsulation
        kem.encap(pk, b"\1" * 32)
    shared, enc = kem.encap(pk)
    assert kem.decap(enc, sk) == shared
    forged = bytes([enc[0] ^ 1]) + enc[1:]  # ML-KEM's implicit rejection: another secret
    assert kem.decap(forged, sk) != shared


def test_unknown_kem_and_profile() -> None:
    with pytest.raises(UnsupportedError):
        hpke.get_kem(0x0040)  # ML-KEM-512: not in cryptography 51
    with pytest.raises(UnsupportedError):
        hpke.get_kem(hpke.KEM_XWING, "no-such-profile")
    assert hpke.get_kem(hpke.KEM_X25519, hpke.PROFILE_TS_MLS) is hpke.get_kem(hpke.KEM_X25519)
