"""Shared helpers of the client tests: clients on one LocalDeliveryService in tmp_path."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec

from mls_client import MLSClient, Settings
from mls_client.events import ClientEvent, MessageReceived
from mls_client.settings import KeyPackageSettings
from transports.base import DeliveryTransport, IncomingMessage, SubmitResult, TransportError
from transports.local import LocalDeliveryService

P = ParamSpec("P")


def async_test(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test function with asyncio.run (no pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def async_test_within(seconds: float) -> Callable[[Callable[P, Coroutine[Any, Any, None]]],
                                                  Callable[P, None]]:
    """Like :func:`async_test`, failing (not hanging) after ``seconds``: for scenarios on
    real servers, where a lost stanza or event would otherwise wait for ever."""
    def decorate(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
            async def bounded() -> None:
                async with asyncio.timeout(seconds):
                    await fn(*args, **kwargs)
            asyncio.run(bounded())
        return wrapper
    return decorate


def settings_for(root: Path, name: str, *, pool_size: int = 4, threshold: int = 2,
                 **overrides: Any) -> Settings:
    return Settings.model_validate({
        "state_dir": root / name, "transport": {"db_path": root / "ds.sqlite"},
        "key_packages": KeyPackageSettings(pool_size=pool_size, threshold=threshold),
        "poll_interval": 0.05, **overrides})


class Clients:
    """Named clients and the events each reported: the part every test network
    (embedded, XMPP, Matrix) shares."""

    clients: dict[str, MLSClient]
    events: dict[str, list[ClientEvent]]

    async def sync(self, *names: str) -> dict[str, list[ClientEvent]]:
        out = {}
        for name in names or tuple(self.clients):
            events = await self.clients[name].sync()
            self.events[name].extend(events)
            out[name] = events
        return out

    def received(self, name: str, group_id: bytes | None = None) -> list[bytes]:
        return [e.data for e in self.events[name] if isinstance(e, MessageReceived)
                and (group_id is None or e.group_id == group_id)]

    def texts(self, name: str, group_id: bytes | None = None) -> list[str]:
        """The text of each message received (MIMI content or plain UTF-8)."""
        return [e.text for e in self.events[name] if isinstance(e, MessageReceived)
                and (group_id is None or e.group_id == group_id)]

    async def agree(self, group_id: bytes, names: Sequence[str]) -> bytes:
        """Every named client is at the same epoch with the same authenticator."""
        auths = {n: await self.clients[n].epoch_authenticator(group_id) for n in names}
        epochs = {n: await self.clients[n].epoch(group_id) for n in names}
        assert len(set(auths.values())) == 1, (auths, epochs)
        return next(iter(auths.values()))


class Net(Clients):
    """Several clients, each with its own SQLite database, on one delivery service."""

    def __init__(self, root: Path, transport: DeliveryTransport | None = None) -> None:
        self.root = root
        self.ds = LocalDeliveryService(root / "ds.sqlite", poll_interval=0.01)
        self.transport: DeliveryTransport = transport or self.ds
        self.clients: dict[str, MLSClient] = {}
        self.events: dict[str, list[ClientEvent]] = {}

    async def add(self, *names: str, **settings: Any) -> list[MLSClient]:
        out = []
        for name in names:
            client = await MLSClient.open(settings_for(self.root, name, **settings),
                                          self.transport)
            await client.create_identity(name, f"{name}-dev")
            await client.publish_key_packages()
            self.clients[name] = client
            self.events[name] = []
            out.append(client)
        return out

    def __getitem__(self, name: str) -> MLSClient:
        return self.clients[name]

    async def reopen(self, name: str, **settings: Any) -> MLSClient:
        """Close a client and open it again from its database (a restart)."""
        await self.clients[name].close()
        client = await MLSClient.open(settings_for(self.root, name, **settings),
                                      self.transport)
        self.clients[name] = client
        return client

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        await self.ds.close()


async def with_net(root: Path, body: Callable[[Net], Awaitable[None]],
                   transport: Callable[[LocalDeliveryService], DeliveryTransport] | None = None,
                   ) -> None:
    net = Net(root)
    if transport is not None:
        net.transport = transport(net.ds)
    try:
        await body(net)
    finally:
        await net.close()


class RunLoops:
    """``MLSClient.run()`` for each named client of ``net``, its events appended to
    ``net.events[name]``; :meth:`stop` ends them and re-raises what any raised."""

    def __init__(self, net: Clients, *names: str) -> None:
        self._net = net
        self._stop = asyncio.Event()
        self.tasks = {name: asyncio.create_task(self._run(name)) for name in names}

    async def _run(self, name: str) -> None:
        events = self._net.events[name]

        async def handler(event: ClientEvent) -> None:
            events.append(event)

        await self._net.clients[name].run(handler, self._stop)

    def raised(self) -> dict[str, BaseException]:
        """The loops that ended with an exception (none should, while running)."""
        return {n: t.exception() for n, t in self.tasks.items()  # type: ignore[misc]
                if t.done() and not t.cancelled() and t.exception() is not None}

    async def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks.values()), timeout)

    def count(self, name: str, kind: type) -> int:
        return sum(isinstance(e, kind) for e in self._net.events[name])


async def http_get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of ``GET http://127.0.0.1:<port><path>``, from a thread (the
    server runs in this event loop)."""
    import urllib.error
    import urllib.request

    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    return await asyncio.to_thread(get)


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of ``/metrics``: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = await http_get(port, "/metrics")
    assert status == 200, (status, body)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


class WarningRecords(logging.Handler):
    """Every WARNING or worse logged while installed (see :func:`warnings_logged`), but
    for the garbage collector finishing a closed connection's tasks ("Task was
    destroyed"), which is no activity of the device under test."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "asyncio" and "Task was destroyed" in record.getMessage():
            return
        self.records.append(record)


@contextmanager
def warnings_logged() -> Iterator[WarningRecords]:
    """Collect the warnings logged anywhere inside the block."""
    handler = WarningRecords()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


async def run_for(client: MLSClient, seconds: float, seen: list[ClientEvent]) -> None:
    """Run ``client.run()`` for ``seconds``, appending its events to ``seen``."""
    stop = asyncio.Event()

    async def record(event: ClientEvent) -> None:
        seen.append(event)

    task = asyncio.ensure_future(client.run(record, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task


class FlakyService:
    """The embedded service whose reads fail while ``down`` is set and whose submits
    fail while ``submit_down`` is set (a Delivery Service outage, as the client sees
    it); ``failures`` counts the failed reads."""

    def __init__(self, inner: LocalDeliveryService) -> None:
        self._inner = inner
        self.down = False
        self.submit_down = False
        self.failures = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        if self.down:
            self.failures += 1
            raise TransportError("connection refused (simulated outage)")
        return await self._inner.fetch(client_id, after, limit)

    async def submit(self, *args: object, **kwargs: object) -> SubmitResult:
        if self.submit_down:
            raise TransportError("connection reset (simulated outage)")
        return await self._inner.submit(*args, **kwargs)  # type: ignore[arg-type]
