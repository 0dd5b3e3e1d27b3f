"""MLSClient flows over a real Synapse (the scenarios of tests/client over Matrix)."""

from __future__ import annotations

from pathlib import Path

from mls_client.events import RemovedFromGroup
from tests.client.helpers import async_test

from .conftest import Homeserver
from .helpers import MatrixNet


@async_test
async def test_four_users_two_devices_form_a_group(tmp_path: Path,
                                                   homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        alice = await net.add("alice")
        await net.add("bob")
        await net.add("bob2", "bob")
        await net.add("carol")
        await net.add("dave")
        gid = await alice.create_group(name="team")
        added = await alice.add_members(gid, [net.identity(u) for u in ("bob", "carol", "dave")])
        assert added.missing_users == ()
        assert len(added.added_clients) == 4  # bob's two devices, carol, dave
        await net.sync()
        await net.agree(gid, list(net.clients))

        await net["bob2"].send(gid, b"hello from bob's second device")
        await net["carol"].send(gid, b"hi all")
        await net.sync()
        for name in ("alice", "bob", "dave"):
            assert net.received(name, gid) == [b"hello from bob's second device", b"hi all"]
        assert net.received("bob2", gid) == [b"hi all"]

        await net["dave"].update(gid)
        await alice.remove_members(gid, [net.identity("carol")])
        await net.sync()
        assert any(isinstance(e, RemovedFromGroup) for e in net.events["carol"])
        await net["bob"].send(gid, b"after carol")
        await net.sync()
        assert b"after carol" not in net.received("carol")
        assert b"after carol" in net.received("dave")
        await net.agree(gid, ["alice", "bob", "bob2", "dave"])
    finally:
        await net.close()


@async_test
async def test_second_device_of_a_member_added_later(tmp_path: Path,
                                                     homeserver: Homeserver) -> None:
    """alice2 shares alice's room membership (and journals the room) before it is in the
    MLS group: it gets only what follows the Commit that adds it."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        alice = await net.add("alice")
        await net.add("bob")
        gid = await alice.create_group()
        await alice.add_members(gid, [net.identity("bob")])
        await net.sync()
        await net["bob"].send(gid, b"before alice2")
        await net.add("alice2", "alice")
        await net.sync()  # alice2 sees the room's events but holds no group
        added = await alice.add_members(gid, [net.identity("alice")])
        assert added.added_clients == (net.transports["alice2"].client_id,)
        await net["bob"].send(gid, b"after alice2")
        await net.sync()
        assert net.received("alice2", gid) == [b"after alice2"]
        assert net.received("alice", gid) == [b"before alice2", b"after alice2"]
        await net.agree(gid, ["alice", "alice2", "bob"])
    finally:
        await net.close()
