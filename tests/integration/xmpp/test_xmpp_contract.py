"""XmppDeliveryTransport against the DeliveryTransport contract, on a real Prosody
(the same properties tests/transports/test_local.py checks on the embedded service)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mls_client.settings import Settings
from mls_client.transport_factory import open_transport
from mls_core.framing import ContentType, MLSMessage, PrivateMessage
from tests.servers.prosody import ProsodyServer
from transports.base import (
    DeliveryTransport,
    InvalidRequestError,
    KeyPackageEntry,
    MessageKind,
    NoKeyPackageError,
    SubmitStatus,
    UnknownGroupError,
)
from transports.xmpp.transport import XmppDeliveryTransport

from .helpers import XNet, mls_group, welcome_to, xmpp_settings, xmpp_test


def message(group_id: bytes, epoch: int, content_type: int, tag: bytes = b"-") -> bytes:
    """An MLSMessage(PrivateMessage) (the transport reads only its clear header)."""
    return MLSMessage.of(PrivateMessage(group_id, epoch, content_type, b"", b"sd",
                                        tag)).encode()


def kp(n: int, last: bool = False) -> KeyPackageEntry:
    return KeyPackageEntry(ref=os.urandom(16), key_package=b"kp-%d" % n + os.urandom(8),
                           last_resort=last)


@xmpp_test
async def test_key_packages_publish_claim_last_resort(prosody: ProsodyServer,
                                                      tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    alice = await net.transport("alice.phone")
    alice2 = await net.transport("alice.laptop")
    bob = await net.transport("bob")
    net.transports.update({"a": alice, "a2": alice2, "b": bob})
    try:
        assert isinstance(alice, DeliveryTransport)
        entries = [kp(1), kp(2), kp(3, last=True)]
        await alice.publish_key_packages(alice.client_id, alice.user_id, entries)
        await alice2.publish_key_packages(alice2.client_id, alice2.user_id, [kp(4)])
        assert await alice.key_package_count(alice.client_id) == 2
        with pytest.raises(InvalidRequestError, match="already published"):
            await alice.publish_key_packages(alice.client_id, alice.user_id, [entries[0]])
        with pytest.raises(InvalidRequestError):
            await alice.publish_key_packages(bob.client_id, alice.user_id, [kp(5)])
        with pytest.raises(InvalidRequestError):
            await alice.publish_key_packages(alice.client_id, bob.user_id, [kp(5)])

        # one per device of the user, with the device's client id
        both = await bob.claim_user_key_packages(alice.user_id)
        assert [c.client_id for c in both] == sorted([alice.client_id, alice2.client_id])
        assert all(not c.last_resort for c in both)
        first = next(c for c in both if c.client_id == alice.client_id)
        second = await bob.claim_key_package(alice.client_id)
        assert {first.ref, second.ref} == {entries[0].ref, entries[1].ref}
        assert {first.key_package, second.key_package} == {entries[0].key_package,
                                                           entries[1].key_package}
        # the owner retracts what was claimed when its claim notices arrive
        for _ in range(100):
            if await alice.key_package_count(alice.client_id) == 0:
                break
            await asyncio.sleep(0.05)
        assert await alice.key_package_count(alice.client_id) == 0
        for _ in range(2):  # only the last-resort one is left, and it stays
            last = await bob.claim_key_package(alice.client_id)
            assert last.last_resort and last.ref == entries[2].ref
        # a new last-resort KeyPackage replaces the old one
        newer = kp(6, last=True)
        await alice.publish_key_packages(alice.client_id, alice.user_id, [newer])
        assert (await bob.claim_key_package(alice.client_id)).ref == newer.ref
        # alice's laptop: its only one-use KeyPackage was claimed, no last resort
        with pytest.raises(NoKeyPackageError):
            await bob.claim_key_package(alice2.client_id)
        assert await bob.claim_user_key_packages(bob.user_id) == []
        with pytest.raises(InvalidRequestError):
            await bob.claim_user_key_packages("alice@localhost")
        with pytest.raises(InvalidRequestError):
            await bob.claim_key_package("no-resource@localhost")
    finally:
        await net.close()


@xmpp_test
async def test_submit_order_fetch_and_resume(prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    alice = await net.transport("alice")
    bob = await net.transport("bob", chunk_size=1024)
    net.transports.update({"a": alice, "b": bob})
    try:
        gid = os.urandom(16)
        await alice.subscribe(alice.client_id, gid)
        r1 = await alice.submit(gid, 0, message(gid, 0, ContentType.APPLICATION, b"m1"),
                                is_commit=False, sender=alice.client_id)
        assert r1.status is SubmitStatus.ACCEPTED and r1.position is not None
        c1 = await alice.submit(gid, 0, message(gid, 0, ContentType.COMMIT, b"c1"),
                                is_commit=True, sender=alice.client_id)
        assert c1.status is SubmitStatus.ACCEPTED
        # a second Commit for epoch 0: the room cannot judge validity, the stream decides
        c2 = await alice.submit(gid, 0, message(gid, 0, ContentType.COMMIT, b"c2"),
                                is_commit=True, sender=alice.client_id)
        assert c2.status is SubmitStatus.ORDERED
        items = await alice.fetch(alice.client_id)
        assert [i.payload[-2:] for i in items] == [b"m1", b"c1", b"c2"]
        assert [i.position for i in items] == [r1.position, c1.position, c2.position]
        assert len({i.cursor for i in items}) == 3
        with pytest.raises(InvalidRequestError, match="differs"):
            await alice.submit(gid, 1, message(gid, 0, ContentType.COMMIT), is_commit=True,
                               sender=alice.client_id)
        with pytest.raises(InvalidRequestError):
            await alice.submit(gid, 0, message(gid, 0, ContentType.COMMIT), is_commit=False,
                               sender=alice.client_id)
        with pytest.raises(InvalidRequestError):
            await alice.fetch(alice.client_id, after="garbage")
        with pytest.raises(InvalidRequestError):
            await alice.fetch(bob.client_id)

        # bob joins through a Welcome after c1: he gets the Welcome, and once he joined
        # (subscribe), c2 onwards
        welcome = await welcome_to(bob)
        await alice.send_welcome([bob.client_id], welcome, gid, after_position=c1.position)
        big = message(gid, 0, ContentType.APPLICATION, os.urandom(5000))

        async def bob_items(n: int) -> list[bytes]:
            for _ in range(100):
                got = await bob.fetch(bob.client_id)
                if len(got) >= n:
                    return [g.payload for g in got]
                await asyncio.sleep(0.05)
            raise AssertionError(f"bob got {len(got)} items")

        assert await bob_items(1) == [welcome]
        await asyncio.sleep(0.2)
        assert await bob_items(1) == [welcome]  # the Welcome alone follows no room
        await bob.subscribe(bob.client_id, gid)
        assert (await bob_items(2))[:2] == [welcome, items[2].payload]
        await bob.submit(gid, 0, big, is_commit=False, sender=bob.client_id)  # 6 chunks
        await alice.submit(gid, 0, message(gid, 0, ContentType.APPLICATION, b"m2"),
                           is_commit=False, sender=alice.client_id)
        seen = await bob_items(4)
        assert seen[2:] == [big, message(gid, 0, ContentType.APPLICATION, b"m2")]
        cursors = [i.cursor for i in await bob.fetch(bob.client_id)]

        # a new instance (a restart) resumes exactly after any cursor (the old one is
        # closed first: two sessions of one full JID keep kicking each other out)
        await net.transports.pop("b").close()
        again = await net.transport("bob")
        net.transports["b"] = again
        for k, cursor in enumerate(cursors):
            rest = await again.fetch(again.client_id, after=cursor)
            assert [i.payload for i in rest] == seen[k + 1:], k
        stream = again.receive(again.client_id, after=cursors[-1])
        nxt = asyncio.ensure_future(anext(stream))
        await alice.submit(gid, 0, message(gid, 0, ContentType.APPLICATION, b"m3"),
                           is_commit=False, sender=alice.client_id)
        got = await asyncio.wait_for(nxt, 10)
        assert got.payload.endswith(b"m3") and got.sender == alice.client_id
        assert got.sender_identity == alice.user_id
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await net.close()


@xmpp_test
async def test_group_info_newest_epoch_wins(prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    alice = await net.transport("alice")
    net.transports["a"] = alice
    try:
        gid = os.urandom(16)
        with pytest.raises(UnknownGroupError):
            await alice.fetch_group_info(gid)
        await alice.subscribe(alice.client_id, gid)
        with pytest.raises(UnknownGroupError):
            await alice.fetch_group_info(gid)
        group, _ = mls_group(alice.user_id, gid, epochs=2)
        gi2 = group.group_info()
        group.commit([])
        group.merge_pending_commit()
        gi3 = group.group_info(with_ratchet_tree=False)
        tree3 = group.ratchet_tree_bytes()
        await alice.publish_group_info(gid, 3, gi3, tree3)
        await alice.publish_group_info(gid, 2, gi2)  # late, older: ignored
        assert await alice.fetch_group_info(gid) == (gi3, tree3)
        group.commit([])
        group.merge_pending_commit()
        gi4 = group.group_info()
        await alice.publish_group_info(gid, 4, gi4)
        assert await alice.fetch_group_info(gid) == (gi4, None)
        assert alice.rejected == 0
        # GroupInfo items are not group messages: the stream holds none
        assert all(i.kind is not MessageKind.GROUP for i in
                   await alice.fetch(alice.client_id))
        with pytest.raises(InvalidRequestError):
            await alice.publish_group_info(gid, -1, b"x")
    finally:
        await net.close()


@xmpp_test
async def test_the_client_limits_bound_the_group_infos_read(prosody: ProsodyServer,
                                                            tmp_path: Path) -> None:
    """Issue 16: a device opened from client settings (mls_client.transport_factory)
    checks the room's GroupInfo within the settings' ``[limits]``: one over them is
    dropped as ``group-info-invalid``; another device with the defaults reads it."""
    net = XNet(prosody, tmp_path)
    alice = await net.transport("alice")
    net.transports["a"] = alice
    try:
        gid = os.urandom(16)
        group, _ = mls_group(alice.user_id, gid)
        info = group.group_info()
        await alice.subscribe(alice.client_id, gid)
        await alice.publish_group_info(gid, 0, info)
        account = xmpp_settings(prosody, net.jid("alice.small"))
        settings = Settings.model_validate({
            "state_dir": tmp_path / "small", "transport": {"kind": "xmpp"},
            "limits": {"max_tree_bytes": 64, "max_message_bytes": len(info) - 1},
            "xmpp": account.model_dump(exclude_unset=True)})
        small = await open_transport(settings)
        net.transports["small"] = small
        assert isinstance(small, XmppDeliveryTransport)
        assert small.settings.limits == settings.group_config().limits
        await small.subscribe(small.client_id, gid)
        with pytest.raises(UnknownGroupError):
            await small.fetch_group_info(gid)
        assert small.drops.snapshot() == {"group-info-invalid": 1}
        assert await alice.fetch_group_info(gid) == (info, None)
    finally:
        await net.close()

@xmpp_test
async def test_nothing_is_lost_between_welcome_and_join(prosody: ProsodyServer,
                                                        tmp_path: Path) -> None:
    """A room read before we occupy it: messages posted before our join come from the
    archive, not from live reflections we were not there to receive."""
    net = XNet(prosody, tmp_path)
    alice = await net.transport("alice")
    bob = await net.transport("bob")
    net.transports.update({"a": alice, "b": bob})
    try:
        gid = os.urandom(16)
        await alice.subscribe(alice.client_id, gid)
        welcome = await welcome_to(bob)
        await alice.send_welcome([bob.client_id], welcome, gid)

        async def bob_items(n: int) -> list[bytes]:
            for _ in range(200):
                got = [i.payload for i in await bob.fetch(bob.client_id)]
                if len(got) >= n:
                    return got
                await asyncio.sleep(0.05)
            raise AssertionError(f"bob has {got}")

        assert await bob_items(1) == [welcome]
        await asyncio.sleep(0.2)  # bob's read of the room is complete
        m1, m2, m3 = (message(gid, 0, ContentType.APPLICATION, t) for t in (b"1", b"2", b"3"))
        await alice.submit(gid, 0, m1, is_commit=False, sender=alice.client_id)
        await bob.subscribe(bob.client_id, gid)
        await alice.submit(gid, 0, m2, is_commit=False, sender=alice.client_id)
        await alice.submit(gid, 0, m3, is_commit=False, sender=alice.client_id)
        assert await bob_items(4) == [welcome, m1, m2, m3]
    finally:
        await net.close()
