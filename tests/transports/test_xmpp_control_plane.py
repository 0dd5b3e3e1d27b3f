"""The XMPP transport's control plane without a server (docs/xmpp.md "KeyPackages",
"Welcomes", "GroupInfo"): who may make a device retract a KeyPackage, follow a room or
take a GroupInfo, and that every refusal is counted and logged. The server paths are in
tests/integration/xmpp/test_xmpp_control_plane.py."""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from slixmpp import JID

from mls_core.framing import ContentType, MLSMessage, PrivateMessage
from tests.transports.xmpp_mls import at_epoch, mls_group, naming, throwaway_welcome
from transports.base import KeyPackageEntry, MessageKind, UnknownGroupError
from transports.defence import RateLimiter
from transports.xmpp.plugin import MUC_USER_NS, PUBSUB_NS, ArchivedMessage, MamPage, XmppError
from transports.xmpp.settings import XmppSettings
from transports.xmpp.stanza import NS, Envelope, Kind, encode_group_info
from transports.xmpp.transport import (
    KP_NODE_PREFIX,
    OWN,
    PUBLISHED_NODE_PREFIX,
    XmppDeliveryTransport,
    _Source,
    decode_cursor,
)

GID = bytes(range(8))
ROOM = f"mls-{GID.hex()}@conference.example.org"
ME = "alice@example.org"
NODE = f"{KP_NODE_PREFIX}phone"
STRANGER = "mallory@evil.example"


class FakeServer:
    """What the transport asks the server, in memory: our PEP nodes, the rooms we join
    and one room archive (MAM with RSM paging, ``item-not-found`` for unknown ids)."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, ET.Element]] = {}
        self.retracted: list[str] = []
        self.joined: list[str] = []
        self.archive: list[ArchivedMessage] = []
        #: the room's owner list (bare JIDs) and every ``after`` asked of its archive
        self.owners: list[str] = ["bob@example.org"]
        self.afters: list[str | None] = []

    async def affiliations(self, room: JID, affiliation: str) -> list[str]:
        assert (str(room), affiliation) == (ROOM, "owner")
        return list(self.owners)

    async def pep_items(self, owner: object, node: str) -> list[ET.Element]:
        out = []
        for item_id, payload in self.nodes.get(node, {}).items():
            item = ET.Element(f"{{{PUBSUB_NS}}}item", {"id": item_id})
            item.append(payload)
            out.append(item)
        return out

    async def pep_publish(self, node: str, item_id: str, payload: ET.Element,
                          options: dict[str, str]) -> None:
        self.nodes.setdefault(node, {})[item_id] = payload

    async def pep_retract(self, node: str, item_ids: list[str]) -> None:
        for item_id in item_ids:
            self.nodes.get(node, {}).pop(item_id, None)
            self.retracted.append(item_id)

    async def join_room(self, room: JID, nick: str) -> bool:
        self.joined.append(str(room))
        return False

    async def mam_page(self, archive: object, *, after: str | None = None,
                       before: str | None = None, last_page: bool = False,
                       max_items: int = 100) -> MamPage:
        if archive is None or str(archive) != ROOM:
            return MamPage([], True)
        if before is None and not last_page:
            self.afters.append(after)
        ids = [e.archive_id for e in self.archive]
        for known in (after, before):
            if known is not None and known not in ids:
                raise XmppError("MAM query failed: item-not-found", "item-not-found")
        if after is not None:
            start = ids.index(after) + 1
            page = self.archive[start:start + max_items]
        elif before is not None:
            end = ids.index(before)
            page = self.archive[max(0, end - max_items):end]
        elif last_page:
            page = self.archive[-max_items:]
        else:
            page = self.archive[:max_items]
        return MamPage(page, len(page) < max_items)

    def one_use(self) -> list[str]:
        return [i for i, p in self.nodes.get(NODE, {}).items() if p.get("last-resort") != "true"]

    def last_resort(self) -> list[str]:
        return [i for i, p in self.nodes.get(NODE, {}).items() if p.get("last-resort") == "true"]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


def make(loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch,
         **settings: Any) -> tuple[XmppDeliveryTransport, FakeServer]:
    config = XmppSettings(jid=f"{ME}/phone", password=SecretStr("pw"),
                          muc_service="conference.example.org", **settings)
    transport = XmppDeliveryTransport(XmppDeliveryTransport.make_client(config), config)
    transport._sources[OWN] = _Source(OWN, None, None)
    server = FakeServer()
    for name in ("pep_items", "pep_publish", "pep_retract", "join_room", "mam_page",
                 "affiliations"):
        monkeypatch.setattr(transport.plugin, name, getattr(server, name))
    transport._online.set()
    return transport, server


@pytest.fixture
def served(loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[XmppDeliveryTransport, FakeServer]]:
    transport, server = make(loop, monkeypatch)
    yield transport, server
    loop.run_until_complete(transport.close())


def direct(env: Envelope, frm: str, aid: str, to: str = ME) -> ArchivedMessage:
    """A direct message in our account's archive."""
    msg = ET.Element("{jabber:client}message", {"from": frm, "to": to, "type": "chat"})
    msg.append(env.chunks()[0])
    return ArchivedMessage(aid, msg)


