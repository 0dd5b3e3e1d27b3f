"""X-Wing vectors (draft-connolly-cfrg-xwing-kem, ``xwing-test-vectors.json``): key
generation from the seed (sk = seed, pk) and decapsulation of the vector's ciphertext.

Encapsulation with the vector's ``eseed`` is not reproducible (``cryptography`` takes no
randomness for ML-KEM); :func:`parts_not_reproduced` lists it, and decapsulation checks
the same shared secret.
"""

from __future__ import annotations

from typing import Any

from .. import hpke
from ._check import expect, h


def parts_not_reproduced(v: dict[str, Any]) -> list[str]:
    """The parts of entry ``v`` not checked, with the reason."""
    return ["encapsulation with fixed randomness (eseed): cryptography has none"]


def check(v: dict[str, Any]) -> None:
    kem = hpke.get_kem(hpke.KEM_XWING)
    expect("sk", h(v["sk"]), h(v["seed"]))  # X-Wing's private key is its seed
    expect("pk", kem.public_key(h(v["seed"])), h(v["pk"]))
    expect("ss (Decapsulate)", kem.decap(h(v["ct"]), h(v["sk"])), h(v["ss"]))
