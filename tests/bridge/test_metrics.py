"""Prometheus metrics and /healthz of the bridge (bridge/metrics.py; docs/operations.md),
scraped over real HTTP on 127.0.0.1, for a bridge on two embedded networks."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from bridge.metrics import BridgeCollector, serve_bridge_metrics
from tests.bridge.helpers import BridgedNet, bridged_net, identity, until
from tests.client.helpers import async_test, http_get, scrape


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
