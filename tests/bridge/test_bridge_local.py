"""One MLS group over two networks through the bridge (embedded networks)."""

from __future__ import annotations

from pathlib import Path

from tests.bridge.helpers import bridged_net, identity
from tests.client.helpers import async_test


@async_test
async def test_cross_network_group(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice", "bob")
        await net.add("matrix", "carol", "dave")
        alice = net.clients["alice"]
        gid = await alice.create_group()
        assert net.hub is not None and set(await net.hub.rooms(gid)) == {"xmpp", "matrix"}
        added = await alice.add_members(gid, [identity("matrix", "carol"),
                                              identity("xmpp", "bob")])
        assert not added.missing_users
        await net.sync()
        await net.agree(gid, ["alice", "bob", "carol"])
        # a Matrix member adds an XMPP-side... and a Matrix user
        carol = net.clients["carol"]
        await carol.add_members(gid, [identity("matrix", "dave")])
        await net.sync()
        await net.agree(gid, ["alice", "bob", "carol", "dave"])
        await carol.send(gid, b"hello from matrix")
        await alice.send(gid, b"hello from xmpp")
        await net.sync()
        assert b"hello from matrix" in net.received("bob", gid)
        assert b"hello from xmpp" in net.received("dave", gid)
