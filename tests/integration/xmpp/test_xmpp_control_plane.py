"""The control plane attacked as an attacker would, on a real Prosody (docs/xmpp.md
"KeyPackages", "Welcomes", "GroupInfo"): ordinary accounts in no room send claim notices
and Welcomes straight to a victim, try to post into a members-only room and to write on
its KeyPackage node; a room member posts fake GroupInfo. After every attack the victim's
KeyPackages are still there, real traffic still flows, and each drop was counted and
logged at WARNING naming the attacker."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from slixmpp import JID

from mls_client import Settings
from mls_client.events import ClientEvent, MessageRejected, RemovedFromGroup
from mls_client.settings import KeyPackageSettings
from mls_core.framing import MLSMessage
from tests.servers.prosody import ProsodyServer
from tests.transports.xmpp_mls import at_epoch, mls_group, naming, throwaway_welcome
from transports.group_info import check_group_info
from transports.xmpp.plugin import MUC_USER_NS, PUBSUB_NS, XmppError
from transports.xmpp.stanza import NS, Envelope, Kind, encode_group_info, room_localpart
from transports.xmpp.transport import OWN, XmppDeliveryTransport

from .helpers import PASSWORD, XNet, xmpp_settings, xmpp_test

DEFENCE = "mls_bridge.defence"


class PoolNet(XNet):
    """XNet whose devices keep ``pool`` one-use KeyPackages (the default 4 for others)."""

    def __init__(self, server: ProsodyServer, root: Path, pools: dict[str, int]) -> None:
        super().__init__(server, root)
        self.pools = pools

    def settings(self, name: str) -> Settings:
        return Settings(state_dir=self.root / name, poll_interval=0.05,
                        key_packages=KeyPackageSettings(pool_size=self.pools.get(name, 4),
                                                        threshold=2))


async def node(viewer: XmppDeliveryTransport,
               owner: XmppDeliveryTransport) -> tuple[set[str], set[str]]:
    """(one-use refs, last-resort refs) on ``owner``'s KeyPackage node, fetched by
    ``viewer`` as anyone may (the node is open)."""
    items = await viewer._items(owner.bare, owner.device)
    return ({r for r, (_, last) in items.items() if not last},
            {r for r, (_, last) in items.items() if last})


def claim(stranger: XmppDeliveryTransport, owner: XmppDeliveryTransport, ref: str,
          payload: bytes = b"") -> None:
    """A claim notice as ``claim_key_package`` sends it, straight to the owner's account."""
    stranger.plugin.send_envelope(JID(owner.bare), "chat",
                                  Envelope(Kind.CLAIM, payload, owner.device, ref=ref),
                                  chunk_size=1024, max_payload=1024)


def judged(owner: XmppDeliveryTransport) -> int:
    """Claim notices the owner has acted on or dropped so far."""
    return owner.key_package_claims + sum(
        n for reason, n in owner.drops.counts.items() if reason.startswith("claim-"))


