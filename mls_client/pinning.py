"""Trust on first use of members' signature keys (RFC 9750 "Authentication Service":
the AS is trusted, but a client can still notice when the key behind an identity
changes). Every (identity, signature key) pair a client meets in a group is remembered;
a key not seen before for a known identity raises :class:`SignatureKeyChanged`. The
Delivery Service or a bridge that swaps a KeyPackage for one of its own is detected this
way (docs/security.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from mls_core.events import Member

from .events import SignatureKeyChanged
from .store import Store, Transaction


def fingerprint(signature_key: bytes) -> str:
    return hashlib.sha256(signature_key).digest()[:16].hex()


async def check_and_pin(store: Store, tx: Transaction, group_id: bytes | None,
                        members: Iterable[Member]) -> list[SignatureKeyChanged]:
    """Warnings for new keys of known identities among ``members``; all are pinned
    (inside ``tx``). Members without a basic-credential identity are skipped."""
    pairs = [(m.credential.identity, m.signature_key) for m in members
             if m.credential.identity is not None]
    known = await store.pinned_keys(i for i, _ in pairs)
    events = []
    for identity, key in dict.fromkeys(pairs):
        seen = known.get(identity)
        if seen and key not in seen:
            events.append(SignatureKeyChanged(
                group_id, identity.decode("utf-8", "replace"), fingerprint(key), len(seen)))
    await tx.pin_keys(pairs)
    return events
