"""The room policy over a real Synapse: power levels follow it, unauthorized Commits are
rejected by every client, and a room ban removes the user by an authorized member."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mls_client.events import CommitProcessed, KickedFromRoom, MessageRejected
from mls_client.matrix_bot import MatrixBot
from mls_client.matrix_rights import POWER_LEVELS, level_of
from mls_core.errors import PolicyError
from mls_core.room_policy import Role, RoomPolicy
from tests.client.helpers import async_test
from transports.matrix import events as ev
from transports.matrix.api import CLIENT, MatrixApiError, quote

from .conftest import Homeserver
from .helpers import MatrixNet


async def bots_for(net: MatrixNet, *names: str) -> dict[str, MatrixBot]:
    for name in names:
        await net.add(name)
    return {n: MatrixBot(net[n], net.transports[n]) for n in names}


async def step(bots: dict[str, MatrixBot], net: MatrixNet, rounds: int = 2,
               names: Sequence[str] = ()) -> None:
    """A few rounds of every bot's step (sync, membership rules, power levels)."""
    for _ in range(rounds):
        for name, bot in bots.items():
            if not names or name in names:
                net.events[name].extend(await bot.step())


async def power_levels(net: MatrixNet, name: str, gid: bytes) -> dict[str, Any]:
    room = net.transports[name].room_id(gid)
    assert room is not None
    return await net.transports[name].api.request(
        "GET", f"{CLIENT}/rooms/{quote(room)}/state/{POWER_LEVELS}/")


async def membership(net: MatrixNet, name: str, gid: bytes, user: str) -> str | None:
    room = net.transports[name].room_id(gid)
    assert room is not None
    try:
        out = await net.transports[name].api.request(
            "GET", f"{CLIENT}/rooms/{quote(room)}/state/m.room.member/{quote(user)}")
    except MatrixApiError as exc:
        if exc.status == 404:
            return None  # never a member
        raise
    value = out.get("membership")
    return value if isinstance(value, str) else None


def rejected(net: MatrixNet, name: str) -> list[str]:
    return [e.reason for e in net.events[name] if isinstance(e, MessageRejected)]


