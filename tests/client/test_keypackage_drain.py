"""A stranger draining a client's KeyPackages (docs/security.md, "Inbound inventory"):
claims the transport reports make the client refill at once, within a budget; past it
the client warns and the last-resort KeyPackage keeps it addable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mls_client.events import GroupJoined
from mls_client.keypackages import REFILL_MIN_INTERVAL, ClaimWatch
from transports.local import LocalDeliveryService

from .helpers import Net, async_test


class _Reporting:
    """The embedded service, plus the claim counter a network transport keeps for its
    own KeyPackages (XMPP claim notices, the Matrix one-time key count)."""

    def __init__(self, inner: LocalDeliveryService) -> None:
        self._inner = inner
        self.key_package_claims = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def _drain(net: Net, transport: _Reporting, client_id: str) -> int:
    """Claim every one-use KeyPackage of ``client_id`` as a stranger would."""
    n = 0
    while not (await net.ds.claim_key_package(client_id)).last_resort:
        n += 1
    transport.key_package_claims += n
    return n


@async_test
async def test_claims_reported_by_the_transport_refill_the_pool_at_once(
        tmp_path: Path) -> None:
    net = Net(tmp_path)
    transport = _Reporting(net.ds)
    net.transport = transport  # type: ignore[assignment]
    try:
        alice, bob = await net.add("alice", "bob", pool_size=6, threshold=3)
        clock = _Clock()
        bob._claims._clock = clock  # type: ignore[attr-defined]
        await bob.sync()  # the first look only learns the counter
        assert await _drain(net, transport, "bob-dev") == 6
        assert await net.ds.key_package_count("bob-dev") == 0
        await bob.sync()
        assert await net.ds.key_package_count("bob-dev") == 6
        assert bob.stats.key_package_refills == 1
        # the owner is addable at every moment: now, and while drained (last resort)
        await _drain(net, transport, "bob-dev")
        gid = await alice.create_group()
        assert (await alice.add_members(gid, ["bob"])).added_clients == ("bob-dev",)
        await net.sync("bob")
        assert any(isinstance(e, GroupJoined) for e in net.events["bob"])
    finally:
        await net.close()


@async_test
async def test_the_refill_budget_stops_a_drain_from_driving_us(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = Net(tmp_path)
    transport = _Reporting(net.ds)
    net.transport = transport  # type: ignore[assignment]
    try:
        (bob,) = await net.add("bob", pool_size=4, threshold=2,
                               key_packages={"pool_size": 4, "threshold": 2,
                                             "max_refill_per_hour": 4})
        clock = _Clock()
        bob._claims._clock = clock  # type: ignore[attr-defined]
        await bob.sync()
        await _drain(net, transport, "bob-dev")
        await bob.sync()
        assert await net.ds.key_package_count("bob-dev") == 4  # within the budget
        clock.t += REFILL_MIN_INTERVAL
        await _drain(net, transport, "bob-dev")
        with caplog.at_level(logging.WARNING, "mls_bridge.client"):
            await bob.sync()
        assert await net.ds.key_package_count("bob-dev") == 0  # no early refill
        assert bob.stats.key_package_refills == 1
        assert bob.stats.key_package_refills_refused == 1
        assert any("possible depletion attack" in r.getMessage() for r in caplog.records)
        # the last-resort KeyPackage is still handed out
        assert (await net.ds.claim_key_package("bob-dev")).last_resort
    finally:
        await net.close()


def test_claim_watch_waits_between_refills_and_ignores_transports_without_a_counter(
        ) -> None:
    clock = _Clock()
    watch = ClaimWatch(100, clock)
    t = _Reporting.__new__(_Reporting)
    t.key_package_claims = 0
    assert not watch.due(object())
    assert not watch.due(t)  # first sight
    t.key_package_claims = 3
    assert watch.due(t)
    watch.spent(3)
    t.key_package_claims = 5
    assert not watch.due(t)  # too soon
    clock.t += REFILL_MIN_INTERVAL
    assert watch.due(t) and watch.claims_seen == 5
