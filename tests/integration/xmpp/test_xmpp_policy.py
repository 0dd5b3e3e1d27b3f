"""MUC affiliations follow the group's room policy (``mls_core/room_policy.py``) over a
real Prosody while every device runs through ``MLSBridgePlugin.run_client``:
affiliations derived from roles, Commits without the right rejected everywhere,
promotions followed, and native bans turned into removals by an authorized member."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from slixmpp import JID

from mls_client.events import (
    ClientEvent,
    CommitProcessed,
    GroupJoined,
    MessageReceived,
    MessageRejected,
)
from mls_core.errors import PolicyError
from mls_core.room_policy import Action, Role, RoomPolicy
from tests.servers.prosody import ProsodyServer
from transports.xmpp.plugin import Affiliation

from .helpers import XNet, xmpp_test


class Runner:
    """``run_client`` for some devices of ``net``, recording their events."""

    def __init__(self, net: XNet) -> None:
        self.net = net
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.seen: dict[str, list[ClientEvent]] = {}

    def start(self, *names: str) -> None:
        for name in names:
            self.seen[name] = []

            async def record(event: ClientEvent, name: str = name) -> None:
                self.seen[name].append(event)

            plugin = self.net.transports[name].plugin
            self.tasks.append(asyncio.ensure_future(
                plugin.run_client(self.net[name], self.stop, record)))

    async def until(self, check: Callable[[], bool], timeout: float = 20.0) -> None:
        async def probe() -> bool:
            return check()

        await self.net.wait_for(probe, timeout=timeout)

    def has(self, name: str, kind: type[ClientEvent],
            where: Callable[[ClientEvent], bool] = lambda e: True) -> bool:
        return any(isinstance(e, kind) and where(e) for e in self.seen[name])

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _policy(net: XNet, **extra: Role) -> RoomPolicy:
    """alice moderator (adds, may not remove), bob admin (removes), eve banned, a
    Matrix admin (ignored by the XMPP side); removing others needs admin."""
    roles = {net.user("alice").encode(): Role.MODERATOR, net.user("bob").encode(): Role.ADMIN,
             net.user("eve").encode(): Role.BANNED, b"matrix:@root:example.org": Role.ADMIN}
    roles.update({net.user(n).encode(): r for n, r in extra.items()})
    return RoomPolicy.build(roles, rules={Action.REMOVE: Role.ADMIN})


async def _affiliations(net: XNet, gid: bytes) -> dict[Affiliation, set[str]]:
    transport = net.transports["alice"]
    room = JID(transport.room_jid(gid))
    return {a: set(await transport.plugin.affiliations(room, a))
            for a in ("owner", "admin", "member", "outcast")}


def _bare(net: XNet, *names: str) -> set[str]:
    return {net.jid(n).split("/")[0] for n in names}


async def _follows(net: XNet, gid: bytes, expected: dict[Affiliation, set[str]]) -> None:
    async def check() -> bool:
        return await _affiliations(net, gid) == expected

    try:
        await net.wait_for(check, timeout=20)
    except AssertionError:
        raise AssertionError(f"{await _affiliations(net, gid)} != {expected}") from None


async def _group(net: XNet, *names: str) -> bytes:
    gid = await net["alice"].create_group(policy=_policy(net))
    await net["alice"].add_members(gid, [net.user(n) for n in names])
    for name in names:
        await net.joined(name, gid)
    await net.settle()
    return gid


@xmpp_test
async def test_affiliations_follow_the_policy_and_its_changes(prosody: ProsodyServer,
                                                             tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    run = Runner(net)
    try:
        await net.add("alice", "bob", "carol", "dave", "frank")
        gid = await _group(net, "bob", "carol", "dave")
        run.start("alice", "bob", "carol", "dave", "frank")
        # alice created the room (owner) and derives: bob owner, herself admin last
        await _follows(net, gid, {"owner": _bare(net, "bob"), "admin": _bare(net, "alice"),
                                  "member": _bare(net, "carol", "dave"),
                                  "outcast": _bare(net, "eve")})

        with pytest.raises(PolicyError):
            await net["carol"].add_members(gid, [net.user("frank")])
        epoch = await net["carol"].epoch(gid)

        await net["bob"].set_policy(gid, _policy(net, carol=Role.MODERATOR))
        await _follows(net, gid, {"owner": _bare(net, "bob"),
                                  "admin": _bare(net, "alice", "carol"),
                                  "member": _bare(net, "dave"),
                                  "outcast": _bare(net, "eve")})
        await run.until(lambda: all(run.has(n, CommitProcessed, lambda e: getattr(
            e, "epoch", 0) == epoch + 1) for n in ("alice", "carol", "dave")))

        await net["carol"].add_members(gid, [net.user("frank")])
        await run.until(lambda: run.has("frank", GroupJoined))
        everyone = ("alice", "bob", "carol", "dave", "frank")
        await run.until(lambda: all(run.has(n, CommitProcessed, lambda e: getattr(
            e, "added", ()) == (net.user("frank"),)) for n in everyone[:-2]))
        await net.agree(gid, everyone)
        assert await net["frank"].epoch(gid) == epoch + 2
        await _follows(net, gid, {"owner": _bare(net, "bob"),
                                  "admin": _bare(net, "alice", "carol"),
                                  "member": _bare(net, "dave", "frank"),
                                  "outcast": _bare(net, "eve")})
    finally:
        await run.close()
        await net.close()


@xmpp_test
async def test_unauthorized_commits_are_rejected_and_bans_remove(prosody: ProsodyServer,
                                                                 tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    run = Runner(net)
    honest = ("alice", "bob", "carol", "dave")
    try:
        await net.add(*honest, "mallory", "frank")
        gid = await _group(net, "bob", "carol", "dave", "mallory")
        before = await net.agree(gid, (*honest, "mallory"))
        epoch = await net["alice"].epoch(gid)

        # refused locally, nothing sent
        with pytest.raises(PolicyError):
            await net["mallory"].add_members(gid, [net.user("frank")])
        with pytest.raises(PolicyError):
            await net["mallory"].remove_members(gid, [net.user("dave")])
        # forced through by a client that skips the check: every other client rejects it
        net["mallory"]._ctx.config.commit_policy = None
        await net["mallory"].remove_members(gid, [net.user("dave")])

        async def all_rejected() -> bool:
            return all(any(isinstance(e, MessageRejected) for e in net.events[n])
                       for n in honest)

        await net.wait_for(all_rejected, *honest, timeout=20)
        assert await net.agree(gid, honest) == before
        assert {await net[n].epoch(gid) for n in honest} == {epoch}
        assert all("policy" in e.reason for n in honest for e in net.events[n]
                   if isinstance(e, MessageRejected))
        await net.close_one("mallory")

        # the group is not blocked: the first valid Commit of the epoch wins
        await net["bob"].update(gid)
        await net.settle(*honest)
        await net.agree(gid, honest)
        assert await net["carol"].epoch(gid) == epoch + 1

        run.start(*honest)
        await _follows(net, gid, {"owner": _bare(net, "bob"), "admin": _bare(net, "alice"),
                                  "member": _bare(net, "carol", "dave", "mallory"),
                                  "outcast": _bare(net, "eve")})
        # bob (admin, owner) bans dave: bob, not alice (lowest index, may not remove),
        # commits the removal
        bob_t = net.transports["bob"]
        await bob_t.plugin.set_affiliation(JID(bob_t.room_jid(gid)), net.jid("dave"),
                                           "outcast")

        def removal(e: ClientEvent) -> bool:
            return isinstance(e, CommitProcessed) and e.removed == (net.user("dave"),)

        await run.until(lambda: all(run.has(n, CommitProcessed, removal)
                                    for n in ("alice", "carol")))
        assert {e.committer for e in run.seen["carol"] if isinstance(e, CommitProcessed)
                and removal(e)} == {net.user("bob")}
        assert sum(map(removal, run.seen["carol"])) == 1
        affiliations = await _affiliations(net, gid)
        assert _bare(net, "dave") <= affiliations["outcast"]  # the ban stays

        await net["alice"].send(gid, b"after the ban")
        await run.until(lambda: run.has("carol", MessageReceived,
                                        lambda e: getattr(e, "data", b"") == b"after the ban"))
        await asyncio.sleep(1.0)
        assert not run.has("dave", MessageReceived)
    finally:
        await run.close()
        await net.close()
