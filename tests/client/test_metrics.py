"""Prometheus metrics of a client (mls_client/metrics.py; docs/operations.md): a real
HTTP endpoint on 127.0.0.1 reports exactly what ``MLSClient.stats`` counts."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path

import pytest

from mls_cli.main import main as cli_main
from mls_client import client as client_module
from mls_client.errors import ConfigError, DeliveryPendingError
from mls_client.events import ClientEvent, ConnectionLost, ConnectionRestored, MessageReceived
from mls_client.metrics import serve_client_metrics

from .helpers import FlakyService, Net, async_test_within, http_get, scrape


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@async_test_within(60)
async def test_the_endpoint_reports_the_clients_stats(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "RETRY_INITIAL", 0.02)
    net = Net(tmp_path)
    try:
        alice, = await net.add("alice")
        bob, = await net.add("bob", submit_wait=0.3)
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync("bob")
        flaky = FlakyService(net.ds)
        bob._ctx.transport = flaky  # type: ignore[assignment]
        server = await serve_client_metrics(bob, port=0)
        try:
            # an outage ridden out by run(): one disconnect, one reconnect
            seen: list[ClientEvent] = []
            stop = asyncio.Event()

            async def handler(event: ClientEvent) -> None:
                seen.append(event)
                if sum(isinstance(e, MessageReceived) for e in seen) == 2:
                    stop.set()

            flaky.down = True
            runner = asyncio.create_task(bob.run(handler, stop))
            while flaky.failures < 3:
                await asyncio.sleep(0.01)
            await alice.send(gid, b"one")
            flaky.down = False
            await alice.send(gid, b"two")
            await asyncio.wait_for(runner, 30)
            assert [type(e) for e in seen].count(ConnectionRestored) == 1
            assert [type(e) for e in seen].count(ConnectionLost) == 1
            # a forced drop: a Welcome that is not for any of bob's KeyPackages
            await net.ds.send_welcome(["bob-dev"], b"\x00\x01garbage", gid)
            await bob.sync()
            # a message left queued: every submit fails until submit_wait ran out
            flaky.submit_down = True
            with pytest.raises(DeliveryPendingError):
                await bob.send(gid, b"later")

            stats = bob.stats
            samples = await scrape(server.port)
            assert stats.disconnects == 1 and stats.reconnects == 1
            assert stats.dropped and stats.submit_retries > 0
            expected = {
                "mls_client_disconnects_total": stats.disconnects,
                "mls_client_reconnects_total": stats.reconnects,
                "mls_client_reconnect_attempts_total": stats.reconnect_attempts,
                "mls_client_messages_received_total": stats.messages_processed,
                "mls_client_messages_sent_total": stats.messages_sent,
                "mls_client_messages_rejected_total": stats.messages_rejected,
                "mls_client_commits_lost_total": stats.commits_lost,
                "mls_client_submit_retries_total": stats.submit_retries,
                "mls_client_duplicates_dropped_total": stats.duplicates_dropped,
                "mls_client_outbox_messages": 1,
            }
            for name, value in expected.items():
                assert _value(samples, name) == value, name
            assert stats.messages_processed >= 2
            for reason, count in stats.dropped.items():
                assert _value(samples, "mls_client_dropped_total", reason=reason) == count
            assert ("process_cpu_seconds_total", ()) in samples  # the process's registry

            # the queued message goes out at the next sync: the gauge and counter follow
            flaky.submit_down = False
            sent = stats.messages_sent
            await bob.sync()
            samples = await scrape(server.port)
            assert _value(samples, "mls_client_outbox_messages") == 0
            assert _value(samples, "mls_client_messages_sent_total") == sent + 1
            await net.sync("alice")
            assert b"later" in net.received("alice", gid)
            # no health check on a client; other paths are 404
            assert (await http_get(server.port, "/healthz"))[0] == 404
        finally:
            await server.close()
    finally:
        await net.close()


def test_without_prometheus_client_metrics_are_a_clear_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    for name in [m for m in sys.modules if m.startswith("prometheus_client.")]:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    monkeypatch.delitem(sys.modules, "mls_client.metrics")
    with pytest.raises(ConfigError, match="prometheus-client"):
        importlib.import_module("mls_client.metrics")
    monkeypatch.delitem(sys.modules, "mls_client.metrics", raising=False)
    status = cli_main(["bridge", "--config", "/nonexistent/bridge.toml",
                       "--metrics-port", "9464"])
    assert status == 1
    assert "metrics need the prometheus-client package" in capsys.readouterr().err
