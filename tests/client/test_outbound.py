"""Sends survive transport outages and crashes exactly once (mls_client/outbound.py,
docs/resilience.md): one message id per outbox entry on every submission, transient
failures waited out for ``submit_wait``, the own echo clearing the outbox entry, no
second ciphertext unless the transport vouches the first was never stored, and receivers
delivering once per (sender, message id)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from mls_client import DeliveryPendingError, TransportUnavailableError
from mls_client.demo import CrossingCommits
from transports.base import (
    ClaimedKeyPackage,
    IncomingMessage,
    SubmitResult,
    TransportError,
)
from transports.local import LocalDeliveryService

from .helpers import Net, async_test


class Crash(BaseException):
    """The sending process dies (nothing after it runs, nothing is rolled back)."""


class Flaky(CrossingCommits):
    """The embedded service behind an unreliable network. ``down``: every submission
    fails with a transient TransportError (and every fetch too, with ``fetch_down``);
    ``mode`` says whether a failed submission reached the service first
    (``answer-lost``) or not (``refused``). ``suffix_ids``: the service never sees the
    same message id twice (a network that cannot deduplicate), receivers still do.
    ``crash_after_store``: the next submission of ``crash_sender`` is stored, then the
    sender "dies" (:class:`Crash`)."""

    def __init__(self, inner: LocalDeliveryService, mode: str = "refused") -> None:
        super().__init__(inner)
        self.down = False
        self.fetch_down = False
        self.suffix_ids = False
        self.submitted = 0
        self.mode = mode
        self.crash_sender: str | None = None
        self.crash_before_store = False
        self.failures = 0

    def outage(self, seconds: float) -> asyncio.Task[None]:
        self.down = self.fetch_down = True

        async def end() -> None:
            await asyncio.sleep(seconds)
            self.down = self.fetch_down = False

        return asyncio.get_running_loop().create_task(end())

    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        self.submitted += 1
        if self.suffix_ids and message_id is not None:
            message_id = f"{message_id}.{self.submitted}"
        if self.crash_sender == sender and not is_commit:
            self.crash_sender = None
            if not self.crash_before_store:
                await super().submit(group_id, epoch, payload, is_commit=is_commit,
                                     sender=sender, message_id=message_id)
            raise Crash
        if self.down:
            self.failures += 1
            if self.mode == "answer-lost":
                await super().submit(group_id, epoch, payload, is_commit=is_commit,
                                     sender=sender, message_id=message_id)
            raise TransportError("connection refused")
        return await super().submit(group_id, epoch, payload, is_commit=is_commit,
                                    sender=sender, message_id=message_id)

    async def claim_user_key_packages(self, user_id: str, *, group_id: bytes | None = None
                                      ) -> list[ClaimedKeyPackage]:
        if self.fetch_down:
            self.failures += 1
            raise TransportError("connection refused")
        return await self._inner.claim_user_key_packages(user_id, group_id=group_id)

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        if self.fetch_down:
            self.failures += 1
            raise TransportError("connection refused")
        items = await self._inner.fetch(client_id, after, limit)
        if self.suffix_ids:
            items = [replace(i, message_id=i.message_id.rsplit(".", 1)[0])
                     if i.message_id else i for i in items]
        return items


async def _group(net: Net, **settings: object) -> bytes:
    alice, _, _ = await net.add("alice", "bob", "carol", **settings)
    gid = await alice.create_group()
    await alice.add_members(gid, ["bob", "carol"])
    await net.sync()
    return gid


async def _received(net: Net, name: str, gid: bytes) -> Counter[bytes]:
    await net.sync(name)
    return Counter(m.data for m in await net[name].inbox(gid) if not m.outgoing)


async def _exactly_once(net: Net, gid: bytes, sent: list[bytes]) -> None:
    for name in ("bob", "carol"):
        got = await _received(net, name, gid)
        assert got == Counter(sent), name
    assert await net["alice"].store.outbox() == []


@pytest.mark.parametrize("mode", ["refused", "answer-lost"])
@async_test
async def test_a_send_during_an_outage_waits_and_is_delivered_once(tmp_path: Path,
                                                                   mode: str) -> None:
    """An outage of 1 s in the middle of 20 sends: no send raises, each message reaches
    each member once, also when the service stored a submission whose answer was lost."""
    net = Net(tmp_path)
    flaky = Flaky(net.ds, mode)
    net.transport = flaky
    try:
        gid = await _group(net)
        sent = [f"m{i}".encode() for i in range(20)]
        for i, data in enumerate(sent):
            if i == 5:
                outage = flaky.outage(1.0)
            await net["alice"].send(gid, data)
        await outage
        assert flaky.failures > 0 and net["alice"].stats.submit_retries > 0
        await _exactly_once(net, gid, sent)
    finally:
        await net.close()


@async_test
async def test_a_commit_during_an_outage_waits(tmp_path: Path) -> None:
    net = Net(tmp_path)
    flaky = Flaky(net.ds, "answer-lost")
    net.transport = flaky
    try:
        gid = await _group(net)
        outage = flaky.outage(0.8)
        await net["bob"].update(gid)
        await outage
        await net.sync()
        await net.agree(gid, ["alice", "bob", "carol"])
        assert await net["bob"].epoch(gid) == 2
    finally:
        await net.close()


@async_test
async def test_an_add_during_an_outage_waits(tmp_path: Path) -> None:
    """Claims, the Commit, the Welcome and the GroupInfo of an add all wait."""
    net = Net(tmp_path)
    flaky = Flaky(net.ds, "answer-lost")
    net.transport = flaky
    try:
        gid = await _group(net)
        await net.add("dave")
        outage = flaky.outage(0.8)
        result = await net["alice"].add_members(gid, ["dave"])
        await outage
        assert not result.missing_users and flaky.failures > 0
        await net.sync()
        await net.agree(gid, ["alice", "bob", "carol", "dave"])
    finally:
        await net.close()


@pytest.mark.parametrize("mode", ["refused", "answer-lost"])
@async_test
async def test_an_outage_longer_than_submit_wait_is_one_error_and_no_duplicate(
        tmp_path: Path, mode: str) -> None:
    """``submit_wait`` ends the wait with one error, a TransportError: queued messages
    (DeliveryPendingError) are delivered once, whether the application retries them
    under their message id or not at all; a message the client could not even queue
    (TransportUnavailableError: the stream could not be read) was not sent, and the
    application's retry sends it once."""
    net = Net(tmp_path)
    flaky = Flaky(net.ds, mode)
    net.transport = flaky
    try:
        gid = await _group(net, submit_wait=0.3)
        alice = net["alice"]
        flaky.down = True
        with pytest.raises(DeliveryPendingError) as err:
            await alice.send(gid, b"retried", message_id="app-1")
        assert isinstance(err.value, TransportError)
        # queued (answer-lost: the echo of app-1 cleared the outbox first), or not even
        # queued (refused: app-1 is still queued and cannot be resubmitted yet)
        with pytest.raises(TransportUnavailableError) as second:
            await alice.send(gid, b"not retried")
        queued = isinstance(second.value, DeliveryPendingError)
        assert queued == (mode == "answer-lost")
        flaky.fetch_down = True
        with pytest.raises(TransportUnavailableError) as unavailable:
            await alice.send(gid, b"not queued")
        assert not isinstance(unavailable.value, DeliveryPendingError)
        flaky.down = flaky.fetch_down = False
        await alice.send(gid, b"retried", message_id="app-1")  # the application retries
        await alice.send(gid, b"retried", message_id="app-1")  # ... and once more
        await alice.send(gid, b"not queued")
        if not queued:
            await alice.send(gid, b"not retried")
        await _exactly_once(net, gid, [b"retried", b"not queued", b"not retried"])
    finally:
        await net.close()


