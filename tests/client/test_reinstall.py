"""A device reinstalled after losing its state directory (issue 17 item 4): its stale
KeyPackages are withdrawn, it can be invited again, and ``recover`` replaces its stale
leaf (RFC 9750 "Recovery After State Loss")."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from mls_client import GroupJoined, MLSClient

from .helpers import Net, async_test, settings_for


async def wipe_and_reinstall(net: Net, name: str) -> tuple[MLSClient, int]:
    """Lose ``name``'s whole state directory, then create its identity again with the
    same client id; returns the client and how many stale KeyPackages were replaced."""
    await net.clients[name].close()
    shutil.rmtree(net.root / name)
    client = await MLSClient.open(settings_for(net.root, name), net.transport)
    await client.create_identity(name, f"{name}-dev")
    report = await client.publish_key_packages()
    net.clients[name] = client
    return client, report.replaced


@async_test
async def test_a_wiped_device_replaces_its_key_packages_and_can_be_invited(
        tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, _ = await net.add("alice", "bob")
        assert await net.ds.key_package_count("bob-dev") == 4
        bob, replaced = await wipe_and_reinstall(net, "bob")
        assert replaced == 5  # the pool of 4 and the last-resort KeyPackage
        assert await net.ds.key_package_count("bob-dev") == 4
        gid = await alice.create_group(name="team")
        added = await alice.add_members(gid, ["bob"])
        assert added.added_clients == ("bob-dev",)
        await net.sync()
        assert any(isinstance(e, GroupJoined) and e.group_id == gid
                   for e in net.events["bob"])
        await bob.send(gid, b"back")
        await net.sync()
        assert net.received("alice", gid) == [b"back"]
        # a first install has nothing to replace
        (carol,) = await net.add("carol")
        assert (await carol.publish_key_packages()).replaced == 0
    finally:
        await net.close()


@async_test
async def test_recover_after_a_full_state_loss_leaves_one_leaf(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, _, carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        bob, _ = await wipe_and_reinstall(net, "bob")
        await bob.recover_group(gid)
        await net.sync()
        # bob's new leaf supports the group name although the group had none
        epoch = (await alice.rename_group(gid, "team")).epoch
        await net.sync()
        assert await bob.resolve_group("team") == gid
        for client in (alice, bob, carol):
            names = [m.credential.identity for m in await client.members(gid)]
            assert sorted(names) == [b"alice", b"bob", b"carol"]
            assert await client.epoch(gid) == epoch
        await net.agree(gid, ["alice", "bob", "carol"])
        await bob.send(gid, b"recovered")
        await net.sync()
        assert net.received("carol", gid) == [b"recovered"]
    finally:
        await net.close()


@async_test
async def test_inviting_a_reinstalled_member_replaces_its_stale_leaf(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, _ = await net.add("alice", "bob")
        gid = await alice.create_group(name="team")
        await alice.add_members(gid, ["bob"])
        await net.sync()
        bob, _ = await wipe_and_reinstall(net, "bob")
        added = await alice.add_members(gid, ["bob"])
        assert added.added_clients == ("bob-dev",) and added.replaced == ("bob",)
        await net.sync()
        for client in (alice, bob):
            names = [m.credential.identity for m in await client.members(gid)]
            assert sorted(names) == [b"alice", b"bob"]
        await net.agree(gid, ["alice", "bob"])
        # a second device of the same user is not a stale leaf of the first
        phone = await MLSClient.open(settings_for(net.root, "bob-phone"), net.transport)
        net.clients["bob-phone"], net.events["bob-phone"] = phone, []
        await phone.create_identity("bob", "bob-phone")
        await phone.publish_key_packages()
        again = await alice.add_members(gid, ["bob"])
        assert again.added_clients == ("bob-phone",) and again.replaced == ()
        names = [m.credential.identity for m in await alice.members(gid)]
        assert sorted(names) == [b"alice", b"bob", b"bob"]
    finally:
        await net.close()


@async_test
async def test_an_adder_without_the_remove_right_leaves_the_stale_leaf(
        tmp_path: Path) -> None:
    """The room policy lets members add but not remove: the re-add still works, and the
    stale leaf stays for a member with the right (it would refuse the whole Commit)."""
    from mls_core.room_policy import Action, Role, RoomPolicy

    net = Net(tmp_path)
    try:
        alice, bob, _ = await net.add("alice", "bob", "carol")
        policy = RoomPolicy.build({b"alice": Role.ADMIN}, rules={Action.ADD: Role.MEMBER})
        gid = await alice.create_group(policy=policy)
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        await wipe_and_reinstall(net, "carol")
        added = await bob.add_members(gid, ["carol"])
        assert added.added_clients == ("carol-dev",) and added.replaced == ()
        names = [m.credential.identity for m in await bob.members(gid)]
        assert sorted(names) == [b"alice", b"bob", b"carol", b"carol"]
    finally:
        await net.close()


@async_test
async def test_a_key_package_of_another_device_is_not_added(tmp_path: Path) -> None:
    """A KeyPackage whose application_id names another device than the one it was
    published for: its Welcome would reach a device without its keys, so it is
    rejected (with a warning) and never reported as added."""
    from mls_client import ClientWarning
    from mls_client.keypackages import CAPABILITIES, device_extensions
    from mls_core.ciphersuite import get_suite
    from mls_core.credentials import Credential
    from mls_core.framing import MLSMessage
    from mls_core.key_package import create_key_package
    from transports.base import KeyPackageEntry

    net = Net(tmp_path)
    try:
        alice, _ = await net.add("alice", "bob")
        suite = get_suite(1)
        kp, _ = create_key_package(suite, Credential.basic(b"bob"),
                                   suite.generate_signature_key_pair()[0],
                                   now=int(time.time()),
                                   capabilities=CAPABILITIES,
                                   leaf_extensions=device_extensions("bob-dev"))
        await net.ds.publish_key_packages("bob-copy", "bob", [KeyPackageEntry(
            suite.make_key_package_ref(kp.encode()), MLSMessage.of(kp).encode(), False)])
        gid = await alice.create_group()
        added = await alice.add_members(gid, ["bob"])
        assert added.added_clients == ("bob-dev",)
        warnings = [e.message for e in await alice.sync() if isinstance(e, ClientWarning)]
        assert any("bob-copy rejected: KeyPackageError: its application_id names another "
                   "device, 'bob-dev'" in w for w in warnings), warnings
    finally:
        await net.close()

