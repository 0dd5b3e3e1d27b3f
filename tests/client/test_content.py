"""MIMI content in the client (issue 18, docs/content.md "In the client"): text, Markdown,
replies, reactions, edits, deletes, mentions, expiry, old plain payloads, refusals of
spoofed or unauthorized content, and encrypted attachments, on the embedded delivery
service with a real HTTP blob server on 127.0.0.1."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest
from aiohttp import web

from mimi_content import AttachmentError, Disposition, NestedPart, NullPart, decode
from mls_client import (
    ContentRefusedError,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    MessageRejected,
    MLSClient,
    Reaction,
)
from mls_client import content as mimi
from mls_client.events import ClientEvent
from mls_client.store import MIGRATIONS, SCHEMA_VERSION, Store
from transports.media import media_store_of

from .helpers import Net, async_test, settings_for


class BlobServer:
    """A real HTTP server on 127.0.0.1 storing blobs (a stand-in network media store:
    ``transports.media.MediaStore``); ``blobs`` may be altered to tamper with one."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/blob/{name}", self._get)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"

    async def _get(self, request: web.Request) -> web.Response:
        blob = self.blobs.get(request.match_info["name"])
        if blob is None:
            return web.Response(status=404)
        return web.Response(body=blob)

    async def upload_media(self, data: bytes) -> str:
        name = f"b{len(self.blobs)}"
        self.blobs[name] = data
        return f"{self.base}/blob/{name}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _pair(tmp_path: Path, clock: list[float] | None = None
                ) -> tuple[Net, MLSClient, MLSClient, bytes]:
    """alice and bob in one group; bob's clock is ``clock`` if given."""
    net = Net(tmp_path)
    alice, = await net.add("alice")
    if clock is None:
        await net.add("bob")
    else:
        bob = await MLSClient.open(settings_for(tmp_path, "bob"), net.transport,
                                   clock=lambda: clock[0])
        await bob.create_identity("bob", "bob-dev")
        await bob.publish_key_packages()
        net.clients["bob"], net.events["bob"] = bob, []
    gid = await alice.create_group()
    await alice.add_members(gid, ["bob"])
    await net.sync("bob")
    return net, alice, net["bob"], gid


