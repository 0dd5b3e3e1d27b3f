"""Opt-in Prometheus metrics of a client process (docs/operations.md).

:class:`MetricsServer` answers ``GET /metrics`` (the Prometheus text format) and,
optionally, ``GET /healthz`` on one port, from the process's own event loop. Its
collectors read the existing counters (:attr:`MLSClient.stats <mls_client.client.MLSClient.stats>`,
``Bridge.stats``) at scrape time: nothing is counted twice. Each process has one
:class:`~prometheus_client.CollectorRegistry` (not the library's global one).

This module needs ``prometheus-client`` (the ``metrics`` extra); importing it without
raises :class:`~mls_client.errors.ConfigError` with the remedy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from .errors import ConfigError

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        GCCollector,
        PlatformCollector,
        ProcessCollector,
        generate_latest,
    )
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as _exc:  # pragma: no cover - exercised by a test that hides it
    raise ConfigError("metrics need the prometheus-client package: pip install "
                      "'mls-bridge[metrics]' (or 'prometheus-client>=0.20')") from _exc

if TYPE_CHECKING:
    from .client import MLSClient

__all__ = ["DEFAULT_HOST", "ClientCollector", "Collector", "Metric", "MetricsServer",
           "by_label", "counter", "gauge", "new_registry", "serve_client_metrics"]

log = logging.getLogger("mls_bridge.metrics")

#: the default address: only this host can scrape (``--metrics-host`` to change)
DEFAULT_HOST = "127.0.0.1"
#: seconds a scraper may take to send its request
REQUEST_TIMEOUT = 5.0

Refresh = Callable[[], Awaitable[None]]
Health = Callable[[], Awaitable[tuple[bool, Mapping[str, object]]]]


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    """A counter family ``<name>_total`` with one sample."""
    return CounterMetricFamily(name, doc, value=value)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    """A gauge family with one sample."""
    return GaugeMetricFamily(name, doc, value=value)


def by_label(name: str, doc: str, label: str, values: Mapping[str, int], *,
             kind: str = "counter") -> Metric:
    """A counter (or gauge) family with one sample per ``label`` value."""
    family: CounterMetricFamily | GaugeMetricFamily = (
        CounterMetricFamily(name, doc, labels=[label]) if kind == "counter"
        else GaugeMetricFamily(name, doc, labels=[label]))
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class ClientCollector(Collector):
    """``mls_client_*``: the counters of one :class:`~mls_client.client.MLSClient`
    (``ClientStats``) and its outbox depth."""

    def __init__(self, client: MLSClient) -> None:
        self._client = client
        #: the outbox depth read by the last :meth:`refresh` (None: unreadable)
        self._outbox: int | None = None

    async def refresh(self) -> None:
        try:
            self._outbox = await self._client.store.outbox_depth()
        except Exception as exc:  # a closed store: the gauge is left out
            log.debug("outbox depth unreadable: %s", exc)
            self._outbox = None

    def collect(self) -> Iterable[Metric]:
        return list(client_metrics(self._client, self._outbox))


def client_metrics(client: MLSClient, outbox: int | None) -> Iterator[Metric]:
    """The families of :class:`ClientCollector`, from ``client.stats``."""
    s = client.stats
    p = "mls_client_"
    yield counter(p + "disconnects", "Outages of the delivery service (ConnectionLost)",
                  s.disconnects)
    yield counter(p + "reconnects", "Outages that ended (ConnectionRestored)", s.reconnects)
    yield counter(p + "reconnect_attempts", "Failed attempts to reach the delivery service "
                  "during outages", s.reconnect_attempts)
    yield counter(p + "messages_sent", "Submissions the delivery service accepted or "
                  "ordered (application, proposal, Commit)", s.messages_sent)
    yield counter(p + "messages_received", "Group messages processed from the stream",
                  s.messages_processed)
    yield counter(p + "messages_rejected", "Group messages MLS rejected",
                  s.messages_rejected)
    yield counter(p + "messages_before_join", "Group messages of epochs before we joined, "
                  "skipped", s.messages_before_join)
    yield counter(p + "commits_lost", "Own Commits that lost their epoch to another "
                  "member's Commit", s.commits_lost)
    yield counter(p + "submit_retries", "Submissions retried after a transient transport "
                  "failure", s.submit_retries)
    yield counter(p + "duplicates_dropped", "Application messages not delivered again "
                  "(same sender and message id)", s.duplicates_dropped)
    yield counter(p + "key_package_refills", "KeyPackage pool refills", s.key_package_refills)
    yield counter(p + "key_package_refills_refused", "KeyPackage pool refills refused by "
                  "the refill budget", s.key_package_refills_refused)
    yield by_label(p + "dropped", "Inbound items dropped before use, per reason",
                   "reason", s.dropped)
    if outbox is not None:
        yield gauge(p + "outbox_messages", "Messages in the outbox, not yet known to be "
                    "stored by the delivery service", outbox)


def new_registry(*collectors: Collector) -> CollectorRegistry:
    """The process's registry: ``collectors`` plus the standard process, platform and
    garbage-collector metrics."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


class MetricsServer:
    """``GET /metrics`` (and ``/healthz`` when ``health`` is given) on ``host:port``,
    served from the running event loop: each scrape first awaits the collectors'
    ``refresh`` callables (values that need I/O, read
    in the event loop), then renders ``registry``. Start with :meth:`start`;
    port 0 picks a free port (:attr:`port`)."""

    def __init__(self, registry: CollectorRegistry, *, refresh: Sequence[Refresh] = (),
                 health: Health | None = None) -> None:
        self.registry = registry
        self._refresh = tuple(refresh)
        self._health = health
        self._server: asyncio.Server | None = None

    @classmethod
    async def start(cls, registry: CollectorRegistry, host: str = DEFAULT_HOST, port: int = 0,
                    *, refresh: Sequence[Refresh] = (),
                    health: Health | None = None) -> MetricsServer:
        server = cls(registry, refresh=refresh, health=health)
        server._server = await asyncio.start_server(server._serve, host, port)
        log.info("metrics on http://%s:%d/metrics", host, server.port)
        return server

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the metrics server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                method, path = await _read_request(reader)
            status, ctype, body = await self.answer(method, path)
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode("ascii") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a bad or vanished scraper: just hang up
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def answer(self, method: str, path: str) -> tuple[str, str, bytes]:
        """(status line, content type, body) for one request."""
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/metrics":
            for refresh in self._refresh:
                await refresh()
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz" and self._health is not None:
            healthy, details = await self._health()
            body = json.dumps(details, sort_keys=True).encode() + b"\n"
            status = "200 OK" if healthy else "503 Service Unavailable"
            return status, "application/json", body
        return "404 Not Found", "text/plain", b"not found\n"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Method and path (without query) of an HTTP/1.x request; headers are skipped."""
    line = (await reader.readuntil(b"\n")).decode("latin-1").split()
    if len(line) != 3 or not line[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request")
    while (await reader.readuntil(b"\n")).strip():
        pass
    return line[0], line[1].split("?", 1)[0]


async def serve_client_metrics(client: MLSClient, host: str = DEFAULT_HOST,
                               port: int = 0) -> MetricsServer:
    """Serve ``client``'s metrics on ``host:port`` (the process's one registry)."""
    collector = ClientCollector(client)
    return await MetricsServer.start(new_registry(collector), host, port,
                                     refresh=[collector.refresh])
