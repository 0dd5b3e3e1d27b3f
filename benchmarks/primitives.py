"""Throughput of the cipher-suite primitives, per MLS cipher suite (RFC 9420 §5.1).

``python3 -m benchmarks.primitives [--quick] [--seconds S]`` prints ops/s for
ExpandWithLabel, AEAD seal/open of 1 KiB, HPKE EncryptWithLabel/DecryptWithLabel,
DeriveKeyPair, SignWithLabel and VerifyWithLabel, then our overhead relative to calling
cryptography directly: our AEAD seal against a bare AESGCM / ChaCha20Poly1305 call, and
our HPKE SealBase/OpenBase against cryptography's own ``hpke`` module where it supports the
suite. Timing is time.perf_counter over calibrated loops; no pytest.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from mls_core.ciphersuite import SUPPORTED_SUITES, CipherSuite, get_suite

KIB = bytes(range(256)) * 4
HPKE_PT = b"p" * 32  # a path secret's size
CONTENT = b"c" * 64


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` of wall time."""
    fn()  # warm up caches and lazy imports
    count, elapsed, batch = 0, 0.0, 1
    while elapsed < seconds:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        elapsed += time.perf_counter() - start
        count += batch
        per_call = elapsed / count
        batch = max(1, min(batch * 4, int((seconds - elapsed) / per_call) + 1))
    return count / elapsed


def best_rates(fns: list[Callable[[], object]], seconds: float, rounds: int = 3) -> list[float]:
    """Best-of-``rounds`` calls/s of each function, the functions interleaved round by
    round so that a burst of load on a shared machine skews no single figure or ratio."""
    best = [0.0] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = max(best[i], rate(fn, seconds / rounds))
    return best


# --------------------------------------------------------------------------- our primitives

COLUMNS = ("ExpandWL", "AEAD seal", "AEAD open", "HPKE seal", "HPKE open", "DeriveKP",
           "sign", "verify")


def suite_rates(suite: CipherSuite, seconds: float) -> list[float]:
    """ops/s of each COLUMNS operation for one suite."""
    nh = suite.hash_length
    secret = b"s" * nh
    key, nonce = b"k" * suite.aead_key_size, b"n" * suite.aead_nonce_size
    sealed = suite.seal(key, nonce, b"aad", KIB)
    sk, pk = suite.derive_key_pair(b"recipient" * 8)
    kem_output, ct = suite.encrypt_with_label(pk, "UpdatePathNode", b"ctx", HPKE_PT)
    sig_sk, sig_pk = suite.generate_signature_key_pair()
    sig = suite.sign_with_label(sig_sk, "LeafNodeTBS", CONTENT)
    ops: list[Callable[[], object]] = [
        lambda: suite.expand_with_label(secret, b"key", b"ctx", nh),
        lambda: suite.seal(key, nonce, b"aad", KIB),
        lambda: suite.open(key, nonce, b"aad", sealed),
        lambda: suite.encrypt_with_label(pk, b"UpdatePathNode", b"ctx", HPKE_PT),
        lambda: suite.decrypt_with_label(sk, b"UpdatePathNode", b"ctx", kem_output, ct),
        lambda: suite.derive_key_pair(secret),
        lambda: suite.sign_with_label(sig_sk, b"LeafNodeTBS", CONTENT),
        lambda: suite.verify_with_label(sig_pk, b"LeafNodeTBS", CONTENT, sig),
    ]
    return best_rates(ops, seconds)


# --------------------------------------------------------------------------- baselines


def _cryptography_hpke() -> Any:
    try:
        from cryptography.hazmat.primitives import hpke as chpke
    except ImportError:
        return None
    return chpke


_KEM_NAMES = {0x10: "P256", 0x11: "P384", 0x12: "P521", 0x20: "X25519", 0x21: "X448"}
_KDF_NAMES = {1: "HKDF_SHA256", 2: "HKDF_SHA384", 3: "HKDF_SHA512"}
_AEAD_NAMES = {1: "AES_128_GCM", 2: "AES_256_GCM", 3: "CHACHA20_POLY1305"}
_CURVES: dict[int, ec.EllipticCurve] = {
    0x10: ec.SECP256R1(), 0x11: ec.SECP384R1(), 0x12: ec.SECP521R1()}


def their_hpke(suite: CipherSuite) -> Any:
    """cryptography's hpke.Suite for this suite, or None where it lacks the KEM."""
    chpke = _cryptography_hpke()
    name = _KEM_NAMES[suite.kem_id]
    if chpke is None or not hasattr(chpke.KEM, name):
        return None
    return chpke.Suite(getattr(chpke.KEM, name), getattr(chpke.KDF, _KDF_NAMES[suite.kdf_id]),
                       getattr(chpke.AEAD, _AEAD_NAMES[suite.aead_id]))


def _their_private_key(suite: CipherSuite, sk: bytes) -> Any:
    if suite.kem_id == 0x20:
        return x25519.X25519PrivateKey.from_private_bytes(sk)
    return ec.derive_private_key(int.from_bytes(sk, "big"), _CURVES[suite.kem_id])


def _their_public_key(suite: CipherSuite, pk: bytes) -> Any:
    if suite.kem_id == 0x20:
        return x25519.X25519PublicKey.from_public_bytes(pk)
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[suite.kem_id], pk)