@async_test
async def test_power_levels_follow_policy_and_unauthorized_commits_fail(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        bots = await bots_for(net, "alice", "bob", "carol", "dave")
        outcast = homeserver.user("erin")
        ident = {n: net.identity(n).encode() for n in bots}
        policy = RoomPolicy.build({ident["alice"]: Role.ADMIN,
                                   f"matrix:{outcast}".encode(): Role.BANNED,
                                   b"xmpp:zoe@example.org": Role.MODERATOR})
        gid = await net["alice"].create_group(policy=policy)
        await bots["alice"].sync_power_levels(gid)
        levels = await power_levels(net, "alice", gid)
        room = net.transports["alice"].room_id(gid)
        assert room is not None
        # room version 12: the creator has unlimited power and is not listed in users
        creators = await bots["alice"].policy_sync.creators(room)
        assert level_of(levels, net.users["alice"], creators) >= 100
        # other networks' identities are not mapped; banned is a room ban, not a level
        assert levels["users"] == {u: 100 for u in [net.users["alice"]] if u not in creators}
        assert (levels["users_default"], levels["invite"], levels["kick"],
                levels["ban"]) == (0, 50, 50, 50)
        assert levels["events"][ev.MESSAGE_EVENT] == 0
        assert levels["events"][ev.GROUP_INFO_STATE] == 0
        assert levels["events"][POWER_LEVELS] == 100
        assert await membership(net, "alice", gid, outcast) == "ban"

        await net["alice"].add_members(gid, [net.identity("bob"), net.identity("carol")])
        await step(bots, net, names=("bob", "carol"))
        # the binding and GroupInfo state still work under the derived levels
        info, _tree = await net.transports["bob"].fetch_group_info(gid)
        assert info
        epoch = await net["bob"].epoch(gid)
        with pytest.raises(PolicyError, match=r"\(member\) may not add"):
            await net["bob"].add_members(gid, [net.identity("dave")])
        with pytest.raises(PolicyError, match=r"\(member\) may not remove"):
            await net["bob"].remove_members(gid, [net.identity("carol")])
        assert await net["bob"].epoch(gid) == epoch

        # a client that skips the check: the room accepts its event, every other
        # client rejects the Commit and stays in the epoch
        net["bob"]._ctx.config.commit_policy = None
        await net["bob"].remove_members(gid, [net.identity("carol")])
        await step(bots, net, names=("alice", "carol"))
        for name in ("alice", "carol"):
            assert any("PolicyError" in r for r in rejected(net, name)), name
            assert await net[name].epoch(gid) == epoch
            assert len(await net[name].members(gid)) == 3
        await net.agree(gid, ["alice", "carol"])

        # the admin promotes carol: first *valid* Commit of the epoch, so it applies
        await net["alice"].set_policy(gid, RoomPolicy.build({
            ident["alice"]: Role.ADMIN, ident["carol"]: Role.MODERATOR,
            f"matrix:{outcast}".encode(): Role.BANNED}))
        await step(bots, net, names=("alice", "carol"))
        levels = await power_levels(net, "carol", gid)
        assert levels["users"] == {**{u: 100 for u in [net.users["alice"]]
                                      if u not in creators}, net.users["carol"]: 50}
        assert await net["carol"].epoch(gid) == epoch + 1

        await net["carol"].add_members(gid, [net.identity("dave")])
        await step(bots, net, names=("alice", "carol", "dave"))
        await net.agree(gid, ["alice", "carol", "dave"])
        assert await net["dave"].policy(gid) == await net["alice"].policy(gid)
        assert await membership(net, "carol", gid, net.users["dave"]) == "join"
    finally:
        await net.close()


@async_test
async def test_room_ban_removes_user_by_member_allowed_to(tmp_path: Path,
                                                          homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        bots = await bots_for(net, "alice", "bob", "carol", "dave")
        ident = {n: net.identity(n).encode() for n in bots}
        gid = await net["alice"].create_group(policy=RoomPolicy.standard([ident["alice"]]))
        await net["alice"].add_members(gid, [net.identity(n) for n in ("bob", "carol",
                                                                       "dave")])
        await step(bots, net, rounds=1)
        # alice hands the group over to carol and becomes a plain member: alice (who
        # still has level 100 in the room) writes the new power levels
        await net["alice"].set_policy(gid, RoomPolicy.standard([ident["carol"]]))
        await step(bots, net)
        levels = await power_levels(net, "bob", gid)
        assert levels["users"] == {net.users["carol"]: 100}
        assert levels["users_default"] == 0

        # carol bans dave in the room: not alice (leaf 0) nor bob (leaf 1), who may
        # not remove, but carol (the lowest-index member allowed to) removes him
        room = net.transports["carol"].room_id(gid)
        assert room is not None
        epoch = await net["carol"].epoch(gid)
        await net.transports["carol"].api.request(
            "POST", f"{CLIENT}/rooms/{quote(room)}/ban",
            {"user_id": net.users["dave"], "reason": "test"})
        stayers = ("alice", "bob", "carol")
        for _ in range(20):
            await step(bots, net, rounds=1)
            policies = [await net[n].policy(gid) for n in stayers]
            if all(p is not None and p.role_of(ident["dave"]) == Role.BANNED
                   for p in policies):
                break
        commits = [e for n in stayers for e in net.events[n]
                   if isinstance(e, CommitProcessed) and e.epoch == epoch + 1]
        assert commits and {c.committer for c in commits} == {net.identity("carol")}
        assert any(c.own for c in commits)
        assert all(c.removed == (net.identity("dave"),) for c in commits)
        assert [len(await net[n].members(gid)) for n in stayers] == [3, 3, 3]
        # the ban is recorded in the policy (by carol, who may change it): nobody can
        # add dave again
        assert (await net["alice"].policy(gid)) == RoomPolicy.build(
            {ident["carol"]: Role.ADMIN, ident["dave"]: Role.BANNED})
        await net.agree(gid, list(stayers))
        with pytest.raises(PolicyError, match="is banned"):
            await net["carol"].add_members(gid, [net.identity("dave")])

        # dave cannot read what follows: not in the room, not in the epoch
        await net["carol"].send(gid, b"after the ban")
        await step(bots, net)
        assert b"after the ban" in net.received("alice", gid)
        assert b"after the ban" in net.received("bob", gid)
        assert b"after the ban" not in net.received("dave", gid)
        # dave's device saw its ban once and dropped the group (docs/matrix.md)
        assert [(e.group_id, e.epoch, e.banned) for e in net.events["dave"]
                if isinstance(e, KickedFromRoom)] == [(gid, epoch, True)]
        assert not next(g for g in await net["dave"].groups() if g.group_id == gid).active
        assert await membership(net, "carol", gid, net.users["dave"]) == "ban"
    finally:
        await net.close()


@async_test
async def test_forced_add_without_the_right_is_rejected_everywhere(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        bots = await bots_for(net, "alice", "bob", "carol", "frank", "gus")
        gid = await net["alice"].create_group(
            policy=RoomPolicy.standard([net.identity("alice").encode()]))
        await bots["alice"].sync_power_levels(gid)
        await net["alice"].add_members(gid, [net.identity("bob"), net.identity("carol")])
        await step(bots, net, names=("bob", "carol"))
        epoch = await net["alice"].epoch(gid)
        net["bob"]._ctx.config.commit_policy = None
        await net["bob"].add_members(gid, [net.identity("frank")])
        await step(bots, net, names=("alice", "carol"))
        for name in ("alice", "carol"):
            assert any("PolicyError" in r and "may not add" in r
                       for r in rejected(net, name)), name
            assert await net[name].epoch(gid) == epoch
            assert len(await net[name].members(gid)) == 3
        # the room agrees: bob (level 0 < invite 50) could not invite frank
        assert await membership(net, "alice", gid, net.users["frank"]) is None
        # not blocked: the admin's Add is the first valid Commit of the epoch
        await net["alice"].add_members(gid, [net.identity("gus")])
        await step(bots, net, names=("alice", "carol", "gus"))
        await net.agree(gid, ["alice", "carol", "gus"])
        assert await net["gus"].epoch(gid) == epoch + 1
    finally:
        await net.close()
