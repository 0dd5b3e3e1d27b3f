"""secret-tree vectors: sender-data key/nonce (§6.3.2) and, for each leaf and listed
generation, the handshake and application ratchet keys and nonces (RFC 9420 §9)."""

from __future__ import annotations

from typing import Any

from ..ciphersuite import CipherSuite, get_suite
from ..errors import ProtocolError
from ..secret_tree import DEFAULT_MAX_FORWARD, SecretTree, sender_data_key_nonce
from ._check import expect, h

_APPLICATION = 1  # ContentType.application
_COMMIT = 3  # ContentType.commit: any handshake type selects the handshake ratchet


def _check_sender_data(suite: CipherSuite, sd: dict[str, Any]) -> None:
    key, nonce = sender_data_key_nonce(suite, h(sd["sender_data_secret"]), h(sd["ciphertext"]))
    expect("sender_data.key", key, h(sd["key"]))
    expect("sender_data.nonce", nonce, h(sd["nonce"]))


def _lookup(state: dict[str, SecretTree], fresh: Any, leaf: int, content_type: int,
            generation: int) -> tuple[bytes, bytes]:
    """Receive ``generation`` on the shared tree; when the deletion rules forbid that
    (generation already passed or consumed), use a fresh tree instead."""
    try:
        got = state["tree"].get(leaf, content_type, generation)
    except ProtocolError:  # includes ReplayError
        state["tree"] = fresh()
        got = state["tree"].get(leaf, content_type, generation)
    return got.key, got.nonce


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    _check_sender_data(suite, v["sender_data"])
    secret = h(v["encryption_secret"])
    leaves = v["leaves"]
    top = max((g["generation"] for leaf in leaves for g in leaf), default=0)
    max_forward = max(DEFAULT_MAX_FORWARD, top + 1)

    def fresh() -> SecretTree:
        return SecretTree(suite, secret, len(leaves), max_forward=max_forward)

    state = {"tree": fresh()}
    for i, gens in enumerate(leaves):
        for g in gens:
            gen = g["generation"]
            hk, hn = _lookup(state, fresh, i, _COMMIT, gen)
            expect(f"leaves[{i}][{gen}].handshake_key", hk, h(g["handshake_key"]))
            expect(f"leaves[{i}][{gen}].handshake_nonce", hn, h(g["handshake_nonce"]))
            ak, an = _lookup(state, fresh, i, _APPLICATION, gen)
            expect(f"leaves[{i}][{gen}].application_key", ak, h(g["application_key"]))
            expect(f"leaves[{i}][{gen}].application_nonce", an, h(g["application_nonce"]))
            if gen == 0:
                # the sending side derives the same first key
                sent = fresh().next(i, _APPLICATION)
                expect(f"leaves[{i}][0].next()", (sent.generation, sent.key, sent.nonce),
                       (0, ak, an))
