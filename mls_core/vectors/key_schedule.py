"""key-schedule vectors: GroupContext, every epoch secret, external_pub and an exporter
output per epoch, epochs chained through init_secret (RFC 9420 §8)."""

from __future__ import annotations

from typing import Any

from ..ciphersuite import CipherSuite, get_suite
from ..key_schedule import (
    PROTOCOL_VERSION_MLS10,
    GroupContext,
    external_key_pair,
    mls_exporter,
    next_epoch,
)
from ._check import expect, h

_SECRETS = (
    "sender_data_secret", "encryption_secret", "exporter_secret", "epoch_authenticator",
    "external_secret", "confirmation_key", "membership_key", "resumption_psk",
)


def _check_epoch(suite: CipherSuite, group_id: bytes, n: int, e: dict[str, Any],
                 init_secret: bytes) -> bytes:
    """Check epoch ``n`` and return its init_secret for the next epoch."""
    ctx = GroupContext(PROTOCOL_VERSION_MLS10, suite.id, group_id, n, h(e["tree_hash"]),
                       h(e["confirmed_transcript_hash"]), ()).encode()
    expect(f"epochs[{n}].group_context", ctx, h(e["group_context"]))
    psk = h(e["psk_secret"]) if e.get("psk_secret") else None
    t = next_epoch(suite, init_secret, h(e["commit_secret"]), psk, ctx)
    expect(f"epochs[{n}].joiner_secret", t.joiner_secret, h(e["joiner_secret"]))
    expect(f"epochs[{n}].welcome_secret", t.welcome_secret, h(e["welcome_secret"]))
    expect(f"epochs[{n}].init_secret", t.secrets.init_secret, h(e["init_secret"]))
    for name in _SECRETS:
        expect(f"epochs[{n}].{name}", getattr(t.secrets, name), h(e[name]))
    x = e["exporter"]
    out = mls_exporter(suite, t.secrets.exporter_secret, _label(x["label"]), h(x["context"]),
                       x["length"])
    expect(f"epochs[{n}].exporter.secret", out, h(x["secret"]))
    _, pub = external_key_pair(suite, t.secrets.external_secret)
    expect(f"epochs[{n}].external_pub", pub, h(e["external_pub"]))
    return t.secrets.init_secret


def _label(label: str) -> bytes:
    return label.encode()


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    group_id = h(v["group_id"])
    init_secret = h(v["initial_init_secret"])
    for n, e in enumerate(v["epochs"]):
        init_secret = _check_epoch(suite, group_id, n, e, init_secret)
