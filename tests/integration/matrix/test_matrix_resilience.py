"""Catch-up, concurrent Commits, homeserver restarts and large payloads on a real Synapse."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.extensions import Extension, ExtensionType
from mls_core.messages import EXTERNAL_SENDERS, ExternalSender
from tests.client.helpers import async_test
from transports.matrix import events as ev

from .conftest import Homeserver
from .helpers import MatrixNet


async def _group(net: MatrixNet, owner: str, members: list[str]) -> bytes:
    gid = await net[owner].create_group()
    await net[owner].add_members(gid, [net.identity(net.user_of[m]) for m in members])
    await net.sync()
    return gid


@async_test
async def test_offline_member_catches_up_across_a_limited_timeline(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        for name in ("alice", "bob"):
            await net.add(name)
        await net.add("carol", timeline_limit=3)  # forces /messages backfill of gaps
        gid = await _group(net, "alice", ["bob", "carol"])
        # carol is offline (process gone) while the group moves on by several epochs
        await net["carol"].close()
        await net.transports["carol"].close()
        for i in range(4):
            await net["alice"].update(gid)
            await net["bob"].send(gid, f"missed {i}".encode())
            await net.sync("alice", "bob")
        carol = await net.reopen("carol")
        await net.sync("carol")
        assert net.transports["carol"].backfill_pages > 0  # the gap was paginated
        assert net.received("carol", gid) == [f"missed {i}".encode() for i in range(4)]
        assert await carol.epoch(gid) == await net["alice"].epoch(gid) == 5
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        await net.close()


@async_test
async def test_concurrent_commits_resolve_identically(tmp_path: Path,
                                                      homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        for name in ("alice", "bob", "carol", "dave"):
            await net.add(name)
        gid = await _group(net, "alice", ["bob", "carol", "dave"])
        # three members commit for the same epoch at once: the timeline orders them,
        # the first wins everywhere, the others process it and retry
        await asyncio.gather(net["alice"].update(gid), net["bob"].update(gid),
                             net["carol"].update(gid))
        await net.sync()
        await net.sync()
        assert await net["dave"].epoch(gid) == 4
        await net.agree(gid, ["alice", "bob", "carol", "dave"])
        lost = sum(net[n].stats.commits_lost for n in ("alice", "bob", "carol"))
        assert lost >= 2  # two of the three first attempts lost epoch 1
    finally:
        await net.close()


@async_test
async def test_synapse_restart_mid_conversation_loses_nothing(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        for name in ("alice", "bob", "carol"):
            await net.add(name)
        gid = await _group(net, "alice", ["bob", "carol"])
        await net["alice"].send(gid, b"before restart")
        await net["bob"].update(gid)
        await asyncio.to_thread(homeserver.server.restart)
        await net["carol"].send(gid, b"after restart")
        await net.sync()
        await net["alice"].remove_members(gid, [net.identity("carol")])
        await net["bob"].send(gid, b"without carol")
        await net.sync()
        assert net.received("bob", gid) == [b"before restart", b"after restart"]
        assert net.received("alice", gid) == [b"after restart", b"without carol"]
        assert net.received("carol", gid) == [b"before restart"]
        await net.agree(gid, ["alice", "bob"])
    finally:
        await net.close()


def _huge_external_sender() -> Extension:
    """A GroupContext extension of ~70 kB: the GroupInfo and every Welcome of the group
    exceed the homeserver's 65,536-byte event limit."""
    _, pub = get_suite(1).generate_signature_key_pair()
    out = bytearray()
    EXTERNAL_SENDERS.encode((ExternalSender(pub, Credential.basic(b"x" * 70_000)),), out)
    return Extension(ExtensionType.EXTERNAL_SENDERS, bytes(out))


@async_test
async def test_welcome_and_messages_over_the_event_limit_use_media(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        for name in ("alice", "bob", "carol"):
            await net.add(name)
        gid = await net["alice"].create_group(extensions=[_huge_external_sender()])
        info, _ = await net.transports["alice"].fetch_group_info(gid)
        assert len(info) > ev.EVENT_SIZE_LIMIT
        await net["alice"].add_members(gid, [net.identity("bob"), net.identity("carol")])
        welcomes = [m for m in await net.transports["bob"].fetch(
            net.transports["bob"].client_id) if m.kind == "welcome"]
        assert len(welcomes) == 1 and len(welcomes[0].payload) > ev.EVENT_SIZE_LIMIT
        await net.sync()
        big = bytes(range(256)) * 400  # 102,400 bytes of application data
        await net["bob"].send(gid, big)
        await net.sync()
        assert net.received("carol", gid) == [big]
        assert net.received("alice", gid) == [big]
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        await net.close()


@async_test
async def test_key_packages_are_claimed_once_then_last_resort(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        await net.add("alice")
        bob = await net.add("bob")
        tb, ta = net.transports["bob"], net.transports["alice"]
        count = await tb.key_package_count(tb.client_id)
        assert count == 4  # pool_size
        refs = [(await ta.claim_key_package(tb.client_id)) for _ in range(count + 2)]
        assert [c.last_resort for c in refs] == [False] * count + [True, True]
        assert len({c.ref for c in refs[:count]}) == count  # each one-use KeyPackage once
        assert refs[-1].key_package == refs[-2].key_package
        assert await tb.key_package_count(tb.client_id) == 0
        assert await ta.claim_user_key_packages(net.identity("alice")) != []
        await bob.publish_key_packages()  # the pool refills
        assert await tb.key_package_count(tb.client_id) == 4
    finally:
        await net.close()


@async_test
async def test_recover_after_state_loss_from_room_group_info(
        tmp_path: Path, homeserver: Homeserver) -> None:
    """RFC 9750 "Recovery After State Loss": a device that lost its MLS state rejoins by
    external Commit from the GroupInfo kept in room state."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        for name in ("alice", "bob"):
            await net.add(name)
        gid = await _group(net, "alice", ["bob"])
        bob_leaf = (await net["bob"].group(gid)).own_leaf_index
        async with net["bob"].store.transaction() as tx:  # bob loses the group's state
            await tx.delete_group(gid)
        bob = await net.reopen("bob")
        await net["alice"].send(gid, b"lost to bob")
        await net["alice"].update(gid)
        epoch = await bob.recover_group(gid)
        assert epoch == 3
        await net["alice"].send(gid, b"welcome back")
        await net.sync()
        assert net.received("bob", gid) == [b"welcome back"]
        members = await net["alice"].members(gid)
        assert len(members) == 2 and bob_leaf in {m.index for m in members}
        await net.agree(gid, ["alice", "bob"])
    finally:
        await net.close()
