"""Room membership and MLS membership with plain :meth:`MLSClient.run` over a real
Prosody (no ``run_client``): a user kicked from the room is removed from the MLS group
by the designated remover, and the kicked device stops cleanly (mls_client.room_access,
docs/xmpp.md "Rooms and the group binding")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from slixmpp import JID

from mls_client.events import ClientEvent, ConnectionLost, KickedFromRoom, RemovedFromGroup
from mls_core.room_policy import RoomPolicy
from tests.client.helpers import run_for, warnings_logged
from tests.servers.prosody import ProsodyServer

from .helpers import XNet, xmpp_test

REMOVAL_BOUND = 15.0
QUIET_WINDOW = 10.0


@xmpp_test
async def test_plain_clients_kick_removes_and_kicked_device_stops(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    seen: dict[str, list[ClientEvent]] = {}
    try:
        await net.add("alice", "bob", "carol")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob"), net.user("carol")])
        for name in ("bob", "carol"):
            await net.joined(name, gid)
        await net.settle()
        for name, client in net.clients.items():
            seen[name] = []

            async def record(event: ClientEvent, name: str = name) -> None:
                seen[name].append(event)

            tasks.append(asyncio.ensure_future(client.run(record, stop)))
        alice_t = net.transports["alice"]
        room = JID(alice_t.room_jid(gid))
        kicked_at = time.monotonic()
        await alice_t.xmpp.plugin["xep_0045"].set_role(room, net.jid("bob"), "none",
                                                       reason="test")

        async def bob_gone(name: str) -> bool:
            names = {m.credential.identity for m in await net[name].members(gid)}
            return net.user("bob").encode() not in names

        while not (await bob_gone("carol") and await bob_gone("alice")):
            assert time.monotonic() - kicked_at < REMOVAL_BOUND, "bob was not removed"
            await asyncio.sleep(0.05)
        removal = time.monotonic() - kicked_at
        print(f"xmpp: kick -> MLS removal seen by every member in {removal:.1f} s")
        while not any(isinstance(e, KickedFromRoom) for e in seen["bob"]):
            assert time.monotonic() - kicked_at < REMOVAL_BOUND, "bob saw no kick"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - any refusal, but at once
            await net["bob"].send(gid, b"after the kick")
        assert time.monotonic() - started < 2.0
        with warnings_logged() as warned:
            await asyncio.sleep(QUIET_WINDOW)
        stop.set()
        await asyncio.gather(*tasks)
        tasks.clear()
        assert [type(e) for e in seen["bob"] if isinstance(e, KickedFromRoom)] == \
            [KickedFromRoom]
        assert not any(isinstance(e, ConnectionLost) for e in seen["bob"])
        assert warned.records == [], [r.getMessage() for r in warned.records]

        bob = await net.reopen("bob")
        again: list[ClientEvent] = []
        with warnings_logged() as warned:
            await run_for(bob, QUIET_WINDOW, again)
        assert again == [], again
        assert warned.records == [], [r.getMessage() for r in warned.records]
        await net["alice"].send(gid, b"without bob")
        await net.settle("alice", "carol")
        await net.agree(gid, ["alice", "carol"])
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await net.close()


@xmpp_test
async def test_plain_clients_follow_the_policy_and_a_removed_device_stops(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    """No ``run_client``: the room owner's plain client derives the affiliations from the
    policy (the admin becomes owner), a ban by the admin removes the user, a user removed
    by a Commit loses room membership and its device ends the group once and stays
    quiet."""
    net = XNet(prosody, tmp_path)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    seen: dict[str, list[ClientEvent]] = {}
    try:
        await net.add("alice", "bob", "carol", "dave")
        admins = [net.user("bob").encode()]
        gid = await net["alice"].create_group(policy=RoomPolicy.standard(
            [net.user("alice").encode(), *admins]))
        await net["alice"].add_members(gid, [net.user(n) for n in ("bob", "carol", "dave")])
        for name in ("bob", "carol", "dave"):
            await net.joined(name, gid)
        await net.settle()
        for name, client in net.clients.items():
            seen[name] = []

            async def record(event: ClientEvent, name: str = name) -> None:
                seen[name].append(event)

            tasks.append(asyncio.ensure_future(client.run(record, stop)))
        alice_t = net.transports["alice"]
        room = JID(alice_t.room_jid(gid))
        bare = {n: net.jid(n).split("/")[0] for n in net.clients}

        async def bob_owner() -> bool:
            return bare["bob"] in await alice_t.plugin.affiliations(room, "owner")

        await net.wait_for(bob_owner, timeout=REMOVAL_BOUND)
        # bob (an admin, now room owner) bans dave: alice (leaf 0, admin) removes him
        banned_at = time.monotonic()
        await net.transports["bob"].plugin.set_affiliation(room, net.jid("dave"), "outcast")

        async def dave_gone() -> bool:
            names = {m.credential.identity for m in await net["carol"].members(gid)}
            return net.user("dave").encode() not in names

        await net.wait_for(dave_gone, timeout=REMOVAL_BOUND)
        print(f"xmpp: ban -> MLS removal in {time.monotonic() - banned_at:.1f} s")
        assert bare["dave"] in await alice_t.plugin.affiliations(room, "outcast")

        # carol removed by a Commit: she loses room membership, her device ends the
        # group once (removed or kicked, whichever it sees first) and stays quiet
        await net["alice"].remove_members(gid, [net.user("carol")])

        async def carol_done() -> bool:
            return any(isinstance(e, KickedFromRoom | RemovedFromGroup)
                       for e in seen["carol"])

        await net.wait_for(carol_done, timeout=REMOVAL_BOUND)

        async def carol_revoked() -> bool:
            return bare["carol"] not in await alice_t.plugin.affiliations(room, "member")

        await net.wait_for(carol_revoked, timeout=REMOVAL_BOUND)
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - any refusal, but at once
            await net["carol"].send(gid, b"after the removal")
        assert time.monotonic() - started < 2.0
        with warnings_logged() as warned:
            await asyncio.sleep(QUIET_WINDOW)
        ends = [e for e in seen["carol"] if isinstance(e, KickedFromRoom | RemovedFromGroup)]
        assert len(ends) == 1, ends
        assert warned.records == [], [r.getMessage() for r in warned.records]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await net.close()


@xmpp_test
async def test_banned_while_offline_ends_the_group_once_on_reopen(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    """A device banned while it was offline never sees a presence: when it comes back
    the room refuses it (``forbidden``); the transport reports that as its own exit and
    stops reading the room, the client ends the group once, and stays quiet."""
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob")])
        await net.joined("bob", gid)
        await net.settle()
        await net.close_one("bob")
        alice_t = net.transports["alice"]
        await alice_t.plugin.set_affiliation(JID(alice_t.room_jid(gid)), net.jid("bob"),
                                             "outcast")
        await net["alice"].remove_members(gid, [net.user("bob")])
        bob = await net.add_existing("bob")
        first: list[ClientEvent] = []
        with warnings_logged() as warned:
            await run_for(bob, QUIET_WINDOW, first)
        # (Prosody answers an outcast of a members-only room ``registration-required``
        # or ``forbidden``, by its check order: ``banned`` is not asserted)
        assert [type(e) for e in first
                if isinstance(e, KickedFromRoom | RemovedFromGroup)] == [KickedFromRoom], first
        assert warned.records == [], [r.getMessage() for r in warned.records]
        with pytest.raises(Exception):  # noqa: B017 - any refusal, but at once
            async with asyncio.timeout(2):
                await bob.send(gid, b"after the ban")
        bob = await net.reopen("bob")
        again: list[ClientEvent] = []
        with warnings_logged() as warned:
            await run_for(bob, QUIET_WINDOW, again)
        assert again == [], again
        assert warned.records == [], [r.getMessage() for r in warned.records]
    finally:
        await net.close()
