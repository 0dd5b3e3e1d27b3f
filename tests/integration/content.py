"""The MIMI content scenario of issue 18 (reply, react, edit, delete, a 5 MB attachment,
a tampered attachment refused), shared by the XMPP, Matrix and bridge integration
tests: the same steps over each network's real server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mimi_content import AttachmentError
from mls_client.events import (
    ClientEvent,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    Reaction,
)
from tests.client.helpers import Clients

E = TypeVar("E", bound=ClientEvent)
FILE_SIZE = 5 * 1024 * 1024


async def next_event(net: Clients, name: str, kind: type[E],
                     match: Callable[[E], bool] = lambda e: True,
                     timeout: float = 60.0) -> E:
    """Sync ``name`` until it reported an event of ``kind`` that ``match``es."""
    deadline = time.monotonic() + timeout
    while True:
        for event in net.events[name]:
            if isinstance(event, kind) and match(event):
                return event
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: no {kind.__name__} in time: "
                                 f"{net.events[name][-10:]}")
        await net.sync(name)
        await asyncio.sleep(0.05)


def tamper_blob(root: Path, digest: bytes) -> Path:
    """Flip one bit of the file under ``root`` (a server's storage) whose SHA-256 is
    ``digest``: what a compromised server could serve."""
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size > 16:
            data = path.read_bytes()
            if hashlib.sha256(data).digest() == digest:
                path.write_bytes(bytes([data[0] ^ 1]) + data[1:])
                return path
    raise AssertionError(f"no stored blob under {root} has that hash")


async def conversation(net: Clients, gid: bytes, a: str, b: str) -> dict[str, float]:
    """``b`` replies to, reacts to and ``a`` edits and deletes; each side sees each as
    such. Returns timings (seconds)."""
    ca, cb = net.clients[a], net.clients[b]
    timings: dict[str, float] = {}
    start = time.monotonic()
    mid = await ca.send_text(gid, "we shipped **2.0**", markdown=True)
    got = await next_event(net, b, MessageReceived, lambda e: e.message_id == mid)
    timings["text"] = time.monotonic() - start
    assert got.text == "we shipped **2.0**" and got.sender == ca.user_id

    rid = await cb.reply(gid, mid, "congratulations!")
    reply = await next_event(net, a, MessageReceived, lambda e: e.message_id == rid)
    assert reply.in_reply_to == mid and reply.text == "congratulations!"
    assert reply.sender == cb.user_id

    xid = await cb.react(gid, mid, "🎉")
    reaction = await next_event(net, a, Reaction, lambda e: e.message_id == xid)
    assert (reaction.target, reaction.reaction, reaction.removed) == (mid, "🎉", False)
    assert [r.content_id for r in await ca.reactions(gid, mid)] == [xid]

    eid = await cb.edit(gid, rid, "congratulations, all!")
    edit = await next_event(net, a, MessageEdited, lambda e: e.message_id == eid)
    assert (edit.replaces, edit.text, edit.sender) == (rid, "congratulations, all!",
                                                       cb.user_id)
    row = await ca.message(gid, rid)
    assert row is not None and row.edited

    uid = await cb.unreact(gid, xid)
    await next_event(net, a, Reaction, lambda e: e.message_id == uid and e.removed)
    assert await ca.reactions(gid, mid) == []

    did = await ca.delete_message(gid, mid)
    deleted = await next_event(net, b, MessageDeleted, lambda e: e.message_id == did)
    assert deleted.replaces == mid and await cb.message(gid, mid) is None
    timings["conversation"] = time.monotonic() - start
    return timings


async def file_transfer(net: Clients, gid: bytes, sender: str, receiver: str,
                        storage: Path | None) -> dict[str, float]:
    """A 5 MB file from ``sender`` arrives intact at ``receiver``; then, if
    ``storage`` (the sender's server's media directory) is given, its stored blob is
    tampered with and the download is refused. Returns timings (seconds)."""
    data = os.urandom(FILE_SIZE)
    start = time.monotonic()
    fid = await net.clients[sender].send_file(gid, data, content_type="application/zip",
                                              filename="release.zip")
    sent = time.monotonic() - start
    got = await next_event(net, receiver, MessageReceived, lambda e: e.message_id == fid)
    part = got.attachments[0]
    assert part.url.startswith("http") and part.filename == "release.zip"
    fetch = time.monotonic()
    assert await net.clients[receiver].fetch_attachment(got) == data
    timings = {"upload_and_send": sent, "download": time.monotonic() - fetch,
               "total": time.monotonic() - start}
    if storage is not None:
        tamper_blob(storage, part.content_hash)
        try:
            await net.clients[receiver].fetch_attachment(part)
        except AttachmentError as exc:
            assert "content hash" in str(exc)
        else:
            raise AssertionError("a tampered attachment was accepted")
    return timings


async def forged_edit(net: Clients, gid: bytes, victim: str, forger: str) -> None:
    """``forger`` (a modified client: it skips its own checks) sends a valid MLS message
    editing ``victim``'s message: ``victim`` refuses it and keeps its text. The
    forger's stored state is not used again (call this last)."""
    from mls_client import content as mimi
    from mls_client.events import MessageRejected

    cv, cf = net.clients[victim], net.clients[forger]
    mid = await cv.send_text(gid, "the original")
    await next_event(net, forger, MessageReceived, lambda e: e.message_id == mid)
    data, _ = mimi.build(cf.user_id, gid, mimi.text_body("forged"), replaces=mid)
    group = await cf.group(gid)
    payload = group.encrypt(data)
    result = await cf.transport.submit(gid, group.epoch, payload, is_commit=False,
                                       sender=cf.client_id)
    assert result.accepted
    rejected = await next_event(net, victim, MessageRejected,
                                lambda e: "only its original sender" in e.reason)
    assert cf.user_id in rejected.reason
    row = await cv.message(gid, mid)
    assert row is not None and not row.edited
    assert cv.stats.dropped.get("not_original_sender") == 1