async def until(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    assert callable(check)
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def warnings_from(caplog: pytest.LogCaptureFixture, user: str) -> list[str]:
    """The XMPP transport's WARNING drop lines naming ``user`` (the client's own drop
    lines, ``client: dropped ...``, are not the transport's)."""
    return [r.getMessage() for r in caplog.records
            if r.name == DEFENCE and r.levelno == logging.WARNING
            and r.getMessage().startswith("xmpp: ") and f"from {user}:" in r.getMessage()]


async def add_and_talk(net: XNet, adder: str, name: str) -> bytes:
    """``adder`` makes a group and adds ``name``; both exchange a message."""
    gid = await net[adder].create_group()
    result = await net[adder].add_members(gid, [net.user(name)])
    assert result.missing_users == ()
    await net.joined(name, gid)
    await net[adder].send(gid, b"hello " + name.encode())
    await net[name].send(gid, b"hello " + adder.encode())
    await net.settle(adder, name)
    assert b"hello " + name.encode() in net.received(name, gid)
    assert b"hello " + adder.encode() in net.received(adder, gid)
    return gid


async def pool_refilled(net: XNet, name: str, size: int) -> None:
    """The victim's client tops its pool up again (it is not drained for good)."""
    transport = net.transports[name]

    async def full() -> bool:
        return await transport.key_package_count(transport.client_id) >= size

    await net.wait_for(full, name)


@xmpp_test
async def test_a_stranger_cannot_drain_bobs_key_packages(
        prosody: ProsodyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob")
        bob_t = net.transports["bob"]
        eve = await net.transport("eve")  # an ordinary account, in no room
        net.transports["eve"] = eve
        one_use, last = await node(eve, bob_t)
        assert (len(one_use), len(last)) == (4, 1)
        with caplog.at_level(logging.WARNING, logger=DEFENCE):
            for _ in range(3):
                for ref in sorted(one_use | last):
                    claim(eve, bob_t, ref)
            await until(lambda: judged(bob_t) == 15)
        after_one_use, after_last = await node(eve, bob_t)
        # the claimant's burst (3) and no more; the last-resort item stays
        assert after_last == last and after_one_use < one_use
        assert len(after_one_use) == 4 - 3 and bob_t.key_package_claims == 3
        # round 1: 3 taken, 1 over the limit, the last-resort refused; then the taken
        # ones are gone (stale), the fourth still over the limit
        assert bob_t.drops.snapshot() == {"claim-rate-limited": 3, "claim-last-resort": 3,
                                          "claim-stale-ref": 6}
        lines = warnings_from(caplog, eve.user_id)
        assert len(lines) == 3 and all("dropped claim" in line for line in lines)
        # alice can still add bob, and they talk
        await add_and_talk(net, "alice", "bob")
        await pool_refilled(net, "bob", 4)
        assert (await node(eve, bob_t))[1] == last
    finally:
        await net.close()


@xmpp_test
async def test_five_strangers_hit_the_device_wide_bucket(
        prosody: ProsodyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = PoolNet(prosody, tmp_path, {"bob": 14})
    try:
        await net.add("alice", "bob")
        bob_t = net.transports["bob"]
        strangers = [await net.transport(f"s{i}") for i in range(5)]
        for i, stranger in enumerate(strangers):
            net.transports[f"s{i}"] = stranger
        one_use, last = await node(strangers[0], bob_t)
        assert (len(one_use), len(last)) == (14, 1)
        with caplog.at_level(logging.WARNING, logger=DEFENCE):
            for stranger in strangers:
                for ref in sorted(one_use | last):
                    claim(stranger, bob_t, ref)
            await until(lambda: judged(bob_t) == 5 * 15)
        after_one_use, after_last = await node(strangers[0], bob_t)
        # 5 x 3 per claimant would be 15: the device-wide burst of 10 holds
        assert bob_t.key_package_claims == 10 and len(after_one_use) == 14 - 10
        assert after_last == last
        counts = bob_t.drops.counts
        assert counts["claim-last-resort"] == 5
        assert counts["claim-rate-limited"] + counts["claim-stale-ref"] == 5 * 14 - 10
        assert counts["claim-rate-limited"] >= 5 * 3 - 10  # the per-claimant share left
        assert all(warnings_from(caplog, s.user_id) for s in strangers)
        await add_and_talk(net, "alice", "bob")
        # alice's claim took one more; the rest, and the last-resort item, are there
        assert await bob_t.key_package_count(bob_t.client_id) == 14 - 10 - 1
        assert (await node(strangers[0], bob_t))[1] == last
    finally:
        await net.close()


@xmpp_test
async def test_unknown_and_malformed_claims_change_nothing(
        prosody: ProsodyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob")
        bob_t = net.transports["bob"]
        eve = await net.transport("eve")
        net.transports["eve"] = eve
        before = await node(eve, bob_t)
        with caplog.at_level(logging.WARNING, logger=DEFENCE):
            claim(eve, bob_t, os.urandom(32).hex())  # a ref bob never published
            claim(eve, bob_t, sorted(before[0])[0], payload=b"extra")  # malformed
            await until(lambda: judged(bob_t) == 2)
        assert bob_t.drops.snapshot() == {"claim-unknown-ref": 1, "claim-malformed": 1}
        assert await node(eve, bob_t) == before and bob_t.key_package_claims == 0
        assert len(warnings_from(caplog, eve.user_id)) == 2
        await add_and_talk(net, "alice", "bob")
    finally:
        await net.close()


@xmpp_test
async def test_welcomes_from_a_stranger_follow_no_room(
        prosody: ProsodyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob")
        alice_t, bob_t = net.transports["alice"], net.transports["bob"]
        eve = await net.transport("eve")
        net.transports["eve"] = eve
        target = await net["alice"].create_group()  # a real group bob is not in
        before = await node(eve, bob_t)
        bob_jid = JID(bob_t.client_id)
        not_bobs, _ = throwaway_welcome(bob_t.user_id)  # to a KeyPackage bob never had
        forged = naming(not_bobs, bytes.fromhex(sorted(before[0])[0]))  # names bob's
        with caplog.at_level(logging.WARNING, logger=DEFENCE):
            for payload, group in ((b"not a welcome", os.urandom(16)), (not_bobs, target),
                                   (forged, target)):
                eve.plugin.send_envelope(bob_jid, "chat", Envelope(
                    Kind.WELCOME, payload, bob_t.device, group, after="bogus-archive-id"),
                    chunk_size=1024, max_payload=1 << 16)

            async def rejected() -> bool:
                return any(isinstance(e, MessageRejected) for e in net.events["bob"])

            await net.wait_for(rejected, "bob")
        assert bob_t.drops.snapshot() == {"welcome-undecodable": 1, "welcome-not-for-us": 1}
        assert len(warnings_from(caplog, eve.user_id)) == 2
        # the one naming bob's KeyPackage reached his client, which could not open it
        # and says so itself
        assert sum(isinstance(e, MessageRejected) for e in net.events["bob"]) == 1
        assert net["bob"].stats.dropped.get("mls-decryption-error") == 1
        assert any(r.getMessage().startswith(f"client: dropped welcome from {eve.user_id}")
                   for r in caplog.records)
        await net.settle("bob")
        # bob follows no room, remembers none, and his KeyPackages are all there
        assert list(bob_t._sources) == [OWN] and not bob_t._joined
        assert await bob_t.plugin.pep_items(None, bob_t._rooms_node) == []
        assert await node(eve, bob_t) == before
        # the real Welcome still works, from the Commit that added him
        gid = await add_and_talk(net, "alice", "bob")
        assert list(bob_t._sources) == [OWN, bob_t.room_jid(gid)]
        assert alice_t.room_jid(target) not in bob_t._sources
    finally:
        await net.close()


@xmpp_test
async def test_the_server_refuses_a_stranger_in_the_room_and_on_the_node(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob")
        alice_t, bob_t = net.transports["alice"], net.transports["bob"]
        gid = await add_and_talk(net, "alice", "bob")
        eve = await net.transport("eve")
        net.transports["eve"] = eve
        room = JID(eve.room_jid(gid))
        with pytest.raises(XmppError) as joining:
            await eve.plugin.join_room(room, eve.client_id)
        assert joining.value.condition == "registration-required"
        errors: list[str] = []
        eve.xmpp.add_event_handler(
            "message_error", lambda m: errors.append(str(m["error"]["condition"])))
        group_info, _ = mls_group(alice_t.user_id, gid, epochs=50)
        for env in (Envelope(Kind.GROUP, b"\x00\x01garbage", eve.device, gid, 1),
                    Envelope(Kind.GROUP_INFO, encode_group_info(group_info.group_info(),
                                                                None), eve.device, gid, 50)):
            eve.plugin.send_envelope(room, "groupchat", env, chunk_size=1024,
                                     max_payload=1 << 16)
        await until(lambda: len(errors) == 2)
        assert errors == ["not-acceptable", "not-acceptable"]

        # bob's KeyPackage node: only bob may publish or retract
        before = await node(eve, bob_t)
        kp_node = f"{NS}:key-packages:{bob_t.device}"
        for op in ("publish", "retract"):
            iq = eve.xmpp.make_iq_set(ito=JID(bob_t.bare))
            pubsub = ET.Element(f"{{{PUBSUB_NS}}}pubsub")
            action = ET.SubElement(pubsub, f"{{{PUBSUB_NS}}}{op}", {"node": kp_node})
            item = ET.SubElement(action, f"{{{PUBSUB_NS}}}item",
                                 {"id": sorted(before[0])[0] if op == "retract" else "ab" * 32})
            if op == "publish":
                ET.SubElement(item, f"{{{NS}}}key-package", {"last-resort": "false"}).text = \
                    "AAEAAQ=="
            iq.xml.append(pubsub)
            with pytest.raises(XmppError) as refused:
                await eve.plugin._send_iq(iq, f"{op} on bob's node")
            assert refused.value.condition == "forbidden"
        assert await node(eve, bob_t) == before
        # nothing of eve's reached anyone; the group goes on
        await net.settle("alice", "bob")
        for t in (alice_t, bob_t):
            assert all(i.sender_identity != eve.user_id
                       for i in await t.fetch(t.client_id))
        info, _ = await bob_t.fetch_group_info(gid)
        parsed = MLSMessage.decode(info).group_info
        assert parsed is not None and parsed.group_context.epoch == 1
        await net["bob"].send(gid, b"still private")
        await net.settle("alice", "bob")
        assert b"still private" in net.received("alice", gid)
    finally:
        await net.close()


@xmpp_test
async def test_a_member_cannot_spoil_the_group_info(
        prosody: ProsodyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob", "mallory")
        alice_t, bob_t, mallory_t = (net.transports[n] for n in ("alice", "bob", "mallory"))
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob"), net.user("mallory")])
        await net.joined("bob", gid)
        await net.joined("mallory", gid)
        await net.settle()
        epoch = await net["alice"].epoch(gid)
        room = JID(mallory_t.room_jid(gid))

        # eve is a room member (any member may grant that) but no MLS member: she posts,
        # as herself, a GroupInfo of a self-made group with the same id at epoch 1,000,000
        eve = await net.transport("eve")
        net.transports["eve"] = eve
        await alice_t.plugin.set_affiliation(room, eve.bare, "member")
        own_fake, own_key = mls_group(eve.user_id, gid)
        eves = at_epoch(own_fake.group_info(), 1_000_000, own_key)
        assert check_group_info(gid, eves, None, writer=eve.user_id).epoch == 1_000_000
        await eve.publish_group_info(gid, 1_000_000, eves)

        # mallory, a member, posts a GroupInfo of a self-made group with the same id,
        # at epoch 1,000,000, "signed" by alice's identity with mallory's key ...
        fake, fake_key = mls_group(alice_t.user_id, gid)
        forged = at_epoch(fake.group_info(), 1_000_000, fake_key)
        assert check_group_info(gid, forged, None, writer=None).epoch == 1_000_000
        other, _ = mls_group(mallory_t.user_id, b"another group")

        def post(payload: bytes, epoch: int = 1) -> None:
            mallory_t.plugin.send_envelope(room, "groupchat", Envelope(
                Kind.GROUP_INFO, payload, mallory_t.device, gid, epoch),
                chunk_size=96 * 1024, max_payload=1 << 20)

        # ... and garbage: more than a page of the archive
        post(encode_group_info(forged, None), 1_000_000)
        post(b"\x00\x00")
        post(encode_group_info(b"\x00\x01garbage", None))
        post(encode_group_info(other.group_info(), None))
        for i in range(110):
            post(encode_group_info(os.urandom(40 + i), None), 1_000_000 + i)
        await mallory_t.publish_group_info(gid, 2_000_000, forged)  # waits for the room
        with caplog.at_level(logging.WARNING, logger=DEFENCE):
            info, tree = await bob_t.fetch_group_info(gid)
        checked = check_group_info(gid, info, tree, writer=alice_t.user_id)
        assert (checked.epoch, checked.signer) == (epoch, alice_t.user_id)
        drops = bob_t.drops.snapshot()
        assert drops["group-info-wrong-signer"] == 2 and drops["group-info-malformed"] == 1
        assert drops["group-info-wrong-group"] == 1
        assert drops["group-info-invalid"] == 111
        assert drops["group-info-unlinked"] == 1  # eve's, and no real one
        lines = warnings_from(caplog, mallory_t.user_id)
        assert {line.split(": ")[2].split(" ")[0] for line in lines} == {
            "group-info-wrong-signer", "group-info-malformed", "group-info-wrong-group",
            "group-info-invalid"}
        [eve_line] = warnings_from(caplog, eve.user_id)
        assert "group-info-unlinked" in eve_line and "epoch 1000000" in eve_line
        # a reader with no state at all (a new device) reads the archive from its start
        # and reaches the same GroupInfo
        fresh = await net.transport("bob.fresh")
        net.transports["bob.fresh"] = fresh
        assert await fresh.fetch_group_info(gid) == (info, tree)
        assert fresh.drops.snapshot()["group-info-unlinked"] == 1

        # a real Commit: its GroupInfo is the newest valid one
        await net["alice"].update(gid)
        await net.settle()
        info, tree = await bob_t.fetch_group_info(gid)
        assert check_group_info(gid, info, tree, writer=alice_t.user_id).epoch == epoch + 1
        # recovery by external Commit from the published GroupInfo lands in the real group
        new_epoch = await net["bob"].recover_group(gid)
        assert new_epoch == epoch + 2
        await net.settle()
        await net["bob"].send(gid, b"bob is back")
        await net["alice"].send(gid, b"welcome back")
        await net.settle()
        assert b"bob is back" in net.received("alice", gid)
        assert b"bob is back" in net.received("mallory", gid)
        assert b"welcome back" in net.received("bob", gid)
        await net.agree(gid, ["alice", "bob", "mallory"])
        assert bob_t.drops.snapshot()["group-info-unlinked"] == 1
    finally:
        await net.close()


@xmpp_test
async def test_a_forged_room_kick_removes_nobody(
        prosody: ProsodyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An account named like the room (``mls-<hex group id>@<domain>``, not on the MUC
    service) sends bob the occupant presence of a kick of alice (XEP-0045 §9.1, status
    307). Taken as the room's word, bob (the lowest-index member left) would remove
    alice from the MLS group."""
    net = XNet(prosody, tmp_path)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await net.add("alice", "bob")
        bob_t = net.transports["bob"]
        gid = await add_and_talk(net, "alice", "bob")
        seen: dict[str, list[ClientEvent]] = {"alice": [], "bob": []}
        for name in ("alice", "bob"):
            async def record(event: ClientEvent, name: str = name) -> None:
                seen[name].append(event)

            tasks.append(asyncio.ensure_future(net.transports[name].plugin.run_client(
                net[name], stop, record)))
        local = room_localpart(gid)
        await asyncio.to_thread(prosody.register, local, PASSWORD)
        fake_room = await XmppDeliveryTransport.connect(
            xmpp_settings(prosody, f"{local}@{prosody.domain}/{net.jid('alice')}"))
        net.transports["fake-room"] = fake_room
        with caplog.at_level(logging.WARNING, logger=DEFENCE):
            for kind in ("available", "unavailable"):
                pres = fake_room.xmpp.make_presence(pto=JID(bob_t.client_id))
                if kind == "unavailable":
                    pres["type"] = "unavailable"
                x = ET.SubElement(pres.xml, f"{{{MUC_USER_NS}}}x")
                ET.SubElement(x, f"{{{MUC_USER_NS}}}item", {
                    "jid": net.jid("alice"), "affiliation": "none", "role": "none"})
                ET.SubElement(x, f"{{{MUC_USER_NS}}}status", {"code": "307"})
                pres.send()
            await until(lambda: bob_t.drops.counts["muc-presence-forged"] == 2)
        assert len(warnings_from(caplog, fake_room.user_id)) == 1
        await asyncio.sleep(0.5)
        assert not any(isinstance(e, RemovedFromGroup) for e in seen["alice"])
        assert len(await net["bob"].members(gid)) == 2
        assert local + "@" + prosody.domain not in bob_t.plugin.occupants
        await net["alice"].send(gid, b"still here")

        async def delivered() -> bool:
            return any(getattr(e, "data", b"") == b"still here" for e in seen["bob"])

        await net.wait_for(delivered)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await net.close()


@xmpp_test
async def test_forged_archive_results_reach_nobody(
        prosody: ProsodyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """eve sends bob MAM ``<result/>`` messages (XEP-0313 §4.2) carrying a control body
    "from the bridge" and a Welcome, guessing query ids, while bob reads his archive:
    a result counts only from the archive queried."""
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob")
        bob_t = net.transports["bob"]
        eve = await net.transport("eve")
        net.transports["eve"] = eve
        welcome, _ = throwaway_welcome(bob_t.user_id)
        forged = [Envelope(Kind.CONTROL, b'{"op": "forged"}', "main"),
                  Envelope(Kind.WELCOME, welcome, bob_t.device, os.urandom(16))]

        def inject(n: int) -> None:
            msg = eve.xmpp.make_message(mto=JID(bob_t.client_id))
            result = ET.SubElement(msg.xml, "{urn:xmpp:mam:2}result",
                                   {"queryid": f"mls{n % 300}", "id": f"forged-{n}"})
            fwd = ET.SubElement(result, "{urn:xmpp:forward:0}forwarded")
            inner = ET.SubElement(fwd, "{jabber:client}message", {
                "from": net.jid("bridge"), "to": bob_t.bare, "type": "chat"})
            inner.append(forged[n % 2].chunks()[0])
            msg.send()

        async def read_own_archive() -> None:
            for _ in range(100):
                await bob_t.key_package_count(bob_t.client_id)

        with caplog.at_level(logging.WARNING, logger=DEFENCE):
            reader = asyncio.ensure_future(read_own_archive())
            for n in range(900):
                inject(n)
                if n % 50 == 0:
                    await asyncio.sleep(0.01)
            await reader
            await until(lambda: bob_t.drops.counts["mam-result-forged"] == 900)
        assert len(warnings_from(caplog, eve.user_id)) == 1
        assert await bob_t.fetch(bob_t.client_id) == []
        assert all(not aid.startswith("forged-") for aid in bob_t._sources[OWN].ids)
        await add_and_talk(net, "alice", "bob")
    finally:
        await net.close()
