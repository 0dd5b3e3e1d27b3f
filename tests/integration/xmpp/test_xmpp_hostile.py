"""Hostile input over a real Prosody: each is rejected with a typed error, logged once,
and leaves every member's group state unchanged."""

from __future__ import annotations

import asyncio
import base64
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from slixmpp import JID

from mls_client.events import CommitProcessed, MessageRejected
from tests.servers.prosody import ProsodyServer
from transports.base import InvalidRequestError, MessageKind
from transports.xmpp.plugin import XmppError
from transports.xmpp.stanza import Envelope, Kind

from .helpers import XNet, xmpp_test


async def _state(net: XNet, gid: bytes, *names: str) -> dict[str, tuple[int, bytes]]:
    return {n: (await net[n].epoch(gid), await net[n].epoch_authenticator(gid))
            for n in names}


async def _group(net: XNet) -> bytes:
    await net.add("alice", "bob", "carol")
    gid = await net["alice"].create_group()
    await net["alice"].add_members(gid, [net.user("bob"), net.user("carol")])
    await net.joined("bob", gid)
    await net.joined("carol", gid)
    await net.settle()
    return gid


@xmpp_test
async def test_non_member_cannot_post_and_its_garbage_is_rejected(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        gid = await _group(net)
        before = await _state(net, gid, "alice", "bob", "carol")
        eve = await net.transport("eve")
        try:
            room = JID(eve.room_jid(gid))
            with pytest.raises(XmppError) as info:
                await eve.plugin.join_room(room, eve.client_id)
            assert info.value.condition == "registration-required"
            # posting without joining is refused by the room
            eve.plugin.send_envelope(room, "groupchat", Envelope(
                Kind.GROUP, b"\x00\x01garbage", eve.device, gid, 1),
                chunk_size=1024, max_payload=4096)
            # a garbage "Welcome" straight to bob's device
            bob_jid = JID(net.transports["bob"].client_id)
            eve.plugin.send_envelope(bob_jid, "chat", Envelope(
                Kind.WELCOME, b"not a welcome", bob_jid.resource, gid),
                chunk_size=1024, max_payload=4096)

            async def dropped() -> bool:
                return net.transports["bob"].drops.counts["welcome-undecodable"] == 1

            await net.wait_for(dropped, "bob")
        finally:
            await eve.close()
        await net.settle()
        # the transport dropped the garbage Welcome: the client never saw it
        assert not any(isinstance(e, MessageRejected) for e in net.events["bob"])
        assert not any(isinstance(e, MessageRejected) for e in net.events["alice"])
        assert await _state(net, gid, "alice", "bob", "carol") == before
        # the room's order holds nothing from eve
        items = await net.transports["alice"].fetch(net.transports["alice"].client_id)
        assert all(i.sender_identity != eve.user_id for i in items)
    finally:
        await net.close()


@xmpp_test
async def test_replayed_commit_changes_nothing(prosody: ProsodyServer,
                                               tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        gid = await _group(net)
        await net["alice"].update(gid)
        await net.settle()
        bob_t = net.transports["bob"]
        commits = [i for i in await bob_t.fetch(bob_t.client_id)
                   if i.kind is MessageKind.GROUP and i.sender_identity ==
                   net.transports["alice"].user_id]
        old_commit = commits[-1].payload
        before = await _state(net, gid, "alice", "bob", "carol")
        counts = {n: len([e for e in net.events[n] if isinstance(e, CommitProcessed)])
                  for n in ("bob", "carol")}
        # alice's commit replayed by alice (same bytes) and by bob (other sender)
        await net.transports["alice"].submit(gid, 1, old_commit, is_commit=True,
                                             sender=net.transports["alice"].client_id)
        net.transports["bob"].plugin.send_envelope(
            JID(bob_t.room_jid(gid)), "groupchat",
            Envelope(Kind.GROUP, old_commit, bob_t.device, gid, 1),
            chunk_size=96 * 1024, max_payload=1 << 20)
        await asyncio.sleep(0.3)
        await net.settle()
        assert await _state(net, gid, "alice", "bob", "carol") == before
        for n in ("bob", "carol"):
            assert len([e for e in net.events[n] if isinstance(e, CommitProcessed)]) \
                == counts[n]
        await net["carol"].send(gid, b"still fine")
        await net.settle()
        assert b"still fine" in net.received("bob", gid)
    finally:
        await net.close()


@xmpp_test
async def test_sender_mismatch_is_rejected(prosody: ProsodyServer, tmp_path: Path) -> None:
    """bob posts a message that carol's leaf signed (e.g. stolen before delivery): the
    room vouches for bob, the MLS sender is carol: rejected, state unchanged."""
    net = XNet(prosody, tmp_path)
    try:
        gid = await _group(net)
        before = await _state(net, gid, "alice", "bob", "carol")
        forged_group = await net["carol"].group(gid)  # a copy: carol's real state is kept
        forged = forged_group.encrypt(b"who sent this?")
        bob_t = net.transports["bob"]
        bob_t.plugin.send_envelope(JID(bob_t.room_jid(gid)), "groupchat",
                                   Envelope(Kind.GROUP, forged, bob_t.device, gid,
                                            before["alice"][0]),
                                   chunk_size=96 * 1024, max_payload=1 << 20)

        async def rejected() -> bool:
            return any(isinstance(e, MessageRejected) for e in net.events["alice"])

        await net.wait_for(rejected, "alice")
        reasons = [e.reason for e in net.events["alice"] if isinstance(e, MessageRejected)]
        assert len(reasons) == 1 and "sender" in reasons[0]
        assert b"who sent this?" not in net.received("alice", gid)
        assert await _state(net, gid, "alice", "bob", "carol") == before
        await net["carol"].send(gid, b"the real carol")
        await net.settle()
        assert net.received("alice", gid) == [b"the real carol"]
    finally:
        await net.close()


@xmpp_test
async def test_malformed_and_oversized_input(prosody: ProsodyServer, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    net = XNet(prosody, tmp_path)
    try:
        gid = await _group(net)
        before = await _state(net, gid, "alice", "bob", "carol")
        alice_t, bob_t = net.transports["alice"], net.transports["bob"]
        room = JID(bob_t.room_jid(gid))
        # a payload above max_payload never leaves the sender
        with pytest.raises(InvalidRequestError):
            bob_t.plugin.send_envelope(room, "groupchat", Envelope(
                Kind.GROUP, b"x" * 5000, bob_t.device, gid, 1),
                chunk_size=1024, max_payload=4096)
        # malformed <mls/> elements from a member: bad base64, another group's id
        for text, group in (("***", gid), (base64.b64encode(b"abc").decode(), b"other")):
            msg = bob_t.xmpp.make_message(mto=room, mtype="groupchat", mbody="x")
            el = Envelope(Kind.GROUP, b"abc", bob_t.device, group, 1).chunks()[0]
            el.text = text
            msg.xml.append(el)
            ET.SubElement(msg.xml, "{urn:xmpp:hints}store")
            msg.send()
        # a stanza above the server's limit: the server closes bob's stream
        drops: list[object] = []
        bob_t.xmpp.add_event_handler("disconnected", drops.append)
        huge = bob_t.xmpp.make_message(mto=room, mtype="groupchat", mbody="y" * 300_000)
        with caplog.at_level(logging.WARNING, logger="mls_bridge.defence"):
            huge.send()
            await asyncio.sleep(0.5)
            await net.settle()
            for t in (alice_t, net.transports["carol"]):
                assert t.drops.snapshot() == {"malformed-element": 1, "room-wrong-group": 1}
        assert drops, "the server kept a stream that sent an oversized stanza"
        logged = [r.getMessage() for r in caplog.records if r.name == "mls_bridge.defence"]
        mine = [m for m in logged if f"; {alice_t.client_id}," in m]
        assert len(mine) == 2 and all(f"from {bob_t.user_id}:" in m for m in mine)
        assert await _state(net, gid, "alice", "bob", "carol") == before
        # bob reconnects by itself and the group goes on
        await net["bob"].send(gid, b"bob is back")
        await net.settle()
        assert b"bob is back" in net.received("alice", gid)
    finally:
        await net.close()
