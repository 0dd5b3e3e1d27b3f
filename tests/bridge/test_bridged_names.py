"""Issue 17 item 3 across the bridge (embedded networks): a shared group name is seen,
used and changed on both networks."""

from __future__ import annotations

from pathlib import Path

from tests.bridge.helpers import bridged_net, identity
from tests.client.helpers import async_test


@async_test
async def test_the_shared_name_crosses_the_bridge(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice")
        await net.add("matrix", "carol")
        alice, carol = net.clients["alice"], net.clients["carol"]
        gid = await alice.create_group(name="team", topic="across")
        await alice.add_members(gid, [identity("matrix", "carol")])
        await net.settle()
        assert await carol.resolve_group("team") == gid
        await carol.send(await carol.resolve_group("team"), b"from matrix, by name")
        await carol.rename_group(gid, "crew")
        await net.settle()
        assert b"from matrix, by name" in net.received("alice", gid)
        assert await alice.resolve_group("crew") == gid
        named = await alice.group_name(gid)
        assert named is not None and named.topic_text == "across"

