"""Payloads above Prosody's stanza limit (c2s_stanza_size_limit, 256 KiB by default)
travel as numbered chunks with a SHA-256 and are reassembled (docs/xmpp.md)."""

from __future__ import annotations

import os
from pathlib import Path

from mls_core.extensions import Extension, ExtensionType
from tests.servers.prosody import ProsodyServer
from transports.base import MessageKind

from .helpers import XNet, xmpp_test

STANZA_LIMIT = 262_144


@xmpp_test
async def test_welcome_larger_than_the_stanza_limit(prosody: ProsodyServer,
                                                    tmp_path: Path) -> None:
    assert prosody.stanza_limit == STANZA_LIMIT  # the server default
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob", "carol")
        # a 300 KB GroupContext extension: every Welcome and GroupInfo carries it
        big = Extension(ExtensionType.APPLICATION_ID, os.urandom(300_000))
        gid = await net["alice"].create_group(extensions=[big])
        await net["alice"].add_members(gid, [net.user("bob"), net.user("carol")])
        await net.joined("bob", gid)
        await net.joined("carol", gid)
        bob_t = net.transports["bob"]
        welcomes = [i for i in await bob_t.fetch(bob_t.client_id)
                    if i.kind is MessageKind.WELCOME]
        assert len(welcomes) == 1 and len(welcomes[0].payload) > STANZA_LIMIT
        await net["bob"].send(gid, b"joined through a chunked Welcome")
        await net.settle()
        assert net.received("carol", gid) == [b"joined through a chunked Welcome"]
        await net.agree(gid, ["alice", "bob", "carol"])
        # the GroupInfo (also > 256 KiB) came back whole from the room archive
        info, _tree = await net.transports["carol"].fetch_group_info(gid)
        assert len(info) > STANZA_LIMIT
        assert all(t.rejected == 0 for t in net.transports.values())
    finally:
        await net.close()


@xmpp_test
async def test_small_chunks_reassemble_in_order(prosody: ProsodyServer,
                                                tmp_path: Path) -> None:
    """Every message split into 1 KiB chunks (interleaved between senders)."""
    net = XNet(prosody, tmp_path, chunk_size=1024)
    try:
        await net.add("alice", "bob")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob")])
        await net.joined("bob", gid)
        texts = [bytes([65 + i]) * 5000 for i in range(4)]
        for i, text in enumerate(texts):
            await net["alice" if i % 2 else "bob"].send(gid, text)
        await net.settle()
        assert net.received("alice", gid) == [texts[0], texts[2]]
        assert net.received("bob", gid) == [texts[1], texts[3]]
        await net.agree(gid, ["alice", "bob"])
    finally:
        await net.close()
