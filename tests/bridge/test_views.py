"""bridge.views: the continuity rules of the bridge's verified view."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.hub import View
from bridge.views import Refused, checked, first_view, member, next_view
from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add
from tests.bridge.helpers import reepoched

NOW = 1_800_000_000
ALICE, BOB, EVE = "xmpp:alice@x", "matrix:@bob:m", "xmpp:eve@x"


def _alice_and_bob() -> tuple[Group, Group, bytes]:
    suite = get_suite(1)
    alice_key = suite.generate_signature_key_pair()[0]
    alice = Group.create(1, Credential.basic(ALICE.encode()), alice_key, now=NOW)
    bob_key = suite.generate_signature_key_pair()[0]
    kp, priv = create_key_package(suite, Credential.basic(BOB.encode()), bob_key, now=NOW)
    result = alice.commit([Add(kp)], now=NOW)
    alice.merge_pending_commit()
    assert result.welcome is not None
    return alice, Group.join(result.welcome, kp, priv, now=NOW), alice_key


def _refused(reason: str) -> Any:
    return pytest.raises(Refused, match=f"^{reason}")


def test_checked_binds_the_group_info_to_its_sender() -> None:
    alice, bob, _ = _alice_and_bob()
    gid = alice.group_id
    info = checked(gid, alice.group_info(), None, ALICE)
    assert (info.epoch, info.signer, info.members) == (1, ALICE, frozenset({ALICE, BOB}))
    with _refused("group-info-wrong-signer"):
        checked(gid, bob.group_info(), None, ALICE)
    with _refused("group-info-wrong-group"):
        checked(b"another group", alice.group_info(), None, ALICE)
    with _refused("group-info-invalid"):
        checked(gid, b"\x00\x01\x00\x04", None, ALICE)


def test_the_first_view_is_the_anchors_at_the_current_epoch() -> None:
    alice, _, _ = _alice_and_bob()
    gid = alice.group_id
    info = checked(gid, alice.group_info(), None, ALICE)
    view = first_view(gid, info, requester=ALICE, anchor=None, current=None)
    assert (view.epoch, view.signer) == (1, ALICE)
    assert first_view(gid, info, requester=ALICE, anchor=ALICE, current=1) == view
    with _refused("not-a-member"):
        first_view(gid, info, requester=ALICE, anchor=EVE, current=None)
    with _refused("group-info-not-current"):
        first_view(gid, info, requester=ALICE, anchor=None, current=0)


def test_a_view_continues_only_forward_within_the_hub_and_from_a_member() -> None:
    alice, bob, alice_key = _alice_and_bob()
    gid = alice.group_id
    view = first_view(gid, checked(gid, alice.group_info(), None, ALICE), requester=ALICE,
                      anchor=None, current=1)
    # the same epoch and signer again: a repeat, nothing to do
    assert next_view(view, checked(gid, alice.group_info(), None, ALICE), bound=2) is None
    with _refused("group-info-stale"):  # bob's GroupInfo of the view's epoch
        next_view(view, checked(gid, bob.group_info(), None, BOB), bound=2)
    bob.commit(now=NOW)
    bob.merge_pending_commit()
    newer = checked(gid, bob.group_info(), None, BOB)
    with _refused("group-info-future"):  # the hub sequenced no Commit of epoch 1
        next_view(view, newer, bound=1)
    moved = next_view(view, newer, bound=2)
    assert moved is not None and (moved.epoch, moved.signer) == (2, BOB)
    far = checked(gid, reepoched(alice.group_info(), alice_key, 10**9), None, ALICE)
    with _refused("group-info-future"):
        next_view(view, far, bound=2)
    lone = View(gid, 1, BOB, frozenset({BOB}), b"", None)
    with _refused("group-info-signer-not-member"):
        next_view(lone, checked(gid, alice.group_info(), None, ALICE), bound=2)


def test_member() -> None:
    view = View(b"g", 3, ALICE, frozenset({ALICE}), b"", None)
    assert member(view, ALICE) is view
    with _refused("not-a-member"):
        member(view, EVE)
    with _refused("not-a-member"):
        member(None, ALICE)
