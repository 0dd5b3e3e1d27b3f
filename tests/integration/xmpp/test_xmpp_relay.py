"""Bridge support of XmppDeliveryTransport (``RelayTransport``, docs/xmpp.md "Bridge
support") on a real Prosody: a bridge account admitted as room admin relays hub items
into the room, exchanges control bodies with members' accounts (also large ones, also
with an offline recipient) and keeps its affiliation through policy sync."""

from __future__ import annotations

import asyncio
import functools
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from slixmpp import JID

from mls_core.framing import ContentType, MLSMessage, PrivateMessage
from mls_core.room_policy import Role, RoomPolicy
from tests.servers.prosody import ProsodyServer
from transports.base import (
    IncomingMessage,
    InvalidRequestError,
    KeyPackageEntry,
    MessageKind,
    RelayTransport,
)
from transports.xmpp.plugin import Affiliation
from transports.xmpp.stanza import Envelope, Kind, Relay
from transports.xmpp.transport import XmppDeliveryTransport

from .helpers import XNet, mls_group, welcome_to, xmpp_test

STANZA_LIMIT = 262_144


def message(group_id: bytes, tag: bytes) -> bytes:
    """An MLSMessage(PrivateMessage) of epoch 0 (the transport reads only its header)."""
    return MLSMessage.of(PrivateMessage(group_id, 0, ContentType.APPLICATION, b"", b"sd",
                                        tag)).encode()


