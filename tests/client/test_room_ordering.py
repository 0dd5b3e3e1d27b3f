"""The client over a transport whose order is decided by MLS processing
(SubmitStatus.ORDERED, as in an XMPP MUC or a Matrix room) and the check that the
network's sender matches the MLS sender (IncomingMessage.sender_identity)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

from mls_client.demo import CrossingCommits
from mls_client.events import MessageRejected
from transports.base import IncomingMessage
from transports.local import LocalDeliveryService

from .helpers import Net, async_test


def _room_net(root: Path) -> Net:
    net = Net(root)
    net.ds.ordering = "room"
    return net


@async_test
async def test_crossing_commits_in_a_room_first_valid_wins(tmp_path: Path) -> None:
    net = _room_net(tmp_path)
    crossing = CrossingCommits(net.ds)
    net.transport = crossing
    try:
        alice, bob, carol, _dave, erin = await net.add("alice", "bob", "carol", "dave", "erin")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        crossing.arm(2)
        adds = await asyncio.gather(bob.add_members(gid, ["dave"]),
                                    carol.add_members(gid, ["erin"]))
        assert sorted(a.epoch for a in adds) == [2, 3]
        assert bob.stats.commits_lost + carol.stats.commits_lost == 1
        await net.sync()
        await net.agree(gid, ["alice", "bob", "carol", "dave", "erin"])
        # the room holds both Commits for epoch 1: the losing one was never applied
        await erin.send(gid, b"hello room")
        await net.sync()
        assert net.received("dave") == [b"hello room"]
    finally:
        await net.close()


@async_test
async def test_an_invalid_commit_earlier_in_the_room_does_not_win(tmp_path: Path) -> None:
    net = _room_net(tmp_path)
    try:
        alice, bob, _carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        # a Commit-typed message for epoch 1 that no member can open goes first
        epoch = await bob.epoch(gid)
        assert epoch == 1
        bad = await _corrupt_commit_for(net, "carol", gid)
        first = await net.ds.submit(gid, epoch, bad, is_commit=True, sender="mallory")
        assert first.accepted  # the room cannot tell it is invalid
        event = await bob.update(gid)  # ORDERED: bob's stream decides
        assert event.epoch == 2 and bob.stats.commits_lost == 0
        await net.sync()
        await net.agree(gid, ["alice", "bob", "carol"])
        assert any(isinstance(e, MessageRejected) for e in net.events["alice"])
    finally:
        await net.close()


async def _corrupt_commit_for(net: Net, name: str, gid: bytes) -> bytes:
    """A real Commit of ``name`` for the current epoch with a flipped ciphertext byte
    (its state is left unchanged: the pending Commit is discarded)."""
    group = await net[name].group(gid)
    data = bytearray(group.commit([]).commit)
    data[-1] ^= 0x80
    return bytes(data)


class _Relabel:
    """Claims every group message came from ``identity`` on the network."""

    def __init__(self, inner: LocalDeliveryService, identity: str) -> None:
        self._inner = inner
        self.identity = identity

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def _tag(self, item: IncomingMessage) -> IncomingMessage:
        return dataclasses.replace(item, sender_identity=self.identity)

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        return [self._tag(i) for i in await self._inner.fetch(client_id, after, limit)]

    async def receive(self, client_id: str, after: str | None = None
                      ) -> AsyncIterator[IncomingMessage]:
        async for item in self._inner.receive(client_id, after):
            yield self._tag(item)


@async_test
async def test_network_sender_must_match_the_mls_sender(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, _bob = await net.add("alice", "bob")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync()
        # messages whose network sender is their MLS sender are accepted
        await alice.send(gid, b"first")
        await alice.update(gid)
        honest = await _reopen_with(net, "bob", _Relabel(net.ds, "alice"))
        await honest.sync()
        assert await honest.epoch(gid) == await alice.epoch(gid) == 2
        assert [m.data for m in await honest.inbox(gid)] == [b"first"]
        # the same kinds of message relayed under another network identity are not
        before = await honest.epoch_authenticator(gid)
        await alice.send(gid, b"second")
        await alice.update(gid)
        forged = await _reopen_with(net, "bob", _Relabel(net.ds, "mallory"))
        events = await forged.sync()
        rejected = [e for e in events if isinstance(e, MessageRejected)]
        assert len(rejected) == 2
        assert all("SenderMismatchError" in e.reason and "alice" in e.reason
                   for e in rejected)
        assert await forged.epoch_authenticator(gid) == before
        assert [m.data for m in await forged.inbox(gid)] == [b"first"]
    finally:
        await net.close()


async def _reopen_with(net: Net, name: str, transport: object):  # type: ignore[no-untyped-def]
    from mls_client import MLSClient

    from .helpers import settings_for

    await net.clients[name].close()
    client = await MLSClient.open(settings_for(net.root, name), transport)  # type: ignore[arg-type]
    net.clients[name] = client
    return client


class _Bound(_Relabel):
    """A transport bound to one account, as the XMPP and Matrix transports are."""

    user_id = "xmpp:alice@example.org"
    client_id = "alice@example.org/phone"


@async_test
async def test_identity_defaults_to_the_transports_account(tmp_path: Path) -> None:
    import pytest

    from mls_client import MLSClient
    from mls_core.errors import UsageError

    from .helpers import settings_for

    ds = LocalDeliveryService(tmp_path / "ds.sqlite")
    bound = _Bound(ds, "xmpp:alice@example.org")
    client = await MLSClient.open(settings_for(tmp_path, "a"), bound)  # type: ignore[arg-type]
    try:
        with pytest.raises(UsageError, match="bound to user_id"):
            await client.create_identity("bob")
        identity = await client.create_identity()
        assert (identity.user_id, identity.client_id) == (_Bound.user_id, _Bound.client_id)
    finally:
        await client.close()
        await ds.close()
