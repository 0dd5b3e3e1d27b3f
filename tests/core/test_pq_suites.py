"""The experimental post-quantum suites (ts-mls profile, mls_core/ciphersuite.py,
docs/pq.md): opt-in, the suite table, ML-DSA-87, and whole groups on every suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mls_core import ciphersuite, hpke
from mls_core.ciphersuite import (
    EXPERIMENTAL_PQ_SUITES,
    SUPPORTED_SUITES,
    TS_MLS_2X_ALIASES,
    enable_experimental_pq,
    get_suite,
    supported_suites,
)
from mls_core.errors import UnsupportedError, UsageError
from mls_core.framing import WireFormat
from mls_core.key_package import default_capabilities

from .group_helpers import EXPORT_LABEL, World

PQ = tuple(range(79, 89))


@pytest.fixture(autouse=True)
def _pq_enabled() -> Iterator[None]:
    before = ciphersuite.experimental_pq_enabled()
    enable_experimental_pq()
    yield
    enable_experimental_pq(before)


def test_pq_suites_are_opt_in() -> None:
    enable_experimental_pq(False)
    with pytest.raises(UnsupportedError, match="enable_experimental_pq"):
        get_suite(83)
    assert supported_suites() == SUPPORTED_SUITES
    assert 83 not in default_capabilities().cipher_suites
    enable_experimental_pq()
    assert get_suite(83).id == 83
    assert supported_suites() == SUPPORTED_SUITES + PQ
    assert default_capabilities().cipher_suites == SUPPORTED_SUITES + PQ


def test_ml_kem_512_suites_are_refused_with_the_reason() -> None:
    for sid in (77, 78, 0xF007, 0xF008):
        with pytest.raises(UnsupportedError, match="ML-KEM-512"):
            get_suite(sid)


def test_suite_table_matches_the_ts_mls_profile() -> None:
    """HKDF-SHA512 everywhere (KDF.Nh = 64); the name's hash for hashes and the MAC."""
    kems = {79: 0x41, 80: 0x41, 81: 0x42, 82: 0x42, 83: 0x647A, 84: 0x647A,
            85: 0x42, 86: 0x42, 87: 0x647A, 88: 0x647A}
    for sid in PQ:
        s = get_suite(sid)
        assert s.experimental and s.kem_profile == hpke.PROFILE_TS_MLS
        assert (s.kem_id, s.kdf_id, s.hash_length) == (kems[sid], 3, 64)
        assert s.aead_id == (2 if sid % 2 else 3)
        assert s.hash_size == (48 if sid in (79, 80) else 64)
        assert len(s.mac(b"k", b"d")) == s.hash_size
        assert s.signature_scheme == ("mldsa87" if sid >= 85 else "ed25519")
    assert set(EXPERIMENTAL_PQ_SUITES) == set(PQ) | set(TS_MLS_2X_ALIASES)
    assert TS_MLS_2X_ALIASES[0xF009] == 79 and TS_MLS_2X_ALIASES[0xF012] == 88
    alias = get_suite(0xF00B)
    assert (alias.id, alias.name, alias.kem_id) == (0xF00B, get_suite(81).name, 0x42)


def test_ml_dsa_87_signatures() -> None:
    s = get_suite(85)
    priv, pub = s.generate_signature_key_pair()
    assert (len(priv), len(pub)) == (32, 2592)
    assert s.signature_public_key(priv) == pub
    sig = s.sign_with_label(priv, "label", b"content")
    assert len(sig) == 4627
    assert s.verify_with_label(pub, "label", b"content", sig)
    assert not s.verify_with_label(pub, "label", b"contenT", sig)
    assert not s.verify_with_label(pub[:-1], "label", b"content", sig)
    assert s.verify_many_with_label("label", [(pub, b"content", sig)] * 3) == [True] * 3
    with pytest.raises(UsageError, match="32-byte seed"):
        s.sign_with_label(priv + b"\0", "label", b"content")


def test_ml_dsa_87_is_pure_with_empty_context() -> None:
    """The signature verifies with cryptography's ML-DSA-87 under the empty context
    (what ts-mls's noble ml_dsa87.sign produces), not under another context."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import mldsa

    s = get_suite(86)
    priv, pub = s.generate_signature_key_pair()
    sig = s._signer.sign(priv, b"message")
    key = mldsa.MLDSA87PublicKey.from_public_bytes(pub)
    key.verify(sig, b"message", b"")
    with pytest.raises(InvalidSignature):
        key.verify(sig, b"message", b"ctx")


@pytest.mark.parametrize("suite_id", PQ)
@pytest.mark.parametrize(
    "wire_format", [WireFormat.MLS_PUBLIC_MESSAGE, WireFormat.MLS_PRIVATE_MESSAGE],
    ids=["public", "private"])
def test_group_on_pq_suite(suite_id: int, wire_format: int) -> None:
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 2)
    w.check()
    w.send(b"c2", b"post-quantum hello")
    w.commit(b"c1")  # an empty Commit: a full UpdatePath, HPKE to every other member
    w.remove(b"m0", b"c2")
    w.check()
    g = w.any.g
    assert g.suite.id == suite_id and len(g.members) == 2
    assert len(g.epoch_authenticator) == 64
    assert len(g.export_secret(EXPORT_LABEL, b"", 32)) == 32


def test_secret_lengths_follow_the_kdf_not_the_hash() -> None:
    """Suite 79: SHA-384 hash, HKDF-SHA512 KDF. Every MLS secret is KDF.Nh = 64 bytes; a
    48-byte (hash-sized) secret is refused; transcript-side values are 48 bytes."""
    from mls_core.key_schedule import (
        confirmation_tag,
        derive_joiner_secret,
        secrets_from_epoch_secret,
    )

    s = get_suite(79)
    secrets = secrets_from_epoch_secret(s, bytes(64))
    assert len(secrets.confirmation_key) == 64 and len(secrets.init_secret) == 64
    assert len(confirmation_tag(s, secrets.confirmation_key, bytes(48))) == 48
    assert len(s.hash(b"x")) == 48 and len(s.make_key_package_ref(b"kp")) == 48
    with pytest.raises(UsageError, match=r"KDF\.Nh = 64"):
        secrets_from_epoch_secret(s, bytes(48))
    with pytest.raises(UsageError, match=r"KDF\.Nh = 64"):
        derive_joiner_secret(s, bytes(64), bytes(48), b"context")
    assert s.hpke.kdf.hash_name == "sha512" and s.mac(b"k", b"d") != s.hpke.kdf.hmac(b"k", b"d")
