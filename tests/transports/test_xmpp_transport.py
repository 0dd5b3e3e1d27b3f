"""XmppDeliveryTransport without a server: argument checks, archive entry parsing
(sender binding, group binding, chunks), safe cursors. The server paths are in
tests/integration/xmpp/."""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from mls_core.framing import ContentType, MLSMessage, PrivateMessage
from tests.transports.xmpp_mls import throwaway_welcome
from transports.base import (
    InvalidRequestError,
    KeyPackageEntry,
    MessageKind,
    RelayTransport,
    TransportClosedError,
)
from transports.xmpp.plugin import MUC_USER_NS, ArchivedMessage
from transports.xmpp.settings import XmppSettings
from transports.xmpp.stanza import Envelope, Kind, Relay
from transports.xmpp.transport import OWN, XmppDeliveryTransport, _Source, decode_cursor

GID = bytes(range(8))
ROOM = f"mls-{GID.hex()}@conference.example.org"


def payload(epoch: int = 3, ct: int = ContentType.APPLICATION, gid: bytes = GID) -> bytes:
    return MLSMessage.of(PrivateMessage(gid, epoch, ct, b"", b"sd", b"ct")).encode()


@pytest.fixture
def transport() -> Iterator[XmppDeliveryTransport]:
    settings = XmppSettings(jid="alice@example.org/phone", password=SecretStr("pw"),
                            muc_service="conference.example.org")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    t = XmppDeliveryTransport(XmppDeliveryTransport.make_client(settings), settings)
    t._sources[OWN] = _Source(OWN, None, None)
    t._sources[ROOM] = _Source(ROOM, GID, None)
    yield t
    loop.run_until_complete(t.close())
    loop.close()
    asyncio.set_event_loop(None)


def room_entry(aid: str, env: Envelope, real: str | None = "bob@example.org",
               chunk_size: int = 96 * 1024) -> list[ArchivedMessage]:
    out = []
    for i, el in enumerate(env.chunks(chunk_size)):
        msg = ET.Element("{jabber:client}message",
                         {"from": f"{ROOM}/bob@example.org/tab", "type": "groupchat"})
        msg.append(el)
        if real is not None:
            x = ET.SubElement(msg, f"{{{MUC_USER_NS}}}x")
            ET.SubElement(x, f"{{{MUC_USER_NS}}}item", {"jid": real})
        out.append(ArchivedMessage(f"{aid}-{i}", msg))
    return out


def test_identity_and_room(transport: XmppDeliveryTransport) -> None:
    assert transport.client_id == "alice@example.org/phone"
    assert transport.user_id == "xmpp:alice@example.org"
    assert transport.room_jid(GID) == ROOM


def test_requests_for_other_clients_are_refused(transport: XmppDeliveryTransport) -> None:
    async def go() -> None:
        for call in (transport.fetch("bob@example.org/x"),
                     transport.key_package_count("alice@example.org/laptop"),
                     transport.subscribe("alice@example.org", GID),
                     transport.submit(GID, 3, payload(), is_commit=False, sender="bob"),
                     transport.publish_key_packages(
                         transport.client_id, "xmpp:bob@example.org",
                         [KeyPackageEntry(b"r", b"k")]),
                     transport.claim_user_key_packages("bob@example.org"),
                     transport.claim_key_package("bare@example.org"),
                     transport.fetch(transport.client_id, limit=0),
                     transport.fetch(transport.client_id, after="nope"),
                     transport.send_welcome([], b"w", GID),
                     transport.publish_group_info(GID, True, b"gi")):
            with pytest.raises(InvalidRequestError):
                await call

    asyncio.get_event_loop().run_until_complete(go())


@pytest.mark.parametrize("epoch, ct, commit, gid", [
    (2, ContentType.APPLICATION, False, GID),  # epoch differs
    (3, ContentType.COMMIT, False, GID),  # is_commit wrong
    (3, ContentType.APPLICATION, False, b"other"),  # group differs
])
def test_submit_checks_the_header_before_sending(transport: XmppDeliveryTransport,
                                                 epoch: int, ct: int, commit: bool,
                                                 gid: bytes) -> None:
    coro = transport.submit(GID, 3, payload(epoch, ct, gid), is_commit=commit,
                            sender=transport.client_id)
    with pytest.raises(InvalidRequestError):
        asyncio.get_event_loop().run_until_complete(coro)


def test_closed_transport(transport: XmppDeliveryTransport) -> None:
    loop = asyncio.get_event_loop()
    loop.run_until_complete(transport.close())
    with pytest.raises(TransportClosedError):
        loop.run_until_complete(transport.fetch(transport.client_id))
    with pytest.raises(TransportClosedError):
        transport.receive(transport.client_id)


def test_room_entry_names_the_authenticated_sender(transport: XmppDeliveryTransport) -> None:
    source = transport._sources[ROOM]
    env = Envelope(Kind.GROUP, payload(), "tab", GID, 3)
    for entry in room_entry("a1", env):
        transport._ingest(source, entry)
    [item] = transport._stream
    assert item.kind is MessageKind.GROUP and item.group_id == GID
    assert item.sender == "bob@example.org/tab"
    assert item.sender_identity == "xmpp:bob@example.org"
    assert item.payload == env.payload and item.position is not None
    assert decode_cursor(item.cursor)[ROOM] == ("a1-0", 0)