async def until(transport: XmppDeliveryTransport,
                check: Callable[[list[IncomingMessage]], bool],
                after: str | None = None, timeout: float = 15.0) -> list[IncomingMessage]:
    """Fetch (after ``after``) until ``check`` holds for the items."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        items = await transport.fetch(transport.client_id, after=after)
        if check(items):
            return items
        if asyncio.get_running_loop().time() > deadline:
            got = [(i.kind, i.payload[:20]) for i in items]
            raise AssertionError(f"{transport.client_id} has {got}")
        await asyncio.sleep(0.05)


def _at_least(n: int, items: list[IncomingMessage]) -> bool:
    return len(items) >= n


def group_items(items: list[IncomingMessage]) -> list[IncomingMessage]:
    return [i for i in items if i.kind is MessageKind.GROUP]


async def _affiliations(transport: XmppDeliveryTransport,
                        gid: bytes) -> dict[Affiliation, set[str]]:
    room = JID(transport.room_jid(gid))
    return {a: set(await transport.plugin.affiliations(room, a))
            for a in ("owner", "admin", "member", "outcast")}


async def _bridged_room(net: XNet) -> tuple[bytes, XmppDeliveryTransport,
                                            XmppDeliveryTransport, XmppDeliveryTransport]:
    """alice creates the room, admits the bridge (which joins it) and adds bob."""
    alice = await net.transport("alice")
    bob = await net.transport("bob")
    bridge = await net.transport("bridge")
    net.transports.update({"alice": alice, "bob": bob, "bridge": bridge})
    gid = os.urandom(16)
    await alice.subscribe(alice.client_id, gid)
    await alice.admit(gid, bridge.user_id)
    await bridge.subscribe(bridge.client_id, gid)
    await alice.send_welcome([bob.client_id], await welcome_to(bob), gid)
    # as a client does: subscribe once the Welcome arrived (and was joined)
    await until(bob, lambda items: any(i.kind is MessageKind.WELCOME for i in items))
    await bob.subscribe(bob.client_id, gid)
    return gid, alice, bob, bridge


@xmpp_test
async def test_offers_reach_the_bridge_and_hub_items_reach_members(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        gid, alice, bob, bridge = await _bridged_room(net)
        assert isinstance(bridge, RelayTransport) and bridge.network == "xmpp"
        bare = bridge.user_id[5:]
        assert bare in (await _affiliations(alice, gid))["admin"]

        # a member's offer: an ordinary group message, from the member's account
        offer = message(gid, b"offer-1")
        await bob.submit(gid, 0, offer, is_commit=False, sender=bob.client_id)
        [got] = group_items(await until(bridge, lambda i: len(group_items(i)) == 1))
        assert got.payload == offer and got.sender_identity == bob.user_id
        assert got.sender == bob.client_id
        assert got.relay_seq is None and got.relayed_for is None

        # hub items: one small, one above the stanza limit (chunked), one without sender
        small, big = message(gid, b"hub-1"), message(gid, os.urandom(300_000))
        p1 = await bridge.relay_group(gid, small, seq=1,
                                      sender_identity="matrix:@carol:localhost",
                                      sender="CAROLDEVICE")
        p2 = await bridge.relay_group(gid, big, seq=2, sender_identity=bob.user_id,
                                      sender=bob.client_id)
        p3 = await bridge.relay_group(gid, offer, seq=3, sender_identity=bob.user_id)
        assert len(big) > STANZA_LIMIT and None not in (p1, p2, p3)
        for member in (alice, bob):
            items = group_items(await until(member, lambda i: len(group_items(i)) == 4))
            relayed = items[1:]
            assert [i.payload for i in relayed] == [small, big, offer]
            assert [i.relay_seq for i in relayed] == [1, 2, 3]
            assert [i.relayed_for for i in relayed] == [
                "matrix:@carol:localhost", bob.user_id, bob.user_id]
            assert [i.sender for i in relayed] == ["CAROLDEVICE", bob.client_id, None]
            # the network-authenticated poster, never the relayed identity
            assert {i.sender_identity for i in relayed} == {bridge.user_id}
            assert [i.position for i in relayed] == [p1, p2, p3]
        # the fields survive the room archive: a restarted member reads them from MAM
        # (closed first: a second session of one full JID stops the first with
        # SessionConflictError, test_xmpp_session.py)
        await net.transports.pop("bob").close()
        again = await net.transport("bob")
        net.transports["bob"] = again
        archived = group_items(await until(again, lambda i: len(group_items(i)) == 4))
        assert [(i.relay_seq, i.relayed_for, i.sender, i.sender_identity)
                for i in archived[1:]] == [
            (1, "matrix:@carol:localhost", "CAROLDEVICE", bridge.user_id),
            (2, bob.user_id, bob.client_id, bridge.user_id),
            (3, bob.user_id, None, bridge.user_id)]
        assert all(t.rejected == 0 for t in (alice, bob, bridge, again))
        bob = again

        # the bridge (not an MLS member) relays a member's GroupInfo and claims
        # KeyPackages; only a reader that trusts it as a relayer takes its GroupInfo
        group, _ = mls_group(alice.user_id, gid, epochs=4)
        gi4 = group.group_info()
        group.commit([])
        group.merge_pending_commit()
        gi5, tree5 = group.group_info(with_ratchet_tree=False), group.ratchet_tree_bytes()
        await bridge.publish_group_info(gid, 5, gi5, tree5)
        await alice.publish_group_info(gid, 4, gi4)  # older: does not win
        assert await bob.fetch_group_info(gid) == (gi4, None)
        assert bob.drops.snapshot() == {"group-info-wrong-signer": 1}
        bob.trusted_relayers.add(bridge.user_id)
        assert await bob.fetch_group_info(gid) == (gi5, tree5)
        kp = KeyPackageEntry(os.urandom(16), b"kp-bob")
        await bob.publish_key_packages(bob.client_id, bob.user_id, [kp])
        [claimed] = await bridge.claim_user_key_packages(bob.user_id)
        assert (claimed.client_id, claimed.key_package) == (bob.client_id, b"kp-bob")

        with pytest.raises(InvalidRequestError):
            await bridge.relay_group(gid, small, seq=-1, sender_identity="matrix:@c:hs")
        with pytest.raises(InvalidRequestError):
            await bridge.relay_group(gid, small, seq=4, sender_identity="with space")
        with pytest.raises(InvalidRequestError):
            await bridge.relay_group(b"other-group", small, seq=4, sender_identity="x:y")
    finally:
        await net.close()


@xmpp_test
async def test_forged_relay_fields_keep_the_posters_identity(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        gid, alice, bob, _bridge = await _bridged_room(net)
        room = JID(bob.room_jid(gid))
        forged = message(gid, b"forged")
        # bob claims to be the bridge relaying for someone: delivered as bob's
        bob.plugin.send_envelope(room, "groupchat", Envelope(
            Kind.GROUP, forged, bob.device, gid, 0,
            relay=Relay(7, "matrix:@boss:localhost", "BOSS")),
            chunk_size=1024, max_payload=4096)
        # malformed relay fields (a negative seq, a seq without identity): dropped
        for attrs in ({"relay-seq": "-1", "relay-for": "x:y"}, {"relay-seq": "5"}):
            el = Envelope(Kind.GROUP, message(gid, b"bad"), bob.device, gid, 0).chunks()[0]
            for name, value in attrs.items():
                el.set(name, value)
            msg = bob.xmpp.make_message(mto=room, mtype="groupchat", mbody="x")
            msg.xml.append(el)
            ET.SubElement(msg.xml, "{urn:xmpp:hints}store")
            msg.send()
        # a control body posted into the room is never a group message
        bob.plugin.send_envelope(room, "groupchat", Envelope(Kind.CONTROL, b"{}", bob.device),
                                 chunk_size=1024, max_payload=4096)
        marker = message(gid, b"marker")
        await bob.submit(gid, 0, marker, is_commit=False, sender=bob.client_id)
        items = group_items(await until(alice, lambda i: any(
            g.payload == marker for g in group_items(i))))
        assert [i.payload for i in items] == [forged, marker]
        assert items[0].sender_identity == bob.user_id
        assert (items[0].relay_seq, items[0].relayed_for, items[0].sender) == (
            7, "matrix:@boss:localhost", "BOSS")
        assert not any(i.kind is MessageKind.CONTROL for i in await alice.fetch(
            alice.client_id))
        assert alice.drops.snapshot() == {"malformed-element": 2, "room-wrong-kind": 1}
    finally:
        await net.close()


@xmpp_test
async def test_control_both_ways_large_and_offline(prosody: ProsodyServer,
                                                   tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        bob = await net.transport("bob")
        laptop = await net.transport("bob.laptop")
        bridge = await net.transport("bridge")
        carol = await net.transport("carol")
        net.transports.update({"bob": bob, "laptop": laptop, "bridge": bridge,
                               "carol": carol})
        gid = os.urandom(16)

        # member -> bridge
        await bob.send_control(bridge.user_id, b'{"op": "claim"}')
        [got] = await until(bridge, lambda i: len(i) == 1)
        assert got.kind is MessageKind.CONTROL and got.payload == b'{"op": "claim"}'
        assert got.group_id is None and got.sender == bob.client_id
        assert got.sender_identity == bob.user_id

        # bridge -> every device of a member, one above the stanza limit; a Welcome
        # from the bridge stays a Welcome
        large = b'{"welcome": "' + os.urandom(200_000).hex().encode() + b'"}'
        await bridge.send_control(bob.user_id, b'{"op": "small"}')
        await bridge.send_control(bob.user_id, large)
        await bridge.subscribe(bridge.client_id, gid)
        welcome = await welcome_to(bob)
        await bridge.send_welcome([bob.client_id], welcome, gid)
        for device, n in ((bob, 3), (laptop, 2)):
            items = await until(device, functools.partial(_at_least, n))
            controls = [i for i in items if i.kind is MessageKind.CONTROL]
            assert [c.payload for c in controls] == [b'{"op": "small"}', large]
            assert {(c.sender, c.sender_identity) for c in controls} == {
                (bridge.client_id, bridge.user_id)}
        welcomes = [i for i in await bob.fetch(bob.client_id) if i.kind is MessageKind.WELCOME]
        assert [w.payload for w in welcomes] == [welcome]
        assert [i.kind for i in await bob.fetch(bob.client_id)] == [
            MessageKind.CONTROL, MessageKind.CONTROL, MessageKind.WELCOME]

        # an offline recipient gets it on its next fetch after a restart, with a cursor
        await bridge.send_control(carol.user_id, b"first")
        [first] = await until(carol, lambda i: len(i) == 1)
        await net.transports.pop("carol").close()
        await bridge.send_control(carol.user_id, b"while offline")
        carol = await net.transport("carol")
        net.transports["carol"] = carol
        rest = await until(carol, lambda i: len(i) == 1, after=first.cursor)
        assert [(i.kind, i.payload) for i in rest] == [(MessageKind.CONTROL,
                                                         b"while offline")]
        assert rest[0].sender_identity == bridge.user_id

        with pytest.raises(InvalidRequestError):
            await bridge.send_control("matrix:@bob:localhost", b"{}")
        with pytest.raises(InvalidRequestError):
            await bridge.send_control(bob.user_id, b"")
        assert all(t.rejected == 0 for t in net.transports.values())
    finally:
        await net.close()


@xmpp_test
async def test_bridge_keeps_admin_through_policy_sync(prosody: ProsodyServer,
                                                      tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        bridge_bare = net.jid("bridge").split("/")[0]
        net.xmpp["bridge"] = bridge_bare
        await net.add("alice", "bob")
        bridge = await net.transport("bridge")
        net.transports["bridge"] = bridge
        policy = RoomPolicy.build({net.user("alice").encode(): Role.ADMIN})
        gid = await net["alice"].create_group(policy=policy)
        await net.transports["alice"].admit(gid, bridge.user_id)
        await bridge.subscribe(bridge.client_id, gid)
        await net["alice"].add_members(gid, [net.user("bob")])
        await net.joined("bob", gid)
        plugin = net.transports["alice"].plugin
        await plugin.sync_affiliations(net["alice"], gid)
        assert await _affiliations(bridge, gid) == {
            "owner": {net.jid("alice").split("/")[0]}, "admin": {bridge_bare},
            "member": {net.jid("bob").split("/")[0]}, "outcast": set()}
        # even a policy that bans the bridge's identity does not demote it
        await net["alice"].set_policy(gid, RoomPolicy.build({
            net.user("alice").encode(): Role.ADMIN,
            f"xmpp:{bridge_bare}".encode(): Role.BANNED}))
        await plugin.sync_affiliations(net["alice"], gid)
        assert bridge_bare in (await _affiliations(bridge, gid))["admin"]
        # the bridge, as room admin, may grant membership (send_welcome for its side)
        carol = await net.transport("carol")
        net.transports["carol"] = carol
        await bridge.send_welcome([carol.client_id], await welcome_to(carol), gid)
        await carol.subscribe(carol.client_id, gid)
        assert net.jid("carol").split("/")[0] in (await _affiliations(bridge, gid))["member"]
    finally:
        await net.close()