def notice(ref: str, frm: str, aid: str, payload: bytes = b"") -> ArchivedMessage:
    return direct(Envelope(Kind.CLAIM, payload, "phone", ref=ref), frm, aid)


def publish(transport: XmppDeliveryTransport, loop: asyncio.AbstractEventLoop,
            n: int) -> list[str]:
    """``n`` one-use KeyPackages and a last-resort one on our node; the refs (last-resort
    last)."""
    entries = [KeyPackageEntry(bytes([i + 1]) * 32, b"kp-%d" % i) for i in range(n)]
    entries.append(KeyPackageEntry(b"\xff" * 32, b"kp-last", last_resort=True))
    loop.run_until_complete(transport.publish_key_packages(
        transport.client_id, transport.user_id, entries))
    return [e.ref.hex() for e in entries]


def flood(transport: XmppDeliveryTransport, loop: asyncio.AbstractEventLoop,
          refs: list[str], frm: str, tag: str) -> None:
    """Claim notices from ``frm`` for every ref, then judge them."""
    for i, ref in enumerate(refs):
        transport._ingest(transport._sources[OWN], notice(ref, frm, f"{tag}-{i}"))
    loop.run_until_complete(transport._process_claims())


def test_a_stranger_cannot_drain_the_key_packages(
        served: tuple[XmppDeliveryTransport, FakeServer], loop: asyncio.AbstractEventLoop,
        caplog: pytest.LogCaptureFixture) -> None:
    transport, server = served
    refs = publish(transport, loop, 6)
    transport._own_read = True  # a live flood (not the first read of our archive)
    with caplog.at_level(logging.WARNING, logger="mls_bridge.defence"):
        for round_ in range(3):
            flood(transport, loop, refs, f"{STRANGER}/x", f"r{round_}")
    # the burst of 3 (the default), never the last-resort item
    assert server.last_resort() == [refs[-1]] and len(server.one_use()) == 3
    assert transport.key_package_claims == 3
    assert server.retracted == sorted(refs[:3])
    assert transport.drops.snapshot() == {"claim-rate-limited": 9, "claim-last-resort": 3,
                                          "claim-stale-ref": 6}
    # one WARNING per (sender, reason) per minute, naming the stranger
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all(f"from xmpp:{STRANGER}:" in line for line in lines)
    assert transport._stream == []  # claims never reach the client


def test_claims_refill_with_time_and_our_own_devices_are_not_limited(
        served: tuple[XmppDeliveryTransport, FakeServer],
        loop: asyncio.AbstractEventLoop) -> None:
    transport, server = served
    clock = [0.0]
    transport._claims_per = RateLimiter(6 / 3600, 3, clock=lambda: clock[0])
    refs = publish(transport, loop, 10)
    flood(transport, loop, refs[:4], "bob@example.org/tab", "b1")
    assert transport.key_package_claims == 3
    clock[0] = 600.0  # 6 per hour: one more token after ten minutes
    flood(transport, loop, refs[3:5], "bob@example.org/tab", "b2")
    assert transport.key_package_claims == 4
    assert transport.drops.counts["claim-rate-limited"] == 2
    # another device of our own account: only the node's content limits it
    flood(transport, loop, refs[4:], f"{ME}/laptop", "own")
    assert server.one_use() == [] and server.last_resort() == [refs[-1]]
    assert transport.key_package_claims == 10
    assert transport.drops.counts["claim-last-resort"] == 1


