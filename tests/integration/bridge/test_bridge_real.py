"""One MLS group over a real XMPP MUC and a real Matrix room through the bridge service
(issue 9): members on both networks, the bridge as its own process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devservers.prosody import ProsodyServer
from devservers.synapse import SynapseServer
from mls_client.events import MessageRejected
from mls_core.room_policy import Action, Role, RoomPolicy

from .helpers import bridge_test, enforce_bans, running

Servers = tuple[ProsodyServer, SynapseServer]


def _policy(admin: str, moderator: str) -> RoomPolicy:
    return RoomPolicy.build({admin.encode(): Role.ADMIN, moderator.encode(): Role.MODERATOR},
                            rules={Action.ADD: Role.MODERATOR, Action.REMOVE: Role.MODERATOR})


@bridge_test
async def test_three_xmpp_and_three_matrix_members_in_one_group(
        bridge_servers: Servers, tmp_path: Path) -> None:
    async with running(bridge_servers, tmp_path) as net:
        await net.add("xmpp", "x1", "x2", "x3")
        await net.add("matrix", "m1", "m2", "m3")
        c, ident = net.clients, net.identity
        gid = await c["x1"].create_group(policy=_policy(ident("x1"), ident("m1")))
        # adds from both sides; every member agrees after every Commit
        await c["x1"].add_members(gid, [ident("x2"), ident("m1")])
        await net.at_epoch(gid, 1, ["x1", "x2", "m1"])
        await c["m1"].add_members(gid, [ident("m2"), ident("x3")])
        await net.at_epoch(gid, 2, ["x1", "x2", "m1", "m2", "x3"])
        await c["x1"].add_members(gid, [ident("m3")])
        everyone = ["x1", "x2", "x3", "m1", "m2", "m3"]
        await net.at_epoch(gid, 3, everyone)
        # messages both ways
        await c["m2"].send(gid, b"from matrix")
        await c["x3"].send(gid, b"from xmpp")
        for name in everyone:
            if name != "m2":
                await net.got(name, gid, b"from matrix")
            if name != "x3":
                await net.got(name, gid, b"from xmpp")
        # removes from both sides
        await c["m1"].remove_members(gid, [ident("x3")])
        await net.at_epoch(gid, 4, ["x1", "x2", "m1", "m2", "m3"])
        await c["x1"].remove_members(gid, [ident("m3")])
        staying = ["x1", "x2", "m1", "m2"]
        await net.at_epoch(gid, 5, staying)
        await c["x2"].send(gid, b"after the removals")
        for name in ("x1", "m1", "m2"):
            await net.got(name, gid, b"after the removals")
        await net.quiet(1.0, "x3", "m3")
        assert b"after the removals" not in net.received("x3", gid)
        assert b"after the removals" not in net.received("m3", gid)


@bridge_test
async def test_concurrent_commits_from_both_networks(bridge_servers: Servers,
                                                     tmp_path: Path) -> None:
    async with running(bridge_servers, tmp_path) as net:
        await net.add("xmpp", "x1", "x2")
        await net.add("matrix", "m1", "m2")
        c = net.clients
        names = ["x1", "x2", "m1", "m2"]
        gid = await net.group("x1", names[1:])
        for round_ in range(2):
            epoch = await c["x1"].epoch(gid)
            await asyncio.gather(c["x2"].update(gid), c["m2"].update(gid))
            await net.at_epoch(gid, epoch + 2, names)
            assert await c["x1"].epoch(gid) == epoch + 2, round_
        assert c["x2"].stats.commits_lost + c["m2"].stats.commits_lost >= 1


@bridge_test
async def test_policy_and_a_matrix_ban_across_the_bridge(bridge_servers: Servers,
                                                         tmp_path: Path) -> None:
    async with running(bridge_servers, tmp_path) as net:
        await net.add("matrix", "m1", "m2")
        await net.add("xmpp", "x1", "x2")
        c, ident = net.clients, net.identity
        gid = await net.group("m1", ["m2", "x1", "x2"], _policy(ident("m1"), ident("x1")))
        # x2 (member) forces a removal its own client would refuse: everyone rejects it
        c["x2"]._ctx.config.commit_policy = None
        await c["x2"].remove_members(gid, [ident("m2")])

        async def all_rejected() -> bool:
            return all(any(isinstance(e, MessageRejected) and "PolicyError" in e.reason
                           for e in net.events[n]) for n in ("m1", "m2", "x1"))
        await net.until(all_rejected, "every client rejecting x2's Commit", 60.0,
                        "m1", "m2", "x1")
        await net.agree(gid, ["m1", "m2", "x1"])
        assert await c["m1"].epoch(gid) == 1
        # the admin (Matrix) changes the policy: x2 may now add
        await c["m1"].set_policy(gid, _policy(ident("m1"), ident("x2")))
        await net.at_epoch(gid, 2, ["m1", "m2", "x1"])
        # m1 bans m2 in the Matrix room: m2 is removed from the MLS group
        m1 = net.inner["m1"]
        room = m1.room_id(gid)  # type: ignore[attr-defined]
        await m1.api.ban(room, net.inner["m2"].matrix_user_id)  # type: ignore[attr-defined]
        await enforce_bans(net, "m1", gid, ident("m2"))
        await net.at_epoch(gid, 3, ["m1", "x1"])
        assert ident("m2").encode() not in [m.credential.identity
                                            for m in await c["x1"].members(gid)]
        await c["x1"].send(gid, b"m2 must not read this")
        await net.got("m1", gid, b"m2 must not read this")
        await net.quiet(1.0, "m2")
        assert b"m2 must not read this" not in net.received("m2", gid)


@bridge_test
async def test_the_bridge_never_holds_plaintext_and_survives_sigkill(
        bridge_servers: Servers, tmp_path: Path) -> None:
    canary = b"canary-5d0e1b: the bridge must never see this"
    async with running(bridge_servers, tmp_path) as net:
        await net.add("xmpp", "x1")
        await net.add("matrix", "m1")
        c = net.clients
        gid = await net.group("x1", ["m1"])
        sent: list[tuple[str, bytes]] = []
        for i in range(12):
            if i == 4:
                net.bridge.kill()  # messages 4..7 are posted while it is dead
            if i == 8:
                net.bridge.start()
            who = "x1" if i % 2 else "m1"
            data = canary + f" #{i}".encode()
            await c[who].send(gid, data)
            sent.append((who, data))
            if i == 2:
                await net.got("x1", gid, sent[0][1])
                net.bridge.kill()  # killed right after relaying: restart at once
                net.bridge.start()
        for name in ("x1", "m1"):
            expected = [d for who, d in sent if who != name]
            await net.got(name, gid, expected[-1])
            await net.quiet(1.0, name)
            assert net.received(name, gid) == expected, name  # all, once, in order
        assert canary not in net.bridge.stored_bytes()
        assert b"canary" not in net.bridge.stored_bytes()


@bridge_test
async def test_room_bans_on_both_networks_become_removals_through_the_bridge(
        bridge_servers: Servers, tmp_path: Path) -> None:
    """Nobody on the banning network may remove (the policy's admin is elsewhere), and no
    member runs a bot: the bridge, the group's external sender, proposes the removal and
    a member commits it; every client checks the proposal against the policy."""
    async with running(bridge_servers, tmp_path) as net:
        await net.add("xmpp", "x1", "x2")
        await net.add("matrix", "m1", "m2")
        c, ident = net.clients, net.identity
        # created on XMPP by x1 (MUC owner); only the admin may remove, and it is on Matrix
        policy = RoomPolicy.build({ident("m1").encode(): Role.ADMIN},
                                  rules={Action.ADD: Role.MEMBER, Action.REMOVE: Role.ADMIN})
        gid = await net.group("x1", ["x2", "m1", "m2"], policy)
        # x1 bans x2 in the MUC (affiliation outcast, XEP-0045 §9.1)
        x1 = net.inner["x1"]
        room = x1.room_jid(gid)  # type: ignore[attr-defined]
        await x1.plugin.set_affiliation(room, ident("x2").removeprefix("xmpp:"),  # type: ignore[attr-defined]
                                        "outcast")
        await net.at_epoch(gid, 2, ["x1", "m1", "m2"])
        members = [m.credential.identity for m in await c["m1"].members(gid)]
        assert ident("x2").encode() not in members
        await c["m2"].send(gid, b"x2 must not read this")
        await net.got("x1", gid, b"x2 must not read this")
        await net.quiet(1.0, "x2")
        assert b"x2 must not read this" not in net.received("x2", gid)
        # and the other way: a group created on Matrix by m1, its only admin on XMPP;
        # m1 (the room's creator) bans m2 from the Matrix room
        policy = RoomPolicy.build({ident("x1").encode(): Role.ADMIN},
                                  rules={Action.ADD: Role.MEMBER, Action.REMOVE: Role.ADMIN})
        gid2 = await net.group("m1", ["m2", "x1"], policy)
        m1 = net.inner["m1"]
        await m1.api.ban(m1.room_id(gid2),  # type: ignore[attr-defined]
                         net.inner["m2"].matrix_user_id)  # type: ignore[attr-defined]
        await net.at_epoch(gid2, 2, ["m1", "x1"])
        await c["x1"].send(gid2, b"m2 must not read this")
        await net.got("m1", gid2, b"m2 must not read this")
        await net.quiet(1.0, "m2")
        assert b"m2 must not read this" not in net.received("m2", gid2)
