"""MIMI content over a real Prosody (issue 18): reply, reaction, edit and delete seen as
such, a 5 MB attachment through XEP-0363 HTTP File Upload (``mod_http_file_share``)
received intact, a blob tampered with on the server refused, and a forged edit
(another member editing alice's message) refused."""

from __future__ import annotations

from pathlib import Path

from tests.integration.content import conversation, file_transfer, forged_edit
from tests.servers.prosody import ProsodyServer

from .helpers import XNet, xmpp_test


@xmpp_test
async def test_reply_react_edit_delete_and_attachment_over_xmpp(prosody: ProsodyServer,
                                                                tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        alice, _ = await net.add("alice", "bob")
        gid = await alice.create_group()
        await alice.add_members(gid, [net.user("bob")])
        await net.joined("bob", gid)
        await net.settle()
        timings = await conversation(net, gid, "alice", "bob")
        timings |= await file_transfer(net, gid, "bob", "alice", prosody.data_path)
        await forged_edit(net, gid, "alice", "bob")
        print(f"\nxmpp content timings: {timings}")
    finally:
        await net.close()
