"""MUC access follows MLS membership while clients run through the plugin
(``MLSBridgePlugin.run_client``): a user banned from the room is removed from the MLS
group, and a user removed from the MLS group loses its room membership."""

from __future__ import annotations

import asyncio
from pathlib import Path

from slixmpp import JID

from mls_client.events import ClientEvent, CommitProcessed, MessageReceived
from tests.servers.prosody import ProsodyServer

from .helpers import XNet, xmpp_test


@xmpp_test
async def test_ban_removes_from_mls_and_mls_removal_revokes(prosody: ProsodyServer,
                                                            tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await net.add("alice", "bob", "carol", "mallory")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user(n) for n in ("bob", "carol",
                                                                   "mallory")])
        for name in ("bob", "carol", "mallory"):
            await net.joined(name, gid)
        await net.settle()
        seen: dict[str, list[ClientEvent]] = {n: [] for n in net.clients}
        messages: list[MessageReceived] = []
        net.transports["bob"].xmpp.add_event_handler("mls_message", messages.append)
        for name, client in net.clients.items():
            async def record(event: ClientEvent, name: str = name) -> None:
                seen[name].append(event)

            plugin = net.transports[name].plugin
            tasks.append(asyncio.ensure_future(plugin.run_client(client, stop, record)))

        alice_t = net.transports["alice"]
        room = JID(alice_t.room_jid(gid))
        await alice_t.plugin.set_affiliation(room, net.jid("mallory"), "outcast")

        async def mallory_removed() -> bool:
            names = {m.credential.identity for m in await net["bob"].members(gid)}
            return net.user("mallory").encode() not in names

        await net.wait_for(mallory_removed, timeout=20)
        await net.wait_for(lambda: _true(any(isinstance(e, CommitProcessed) and e.removed
                                             for e in seen["carol"])), timeout=20)
        # alice (the lowest index) committed the removal, once
        removals = [e for e in seen["carol"] if isinstance(e, CommitProcessed)]
        assert [e.removed for e in removals] == [(net.user("mallory"),)]

        await net["alice"].remove_members(gid, [net.user("carol")])

        async def carol_revoked() -> bool:
            members = await alice_t.plugin.affiliations(room, "member")
            return net.jid("carol").split("/")[0] not in members

        await net.wait_for(carol_revoked, timeout=20)
        assert net.jid("bob").split("/")[0] in await alice_t.plugin.affiliations(room,
                                                                               "member")
        await net["alice"].send(gid, b"just us")
        await net.wait_for(lambda: _true(any(m.data == b"just us" for m in messages)),
                           timeout=20)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await net.close()


async def _true(value: bool) -> bool:
    return value
