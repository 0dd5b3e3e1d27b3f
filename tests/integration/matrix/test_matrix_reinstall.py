"""Issue 17 items 3 and 4 over a real Synapse: shared group names, and a device that
lost its state (its one-time-key KeyPackages are drained and replaced, it is invited
again, recover removes its stale leaf)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mls_client import GroupJoined, MLSClient
from tests.client.helpers import async_test

from .conftest import Homeserver
from .helpers import MatrixNet, device_settings


async def reinstall(net: MatrixNet, name: str) -> tuple[MLSClient, int]:
    """Lose the device's state (client database and transport journal), log in again
    with the same device id: returns the client and how many stale KeyPackages it
    replaced."""
    await net.clients[name].close()
    await net.transports[name].close()
    shutil.rmtree(net.root / name)
    (net.root / f"{name}.journal").unlink()
    transport = await net.connect(name, net.user_of[name])
    client = await MLSClient.open(device_settings(net.root, name), transport)
    await client.create_identity(net.identity(net.user_of[name]), transport.client_id)
    report = await client.publish_key_packages()
    net.clients[name], net.transports[name], net.events[name] = client, transport, []
    return client, report.replaced


@async_test
async def test_names_and_a_wiped_device(tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        alice = await net.add("alice")
        await net.add("bob")
        bob, replaced = await reinstall(net, "bob")
        assert replaced == 5  # 4 one-time keys and the fallback key
        assert await net.transports["bob"].key_package_count(
            net.transports["bob"].client_id) == 4
        gid = await alice.create_group(name="team", topic="launch")
        added = await alice.add_members(gid, [net.identity("bob")])
        assert added.added_clients == (net.transports["bob"].client_id,)
        await net.sync()
        assert any(isinstance(e, GroupJoined) for e in net.events["bob"])
        assert await bob.resolve_group("team") == gid
        await bob.send(await bob.resolve_group("team"), b"via the shared name")
        await net.sync()
        assert net.received("alice", gid) == [b"via the shared name"]

        bob, _ = await reinstall(net, "bob")
        await bob.recover_group(gid)
        await net.sync()
        for name in ("alice", "bob"):
            identities = sorted(m.credential.identity or b""
                                for m in await net[name].members(gid))
            assert identities == sorted([net.identity("alice").encode(),
                                         net.identity("bob").encode()]), name
        await net.agree(gid, ["alice", "bob"])
    finally:
        await net.close()
