"""MIMI content over a real Synapse (issue 18): reply, reaction, edit and delete seen as
such, a 5 MB attachment through the media repository received intact by a plain HTTP
GET (no token: devservers' ``enable_authenticated_media: false``), and a blob tampered
with on the server refused, and a forged edit refused."""

from __future__ import annotations

from pathlib import Path

from tests.client.helpers import async_test_within
from tests.integration.content import conversation, file_transfer, forged_edit

from .conftest import Homeserver
from .helpers import MatrixNet


@async_test_within(180.0)
async def test_reply_react_edit_delete_and_attachment_over_matrix(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        alice = await net.add("alice")
        await net.add("bob")
        gid = await alice.create_group()
        await alice.add_members(gid, [net.identity("bob")])
        await net.sync()
        timings = await conversation(net, gid, "alice", "bob")
        timings |= await file_transfer(net, gid, "bob", "alice",
                                       homeserver.server.data_dir / "media")
        await forged_edit(net, gid, "alice", "bob")
        print(f"\nmatrix content timings: {timings}")
    finally:
        await net.close()
