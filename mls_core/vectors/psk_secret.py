"""psk_secret vectors: chain external PSKs into psk_secret (RFC 9420 §8.4)."""

from __future__ import annotations

from typing import Any

from ..ciphersuite import get_suite
from ..psk import ExternalPSK, PreSharedKeyID, PSKType, psk_secret
from ._check import expect, h


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    psks = [
        (PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(h(p["psk_id"])), h(p["psk_nonce"])),
         h(p["psk"]))
        for p in v["psks"]
    ]
    expect("psk_secret", psk_secret(suite, psks), h(v["psk_secret"]))
