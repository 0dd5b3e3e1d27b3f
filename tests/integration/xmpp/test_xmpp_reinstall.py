"""Issue 17 items 3 and 4 over a real Prosody: shared group names, and a device that
lost its state directory (stale PEP KeyPackages replaced, invited again, recover
removes its stale leaf)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mls_client import MLSClient
from tests.servers.prosody import ProsodyServer

from .helpers import XNet, xmpp_test


async def reinstall(net: XNet, name: str) -> tuple[MLSClient, int]:
    """Close the device, lose its whole state directory, start it again with the same
    JID (client id): returns the client and how many stale KeyPackages it replaced."""
    await net.close_one(name)
    shutil.rmtree(net.root / name)
    transport = await net.transport(name)
    client = await MLSClient.open(net.settings(name), transport)
    await client.create_identity(transport.user_id, transport.client_id)
    report = await client.publish_key_packages()
    net.clients[name], net.transports[name] = client, transport
    net.events[name] = []
    return client, report.replaced


@xmpp_test
async def test_invitee_uses_the_shared_name(prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        alice, bob = await net.add("alice", "bob")
        gid = await alice.create_group(name="team", topic="launch")
        await alice.add_members(gid, [net.user("bob")])
        await net.joined("bob", gid)
        assert await bob.resolve_group("team") == gid
        (summary,) = await bob.groups()
        assert (summary.name, summary.topic, summary.devices) == ("team", "launch", 2)
        await bob.send(await bob.resolve_group("team"), b"via the shared name")
        await net.settle()
        assert net.received("alice", gid) == [b"via the shared name"]
        await bob.rename_group(gid, "crew")
        await net.settle()
        assert await alice.resolve_group("crew") == gid
    finally:
        await net.close()


@xmpp_test
async def test_wiped_device_is_invited_again_and_recovers(prosody: ProsodyServer,
                                                          tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        alice, _ = await net.add("alice", "bob.laptop")
        assert await net.transports["bob.laptop"].key_package_count(
            net.jid("bob.laptop")) == 4
        bob, replaced = await reinstall(net, "bob.laptop")
        assert replaced == 5  # the pool and the last-resort item of the PEP node
        assert await net.transports["bob.laptop"].key_package_count(
            net.jid("bob.laptop")) == 4
        gid = await alice.create_group(name="team")
        added = await alice.add_members(gid, [net.user("bob")])
        assert added.added_clients == (net.jid("bob.laptop"),)
        await net.joined("bob.laptop", gid)
        await net.settle()
        await net.agree(gid, ["alice", "bob.laptop"])

        # lost again while a member: recover rejoins and removes the stale leaf
        bob, replaced = await reinstall(net, "bob.laptop")
        assert replaced >= 4
        await bob.recover_group(gid)
        await net.settle()
        for name in ("alice", "bob.laptop"):
            members = await net[name].members(gid)
            assert sorted(m.credential.identity or b"" for m in members) == sorted(
                [net.user("alice").encode(), net.user("bob").encode()]), name
        await net.agree(gid, ["alice", "bob.laptop"])
        await bob.send(gid, b"back")
        await net.settle()
        assert b"back" in net.received("alice", gid)
    finally:
        await net.close()


def test_cli_names_and_a_wiped_device_over_xmpp(prosody: ProsodyServer,
                                                tmp_path: Path) -> None:
    """The issue's story on the command line: the invitee uses ``send team``; a device
    whose state directory is lost creates its identity again (its stale KeyPackages
    replaced, said so), is invited again, and ``recover`` leaves one leaf."""
    from tests.client.test_cli import run

    from .test_xmpp_cli import _config

    users = {}
    for name in ("rnalice", "rnbob"):
        cfg = _config(tmp_path, prosody, name)

        def cli(*args: str, cfg: Path = cfg) -> tuple[str, str]:
            result = run("--config", cfg, *args, home=tmp_path)
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
            return result.stdout, result.stderr

        users[name] = cli
        jid = f"{name}@{prosody.domain}"
        cli("identity", "create", f"xmpp:{jid}", "--client-id", f"{jid}/cli")
    alice, bob = users["rnalice"], users["rnbob"]
    bob_jid = f"xmpp:rnbob@{prosody.domain}"
    gid = alice("group", "create", "--name", "team")[0].strip()
    assert alice("invite", "team", bob_jid)[0].strip().endswith("; Welcome sent")
    assert "joined group" in bob("read")[1]
    bob("send", "team", "hello by name")
    assert "[team] epoch 1 xmpp:rnbob" in alice("read")[0]
    listed = bob("groups")[0]
    assert listed.startswith(f"{gid}  team  epoch 1  2 users/2 devices")

    shutil.rmtree(tmp_path / "rnbob")  # the device loses its state directory
    _, err = bob("identity", "create", bob_jid, "--client-id",
                 f"rnbob@{prosody.domain}/cli")
    # the pool (less what the invite used, plus refills) and the last-resort item
    assert re.search(r"replaced [2-9] stale KeyPackage\(s\)", err), err
    ops = alice("group", "create", "--name", "ops")[0].strip()
    assert alice("invite", "ops", bob_jid)[0].strip().endswith("; Welcome sent")
    assert f"joined group {ops[:16]}" in bob("read")[1]

    out, _ = bob("recover", gid)  # nothing here knows "team" any more: the full id
    assert out.startswith(f"rejoined {gid[:16]}")
    alice("sync")
    members = alice("members", "team")[0].split()
    assert members.count(bob_jid) == 1 and len(members) == 4  # two "index  user" rows
