"""HPKE-PQ vectors (draft-ietf-hpke-pq, ``hpke-pq-test-vectors.json``): DeriveKeyPair,
Encap/Decap, the key schedule (RFC 9180 §5.1 for the HKDF KDFs, draft-ietf-hpke-hpke's
one-stage schedule for SHAKE128/SHAKE256), the encryptions and the exports.

What ``cryptography`` 51 cannot reproduce raises :class:`NotReproducible` naming the part,
after every part it can reproduce has been checked: ML-KEM-512 (KEM 0x0040) and the
ML-KEM + NIST-curve hybrids (0x0050, 0x0051) are not KEMs we implement, TurboSHAKE (KDFs
0x0012/0x0013) is in neither hashlib nor cryptography. Encapsulation with the vector's
fixed randomness (ikmE) cannot be replayed for the PQ KEMs (cryptography takes no
randomness for ML-KEM); that one part is listed by :func:`parts_not_reproduced` and the
entry passes on the rest (its decapsulation reproduces the same shared secret).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from .. import hpke
from ..errors import UnsupportedError
from ._check import NotReproducible, expect, h

#: One-stage KDFs of draft-ietf-hpke-hpke that hashlib has: id -> (constructor, Nh)
_ONE_STAGE: dict[int, tuple[Any, int]] = {
    0x0010: (hashlib.shake_128, 32),
    0x0011: (hashlib.shake_256, 64),
}
_TURBOSHAKE = {0x0012: "TurboSHAKE128", 0x0013: "TurboSHAKE256"}
_UNAVAILABLE = {
    0x0040: "(ML-KEM-512) is not in cryptography 51",
    0x0050: "(MLKEM768-P256) is not in cryptography 51",
    0x0051: "(MLKEM1024-P384) is not implemented here: cryptography 51 has it only inside "
            "hpke.Suite (no DeriveKeyPair, no raw decapsulation, no exporter)",
}
_PQ_KEMS = (hpke.KEM_MLKEM768, hpke.KEM_MLKEM1024, hpke.KEM_XWING)


def _clamp(sk: bytes, low: int, high_set: int, high_clear: int) -> bytes:
    """An RFC 7748 §5 decodeScalar: the scalar the private key denotes."""
    out = bytearray(sk)
    out[0] &= low
    out[-1] = (out[-1] & high_clear) | high_set
    return bytes(out)


_CLAMP: dict[int, Callable[[bytes], bytes]] = {
    hpke.KEM_X25519: lambda sk: _clamp(sk, 0xF8, 0x40, 0x7F),
    hpke.KEM_X448: lambda sk: _clamp(sk, 0xFC, 0x80, 0xFF),
}


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def parts_not_reproduced(v: dict[str, Any]) -> list[str]:
    """The parts of entry ``v`` that are not (or cannot be) checked, with the reason."""
    out = []
    if v["kem_id"] in _UNAVAILABLE:
        return [f"everything: KEM {v['kem_id']:#06x} {_UNAVAILABLE[v['kem_id']]}"]
    if v["kem_id"] in _PQ_KEMS:
        out.append("encapsulation with fixed randomness (ikmE): cryptography has none")
    if v["kdf_id"] in _TURBOSHAKE:
        out.append(f"key schedule, encryptions, exports: {_TURBOSHAKE[v['kdf_id']]} "
                   "is in neither hashlib nor cryptography")
    return out


def _one_stage_schedule(v: dict[str, Any], n_k: int) -> tuple[bytes, bytes, bytes, Any]:
    """KeySchedule(mode_base) with a one-stage KDF: LabeledDerive(lengthPrefixed(psk) ||
    lengthPrefixed(shared_secret), "secret", mode || lengthPrefixed(psk_id) ||
    lengthPrefixed(info), Nk + Nn + Nh) split into key, base_nonce, exporter_secret."""
    new, n_h = _ONE_STAGE[v["kdf_id"]]
    suite_id = h(v["suite_id"])

    def derive(ikm: bytes, label: bytes, context: bytes, length: int) -> bytes:
        data = (ikm + hpke.HPKE_VERSION + suite_id + _lp(label) + length.to_bytes(2, "big")
                + context)
        out: bytes = new(data).digest(length)
        return out

    secrets = _lp(b"") + _lp(h(v["shared_secret"]))
    context = bytes((hpke.MODE_BASE,)) + _lp(b"") + _lp(h(v["info"]))
    secret = derive(secrets, b"secret", context, n_k + 12 + n_h)
    return secret[:n_k], secret[n_k:n_k + 12], secret[n_k + 12:], derive


def _check_encryptions(v: dict[str, Any], aead: hpke.Aead, key: bytes, base_nonce: bytes
                       ) -> None:
    for i, e in enumerate(v["encryptions"]):
        nonce = (int.from_bytes(base_nonce, "big") ^ i).to_bytes(12, "big")
        expect(f"encryptions[{i}].nonce", nonce, h(e["nonce"]))
        expect(f"encryptions[{i}].pt", aead.open(key, nonce, h(e["aad"]), h(e["ct"])),
               h(e["pt"]))
        expect(f"encryptions[{i}].ct", aead.seal(key, nonce, h(e["aad"]), h(e["pt"])),
               h(e["ct"]))


def check(v: dict[str, Any]) -> None:
    """Check every reproducible part of one entry; NotReproducible for the rest."""
    expect("mode", v["mode"], hpke.MODE_BASE)
    try:
        kem = hpke.get_kem(v["kem_id"])
    except UnsupportedError:
        raise NotReproducible(parts_not_reproduced(v)[0]) from None
    sk, pk = kem.derive_key_pair(h(v["ikmR"]))
    want_sk = h(v["skRm"])
    if v["kem_id"] in _CLAMP:  # the X448 case serializes its scalar clamped: same key
        clamp = _CLAMP[v["kem_id"]]
        expect("skRm (clamped)", clamp(sk), clamp(want_sk))
    else:
        expect("skRm", sk, want_sk)
    expect("pkRm", pk, h(v["pkRm"]))
    if v["kem_id"] not in _PQ_KEMS:  # DHKEM: Encap replays with DeriveKeyPair(ikmE)
        shared, enc = kem.encap(pk, h(v["ikmE"]))
        expect("enc", enc, h(v["enc"]))
        expect("shared_secret (Encap)", shared, h(v["shared_secret"]))
    expect("shared_secret (Decap)", kem.decap(h(v["enc"]), sk), h(v["shared_secret"]))
    expect("suite_id", h(v["suite_id"]), b"HPKE" + b"".join(
        x.to_bytes(2, "big") for x in (v["kem_id"], v["kdf_id"], v["aead_id"])))
    aead = hpke.Hpke(hpke.KEM_X25519, 1, v["aead_id"]).aead
    if v["kdf_id"] in _TURBOSHAKE:
        raise NotReproducible(parts_not_reproduced(v)[-1])
    if v["kdf_id"] in _ONE_STAGE:
        key, base_nonce, exporter_secret, derive = _one_stage_schedule(v, aead.n_k)
        exports = {(e["exporter_context"], e["L"]): derive(
            exporter_secret, b"sec", h(e["exporter_context"]), e["L"]) for e in v["exports"]}
    else:
        suite = hpke.Hpke(v["kem_id"], v["kdf_id"], v["aead_id"])
        ctx = suite._context(h(v["shared_secret"]), h(v["info"]))
        key, base_nonce, exporter_secret = ctx.key, ctx.base_nonce, ctx.exporter_secret
        exports = {(e["exporter_context"], e["L"]): ctx.export(h(e["exporter_context"]), e["L"])
                   for e in v["exports"]}
    expect("key", key, h(v["key"]))
    expect("base_nonce", base_nonce, h(v["base_nonce"]))
    expect("exporter_secret", exporter_secret, h(v["exporter_secret"]))
    _check_encryptions(v, aead, key, base_nonce)
    for e in v["exports"]:
        expect(f"export {e['exporter_context']}", exports[(e["exporter_context"], e["L"])],
               h(e["exported_value"]))
