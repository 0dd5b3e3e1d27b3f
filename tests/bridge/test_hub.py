"""The ordering hub of bridged groups (bridge.hub): one order over several rooms."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite
import pytest

from bridge.hub import CLAIM_TTL, Claim, OrderingHub, Rule, Verdict, View, legacy_view
from mls_core.ciphersuite import get_suite
from mls_core.config import InputLimits
from mls_core.credentials import Credential
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add
from transports.base import InvalidRequestError, StorageError

NOW = 1_800_000_000
NETS = ("xmpp", "matrix")


def _pair() -> tuple[Group, Group]:
    s = get_suite(1)
    a = Group.create(1, Credential.basic(b"xmpp:a@x"), s.generate_signature_key_pair()[0],
                     now=NOW)
    skb = s.generate_signature_key_pair()[0]
    kp, priv = create_key_package(s, Credential.basic(b"matrix:@b:m"), skb, now=NOW)
    result = a.commit([Add(kp)], now=NOW)
    a.merge_pending_commit()
    assert result.welcome is not None
    return a, Group.join(result.welcome, kp, priv, now=NOW)


def run(body: Callable[[OrderingHub], Awaitable[None]], path: Path,
        rule: Rule = Rule.FIRST_VALID) -> None:
    """Run ``body`` with a hub at ``path``, always closing it (its thread would keep
    the process alive)."""
    async def main() -> None:
        hub = await OrderingHub.open(path, NETS, rule=rule)
        try:
            await body(hub)
        finally:
            await hub.close()
    asyncio.run(main())


def test_one_commit_per_epoch_from_either_side(tmp_path: Path) -> None:
    async def body(hub: OrderingHub) -> None:
        a, b = _pair()
        first = await hub.offer(a.encrypt(b"hello"), origin="xmpp", sender="xmpp:a@x")
        assert first.verdict is Verdict.ACCEPTED and first.message is not None
        assert first.message.seq == 0 and first.message.epoch == 1
        commit_a = a.commit(now=NOW).commit
        commit_b = b.commit(now=NOW).commit
        won = await hub.offer(commit_b, origin="matrix", sender="matrix:@b:m")
        lost = await hub.offer(commit_a, origin="xmpp", sender="xmpp:a@x")
        assert won.verdict is Verdict.ACCEPTED and lost.verdict is Verdict.REJECTED_EPOCH_TAKEN
        assert await hub.epoch(a.group_id) == 2
        # the same bytes offered again (a re-read room) are recognised, not re-sequenced
        again = await hub.offer(commit_b, origin="xmpp", sender="matrix:@b:m")
        assert again.verdict is Verdict.DUPLICATE and again.message is not None
        assert again.message.seq == 1
        # a late application message of the previous epoch is still ordered
        b.discard_pending_commit()
        late = await hub.offer(b.encrypt(b"late"), origin="matrix", sender="matrix:@b:m")
        assert late.verdict is Verdict.ACCEPTED
        for net in NETS:
            assert [m.seq for m in await hub.pending(net)] == [0, 1, 2]
    run(body, tmp_path / "hub.sqlite", Rule.FIRST_OFFERED)


def test_first_valid_rule_sequences_every_commit_once(tmp_path: Path) -> None:
    """The default rule: both crossing Commits get a place in the one order (members
    apply the first valid one); repeats are still recognised."""
    async def body(hub: OrderingHub) -> None:
        a, b = _pair()
        commit_a = a.commit(now=NOW).commit
        commit_b = b.commit(now=NOW).commit
        first = await hub.offer(commit_b, origin="matrix", sender="matrix:@b:m")
        second = await hub.offer(commit_a, origin="xmpp", sender="xmpp:a@x")
        assert first.verdict is Verdict.ACCEPTED and second.verdict is Verdict.ACCEPTED
        assert first.message is not None and second.message is not None
        assert (first.message.seq, second.message.seq) == (0, 1)
        assert (await hub.offer(commit_a, origin="matrix", sender="x")).verdict \
            is Verdict.DUPLICATE
        assert await hub.epoch(a.group_id) == 2
    run(body, tmp_path / "hub.sqlite")


def test_rooms_and_position_translation(tmp_path: Path) -> None:
    async def body(hub: OrderingHub) -> None:
        gid = b"g" * 16
        assert await hub.rooms(gid) == {}
        await hub.bind(gid, "xmpp", "mls-67@conference.x")
        await hub.bind(gid, "matrix", "!r:m")
        assert await hub.rooms(gid) == {"xmpp": "mls-67@conference.x", "matrix": "!r:m"}
        assert await hub.groups() == [gid]
        await hub.published("xmpp", gid, 4, position=90)
        await hub.published("matrix", gid, 4, position=12)
        assert await hub.translate(gid, 90, "xmpp", "matrix") == 12
        assert await hub.translate(gid, 12, "matrix", "xmpp") == 90
        assert await hub.translate(gid, 91, "xmpp", "matrix") is None
    run(body, tmp_path / "hub.sqlite")


def test_outbox_and_cursors_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    a, _ = _pair()

    async def before(hub: OrderingHub) -> None:
        for text in (b"one", b"two"):
            await hub.offer(a.encrypt(text), origin="xmpp", sender="xmpp:a@x")
        await hub.published("matrix", a.group_id, 0)
        await hub.set_cursor("xmpp", "room@muc", "archive-17")

    async def after(hub: OrderingHub) -> None:
        assert [m.seq for m in await hub.pending("matrix")] == [1]
        assert [m.seq for m in await hub.pending("xmpp")] == [0, 1]
        assert await hub.cursor("xmpp", "room@muc") == "archive-17"
        assert await hub.cursor("matrix", "!r:m") is None

    run(before, path)
    run(after, path)


def test_lag_is_sequenced_minus_published_per_network(tmp_path: Path) -> None:
    async def body(hub: OrderingHub) -> None:
        a, _ = _pair()
        assert await hub.lag() == {"xmpp": 0, "matrix": 0}
        for text in (b"one", b"two", b"three"):
            await hub.offer(a.encrypt(text), origin="xmpp", sender="xmpp:a@x")
        await hub.published("matrix", a.group_id, 0)
        await hub.published("matrix", a.group_id, 1)
        await hub.published("xmpp", a.group_id, 0)
        assert await hub.lag() == {"xmpp": 2, "matrix": 1}
        await hub.ping()
    run(body, tmp_path / "hub.sqlite")


def test_bad_input(tmp_path: Path) -> None:
    async def body(hub: OrderingHub) -> None:
        a, _ = _pair()
        with pytest.raises(InvalidRequestError):
            await hub.offer(b"\x00\x01garbage", origin="xmpp", sender="x")
        with pytest.raises(InvalidRequestError, match="not an MLSMessage"):
            await hub.offer(a.encrypt(b"x")[:9], origin="xmpp", sender="x")
        with pytest.raises(InvalidRequestError, match="unknown network"):
            await hub.offer(a.encrypt(b"x"), origin="irc", sender="x")
        future = a.commit(now=NOW)
        a.merge_pending_commit()
        early = await hub.offer(a.encrypt(b"epoch 2"), origin="xmpp", sender="xmpp:a@x")
        assert early.verdict is Verdict.ACCEPTED  # an unknown group starts at its epoch
        stale = await hub.offer(future.commit, origin="xmpp", sender="xmpp:a@x")
        assert stale.verdict is Verdict.REJECTED_WRONG_EPOCH
        assert await hub.pending("xmpp") != [] and await hub.epoch(a.group_id) == 2
    run(body, tmp_path / "hub.sqlite", Rule.FIRST_OFFERED)
    with pytest.raises(InvalidRequestError):
        OrderingHub(None, ("x", "x"))  # type: ignore[arg-type]


def test_commit_epoch_follows_the_unbroken_run_of_commits(tmp_path: Path) -> None:
    """The bound of the bridge's view (bridge/views.py): a Commit or application
    message claiming a far epoch does not move it, unlike the ordering epoch."""
    async def body(hub: OrderingHub) -> None:
        a, b = _pair()
        gid = a.group_id
        assert await hub.commit_epoch(gid) is None and await hub.commit_epoch(gid, 1) == 1
        first = a.commit(now=NOW)
        await hub.offer(first.commit, origin="xmpp", sender="xmpp:a@x")  # epoch 1
        a.merge_pending_commit()
        assert await hub.commit_epoch(gid) == 2 and await hub.commit_epoch(gid, 1) == 2
        assert await hub.commit_epoch(gid, 2) == 2 and await hub.commit_epoch(gid, 0) == 0
        # b's Commit for the same epoch 1 (first valid wins at members): still 2
        await hub.offer(b.commit(now=NOW).commit, origin="matrix", sender="matrix:@b:m")
        assert await hub.commit_epoch(gid, 1) == 2
        # a Commit of a far epoch (a member's junk) and an application message of
        # epoch 10^9 move the ordering epoch, not the commit epoch
        commit = MLSMessage.decode(a.commit(now=NOW).commit).private_message
        a.discard_pending_commit()
        assert commit is not None
        far = MLSMessage.of(dataclasses.replace(commit, epoch=10**9 - 1)).encode()
        assert (await hub.offer(far, origin="xmpp", sender="xmpp:a@x")).verdict \
            is Verdict.ACCEPTED
        assert await hub.epoch(gid) == 10**9
        assert await hub.commit_epoch(gid, 1) == 2 and await hub.commit_epoch(gid) == 2
    run(body, tmp_path / "hub.sqlite")


def test_views_anchors_and_claims_are_durable(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    a, _ = _pair()
    gid = a.group_id
    view = View(gid, 1, "xmpp:a@x", frozenset({"xmpp:a@x", "matrix:@b:m"}),
                a.group_info(), None)

    async def before(hub: OrderingHub) -> None:
        assert await hub.view(gid) is None and await hub.anchor(gid) is None
        assert await hub.set_first_view(view, "xmpp:a@x")
        assert not await hub.set_first_view(view, "xmpp:eve@x")  # only once
        assert not await hub.set_view(view)  # not newer
        newer = View(gid, 2, "matrix:@b:m", frozenset({"matrix:@b:m"}), b"info", b"tree")
        assert await hub.set_view(newer)
        await hub.record_claims(gid, "xmpp:a@x", [Claim(b"ref1", "matrix", "@b:m/D"),
                                                  Claim(b"ref2", "matrix", "@b:m/E",
                                                        last_resort=True)])
        await hub.mark_relayed(gid, [b"ref1"])

    async def after(hub: OrderingHub) -> None:
        stored = await hub.view(gid)
        assert stored is not None and stored.epoch == 2 and stored.ratchet_tree == b"tree"
        assert stored.members == {"matrix:@b:m"} and stored.signer == "matrix:@b:m"
        assert await hub.anchor(gid) == "xmpp:a@x"
        claims = await hub.claims(gid, [b"ref1", b"ref2", b"ref3"])
        assert claims == {
            b"ref1": Claim(b"ref1", "matrix", "@b:m/D", "xmpp:a@x", False, True),
            b"ref2": Claim(b"ref2", "matrix", "@b:m/E", "xmpp:a@x", True, False)}
        assert await hub.claims(b"other", [b"ref1"]) == {}

    run(before, path)
    run(after, path)


def test_schema_0_keeps_only_group_infos_that_still_verify(tmp_path: Path) -> None:
    """A hub of schema 0 stored whatever GroupInfo any member sent; on opening, only one
    that verifies and is not beyond the sequenced Commits becomes the view."""
    path = tmp_path / "hub.sqlite"
    a, _ = _pair()
    forged = Group.create(1, Credential.basic(b"xmpp:eve@x"),
                          get_suite(1).generate_signature_key_pair()[0], now=NOW)

    async def old_schema() -> None:
        async with aiosqlite.connect(path) as db:
            await db.execute("CREATE TABLE group_infos (group_id BLOB PRIMARY KEY, "
                             "epoch INTEGER NOT NULL, group_info BLOB NOT NULL)")
            await db.executemany("INSERT INTO group_infos VALUES (?, ?, ?)", [
                (a.group_id, 1, a.group_info()),  # epoch 1: no Commit sequenced
                (forged.group_id, 0, forged.group_info()),
                (b"garbage", 5, b"\x00\x01not a group info")])
            await db.commit()
    asyncio.run(old_schema())

    async def body(hub: OrderingHub) -> None:
        assert await hub.view(a.group_id) is None  # beyond the hub's Commits
        view = await hub.view(forged.group_id)
        assert view is not None and view.signer == "xmpp:eve@x" and view.epoch == 0
        assert await hub.view(b"garbage") is None
        rows = await hub._query("SELECT name FROM sqlite_master WHERE name = 'group_infos'")
        assert rows == []
    run(body, path)

    async def newer() -> None:
        async with aiosqlite.connect(path) as db:
            await db.execute("PRAGMA user_version = 99")
            await db.commit()
    asyncio.run(newer())
    with pytest.raises(StorageError, match="newer than this code"):
        run(body, path)


def test_a_legacy_group_info_over_the_hubs_limits_becomes_no_view() -> None:
    """Issue 16: the schema migration checks a stored GroupInfo within the hub's
    limits (bridge.toml ``[limits]``), as every view."""
    a = Group.create(1, Credential.basic(b"xmpp:a@x"),
                     get_suite(1).generate_signature_key_pair()[0], now=NOW)
    info = a.group_info()
    assert legacy_view(a.group_id, info, []) is not None
    small = InputLimits(max_message_bytes=len(info) - 1)
    assert legacy_view(a.group_id, info, [], limits=small) is None

def test_old_claims_are_pruned(tmp_path: Path) -> None:
    """A claim record older than CLAIM_TTL goes when new claims are recorded; a Welcome
    naming its ref is then refused as unclaimed."""
    async def body(hub: OrderingHub) -> None:
        t = [1_000_000.0]
        hub._clock = lambda: t[0]
        gid = b"g" * 16
        await hub.record_claims(gid, "xmpp:a@x", [Claim(b"old", "matrix", "@b:m/D")])
        t[0] += CLAIM_TTL - 1
        await hub.record_claims(gid, "xmpp:a@x", [Claim(b"mid", "matrix", "@b:m/E")])
        assert set(await hub.claims(gid, [b"old", b"mid"])) == {b"old", b"mid"}
        t[0] += 2
        await hub.record_claims(gid, "xmpp:a@x", [Claim(b"new", "matrix", "@b:m/F")])
        assert set(await hub.claims(gid, [b"old", b"mid", b"new"])) == {b"mid", b"new"}
    run(body, tmp_path / "hub.sqlite")