@pytest.mark.parametrize("env, real, why", [
    (Envelope(Kind.GROUP, payload(), "tab", GID, 3), None, "real JID"),
    (Envelope(Kind.GROUP, payload(), "tab", b"other-group", 3), "bob@example.org",
     "another group"),
    (Envelope(Kind.GROUP, payload(epoch=4), "tab", GID, 3), "bob@example.org",
     "disagrees"),
    (Envelope(Kind.GROUP, b"\x00\x01garbage", "tab", GID, 3), "bob@example.org",
     "MLSMessage"),
])
def test_bad_room_entries_are_dropped_and_logged_once(
        transport: XmppDeliveryTransport, caplog: pytest.LogCaptureFixture,
        env: Envelope, real: str | None, why: str) -> None:
    source = transport._sources[ROOM]
    with caplog.at_level(logging.WARNING):
        for entry in room_entry("b", env, real=real):
            transport._ingest(source, entry)
    assert transport._stream == [] and transport.rejected == 1
    assert len(caplog.records) == 1
    assert why in caplog.records[0].getMessage() or why == "MLSMessage"
    assert source.safe_point() == ("b-0", 0)  # the cursor moves past it


def test_cursor_stays_before_a_half_received_message(
        transport: XmppDeliveryTransport) -> None:
    source = transport._sources[ROOM]
    big = Envelope(Kind.GROUP, payload() + b"\x00" * 3000, "tab", GID, 3)
    chunks = room_entry("big", big, chunk_size=1024)
    small = room_entry("s", Envelope(Kind.GROUP, payload(), "tab", GID, 3))
    transport._ingest(source, chunks[0])
    transport._ingest(source, small[0])  # complete, yielded while big is pending
    assert source.safe_point() == (None, 2)  # from the start, 2 entries consumed
    assert decode_cursor(transport._stream[0].cursor)[ROOM] == (None, 2)
    for entry in chunks[1:]:
        transport._ingest(source, entry)
    assert transport._stream[1].payload == big.payload
    assert source.safe_point() == (chunks[-1].archive_id, 0)


def test_resume_skips_what_was_consumed(transport: XmppDeliveryTransport) -> None:
    source = _Source(ROOM, GID, None, skip=2)
    transport._sources[ROOM] = source
    entries = [e for i in range(3) for e in room_entry(f"m{i}", Envelope(
        Kind.GROUP, payload() + bytes([i]), "tab", GID, 3))]
    for entry in entries:
        transport._ingest(source, entry)
    assert [i.payload[-1] for i in transport._stream] == [2]


def test_own_archive_takes_welcomes_for_this_device_only(
        transport: XmppDeliveryTransport) -> None:
    source = transport._sources[OWN]
    del transport._sources[ROOM]
    welcome, entry = throwaway_welcome("xmpp:alice@example.org")
    ref = entry.ref.hex()
    transport._published.add(ref)

    def direct(device: str, to: str, env: Envelope | None = None) -> ArchivedMessage:
        env = env or Envelope(Kind.WELCOME, welcome, device, GID, after="c1")
        msg = ET.Element("{jabber:client}message", {"from": "bob@example.org/tab",
                                                    "to": to, "type": "chat"})
        msg.append(env.chunks()[0])
        return ArchivedMessage(f"id-{device}-{to}-{env.kind}", msg)

    transport._ingest(source, direct("laptop", "alice@example.org/laptop"))
    transport._ingest(source, direct("phone", "carol@example.org/phone"))  # sent by us
    transport._ingest(source, direct("phone", "alice@example.org/phone"))
    transport._ingest(source, direct("phone", "alice@example.org",
                                     Envelope(Kind.CLAIM, b"", "phone", ref="ab")))
    [item] = transport._stream
    assert item.kind is MessageKind.WELCOME and item.group_id == GID
    assert item.sender_identity == "xmpp:bob@example.org"
    assert [c[:2] for c in transport._pending_claims] == [("bob@example.org", "ab")]
    # a Welcome alone follows no room: subscribe does, from the Commit that added us
    assert ROOM not in transport._sources
    assert transport._welcomed[GID].after == "c1" and transport._welcomed[GID].refs == {ref}
    assert transport.rejected == 0


def test_stream_memory_is_bounded(transport: XmppDeliveryTransport) -> None:
    transport.keep_items = 4
    source = transport._sources[ROOM]
    for i in range(10):
        for entry in room_entry(f"k{i}", Envelope(Kind.GROUP, payload() + bytes([i]),
                                                  "tab", GID, 3)):
            transport._ingest(source, entry)
    assert len(transport._stream) <= 4
    loop = asyncio.get_event_loop()
    last = transport._stream[-1]
    before_last = transport._stream[-2]
    index = loop.run_until_complete(transport._locate(before_last.cursor))
    assert transport._slice(index) == [last]
    # the oldest kept item follows the recorded base cursor
    start = loop.run_until_complete(transport._locate(transport._base_cursor))
    assert transport._slice(start)[0] == transport._stream[0]
    assert transport._slice(start)[0].payload[-1] == 10 - len(transport._stream)


