"""Prometheus metrics and /healthz of the bridge (bridge/metrics.py; docs/operations.md),
scraped over real HTTP on 127.0.0.1, for a bridge on two embedded networks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bridge import main as bridge_main
from bridge.config import BridgeConfig
from bridge.metrics import BridgeCollector, serve_bridge_metrics
from tests.bridge.helpers import NETWORKS, BridgedNet, bridged_net, device, identity, until
from tests.client.helpers import async_test, http_get, scrape
from transports.base import RelayTransport
from transports.local import LocalDeliveryService


async def _eve_sends_garbage(net: BridgedNet) -> None:
    """A forced drop: a malformed control message from a stranger."""
    eve = await net.account("xmpp", "eve")
    await eve.send_control(identity("xmpp", "bridge"), b"{not json")
    await net.until_dropped("malformed")


@async_test
async def test_metrics_match_the_bridge_stats_and_healthz_follows_the_tasks(
        tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        bridge = net.bridge
        assert bridge is not None
        collector = BridgeCollector(bridge)
        server = await serve_bridge_metrics(collector, port=0)
        try:
            await net.add("xmpp", "alice")
            await net.add("matrix", "bob")
            gid = await net.group("alice", ["bob"])
            for text in (b"one", b"two"):
                await net.clients["alice"].send(gid, text)
            await net.clients["bob"].send(gid, b"three")
            await net.settle()
            assert net.received("bob", gid) == [b"one", b"two"]
            await _eve_sends_garbage(net)

            async def lag_is_zero() -> bool:
                return set((await bridge.hub.lag()).values()) == {0}
            await until(lag_is_zero, "every hub item published")
            stats = bridge.stats
            samples = await scrape(server.port)
            assert stats["offers"] >= 4 and stats["relayed"] >= 8
            for key in ("offers", "relayed", "rejected", "requests"):
                assert samples[(f"mls_bridge_{key}_total", ())] == stats[key], key
            assert stats["dropped"]["malformed"] == 1
            for reason, count in stats["dropped"].items():
                assert samples[("mls_bridge_dropped_total", (("reason", reason),))] == count
            for network in ("xmpp", "matrix"):
                assert samples[("mls_bridge_hub_lag_messages", (("network", network),))] == 0

            status, body = await http_get(server.port, "/healthz")
            assert status == 200, body
            health = json.loads(body)
            assert health["status"] == "ok" and health["hub"] == "ok"
            assert health["tasks"] == {"read-xmpp": True, "read-matrix": True,
                                       "publish-xmpp": True, "publish-matrix": True}

            await net.stop_bridge()
            status, body = await http_get(server.port, "/healthz")
            assert status == 503, body
            health = json.loads(body)
            assert health["status"] == "failing"
            assert not any(health["tasks"].values())
            assert health["hub"].startswith("unusable")
            # the counters stay readable; the lag (a hub query) is left out
            samples = await scrape(server.port)
            assert samples[("mls_bridge_offers_total", ())] == stats["offers"]
            assert not [k for k in samples if k[0] == "mls_bridge_hub_lag_messages"]
        finally:
            await server.close()


@async_test
async def test_healthz_is_503_when_the_hub_database_fails(tmp_path: Path) -> None:
    net = BridgedNet(tmp_path)
    bridge = await net.start_bridge()
    collector = BridgeCollector(bridge)
    server = await serve_bridge_metrics(collector, port=0)
    try:
        assert (await http_get(server.port, "/healthz"))[0] == 200
        await bridge.hub._db.close()  # the database goes away under the running bridge
        status, body = await http_get(server.port, "/healthz")
        assert status == 503, body
        assert json.loads(body)["hub"].startswith("unusable")
    finally:
        await server.close()
        with contextlib.suppress(Exception):
            await net.close()


@async_test
async def test_a_bridge_not_up_yet_is_starting(tmp_path: Path) -> None:
    server = await serve_bridge_metrics(BridgeCollector(), port=0)
    try:
        status, body = await http_get(server.port, "/healthz")
        assert (status, json.loads(body)) == (503, {"status": "starting"})
        assert not [k for k in await scrape(server.port) if k[0].startswith("mls_bridge_")]
        assert (await http_get(server.port, "/nope"))[0] == 404
    finally:
        await server.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@async_test
async def test_serve_with_metrics_from_login_to_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``mls-bridge bridge --metrics-port``: /healthz is 503 while the accounts log in,
    200 while the relay runs; the endpoint closes with the service."""
    services = {n: LocalDeliveryService(tmp_path / f"{n}.sqlite", ordering="room",
                                        poll_interval=0.01) for n in NETWORKS}
    logged_in = asyncio.Event()

    @contextlib.asynccontextmanager
    async def accounts(config: BridgeConfig) -> AsyncIterator[dict[str, RelayTransport]]:
        await logged_in.wait()
        yield {n: await services[n].account(device(n, "bridge"), identity(n, "bridge"),
                                            network=n) for n in NETWORKS}

    monkeypatch.setattr(bridge_main, "network_accounts", accounts)
    config = BridgeConfig.model_validate({
        "state_dir": tmp_path / "state",
        "xmpp": {"jid": "bridge@x.test/relay", "password": "pw"},
        "matrix": {"homeserver": "https://m.test", "user_id": "@bridge:m.test",
                   "password": "pw"}})
    port, stop = _free_port(), asyncio.Event()
    task = asyncio.create_task(bridge_main.serve(
        config, stop, metrics=bridge_main.MetricsAddress("127.0.0.1", port)))

    async def health() -> int:
        try:
            return (await http_get(port, "/healthz"))[0]
        except OSError:  # not listening (yet, or any more)
            return 0
    try:
        await until(lambda: _is(health, 503), "the endpoint up, the bridge starting")
        logged_in.set()
        await until(lambda: _is(health, 200), "the bridge running")
        samples = await scrape(port)
        assert samples[("mls_bridge_offers_total", ())] == 0
        assert samples[("mls_bridge_hub_lag_messages", (("network", "xmpp"),))] == 0
    finally:
        stop.set()
        logged_in.set()
        await asyncio.wait_for(task, 30)
        for service in services.values():
            await service.close()
    assert await health() == 0


async def _is(probe: Callable[[], Awaitable[int]], expected: int) -> bool:
    return await probe() == expected
