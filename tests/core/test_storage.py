"""Group state serialization (mls_core.storage): round trips, pending commits, bad input."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

from mls_core import storage
from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.errors import DecodeError, MLSError, RemovedSenderError, ReplayError
from mls_core.events import ApplicationMessage
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add

from .group_helpers import World

NOW = 1_800_000_000


def _pair(suite_id: int = 1) -> tuple[Group, Group]:
    s = get_suite(suite_id)
    ska, _ = s.generate_signature_key_pair()
    skb, _ = s.generate_signature_key_pair()
    a = Group.create(suite_id, Credential.basic(b"alice"), ska, now=NOW)
    kp, priv = create_key_package(s, Credential.basic(b"bob"), skb, now=NOW)
    res = a.commit([Add(kp)], now=NOW)
    a.merge_pending_commit()
    assert res.welcome is not None
    return a, Group.join(res.welcome, kp, priv, now=NOW)


@pytest.mark.parametrize("suite_id", [1, 2, 5])
def test_round_trip_keeps_keys_and_ratchets(suite_id: int) -> None:
    a, b = _pair(suite_id)
    first = a.encrypt(b"one")
    assert b.process(first).data == b"one"  # type: ignore[union-attr]
    b2 = Group.from_bytes(b.to_bytes())
    assert b2.epoch_authenticator == b.epoch_authenticator
    assert b2.members == b.members
    with pytest.raises(ReplayError):  # the consumed key stays deleted after reload
        b2.process(first)
    assert b2.process(a.encrypt(b"two")).data == b"two"  # type: ignore[union-attr]
    assert b2.to_bytes() == Group.from_bytes(b2.to_bytes()).to_bytes()


def test_pending_commit_survives_reload() -> None:
    a, b = _pair()
    result = a.commit()
    a2 = Group.from_bytes(a.to_bytes())
    assert a2.has_pending_commit
    event = a2.merge_pending_commit()
    assert event.epoch == 2
    b.process(result.commit)
    assert a2.epoch_authenticator == b.epoch_authenticator


def test_corrupt_or_truncated_state_is_a_decode_error() -> None:
    a, _ = _pair()
    data = a.to_bytes()
    with pytest.raises(DecodeError):
        Group.from_bytes(data[:-1])
    with pytest.raises(DecodeError):
        Group.from_bytes(b"\x00\x63" + data[2:])  # unknown storage version
    for i in range(0, len(data), max(1, len(data) // 64)):
        mutated = bytearray(data)
        mutated[i] ^= 0x41
        with contextlib.suppress(MLSError):
            Group.from_bytes(bytes(mutated))


def _state_after_a_removal() -> tuple[Group, Group, bytes]:
    """m0 at epoch 2 after removing c2 at 1 -> 2, a copy of c2's epoch-1 state, and
    c2's message written with it after the removal."""
    w = World(1)
    w.add(b"m0", 2)
    victim = w.members[b"c2"]
    saved = Group.from_bytes(victim.g.to_bytes())
    w.remove(b"m0", b"c2")
    return w.members[b"m0"].g, saved, saved.encrypt(b"late")


def test_a_version_1_state_still_loads_and_knows_no_removals() -> None:
    """States stored before the removed-senders record (version 1) load with an empty
    record; they are written back as version 2."""
    g, _, late = _state_after_a_removal()
    v2 = storage._StoredGroup.decode(g.to_bytes())
    assert [r.epoch for r in v2.removed] == [0, 1]  # every kept epoch
    fields = {f.name: getattr(v2, f.name) for f in dataclasses.fields(storage._StoredGroupV1)}
    v1 = storage._StoredGroupV1(**{**fields, "version": 1}).encode()
    old = Group.from_bytes(v1)
    assert old.to_bytes()[:2] == b"\x00\x02" and old.epoch_authenticator == g.epoch_authenticator
    assert isinstance(old.process(late, now=NOW), ApplicationMessage)
    with pytest.raises(RemovedSenderError):
        Group.from_bytes(g.to_bytes()).process(late, now=NOW)


def test_a_malformed_removed_record_is_a_decode_error() -> None:
    g, _, _ = _state_after_a_removal()
    v2 = storage._StoredGroup.decode(g.to_bytes())
    unkept = dataclasses.replace(v2, removed=(storage._StoredRemoved(7, (1,)),))
    with pytest.raises(DecodeError, match="not kept"):
        Group.from_bytes(unkept.encode())
    twice = dataclasses.replace(v2, removed=(*v2.removed, *v2.removed))
    with pytest.raises(DecodeError, match="twice"):
        Group.from_bytes(twice.encode())
    with pytest.raises(DecodeError):  # a version 1 header on a version 2 body
        Group.from_bytes(b"\x00\x01" + g.to_bytes()[2:])