def test_is_a_relay_transport(transport: XmppDeliveryTransport) -> None:
    assert isinstance(transport, RelayTransport) and transport.network == "xmpp"


def test_relay_requests_are_checked_before_sending(transport: XmppDeliveryTransport) -> None:
    async def go() -> None:
        for call in (transport.relay_group(GID, payload(), seq=-1, sender_identity="x:y"),
                     transport.relay_group(GID, payload(), seq=1, sender_identity=""),
                     transport.relay_group(GID, payload(), seq=1, sender_identity="x:y",
                                           sender=""),
                     transport.relay_group(GID, b"garbage", seq=1, sender_identity="x:y"),
                     transport.relay_group(GID, payload(gid=b"other"), seq=1,
                                           sender_identity="x:y"),
                     transport.relay_group(GID, b"", seq=1, sender_identity="x:y"),
                     transport.send_control("matrix:@bob:hs", b"{}"),
                     transport.send_control("xmpp:bob@example.org/res", b"{}"),
                     transport.send_control("xmpp:bob@example.org", b""),
                     transport.admit(GID, "matrix:@bridge:hs"),
                     transport.admit(b"", "xmpp:bridge@example.org")):
            with pytest.raises(InvalidRequestError):
                await call

    asyncio.get_event_loop().run_until_complete(go())


def test_relayed_room_entry_keeps_the_authenticated_poster(
        transport: XmppDeliveryTransport) -> None:
    source = transport._sources[ROOM]
    env = Envelope(Kind.GROUP, payload() + b"\x00" * 3000, "main", GID, 3,
                   relay=Relay(9, "matrix:@carol:hs", "CAROLDEV"))
    for entry in room_entry("r", env, real="bridge@example.org", chunk_size=1024):
        transport._ingest(source, entry)
    plain = Envelope(Kind.GROUP, payload(), "tab", GID, 3)
    for entry in room_entry("p", plain):
        transport._ingest(source, entry)
    relayed, normal = transport._stream
    assert relayed.kind is MessageKind.GROUP and relayed.payload == env.payload
    assert (relayed.relay_seq, relayed.relayed_for, relayed.sender) == (
        9, "matrix:@carol:hs", "CAROLDEV")
    assert relayed.sender_identity == "xmpp:bridge@example.org"
    assert relayed.cursor and relayed.position is not None
    assert (normal.relay_seq, normal.relayed_for, normal.sender) == (
        None, None, "bob@example.org/tab")


def _direct(env: Envelope, frm: str, to: str, aid: str) -> list[ArchivedMessage]:
    out = []
    for i, el in enumerate(env.chunks(1024)):
        msg = ET.Element("{jabber:client}message", {"from": frm, "to": to, "type": "chat"})
        msg.append(el)
        out.append(ArchivedMessage(f"{aid}-{i}", msg))
    return out


def test_own_archive_takes_control_bodies_for_the_account(
        transport: XmppDeliveryTransport, caplog: pytest.LogCaptureFixture) -> None:
    source = transport._sources[OWN]
    del transport._sources[ROOM]
    body = b'{"op": "welcome"}' + b"w" * 3000
    control = Envelope(Kind.CONTROL, body, "main")
    entries = [
        # to the bare JID: every device of the account takes it
        *_direct(control, "bridge@example.org/main", "alice@example.org", "c1"),
        # sent by us (our archive keeps a copy): not for us
        *_direct(Envelope(Kind.CONTROL, b"out", "phone"), "alice@example.org/phone",
                 "bridge@example.org", "c2"),
        # sent by this very device to our own account: skipped
        *_direct(Envelope(Kind.CONTROL, b"self", "phone"), "alice@example.org/phone",
                 "alice@example.org", "c3"),
        # another device of ours: taken
        *_direct(Envelope(Kind.CONTROL, b"sibling", "laptop"), "alice@example.org/laptop",
                 "alice@example.org/phone", "c4"),
    ]
    # a control item naming a group is malformed
    bad = Envelope(Kind.CONTROL, b"x", "main").chunks()[0]
    bad.set("group", "AAAA")
    msg = ET.Element("{jabber:client}message", {"from": "bridge@example.org/main",
                                                "to": "alice@example.org", "type": "chat"})
    msg.append(bad)
    with caplog.at_level(logging.WARNING):
        for entry in [*entries, ArchivedMessage("c5", msg)]:
            transport._ingest(source, entry)
    assert [(i.kind, i.payload, i.sender, i.sender_identity, i.group_id)
            for i in transport._stream] == [
        (MessageKind.CONTROL, body, "bridge@example.org/main", "xmpp:bridge@example.org",
         None),
        (MessageKind.CONTROL, b"sibling", "alice@example.org/laptop",
         "xmpp:alice@example.org", None)]
    assert transport.rejected == 1 and len(caplog.records) == 1
    assert ROOM not in transport._sources  # a control body subscribes nothing