def test_a_failed_retraction_is_retried_and_counted_once_done(
        served: tuple[XmppDeliveryTransport, FakeServer], loop: asyncio.AbstractEventLoop,
        monkeypatch: pytest.MonkeyPatch) -> None:
    transport, server = served
    refs = publish(transport, loop, 3)

    async def offline(node: str, item_ids: list[str]) -> None:
        raise XmppError("retracting failed: not connected", "disconnected")

    monkeypatch.setattr(transport.plugin, "pep_retract", offline)
    flood(transport, loop, refs[:2], "bob@example.org/tab", "f")
    assert transport.key_package_claims == 0 and transport._retract == set(refs[:2])
    monkeypatch.setattr(transport.plugin, "pep_retract", server.pep_retract)
    loop.run_until_complete(transport._process_claims())
    assert transport.key_package_claims == 2 and server.one_use() == [refs[2]]
    assert transport.rejected == 0


def test_the_device_wide_bucket_holds_against_many_claimants(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    transport, server = make(loop, monkeypatch, claim_global_burst=5)
    try:
        refs = publish(transport, loop, 12)
        for n in range(4):
            flood(transport, loop, refs[3 * n:3 * n + 3], f"s{n}@evil.example/x", f"s{n}")
        assert transport.key_package_claims == 5 and len(server.one_use()) == 7
        assert transport.drops.counts["claim-rate-limited"] == 7
    finally:
        loop.run_until_complete(transport.close())


def test_the_bridge_claims_for_many_users_within_the_device_bucket(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    transport, server = make(loop, monkeypatch, bridge="bridge@example.org")
    try:
        refs = publish(transport, loop, 12)
        flood(transport, loop, refs[:-1], "bridge@example.org/relay", "b")
        assert transport.key_package_claims == 10  # the default device-wide burst
        assert len(server.one_use()) == 2
        assert transport.drops.snapshot() == {"claim-rate-limited": 2}
    finally:
        loop.run_until_complete(transport.close())


def test_unknown_and_malformed_claims_are_dropped(
        served: tuple[XmppDeliveryTransport, FakeServer],
        loop: asyncio.AbstractEventLoop) -> None:
    transport, server = served
    refs = publish(transport, loop, 2)
    own = transport._sources[OWN]
    transport._ingest(own, notice("ab" * 32, f"{STRANGER}/x", "u1"))  # never ours
    transport._ingest(own, notice(refs[0], f"{STRANGER}/x", "m1", payload=b"x"))
    with_group = Envelope(Kind.CLAIM, b"", "phone", GID, ref=refs[0])
    transport._ingest(own, direct(with_group, f"{STRANGER}/x", "m2"))
    bad_ref = notice(refs[0], f"{STRANGER}/x", "m3")
    el = bad_ref.message.find("{https://mlsbridge.org/protocol/xmpp/0}mls")
    assert el is not None
    el.set("ref", "NOT-HEX")
    transport._ingest(own, bad_ref)
    # a notice for another device of ours is that device's business
    other = direct(Envelope(Kind.CLAIM, b"", "laptop", ref=refs[0]), f"{STRANGER}/x", "d1")
    transport._ingest(own, other)
    loop.run_until_complete(transport._process_claims())
    assert transport.drops.snapshot() == {"claim-unknown-ref": 1, "claim-malformed": 2,
                                          "malformed-element": 1}
    assert len(server.one_use()) == 2 and transport.key_package_claims == 0
    # a notice judged once is not judged again when the archive is read again
    transport._ingest(own, notice("ab" * 32, f"{STRANGER}/x", "u1"))
    loop.run_until_complete(transport._process_claims())
    assert transport.drops.counts["claim-unknown-ref"] == 1


def test_an_unparsable_attribute_is_dropped_and_reading_goes_on(
        served: tuple[XmppDeliveryTransport, FakeServer]) -> None:
    """A group attribute of 5 base64url characters decodes to nothing: it used to raise
    out of the reader (binascii.Error), silently losing the rest of the page."""
    transport, _ = served
    own = transport._sources[OWN]
    bad = direct(Envelope(Kind.CONTROL, b"{}", "main"), f"{STRANGER}/x", "b1")
    el = bad.message.find("{https://mlsbridge.org/protocol/xmpp/0}mls")
    assert el is not None
    el.set("group", "AAAAA")
    transport._ingest(own, bad)
    transport._ingest(own, direct(Envelope(Kind.CONTROL, b"{}", "main"),
                                  "bridge@example.org/main", "b2"))
    assert transport.drops.snapshot() == {"malformed-element": 1}
    assert [i.kind for i in transport._stream] == [MessageKind.CONTROL]


def test_welcomes_reach_the_client_only_for_our_key_packages(
        served: tuple[XmppDeliveryTransport, FakeServer],
        loop: asyncio.AbstractEventLoop) -> None:
    transport, server = served
    own = transport._sources[OWN]
    welcome, entry = throwaway_welcome(transport.user_id)
    loop.run_until_complete(transport.publish_key_packages(
        transport.client_id, transport.user_id, [entry]))
    ours = entry.ref.hex()
    # recorded privately before it was published (a restart still knows it)
    assert ours in ET.tostring(server.nodes[f"{PUBLISHED_NODE_PREFIX}phone"][ours]).decode()
    theirs, _ = throwaway_welcome(transport.user_id)  # a KeyPackage we never published
    group_info, _ = mls_group(transport.user_id)
    for i, payload in enumerate((b"garbage", group_info.group_info(), theirs)):
        transport._ingest(own, direct(Envelope(Kind.WELCOME, payload, "phone", GID),
                                      f"{STRANGER}/x", f"w{i}"))
    forged = naming(theirs, entry.ref)  # names our KeyPackage: the client decides
    transport._ingest(own, direct(Envelope(Kind.WELCOME, forged, "phone", b"other-group"),
                                  f"{STRANGER}/x", "w3"))
    transport._ingest(own, direct(Envelope(Kind.GROUP, b"x", "phone", GID, 1),
                                  f"{STRANGER}/x", "w4"))
    assert transport.drops.snapshot() == {"welcome-undecodable": 2,
                                          "welcome-not-for-us": 1, "direct-wrong-kind": 1}
    assert [(i.kind, i.payload) for i in transport._stream] == [(MessageKind.WELCOME, forged)]
    # no room is followed on the word of a Welcome
    assert list(transport._sources) == [OWN] and server.joined == []

    # the real one: delivered; the room is followed from its ``after`` only on subscribe,
    # and the KeyPackage it used is retracted
    server.archive = [ArchivedMessage("c1", ET.Element("{jabber:client}message"))]
    transport._ingest(own, direct(Envelope(Kind.WELCOME, welcome, "phone", GID, after="c1"),
                                  "bob@example.org/tab", "w5"))
    assert transport._stream[-1].payload == welcome and ROOM not in transport._sources
    loop.run_until_complete(transport.subscribe(transport.client_id, GID))
    assert server.joined == [ROOM] and transport._sources[ROOM].base == "c1"
    assert server.one_use() == [] and transport.key_package_claims == 1


def test_a_welcome_cursor_resumes_the_room_after_the_join(
        served: tuple[XmppDeliveryTransport, FakeServer],
        loop: asyncio.AbstractEventLoop) -> None:
    """A resume from the Welcome's cursor reads the room from the Welcome's ``after``
    once we follow it, and still follows nothing if we do not."""
    transport, server = served
    own = transport._sources[OWN]
    welcome, entry = throwaway_welcome(transport.user_id)
    loop.run_until_complete(transport.publish_key_packages(
        transport.client_id, transport.user_id, [entry]))
    transport._ingest(own, direct(Envelope(Kind.WELCOME, welcome, "phone", GID, after="c1"),
                                  "bob@example.org/tab", "w1"))
    cursor = transport._stream[-1].cursor
    assert ROOM not in decode_cursor(cursor)  # named as pending, not as a source
    transport._welcomed.clear()
    loop.run_until_complete(transport._rebase(cursor, decode_cursor(cursor)))
    assert ROOM not in transport._sources and transport._welcomed[GID].after == "c1"
    # followed since (e.g. rejoined from our room list after a restart): from ``after``
    server.archive = [ArchivedMessage("c1", ET.Element("{jabber:client}message"))]
    transport._sources[ROOM] = _Source(ROOM, GID, None)
    loop.run_until_complete(transport._rebase(cursor, decode_cursor(cursor)))
    assert transport._sources[ROOM].base == "c1"


def room_item(aid: str, env: Envelope, real: str | None) -> ArchivedMessage:
    msg = ET.Element("{jabber:client}message", {"from": f"{ROOM}/nick", "type": "groupchat"})
    msg.append(env.chunks()[0])
    if real is not None:
        x = ET.SubElement(msg, f"{{{MUC_USER_NS}}}x")
        ET.SubElement(x, f"{{{MUC_USER_NS}}}item", {"jid": real})
    return ArchivedMessage(aid, msg)


def gi_item(aid: str, payload: bytes, real: str | None, gid: bytes = GID,
            epoch: int = 1) -> ArchivedMessage:
    return room_item(aid, Envelope(Kind.GROUP_INFO, payload, "main", gid, epoch), real)


def test_group_info_nobody_can_spoil(served: tuple[XmppDeliveryTransport, FakeServer],
                                     loop: asyncio.AbstractEventLoop,
                                     caplog: pytest.LogCaptureFixture) -> None:
    transport, server = served
    bob = "xmpp:bob@example.org"  # a room owner
    real, _ = mls_group(bob, GID, epochs=2)
    fake, fake_key = mls_group(bob, GID)  # a self-made group with the same id, "bob's"
    forged = at_epoch(fake.group_info(), 1_000_000, fake_key)
    other, _ = mls_group("xmpp:mallory@evil.example", b"another group")
    garbage = [
        gi_item("f1", encode_group_info(forged, None), STRANGER, epoch=1_000_000),
        gi_item("f2", b"\x00\x00", STRANGER),  # too short for its length prefix
        gi_item("f3", encode_group_info(b"\x00\x01garbage", None), STRANGER),
        gi_item("f4", encode_group_info(real.group_info(), None), STRANGER),  # re-posted
        gi_item("f5", encode_group_info(real.group_info(), None), None),  # no real JID
        gi_item("f6", encode_group_info(other.group_info(), None), STRANGER, b"other"),
        gi_item("f7", encode_group_info(other.group_info(), None), STRANGER),
    ]
    group_messages = [room_item(f"m{i}", Envelope(Kind.GROUP, MLSMessage.of(PrivateMessage(
        GID, 2, ContentType.APPLICATION, b"", b"sd", b"ct")).encode(), "tab", GID, 2),
        "bob@example.org") for i in range(150)]
    server.archive = [gi_item("g2", encode_group_info(real.group_info(), None),
                              "bob@example.org"), *garbage, *group_messages]
    with caplog.at_level(logging.WARNING, logger="mls_bridge.defence"):
        got = loop.run_until_complete(transport.fetch_group_info(GID))
    assert got == (real.group_info(), None)  # the whole archive read, in two pages
    assert server.afters == [None, "m91"]
    assert transport.drops.snapshot() == {
        "group-info-wrong-signer": 2, "group-info-malformed": 1, "group-info-invalid": 1,
        "room-no-real-jid": 1, "room-wrong-group": 1, "group-info-wrong-group": 1}
    # one line per (sender, reason), naming the account the room authenticated
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6
    assert all(f"from xmpp:{STRANGER}:" in line for line in lines
               if "room-no-real-jid" not in line)
    # a newer real GroupInfo wins; a second fetch reads only the new entries
    real.commit([])
    real.merge_pending_commit()
    server.archive.append(gi_item("g3", encode_group_info(
        real.group_info(with_ratchet_tree=False), real.ratchet_tree_bytes()),
        "bob@example.org"))
    before = transport.drops.total
    assert loop.run_until_complete(transport.fetch_group_info(GID)) == (
        real.group_info(with_ratchet_tree=False), real.ratchet_tree_bytes())
    assert transport.drops.total == before
    assert server.afters[2:] == ["m149"]
    # a relayer the reader trusts may post someone else's GroupInfo; an untrusted one not
    real.commit([])
    real.merge_pending_commit()
    server.archive.append(gi_item("g4", encode_group_info(real.group_info(), None),
                                  "bridge@example.org"))
    assert loop.run_until_complete(transport.fetch_group_info(GID))[0] != real.group_info()
    assert transport.drops.counts["group-info-wrong-signer"] == 3
    # trusting it reads the archive again: g4 is taken now
    transport.trusted_relayers.add("xmpp:bridge@example.org")
    assert loop.run_until_complete(transport.fetch_group_info(GID))[0] == real.group_info()
    assert server.afters[-2:] == [None, "m91"]
    real.commit([])
    real.merge_pending_commit()
    server.archive.append(gi_item("g5", encode_group_info(real.group_info(), None),
                                  "bridge@example.org"))
    assert loop.run_until_complete(transport.fetch_group_info(GID))[0] == real.group_info()
    assert server.afters[-1] == "g4"


def test_a_member_signing_its_own_fake_group_is_unlinked(
        served: tuple[XmppDeliveryTransport, FakeServer], loop: asyncio.AbstractEventLoop,
        caplog: pytest.LogCaptureFixture) -> None:
    """A room member that is no MLS member (or an old one) signs, as itself, a GroupInfo
    of a self-made group with the real group's id at epoch 1,000,000: it passes every
    check of its own, but no trusted GroupInfo lists its signer."""
    transport, server = served
    bob = "xmpp:bob@example.org"
    real, _ = mls_group(bob, GID)
    zero = real.group_info()
    real.commit([])
    real.merge_pending_commit()
    fake, _ = mls_group(f"xmpp:{STRANGER}", GID)
    for _ in range(3):
        fake.commit([])
        fake.merge_pending_commit()
    fake_info = fake.group_info()
    server.archive = [gi_item("g0", encode_group_info(zero, None), "bob@example.org", epoch=0),
                      gi_item("f1", encode_group_info(fake_info, None), STRANGER, epoch=3),
                      gi_item("g1", encode_group_info(real.group_info(), None),
                              "bob@example.org")]
    with caplog.at_level(logging.WARNING, logger="mls_bridge.defence"):
        got = loop.run_until_complete(transport.fetch_group_info(GID))
    assert got == (real.group_info(), None)
    assert transport.drops.snapshot() == {"group-info-unlinked": 1}
    [line] = [r.getMessage() for r in caplog.records]
    assert f"from xmpp:{STRANGER}: group-info-unlinked" in line and "epoch 3" in line
    # reported once; it never links later either
    server.archive.append(gi_item("f2", encode_group_info(fake_info, None), STRANGER))
    assert loop.run_until_complete(transport.fetch_group_info(GID)) == got
    assert transport.drops.snapshot() == {"group-info-unlinked": 2}


@pytest.mark.parametrize("owners", [[], ["bob@example.org"]])
def test_the_chain_starts_at_epoch_zero_or_an_owner(
        served: tuple[XmppDeliveryTransport, FakeServer], loop: asyncio.AbstractEventLoop,
        owners: list[str]) -> None:
    """The archive's first GroupInfo at epoch 0 anchors its writer (the creator, who may
    no longer own the room); owners anchor too (e.g. when that entry expired)."""
    transport, server = served
    server.owners = owners
    bob = "xmpp:bob@example.org"
    real, _ = mls_group(bob, GID)
    zero = gi_item("g0", encode_group_info(real.group_info(), None), "bob@example.org",
                   epoch=0)
    real.commit([])
    real.merge_pending_commit()
    one = gi_item("g1", encode_group_info(real.group_info(), None), "bob@example.org")
    server.archive = [zero, one]
    assert loop.run_until_complete(transport.fetch_group_info(GID)) == (
        real.group_info(), None)
    # a fresh reader of an archive that no longer holds epoch 0: only an owner anchors
    again, other = make(loop, pytest.MonkeyPatch())
    try:
        other.owners, other.archive = owners, [one]
        if owners:
            assert loop.run_until_complete(again.fetch_group_info(GID)) == (
                real.group_info(), None)
        else:
            with pytest.raises(UnknownGroupError):
                loop.run_until_complete(again.fetch_group_info(GID))
            assert again.drops.snapshot() == {"group-info-unlinked": 1}
    finally:
        loop.run_until_complete(again.close())


def test_an_owner_starts_again_a_chain_rooted_at_a_fake_epoch_zero(
        served: tuple[XmppDeliveryTransport, FakeServer], loop: asyncio.AbstractEventLoop
) -> None:
    """Once the archive's start expired, a room member's fake group at epoch 0 can be its
    first GroupInfo: an owner's GroupInfo that chain does not list starts it again."""
    transport, server = served
    fake, _ = mls_group(f"xmpp:{STRANGER}", GID)
    zero = fake.group_info()
    fake.commit([])
    fake.merge_pending_commit()
    real, _ = mls_group("xmpp:bob@example.org", GID, epochs=5)
    server.archive = [
        gi_item("f0", encode_group_info(zero, None), STRANGER, epoch=0),
        gi_item("f1", encode_group_info(fake.group_info(), None), STRANGER),
        gi_item("g5", encode_group_info(real.group_info(), None), "bob@example.org",
                epoch=5)]
    assert loop.run_until_complete(transport.fetch_group_info(GID)) == (
        real.group_info(), None)
    assert transport.drops.snapshot() == {"group-info-unlinked": 1}  # f1, the fake head
    for _ in range(6):
        fake.commit([])
        fake.merge_pending_commit()
    server.archive.append(gi_item("f7", encode_group_info(fake.group_info(), None),
                                  STRANGER, epoch=7))
    assert loop.run_until_complete(transport.fetch_group_info(GID)) == (
        real.group_info(), None)
    assert transport.drops.snapshot() == {"group-info-unlinked": 2}


def test_a_first_group_info_past_epoch_zero_anchors_nobody(
        served: tuple[XmppDeliveryTransport, FakeServer], loop: asyncio.AbstractEventLoop
) -> None:
    """A stranger's fake group at epoch 0 after the real first GroupInfo anchors nothing,
    nor does a first GroupInfo past epoch 0 by a non-owner."""
    transport, server = served
    server.owners = []
    fake, _ = mls_group(f"xmpp:{STRANGER}", GID)
    zero = fake.group_info()
    fake.commit([])
    fake.merge_pending_commit()
    server.archive = [gi_item("f1", encode_group_info(fake.group_info(), None), STRANGER),
                      gi_item("f0", encode_group_info(zero, None), STRANGER, epoch=0)]
    with pytest.raises(UnknownGroupError):
        loop.run_until_complete(transport.fetch_group_info(GID))
    assert transport.drops.snapshot() == {"group-info-unlinked": 2}


def test_garbage_alone_is_no_group_info(served: tuple[XmppDeliveryTransport, FakeServer],
                                        loop: asyncio.AbstractEventLoop) -> None:
    transport, server = served
    server.archive = [gi_item(f"x{i}", b"\x00\x00\x00\x05abc" * (i + 1), STRANGER)
                      for i in range(250)]
    with pytest.raises(UnknownGroupError):
        loop.run_until_complete(transport.fetch_group_info(GID))
    assert transport.drops.counts["group-info-malformed"] + \
        transport.drops.counts["group-info-invalid"] == 250


def test_the_configured_bridge_is_a_trusted_relayer(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    transport, _ = make(loop, monkeypatch, bridge="bridge@example.org")
    try:
        assert transport._relayers() == {"xmpp:bridge@example.org"}
        transport.trusted_relayers.add("xmpp:relay@example.org")
        assert transport._relayers() == {"xmpp:bridge@example.org", "xmpp:relay@example.org"}
    finally:
        loop.run_until_complete(transport.close())


def mam_result(transport: XmppDeliveryTransport, frm: str, qid: str, inner_from: str
               ) -> Any:
    """A ``<result/>`` message (XEP-0313 §4.2) carrying a control item "from"
    ``inner_from``, as anyone can send it to us."""
    msg = transport.xmpp.make_message(mto=JID(transport.client_id), mfrom=JID(frm))
    result = ET.SubElement(msg.xml, "{urn:xmpp:mam:2}result", {"queryid": qid, "id": "a1"})
    forwarded = ET.SubElement(result, "{urn:xmpp:forward:0}forwarded")
    inner = ET.SubElement(forwarded, "{jabber:client}message",
                          {"from": inner_from, "to": ME, "type": "chat"})
    inner.append(Envelope(Kind.CONTROL, b"{}", "main").chunks()[0])
    return msg


def test_mam_results_count_only_from_the_archive_queried(
        served: tuple[XmppDeliveryTransport, FakeServer]) -> None:
    transport, _ = served
    plugin = transport.plugin
    own: list[ArchivedMessage] = []
    room: list[ArchivedMessage] = []
    plugin._queries["q-own"] = ("", own)
    plugin._queries["q-room"] = (ROOM, room)
    bridge = "bridge@example.org/main"
    for frm, qid in ((f"{STRANGER}/x", "q-own"), (f"{STRANGER}/x", "q-room"),
                     (ROOM, "q-own"), (f"{ME}/laptop", "q-room"),
                     (f"{STRANGER}/x", "mls1")):
        plugin._on_mam_result(mam_result(transport, frm, qid, bridge))
    assert own == [] and room == []
    assert transport.drops.snapshot() == {"mam-result-forged": 5}
    plugin._on_mam_result(mam_result(transport, ME, "q-own", bridge))
    plugin._on_mam_result(mam_result(transport, ROOM, "q-room", bridge))
    plugin._on_mam_result(mam_result(transport, ROOM, "q-over", bridge))  # late: ignored
    assert len(own) == 1 and len(room) == 1
    assert transport.drops.total == 5


def test_muc_presence_counts_only_from_our_muc_service(
        served: tuple[XmppDeliveryTransport, FakeServer]) -> None:
    transport, _ = served
    plugin = transport.plugin
    exits: list[object] = []
    transport.xmpp.add_event_handler("mls_room_exit", exits.append)
    named_like_the_room = f"{ROOM.split('@')[0]}@example.org"
    for frm in (f"{named_like_the_room}/nick", f"{ROOM}/nick"):
        pres = transport.xmpp.make_presence(pto=JID(transport.client_id), pfrom=JID(frm),
                                            ptype="unavailable")
        x = ET.SubElement(pres.xml, f"{{{MUC_USER_NS}}}x")
        ET.SubElement(x, f"{{{MUC_USER_NS}}}item", {"jid": "bob@example.org/tab"})
        ET.SubElement(x, f"{{{MUC_USER_NS}}}status", {"code": "307"})
        plugin._on_room_presence(pres)
    assert transport.drops.snapshot() == {"muc-presence-forged": 1}
    assert named_like_the_room not in plugin.occupants
    assert [getattr(e, "room", None) for e in exits] == [ROOM]


def test_a_room_start_the_archive_lacks_reads_it_from_its_start(
        served: tuple[XmppDeliveryTransport, FakeServer], loop: asyncio.AbstractEventLoop,
        caplog: pytest.LogCaptureFixture) -> None:
    """A Welcome's ``after`` the room's archive does not hold (Prosody answers
    ``item-not-found``) must not leave the room unread for ever."""
    transport, server = served
    server.archive = [room_item("r1", Envelope(Kind.GROUP, MLSMessage.of(PrivateMessage(
        GID, 2, ContentType.APPLICATION, b"", b"sd", b"ct")).encode(), "tab", GID, 2),
        "bob@example.org")]
    source = transport._sources[ROOM] = _Source(ROOM, GID, "no-such-id")
    with caplog.at_level(logging.WARNING):
        loop.run_until_complete(transport._sync(source))
    assert source.base is None and source.ids == ["r1"]
    assert [i.kind for i in transport._stream] == [MessageKind.GROUP]
    assert "reading it from its start" in caplog.text


def test_malformed_pep_items_of_another_user_are_dropped(
        served: tuple[XmppDeliveryTransport, FakeServer],
        loop: asyncio.AbstractEventLoop) -> None:
    """bob's own nodes (only bob can write them) hold items the mapping never publishes:
    skipped and counted, the good one is claimed."""
    transport, server = served
    kp_node = f"{KP_NODE_PREFIX}tab"

    def kp(text: str | None) -> ET.Element:
        el = ET.Element(f"{{{NS}}}key-package", {"last-resort": "false"})
        el.text = text
        return el

    server.nodes[kp_node] = {"NOT-HEX": kp("AAAA"), "aa" * 32: ET.Element("other"),
                             "bb" * 32: kp("***"), "cc" * 32: kp(""), "dd" * 32: kp("AAAA")}
    server.nodes[f"{NS}:devices"] = {"tab": ET.Element(f"{{{NS}}}device"),
                                     "a/b": ET.Element(f"{{{NS}}}device")}
    claimed = loop.run_until_complete(
        transport.claim_user_key_packages("xmpp:bob@example.org"))
    assert [(c.client_id, c.ref) for c in claimed] == [("bob@example.org/tab", b"\xdd" * 32)]
    assert transport.drops.snapshot() == {"key-package-malformed": 4, "device-malformed": 1}
