"""transports.defence (drop counters, rate-limited WARNING lines, token buckets) and
transports.group_info (checking a published GroupInfo before use)."""

from __future__ import annotations

import logging

import pytest

from mls_core.ciphersuite import get_suite
from mls_core.config import InputLimits
from mls_core.credentials import Credential
from mls_core.group import Group
from transports.defence import Drops, RateLimiter
from transports.group_info import GroupInfoRejected, check_group_info, newest_valid


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_drops_count_every_item_and_log_once_per_sender_and_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    drops = Drops("xmpp", interval=60, clock=clock)
    with caplog.at_level(logging.WARNING, "mls_bridge.defence"):
        for _ in range(50):
            drops.drop(sender="mallory@x", kind="claim", reason="claim-rate-limited")
        drops.drop(sender="eve@x", kind="claim", reason="claim-rate-limited")
        clock.t = 61
        drops.drop(sender="mallory@x", kind="claim", reason="claim-rate-limited")
    lines = [r.getMessage() for r in caplog.records]
    assert drops.snapshot() == {"claim-rate-limited": 52}
    assert len(lines) == 3
    assert lines[0] == "xmpp: dropped claim from mallory@x: claim-rate-limited"
    assert "eve@x" in lines[1]
    assert "49 more like it" in lines[2]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_drops_sanitise_senders(caplog: pytest.LogCaptureFixture) -> None:
    drops = Drops("matrix")
    with caplog.at_level(logging.WARNING, "mls_bridge.defence"):
        drops.drop(sender="a\nFAKE LOG LINE" + "x" * 500, kind="control", reason="malformed")
    line = caplog.records[0].getMessage()
    assert "\n" not in line and len(line) < 400


def test_rate_limiter_buckets_are_per_key_and_refill() -> None:
    clock = Clock()
    limit = RateLimiter(rate=1 / 60, burst=3, clock=clock)
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b")
    clock.t = 60
    assert limit.allow("a") and not limit.allow("a")
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)


def _group(identity: bytes, group_id: bytes = b"g" * 16) -> Group:
    suite = get_suite(1)
    priv, _ = suite.generate_signature_key_pair()
    return Group.create(1, Credential.basic(identity), priv, group_id=group_id)


def test_group_info_is_bound_to_its_group_and_its_writer() -> None:
    alice = _group(b"xmpp:alice@x")
    info = alice.group_info()
    checked = check_group_info(alice.group_id, info, None, writer="xmpp:alice@x")
    assert checked.epoch == 0 and checked.signer == "xmpp:alice@x"
    assert checked.members == {"xmpp:alice@x"}
    assert check_group_info(alice.group_id, info, None, writer=None).epoch == 0
    relayed = check_group_info(alice.group_id, info, None, writer="xmpp:bridge@x",
                               relayers={"xmpp:bridge@x"})
    assert relayed.signer == "xmpp:alice@x"
    with pytest.raises(GroupInfoRejected) as wrong_signer:
        check_group_info(alice.group_id, info, None, writer="xmpp:mallory@x")
    assert wrong_signer.value.reason == "group-info-wrong-signer"
    with pytest.raises(GroupInfoRejected) as wrong_group:
        check_group_info(b"h" * 16, info, None, writer="xmpp:alice@x")
    assert wrong_group.value.reason == "group-info-wrong-group"
    tampered = bytearray(info)
    tampered[-3] ^= 1
    with pytest.raises(GroupInfoRejected) as invalid:
        check_group_info(alice.group_id, bytes(tampered), None, writer="xmpp:alice@x")
    assert invalid.value.reason == "group-info-invalid"
    with pytest.raises(GroupInfoRejected):
        check_group_info(alice.group_id, b"\x00garbage", None, writer=None)


def test_newest_valid_skips_forgeries_whatever_their_epoch() -> None:
    alice = _group(b"xmpp:alice@x")
    mallory = _group(b"xmpp:mallory@x", group_id=alice.group_id)  # a fake of the group
    rejected: list[tuple[str | None, str]] = []
    best = newest_valid(alice.group_id, [
        ("xmpp:alice@x", alice.group_info(), None),
        ("xmpp:mallory@x", b"garbage", None),
        ("xmpp:mallory@x", alice.group_info(), None),   # a member's, re-posted
        ("xmpp:eve@x", mallory.group_info(), None),     # signed in another's name
    ], on_reject=lambda w, e: rejected.append((w, e.reason)))
    assert best is not None and best.signer == "xmpp:alice@x"
    assert rejected == [("xmpp:mallory@x", "group-info-invalid"),
                        ("xmpp:mallory@x", "group-info-wrong-signer"),
                        ("xmpp:eve@x", "group-info-wrong-signer")]
    assert newest_valid(alice.group_id, [("xmpp:mallory@x", b"x", None)]) is None


def test_group_info_over_the_configured_limits_is_refused() -> None:
    """Issue 16: the bounds of :class:`InputLimits` apply to a published GroupInfo
    (RFC 9420 §12.4.3.2) before it is decoded; the defaults accept an ordinary one."""
    alice = _group(b"xmpp:alice@x")
    info = alice.group_info()
    tree = alice.ratchet_tree_bytes()
    assert check_group_info(alice.group_id, info, None, writer="xmpp:alice@x",
                            limits=None).epoch == 0
    small_message = InputLimits(max_message_bytes=len(info) - 1)
    small_tree = InputLimits(max_tree_bytes=len(tree) - 1)
    for limits in (small_message, small_tree):
        with pytest.raises(GroupInfoRejected) as over:
            check_group_info(alice.group_id, info, None, writer="xmpp:alice@x",
                             limits=limits)
        assert over.value.reason == "group-info-invalid"
        assert over.value.detail.startswith("LimitError: ")
    outside = alice.group_info(with_ratchet_tree=False)
    with pytest.raises(GroupInfoRejected, match="LimitError"):
        check_group_info(alice.group_id, outside, tree, writer=None, limits=small_tree)
    assert check_group_info(alice.group_id, outside, tree, writer=None).members == \
        {"xmpp:alice@x"}
    rejected: list[str] = []
    assert newest_valid(alice.group_id, [("xmpp:alice@x", info, None)], limits=small_message,
                        on_reject=lambda w, e: rejected.append(e.detail)) is None
    assert len(rejected) == 1 and rejected[0].startswith("LimitError: ")
    assert newest_valid(alice.group_id, [("xmpp:alice@x", info, None)]) is not None
