"""MLSClient.run() rides out Delivery Service outages (issue: resilience): a transport
failure is reported once (ConnectionLost / ConnectionRestored), retried with backoff,
and nothing is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mls_client import client as client_module
from mls_client.events import ClientEvent, ConnectionLost, ConnectionRestored, MessageReceived
from transports.base import IncomingMessage, SessionConflictError, TransportError
from transports.local import LocalDeliveryService

from .helpers import FlakyService, Net, async_test_within


@async_test_within(60)
async def test_run_survives_an_outage_and_delivers_everything_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "RETRY_INITIAL", 0.02)
    net = Net(tmp_path)
    try:
        alice, bob = await net.add("alice", "bob")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync("bob")
        flaky = FlakyService(net.ds)
        bob._ctx.transport = flaky  # type: ignore[assignment]
        seen: list[ClientEvent] = []
        stop = asyncio.Event()

        async def handler(event: ClientEvent) -> None:
            seen.append(event)
            if sum(isinstance(e, MessageReceived) for e in seen) == 3:
                stop.set()

        flaky.down = True
        runner = asyncio.create_task(bob.run(handler, stop))
        while flaky.failures < 5:
            await asyncio.sleep(0.01)
        for text in (b"one", b"two"):
            await alice.send(gid, text)
        assert not runner.done()
        flaky.down = False
        await alice.send(gid, b"three")
        await asyncio.wait_for(runner, 30)
        kinds = [type(e) for e in seen]
        assert kinds.count(ConnectionLost) == 1 and kinds.count(ConnectionRestored) == 1
        assert kinds.index(ConnectionLost) < kinds.index(ConnectionRestored)
        assert [e.data for e in seen if isinstance(e, MessageReceived)] == [
            b"one", b"two", b"three"]
        assert bob.stats.disconnects == 1 and bob.stats.reconnect_attempts >= 5
    finally:
        await net.close()


class _Follows:
    """The embedded service, recording subscriptions; ``refuse`` makes them fail."""

    def __init__(self, inner: LocalDeliveryService) -> None:
        self._inner = inner
        self.followed: list[bytes] = []
        self.refuse = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def subscribe(self, client_id: str, group_id: bytes) -> None:
        if self.refuse:
            self.refuse -= 1
            raise TransportError("the room is not reachable now")
        self.followed.append(group_id)
        await self._inner.subscribe(client_id, group_id)


@async_test_within(60)
async def test_a_reopened_client_follows_its_groups_again(tmp_path: Path) -> None:
    """A crash between storing a join and subscribing must not leave the room unread:
    the first sync after opening subscribes every active group (retrying a failure)."""
    net = Net(tmp_path)
    try:
        alice, _ = await net.add("alice", "bob")
        g1 = await alice.create_group()
        g2 = await alice.create_group()
        await alice.add_members(g1, ["bob"])
        await net.sync("bob")
        follows = _Follows(net.ds)
        net.transport = follows  # type: ignore[assignment]
        follows.refuse = 1
        bob = await net.reopen("bob")
        await bob.sync()
        assert follows.followed == []  # the first try failed: kept for the next pass
        await bob.sync()
        assert follows.followed == [g1]  # bob is in g1 only
        await bob.sync()
        assert follows.followed == [g1]  # once per process
        assert g2 not in follows.followed
    finally:
        await net.close()


class _Replaced(FlakyService):
    """The embedded service whose session another process took over."""

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        self.failures += 1
        raise SessionConflictError(f"another session is using {client_id}")


@async_test_within(30)
async def test_a_fatal_transport_error_ends_run_once_without_retrying(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SessionConflictError (a FatalTransportError) is not an outage: run() raises it
    after the one failed read, reports no ConnectionLost and never retries."""
    monkeypatch.setattr(client_module, "RETRY_INITIAL", 0.02)
    net = Net(tmp_path)
    try:
        (bob,) = await net.add("bob")
        replaced = _Replaced(net.ds)
        bob._ctx.transport = replaced  # type: ignore[assignment]
        seen: list[ClientEvent] = []

        async def handler(event: ClientEvent) -> None:
            seen.append(event)

        with pytest.raises(SessionConflictError, match="another session is using bob-dev"):
            await bob.run(handler)
        assert replaced.failures == 1
        assert not any(isinstance(e, ConnectionLost | ConnectionRestored) for e in seen)
        assert bob.stats.disconnects == 0 and bob.stats.reconnect_attempts == 0
    finally:
        await net.close()