def _of(events: list[ClientEvent], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


@async_test
async def test_text_markdown_reply_and_mention_arrive_as_mimi_content(tmp_path: Path) -> None:
    net, alice, bob, gid = await _pair(tmp_path)
    try:
        plain_id = await alice.send_text(gid, "hello bob")
        md_id = await alice.send_text(
            gid, f"kudos to {mimi.mention('mls:user:bob', 'Bob')} for __this__",
            markdown=True)
        got = _of((await net.sync("bob"))["bob"], MessageReceived)
        assert [m.message_id for m in got] == [plain_id, md_id]
        assert got[0].text == "hello bob" and got[0].content is not None
        assert got[0].content.body.part.content_type == mimi.PLAIN  # type: ignore[union-attr]
        assert got[1].content.body.part.content_type == mimi.MARKDOWN  # type: ignore[union-attr]
        assert got[1].mentions == ("mls:user:bob",)
        assert got[0].content.sender_uri == "mls:user:alice"
        assert got[0].content.room_uri == mimi.room_uri(gid)
        reply_id = await bob.reply(gid, plain_id, "hi alice")
        back = _of((await net.sync("alice"))["alice"], MessageReceived)
        assert len(back) == 1 and back[0].in_reply_to == plain_id
        assert back[0].message_id == reply_id and back[0].text == "hi alice"
        # both inboxes resolve the ids, ours (outgoing) included
        for client in (alice, bob):
            rows = await client.inbox(gid)
            assert [r.content_id for r in rows] == [plain_id, md_id, reply_id]
            assert rows[2].ref == plain_id
            row = await client.message(gid, reply_id)
            assert row is not None and mimi.text_of(mimi.decoded(row), row.data) == "hi alice"
    finally:
        await net.close()


@async_test
async def test_message_ids_agree_with_the_draft_rule(tmp_path: Path) -> None:
    """Every member computes the id from senderUri, roomUri, the content and its salt
    (draft "Message ID"): recomputing it from the received bytes gives the same."""
    from mimi_content import message_id

    net, alice, _bob, gid = await _pair(tmp_path)
    try:
        mid = await alice.send_text(gid, "id check")
        got = _of((await net.sync("bob"))["bob"], MessageReceived)[0]
        assert message_id(got.data, "mls:user:alice", mimi.room_uri(gid)) == mid
        assert message_id(got.data, "mls:user:bob", mimi.room_uri(gid)) != mid
    finally:
        await net.close()


@async_test
async def test_react_and_unreact(tmp_path: Path) -> None:
    net, alice, bob, gid = await _pair(tmp_path)
    try:
        mid = await alice.send_text(gid, "ship it?")
        await net.sync("bob")
        rid = await bob.react(gid, mid, "❤")
        got = _of((await net.sync("alice"))["alice"], Reaction)
        assert got == [Reaction(gid, "bob", rid, mid, "❤")]
        assert [r.content_id for r in await alice.reactions(gid, mid)] == [rid]
        assert [r.content_id for r in await alice.inbox(gid)] == [mid]  # not a message
        uid = await bob.unreact(gid, rid)
        got = _of((await net.sync("alice"))["alice"], Reaction)
        assert got == [Reaction(gid, "bob", uid, mid, "❤", removed=True, replaces=rid)]
        assert await alice.reactions(gid, mid) == []
        assert await bob.reactions(gid, mid) == []
        # the unlike is the draft's: a NullPart reaction replacing the reaction
        sent = decode((await alice.inbox(gid, kinds=("unreaction",)))[0].data)
        assert sent.body == NestedPart(Disposition.REACTION, "", NullPart())
        assert (sent.replaces, sent.in_reply_to) == (rid, mid)
    finally:
        await net.close()


@async_test
async def test_edit_and_delete_by_the_original_sender(tmp_path: Path) -> None:
    net, alice, bob, gid = await _pair(tmp_path)
    try:
        mid = await alice.send_text(gid, "relase 2.0 is out")
        await net.sync("bob")
        eid = await alice.edit(gid, mid, "release 2.0 is out")
        got = (await net.sync("bob"))["bob"]
        edited = _of(got, MessageEdited)
        assert len(edited) == 1 and not _of(got, MessageReceived)
        assert (edited[0].replaces, edited[0].message_id, edited[0].sender) == (mid, eid,
                                                                                  "alice")
        assert edited[0].text == "release 2.0 is out"
        for client in (alice, bob):
            rows = await client.inbox(gid)
            assert len(rows) == 1 and rows[0].content_id == mid and rows[0].edited
            assert mimi.text_of(mimi.decoded(rows[0]), rows[0].data) == "release 2.0 is out"
        did = await alice.delete_message(gid, mid)
        got = (await net.sync("bob"))["bob"]
        assert _of(got, MessageDeleted) == [MessageDeleted(gid, "alice", did, mid)]
        for client in (alice, bob):
            assert await client.inbox(gid) == []
            assert await client.message(gid, mid) is None
    finally:
        await net.close()


@async_test
async def test_only_the_original_sender_may_edit_or_delete(tmp_path: Path) -> None:
    net, alice, bob, gid = await _pair(tmp_path)
    try:
        mid = await alice.send_text(gid, "mine")
        await net.sync("bob")
        with pytest.raises(ContentRefusedError, match="only its original sender"):
            await bob.edit(gid, mid, "yours now")
        with pytest.raises(ContentRefusedError, match="only its original sender"):
            await bob.delete_message(gid, mid)
        got = (await net.sync("alice"))["alice"]  # nothing was sent
        assert not _of(got, MessageEdited) and not _of(got, MessageDeleted)
        assert not _of(got, MessageReceived) and not _of(got, MessageRejected)
        assert [r.content_id for r in await bob.inbox(gid)] == [mid]
    finally:
        await net.close()


async def _forge(net: Net, sender: str, gid: bytes, *items: bytes) -> None:
    """What a modified client of ``sender`` could send: MLS-valid application data that
    skips the sending client's own checks (its stored state is not used again)."""
    group = await net[sender].group(gid)
    for data in items:
        payload = group.encrypt(data)
        assert (await net.ds.submit(gid, group.epoch, payload, is_commit=False,
                                    sender=f"{sender}-dev")).accepted


@async_test
async def test_forged_edit_and_spoofed_sender_are_refused_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net, alice, _bob, gid = await _pair(tmp_path)
    try:
        mid = await alice.send_text(gid, "the plan")
        await net.sync("bob")
        forged, _ = mimi.build("bob", gid, mimi.text_body("a worse plan"), replaces=mid)
        with caplog.at_level(logging.WARNING):
            await _forge(net, "bob", gid, forged)
            got = (await net.sync("alice"))["alice"]
        assert not _of(got, MessageEdited)
        rejected = _of(got, MessageRejected)
        assert len(rejected) == 1 and "only its original sender" in rejected[0].reason
        assert any("bob" in r.getMessage() and "original sender" in r.getMessage()
                   for r in caplog.records if r.levelno == logging.WARNING)
        rows = await alice.inbox(gid)
        assert [mimi.text_of(mimi.decoded(r), r.data) for r in rows] == ["the plan"]
        assert alice.stats.dropped.get("not_original_sender") == 1
    finally:
        await net.close()


@async_test
async def test_spoofed_sender_or_room_uri_is_refused(tmp_path: Path) -> None:
    net, alice, _bob, gid = await _pair(tmp_path)
    try:
        as_alice, _ = mimi.build("alice", gid, mimi.text_body("I am alice"))
        wrong_room, _ = mimi.build("bob", b"another group", mimi.text_body("elsewhere"))
        await _forge(net, "bob", gid, as_alice, wrong_room)
        got = (await net.sync("alice"))["alice"]
        reasons = [e.reason for e in _of(got, MessageRejected)]
        assert len(reasons) == 2 and "senderUri" in reasons[0] and "roomUri" in reasons[1]
        assert not _of(got, MessageReceived) and await alice.inbox(gid) == []
    finally:
        await net.close()


@async_test
async def test_old_plain_utf8_payloads_still_display(tmp_path: Path) -> None:
    net, alice, bob, gid = await _pair(tmp_path)
    try:
        await alice.send(gid, "héllo from an older version".encode())
        await alice.send(gid, b"\x87\x50 not cbor at all")
        got = _of((await net.sync("bob"))["bob"], MessageReceived)
        assert [m.text for m in got] == ["héllo from an older version",
                                         "\ufffdP not cbor at all"]
        assert all(m.content is None and m.message_id is None for m in got)
        assert len(await bob.inbox(gid)) == 2
    finally:
        await net.close()


@async_test
async def test_expiring_messages_are_hidden_and_purged(tmp_path: Path) -> None:
    now = time.time()
    clock = [now]
    net, alice, bob, gid = await _pair(tmp_path, clock)
    try:
        await alice.send_text(gid, "gone soon", expires_at=int(now) + 100)
        await alice.send_text(gid, "gone after reading", visible_for=50)
        await alice.send_text(gid, "already gone", expires_at=int(now) - 1)
        await alice.send_text(gid, "stays")
        got = _of((await net.sync("bob"))["bob"], MessageReceived)
        assert [m.text for m in got] == ["gone soon", "gone after reading", "stays"]
        rows = await bob.inbox(gid, mark_read=True)  # the relative expiry starts now
        assert len(rows) == 3
        clock[0] = now + 60
        assert [mimi.text_of(mimi.decoded(r), r.data) for r in await bob.inbox(gid)] == [
            "gone soon", "stays"]
        clock[0] = now + 101
        await bob.sync()
        left = await bob.store.inbox(gid)  # the store itself, no expiry filter
        assert [mimi.text_of(mimi.decoded(r), r.data) for r in left] == ["stays"]
    finally:
        await net.close()


@async_test
async def test_expired_messages_are_purged_on_open(tmp_path: Path) -> None:
    net, alice, bob, gid = await _pair(tmp_path)
    try:
        await alice.send_text(gid, "short-lived", expires_at=int(time.time()) + 2)
        await net.sync("bob")
        assert len(await bob.store.inbox(gid)) == 1
        await bob.close()
        time.sleep(2.1)
        bob = net.clients["bob"] = await MLSClient.open(settings_for(tmp_path, "bob"),
                                                        net.transport)
        assert await bob.store.inbox(gid) == []
    finally:
        await net.close()


@async_test
async def test_attachments_are_encrypted_fetched_and_checked(tmp_path: Path) -> None:
    blobs = BlobServer()
    await blobs.start()
    net, alice, bob, gid = await _pair(tmp_path)
    try:
        assert media_store_of(alice.transport) is None
        with pytest.raises(Exception, match="cannot store attachments"):
            await alice.send_file(gid, b"x")
        alice.media_store = blobs
        data = bytes(range(256)) * 4096  # 1 MiB
        path = tmp_path / "report.bin"
        path.write_bytes(data)
        mid = await alice.send_file(gid, path, content_type="application/pdf",
                                    description="the report")
        got = _of((await net.sync("bob"))["bob"], MessageReceived)[0]
        part = got.attachments[0]
        assert got.message_id == mid and part.filename == "report.bin"
        assert (part.enc_alg, part.hash_alg, part.size) == (1, 1, len(data))
        stored = blobs.blobs["b0"]
        assert data[:4096] not in stored and len(stored) == len(data) + 16  # ciphertext
        assert await bob.fetch_attachment(got) == data
        # a second file has its own key and nonce
        await alice.send_file(gid, b"second", filename="two.txt")
        second = _of((await net.sync("bob"))["bob"], MessageReceived)[0].attachments[0]
        assert (second.key, second.nonce) != (part.key, part.nonce)
        # tampered: one bit flipped on the server
        blobs.blobs["b0"] = bytes([stored[0] ^ 1]) + stored[1:]
        with pytest.raises(AttachmentError, match="content hash"):
            await bob.fetch_attachment(part)
        del blobs.blobs["b0"]
        with pytest.raises(AttachmentError, match="HTTP 404"):
            await bob.fetch_attachment(part)
    finally:
        await net.close()
        await blobs.stop()


@async_test
async def test_attachment_size_limit(tmp_path: Path) -> None:
    blobs = BlobServer()
    await blobs.start()
    net = Net(tmp_path)
    try:
        alice, = await net.add("alice", attachments={"max_size": 1000})
        bob, = await net.add("bob", attachments={"max_size": 500})
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync("bob")
        alice.media_store = blobs
        with pytest.raises(AttachmentError, match="exceed the attachment limit"):
            await alice.send_file(gid, b"z" * 1001)
        assert blobs.blobs == {}
        await alice.send_file(gid, b"z" * 800)
        got = _of((await net.sync("bob"))["bob"], MessageReceived)[0]
        with pytest.raises(AttachmentError, match="exceed the limit of 500"):
            await bob.fetch_attachment(got)
        # a server that sends more than announced is cut off at the limit
        blobs.blobs["b0"] = b"y" * 10_000
        small = got.attachments[0]
        import dataclasses
        liar = dataclasses.replace(small, size=400)
        with pytest.raises(AttachmentError, match="could not be downloaded"):
            await bob.fetch_attachment(liar)
    finally:
        await net.close()
        await blobs.stop()


@async_test
async def test_inbox_content_columns_are_migrated(tmp_path: Path) -> None:
    """Schema 7 adds the MIMI columns; rows stored before read as plain messages."""
    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:
        for statements in MIGRATIONS[:6]:
            for sql in statements:
                db.execute(sql)
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (6)")
        db.execute("INSERT INTO inbox (group_id, sender, sender_leaf, epoch, data, outgoing, "
                   "received_at) VALUES (?, 'bob', 1, 1, ?, 0, 0)", (b"g", b"old text"))
    store = await Store.open(path)
    try:
        assert await store.schema_version() == SCHEMA_VERSION >= 7
        row, = await store.inbox()
        assert (row.data, row.kind, row.content_id, row.expires_at) == (b"old text",
                                                                       "message", None, None)
    finally:
        await store.close()


@async_test
async def test_edit_rules_beyond_the_sender(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """An edit may change only the body (draft "Security Considerations"); a second
    edit still targets the original; an edit of a message unknown here (sent before we
    joined) is refused quietly (INFO); another member cannot withdraw our reaction."""
    net, alice, bob, gid = await _pair(tmp_path)
    try:
        first = await alice.send_text(gid, "first")
        mid = await alice.reply(gid, first, "v1")
        await net.sync("bob")
        await alice.edit(gid, mid, "v2")
        await alice.edit(gid, mid, "v3")
        got = _of((await net.sync("bob"))["bob"], MessageEdited)
        assert [e.text for e in got] == ["v2", "v3"]
        row = await bob.message(gid, mid)
        assert row is not None and mimi.text_of(mimi.decoded(row), row.data) == "v3"
        rid = await bob.react(gid, mid, "+1")
        await net.sync("alice")
        with pytest.raises(ContentRefusedError, match="only its original sender"):
            await alice.unreact(gid, rid)
        unknown = bytes([1]) + bytes(31)
        moved, _ = mimi.build("alice", gid, mimi.text_body("v4"), replaces=mid)  # no reply
        ghost, _ = mimi.build("alice", gid, mimi.text_body("?"), replaces=unknown)
        with caplog.at_level(logging.INFO):
            await _forge(net, "alice", gid, moved, ghost)
            got = (await net.sync("bob"))["bob"]
        reasons = [e.reason for e in _of(got, MessageRejected)]
        assert len(reasons) == 2 and "inReplyTo" in reasons[0] and "unknown" in reasons[1]
        levels = {r.levelno for r in caplog.records if "unknown_message" in r.getMessage()}
        assert levels == {logging.INFO}
        assert bob.stats.dropped.get("edit_changes_semantics") == 1
        row = await bob.message(gid, mid)
        assert row is not None and mimi.text_of(mimi.decoded(row), row.data) == "v3"
    finally:
        await net.close()


def test_reprs_hide_keys_and_content() -> None:
    """Events and parts may be logged: no key, nonce or text in their repr."""
    from mls_client.attachments import external_part, seal

    sealed = seal(b"secret file")
    part = external_part(sealed, "https://example.org/b", 11, content_type="text/plain")
    body = mimi.text_body("secret text")
    reaction = Reaction(b"g", "bob", bytes(32), bytes(32), "secret-reaction")
    for shown in (repr(part), repr(body), repr(sealed), repr(reaction)):
        assert sealed.key.hex() not in shown and repr(sealed.key) not in shown
        assert "secret" not in shown, shown