@pytest.mark.parametrize("stored", [True, False], ids=["accepted", "never-stored"])
@async_test
async def test_a_crash_between_accept_and_outbox_clear_delivers_once(
        tmp_path: Path, stored: bool) -> None:
    """The sender dies right after (or right before) the service stored its message;
    the others commit twice meanwhile; the restarted sender's message reaches every
    member exactly once: its echo clears the outbox entry (accepted), or, refused and
    vouched never stored, it is encrypted again in the new epoch (never-stored)."""
    net = Net(tmp_path)
    flaky = Flaky(net.ds)
    net.transport = flaky
    try:
        gid = await _group(net)
        flaky.crash_sender, flaky.crash_before_store = "alice-dev", not stored
        with pytest.raises(Crash):
            await net["alice"].send(gid, b"once")
        assert len(await net["alice"].store.outbox()) == 1
        await net.sync("bob", "carol")
        await net["bob"].update(gid)
        await net.sync("carol")
        await net["carol"].update(gid)
        await net.sync("bob")
        await net.reopen("alice")
        await net.sync("alice")
        await net.sync("alice")
        await _exactly_once(net, gid, [b"once"])
        assert [m.data for m in await net["alice"].inbox(gid) if m.outgoing] == [b"once"]
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        await net.close()


@async_test
async def test_receivers_deliver_once_per_sender_and_message_id(tmp_path: Path) -> None:
    """Two ciphertexts of one message id (a sender that had to encrypt again): each
    receiver delivers the first and drops the second."""
    net = Net(tmp_path)
    flaky = Flaky(net.ds)
    flaky.suffix_ids = True
    net.transport = flaky
    try:
        gid = await _group(net)
        out = net["alice"]._out
        first = await out.send(gid, b"same", message_id="dup-1")
        async with net["alice"].store.transaction() as tx:  # forget having sent it
            own = await net["alice"].store.inbox_entry(_digest(first))
            assert own is not None
            await tx.delete_inbox(own.id)
        second = await out.send(gid, b"same", message_id="dup-1")
        assert second != first
        await _exactly_once(net, gid, [b"same"])
        assert net["bob"].stats.duplicates_dropped == 1
    finally:
        await net.close()


def _digest(data: bytes) -> bytes:
    from mls_client.context import digest

    return digest(data)