def baseline_rates(suite: CipherSuite, seconds: float) -> dict[str, float | None]:
    """Ours vs cryptography called directly, as ops/s (None: no baseline for this suite)."""
    key, nonce = b"k" * suite.aead_key_size, b"n" * suite.aead_nonce_size
    cls = suite._aead_cls
    prebuilt = cls(key)
    ops: dict[str, Callable[[], object]] = {
        "aead_ours": lambda: suite.seal(key, nonce, b"aad", KIB),
        "aead_fresh": lambda: cls(key).encrypt(nonce, KIB, b"aad"),
        "aead_prebuilt": lambda: prebuilt.encrypt(nonce, KIB, b"aad"),
    }
    theirs = their_hpke(suite)
    if theirs is not None:
        ours, info = suite.hpke, b"info"
        sk, pk = suite.derive_key_pair(b"recipient" * 8)
        their_sk = _their_private_key(suite, sk)
        their_pk = their_sk.public_key()
        enc, ct = ours.seal_base(pk, info, b"", HPKE_PT)
        blob = enc + ct
        ops |= {
            "hpke_seal_ours": lambda: ours.seal_base(pk, info, b"", HPKE_PT),
            "hpke_seal_theirs": lambda: theirs.encrypt(HPKE_PT, their_pk, info=info),
            # the work our bytes-in API does: load the key from its serialized form per call
            "hpke_seal_theirs_bytes": lambda: theirs.encrypt(
                HPKE_PT, _their_public_key(suite, pk), info=info),
            "hpke_open_ours": lambda: ours.open_base(enc, sk, info, b"", ct),
            "hpke_open_theirs": lambda: theirs.decrypt(blob, their_sk, info=info),
            "hpke_open_theirs_bytes": lambda: theirs.decrypt(
                blob, _their_private_key(suite, sk), info=info),
        }
    out: dict[str, float | None] = dict.fromkeys(
        ("hpke_seal_ours", "hpke_seal_theirs", "hpke_seal_theirs_bytes", "hpke_open_ours",
         "hpke_open_theirs", "hpke_open_theirs_bytes"))
    out.update(zip(ops, best_rates(list(ops.values()), seconds), strict=True))
    return out


# --------------------------------------------------------------------------- output


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def print_primitives(seconds: float) -> None:
    print("ops/s per suite (AEAD on 1 KiB; HPKE = EncryptWithLabel/DecryptWithLabel of 32 B;"
          " sign/verify = SignWithLabel/VerifyWithLabel of 64 B)")
    header = f"{'suite':>5} " + " ".join(f"{c:>11}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    for sid in SUPPORTED_SUITES:
        rates = suite_rates(get_suite(sid), seconds)
        print(f"{sid:>5} " + " ".join(f"{_fmt_rate(r):>11}" for r in rates), flush=True)


def print_baselines(seconds: float) -> None:
    print()
    print("ours / cryptography called directly (1.00x = parity, below 1 = slower)")
    if _cryptography_hpke() is None:
        print("note: this cryptography has no hazmat.primitives.hpke; HPKE columns skipped")
    else:
        print("note: cryptography's hpke has no X448 (suites 4, 6: n/a). 'obj': their key"
              " object built once; 'bytes': their key loaded from bytes per call, as ours is."
              " aad is empty for both.")
    print("note: AEAD 'fresh' builds the cipher object per call, as a per-message key needs;"
          " 'prebuilt' reuses one object (a floor no per-message-key API can reach).")
    cols = ("AEAD seal", "vs fresh", "vs prebuilt", "HPKE seal", "vs obj", "vs bytes",
            "HPKE open", "vs obj", "vs bytes")
    header = f"{'suite':>5} " + " ".join(f"{c:>11}" for c in cols)
    print(header)
    print("-" * len(header))
    for sid in SUPPORTED_SUITES:
        b = baseline_rates(get_suite(sid), seconds)
        row = [
            _fmt_rate(b["aead_ours"] or 0.0),
            _ratio(b["aead_ours"], b["aead_fresh"]),
            _ratio(b["aead_ours"], b["aead_prebuilt"]),
            _fmt_rate(b["hpke_seal_ours"]) if b["hpke_seal_ours"] else "n/a",
            _ratio(b["hpke_seal_ours"], b["hpke_seal_theirs"]),
            _ratio(b["hpke_seal_ours"], b["hpke_seal_theirs_bytes"]),
            _fmt_rate(b["hpke_open_ours"]) if b["hpke_open_ours"] else "n/a",
            _ratio(b["hpke_open_ours"], b["hpke_open_theirs"]),
            _ratio(b["hpke_open_ours"], b["hpke_open_theirs_bytes"]),
        ]
        print(f"{sid:>5} " + " ".join(f"{c:>11}" for c in row), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.primitives", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about 0.03 s per measurement")
    ap.add_argument("--seconds", type=float, default=None, help="time per measurement")
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (0.03 if args.quick else 0.35)
    start = time.perf_counter()
    print_primitives(seconds)
    print_baselines(seconds)
    print(f"\n({time.perf_counter() - start:.1f} s, {seconds} s per measurement)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
