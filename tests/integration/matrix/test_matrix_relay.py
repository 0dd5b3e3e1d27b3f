"""Bridge support over a real Synapse (docs/matrix.md "Bridge support"): a bridge
account admitted to a group's room relays hub items, exchanges control messages with
members, sends Welcomes and GroupInfo, and keeps its power level under policy sync."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mls_client.matrix_rights import POWER_LEVELS, PolicySync, level_of
from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add
from mls_core.room_policy import Role, RoomPolicy
from tests.client.helpers import async_test
from transports.base import IncomingMessage, KeyPackageEntry, MessageKind, RelayTransport
from transports.matrix import events as ev
from transports.matrix.api import CLIENT, quote
from transports.matrix.transport import MatrixDeliveryTransport

from .conftest import PASSWORD, Homeserver
from .helpers import MatrixNet

NOW = 1_700_000_000


async def _connect(hs: Homeserver, user: str, root: Path, name: str
                   ) -> MatrixDeliveryTransport:
    return await MatrixDeliveryTransport.connect(
        hs.url, user, password=PASSWORD, device_id=name.upper(),
        journal_path=root / f"{name}.journal", long_poll_ms=500)


async def _levels(t: MatrixDeliveryTransport, gid: bytes) -> dict[str, Any]:
    room = t.room_id(gid)
    assert room is not None
    return await t.api.request("GET", f"{CLIENT}/rooms/{quote(room)}/state/{POWER_LEVELS}/")


async def _post(t: MatrixDeliveryTransport, gid: bytes, content: dict[str, Any],
                txn: str) -> str:
    room = t.room_id(gid)
    assert room is not None
    out = await t.api.request(
        "PUT", f"{CLIENT}/rooms/{quote(room)}/send/{ev.MESSAGE_EVENT}/{txn}", content)
    event_id: str = out["event_id"]
    return event_id


async def _drain(t: MatrixDeliveryTransport, after: str | None) -> list[IncomingMessage]:
    return await t.fetch(t.client_id, after)


async def _until(t: MatrixDeliveryTransport, count: int) -> list[IncomingMessage]:
    """Fetch until ``count`` items arrived (a Welcome's room is joined, then synced)."""
    items: list[IncomingMessage] = []
    for _ in range(50):
        items += await _drain(t, items[-1].cursor if items else None)
        if len(items) >= count:
            break
        await asyncio.sleep(0.1)
    return items


def _group(identity: str) -> Group:
    suite = get_suite(1)
    return Group.create(1, Credential.basic(identity.encode()),
                        suite.generate_signature_key_pair()[0], now=NOW)


@async_test
async def test_bridge_relays_hub_items_controls_and_welcomes(
        tmp_path: Path, homeserver: Homeserver) -> None:
    users = {n: homeserver.user(n) for n in ("alice", "bob", "bridge", "dave")}
    ts = {n: await _connect(homeserver, u, tmp_path, n) for n, u in users.items()}
    alice, bob, bridge, dave = (ts[n] for n in ("alice", "bob", "bridge", "dave"))
    try:
        assert isinstance(bridge, RelayTransport) and bridge.network == "matrix"
        group = _group(alice.identity)
        gid = group.group_id
        info_at_0 = group.group_info()
        await alice.subscribe(alice.client_id, gid)
        room = alice.room_id(gid)
        # bob is invited the plain way (no reason): his subscribe finds the room by topic
        await alice.api.request("POST", f"{CLIENT}/rooms/{quote(room or '')}/invite",
                                {"user_id": bob.matrix_user_id})
        await bob.subscribe(bob.client_id, gid)
        await alice.admit(gid, bridge.identity)
        await bridge.subscribe(bridge.client_id, gid)
        assert bob.room_id(gid) == bridge.room_id(gid) == room  # no second room
        levels = await _levels(alice, gid)
        assert level_of(levels, bridge.matrix_user_id) == 100

        # a member's offer reaches the bridge with the member's identity
        offer = group.encrypt(b"offer")
        await alice.submit(gid, 0, offer, is_commit=False, sender=alice.client_id)
        got = [i for i in await _drain(bridge, None) if i.kind is MessageKind.GROUP]
        assert [(i.payload, i.sender, i.sender_identity, i.relay_seq) for i in got] == [
            (offer, alice.client_id, alice.identity, None)]
        bridge_cursor = got[-1].cursor

        # hub items, one over the inline limit (media), in order at both members
        small, large = group.encrypt(b"hub 1"), group.encrypt(b"x" * 60_000)
        assert len(large) > ev.INLINE_LIMIT
        p1 = await bridge.relay_group(gid, small, seq=1, sender_identity="xmpp:carol@x",
                                      sender="xmpp:carol@x/phone")
        p2 = await bridge.relay_group(gid, large, seq=2, sender_identity=alice.identity)
        assert p1 is not None and p2 is not None and p2 > p1
        # idempotent: relaying the same item again is the same event
        assert await bridge.relay_group(gid, small, seq=1, sender_identity="xmpp:carol@x",
                                        sender="xmpp:carol@x/phone") == p1
        for member in (alice, bob):
            items = [i for i in await _drain(member, None)
                     if i.kind is MessageKind.GROUP and i.relay_seq is not None]
            assert [(i.payload, i.relay_seq, i.relayed_for, i.sender, i.sender_identity,
                     i.position) for i in items] == [
                (small, 1, "xmpp:carol@x", "xmpp:carol@x/phone", bridge.identity, p1),
                (large, 2, alice.identity, None, bridge.identity, p2)]

        # forged relay fields are delivered with the forger's own identity; malformed
        # ones make the event malformed
        alice_cursor = (await _drain(alice, None))[-1].cursor
        forged = group.encrypt(b"forged")
        await _post(bob, gid, ev.message_content(
            ev.Carried(inline=forged), bob.device_id,
            ev.Relay(7, bridge.identity, bridge.client_id)), "forged1")
        bad = ev.message_content(ev.Carried(inline=group.encrypt(b"bad")), bob.device_id)
        bad["relay"] = {"seq": -1, "sender_identity": alice.identity}
        bad_id = await _post(bob, gid, bad, "forged2")
        [item] = await _drain(alice, alice_cursor)
        assert (item.payload, item.sender_identity, item.relay_seq, item.relayed_for) == (
            forged, bob.identity, 7, bridge.identity)
        assert any(e == bad_id and "relay.seq" in r for e, r in alice.rejections())
        alice_cursor = item.cursor

        # control messages both ways, a large one, never taken for anything else
        await alice.send_control(bridge.identity, b'{"op": "claim"}')
        big = b"{" + b"7" * 120_000 + b"}"
        await bridge.send_control(alice.identity, big)
        got = [i for i in await _drain(bridge, bridge_cursor)
               if i.kind is MessageKind.CONTROL]
        assert [(i.payload, i.sender, i.sender_identity, i.group_id) for i in got] == [
            (b'{"op": "claim"}', alice.client_id, alice.identity, None)]
        items = await _drain(alice, alice_cursor)
        assert [(i.kind, i.payload, i.sender, i.sender_identity) for i in items] == [
            (MessageKind.CONTROL, big, bridge.client_id, bridge.identity)]

        # an offline recipient gets a control message at its next fetch after restart
        bob_cursor = (await _drain(bob, None))[-1].cursor
        await bob.close()
        await bridge.send_control(bob.identity, b"while you were away")
        bob = ts["bob"] = await _connect(homeserver, users["bob"], tmp_path, "bob")
        items = await _drain(bob, bob_cursor)
        assert [(i.kind, i.payload, i.sender_identity) for i in items] == [
            (MessageKind.CONTROL, b"while you were away", bridge.identity)]
        assert await _drain(bob, items[-1].cursor) == []

        # the bridge adds a user of its network: claim, relay the Commit, Welcome
        suite = get_suite(1)
        dave_sk, _ = suite.generate_signature_key_pair()
        kp, kp_priv = create_key_package(suite, Credential.basic(dave.identity.encode()),
                                         dave_sk, now=NOW)
        encoded = MLSMessage.of(kp).encode()
        await dave.publish_key_packages(dave.client_id, dave.identity, [KeyPackageEntry(
            suite.make_key_package_ref(kp.encode()), encoded)])
        [claimed] = await bridge.claim_user_key_packages(dave.identity)
        assert claimed.client_id == dave.client_id
        claimed_kp = MLSMessage.decode(claimed.key_package).key_package
        assert claimed_kp == kp
        result = group.commit([Add(claimed_kp)], now=NOW)
        assert result.welcome is not None
        position = await bridge.relay_group(gid, result.commit, seq=3,
                                            sender_identity=alice.identity)
        group.merge_pending_commit()
        await bridge.send_welcome([dave.client_id], result.welcome, gid, position)
        after = group.encrypt(b"after the add")
        await bridge.relay_group(gid, after, seq=4, sender_identity=alice.identity)
        items = await _until(dave, 2)
        assert [i.kind for i in items] == [MessageKind.WELCOME, MessageKind.GROUP]
        assert dave.room_id(gid) == room and items[1].relay_seq == 4
        joined = Group.join(items[0].payload, kp, kp_priv, now=NOW)
        assert joined.epoch_authenticator == group.epoch_authenticator

        # GroupInfo mirrored by the bridge (not an MLS member, signed by alice): taken
        # by readers that trust the bridge as a relayer, newest valid wins; a reader
        # that does not (bob) drops it and takes alice's own
        await bridge.publish_group_info(gid, 1, group.group_info())
        await alice.publish_group_info(gid, 0, info_at_0)
        alice.trusted_relayers.add(bridge.identity)
        assert await alice.fetch_group_info(gid) == (group.group_info(), None)
        assert await bob.fetch_group_info(gid) == (info_at_0, None)
        assert bob.drops.counts["group-info-wrong-signer"] == 1
    finally:
        for t in ts.values():
            await t.close()


@async_test
async def test_policy_sync_keeps_the_bridge_at_level_100(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    bridge_user = homeserver.user("bridge")
    bridge = await _connect(homeserver, bridge_user, tmp_path, "bridge")
    try:
        alice = await net.add("alice", bridge=bridge_user)
        await net.add("bob")
        ident = net.identity("alice").encode()
        gid = await alice.create_group(policy=RoomPolicy.build({ident: Role.ADMIN}))
        await alice.add_members(gid, [net.identity("bob")])
        ta = net.transports["alice"]
        await ta.admit(gid, bridge.identity)
        await bridge.subscribe(bridge.client_id, gid)
        sync = PolicySync(alice, ta)
        # a policy that does not name the bridge: bob becomes moderator, the bridge
        # keeps 100
        await alice.set_policy(gid, RoomPolicy.build({ident: Role.ADMIN,
                                                      net.identity("bob").encode():
                                                      Role.MODERATOR}))
        assert await sync.reconcile(gid)
        levels = await _levels(ta, gid)
        assert level_of(levels, net.users["bob"]) == 50
        assert level_of(levels, bridge_user) == 100
        # a policy that bans the bridge account: neither banned nor demoted
        await alice.set_policy(gid, RoomPolicy.build({
            ident: Role.ADMIN, f"matrix:{bridge_user}".encode(): Role.BANNED}))
        assert await sync.reconcile(gid)
        levels = await _levels(ta, gid)
        assert level_of(levels, bridge_user) == 100 and level_of(levels, net.users["bob"]) == 0
        room = ta.room_id(gid)
        member = await ta.api.request(
            "GET", f"{CLIENT}/rooms/{quote(room or '')}/state/m.room.member/"
            f"{quote(bridge_user)}")
        assert member["membership"] == "join"
    finally:
        await bridge.close()
        await net.close()


@async_test
async def test_an_invite_naming_another_group_is_not_followed(
        tmp_path: Path, homeserver: Homeserver) -> None:
    users = {n: homeserver.user(n) for n in ("mallory", "bridge")}
    ts = {n: await _connect(homeserver, u, tmp_path, n) for n, u in users.items()}
    mallory, bridge = ts["mallory"], ts["bridge"]
    try:
        bait, target = b"\x01" * 16, b"\x02" * 16
        await mallory.subscribe(mallory.client_id, bait)
        room = mallory.room_id(bait)
        # the invite claims the room is the target group's; its state binds it to bait
        await mallory.api.request("POST", f"{CLIENT}/rooms/{quote(room or '')}/invite",
                                  {"user_id": bridge.matrix_user_id,
                                   "reason": ev.group_hint(target)})
        await bridge.subscribe(bridge.client_id, target)
        assert bridge.room_id(target) not in (None, room)  # its own, new room
        assert bridge.room_id(bait) is None
        assert any(e == room and "invite named" in r for e, r in bridge.rejections())
        assert bridge.drops.counts["invite-wrong-group"] == 1  # a WARNING naming mallory
        member = await mallory.api.request(
            "GET", f"{CLIENT}/rooms/{quote(room or '')}/state/m.room.member/"
            f"{quote(bridge.matrix_user_id)}")
        assert member["membership"] == "leave"  # joined to check, then left
    finally:
        for t in ts.values():
            await t.close()
