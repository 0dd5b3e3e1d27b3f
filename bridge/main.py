"""``mls-bridge bridge --config bridge.toml``: run the bridge service until SIGTERM or
SIGINT (bridge/service.py; settings in bridge/config.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transports.base import InvalidRequestError, RelayTransport

from .config import BridgeConfig
from .hub import OrderingHub
from .service import Bridge

if TYPE_CHECKING:
    from .metrics import BridgeCollector

log = logging.getLogger("mls_bridge.bridge")


def setup_logging(config: BridgeConfig) -> None:
    """Log to ``log_file`` (or stderr). Nothing logged ever carries a payload: the
    bridge logs identities, group ids, counts and verdicts."""
    handler: logging.Handler = (logging.FileHandler(config.log_file) if config.log_file
                                else logging.StreamHandler())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(config.log_level)


@contextlib.asynccontextmanager
async def network_accounts(config: BridgeConfig) -> AsyncIterator[dict[str, RelayTransport]]:
    """The bridge's logged-in XMPP and Matrix accounts (closed on exit)."""
    from transports.matrix.transport import MatrixDeliveryTransport
    from transports.xmpp.transport import XmppDeliveryTransport

    cfg = config.matrix
    xmpp = await XmppDeliveryTransport.connect(config.xmpp)
    try:
        matrix = await MatrixDeliveryTransport.connect(
            cfg.homeserver, cfg.user_id, journal_path=config.journal_path,
            password=None if cfg.password is None else cfg.password.get_secret_value(),
            access_token=None if cfg.access_token is None
            else cfg.access_token.get_secret_value(),
            device_id=cfg.device_id, ca_file=cfg.ca_file, long_poll_ms=cfg.long_poll_ms,
            timeline_limit=cfg.timeline_limit, max_media=cfg.max_media_bytes,
            submit_timeout=cfg.submit_timeout, limits=cfg.limits)
        try:
            yield {"xmpp": xmpp, "matrix": matrix}
        finally:
            await matrix.close()
    finally:
        await xmpp.close()


@dataclass(frozen=True)
class MetricsAddress:
    """Where ``/metrics`` and ``/healthz`` are served (``--metrics-host/--metrics-port``)."""

    host: str
    port: int


async def serve(config: BridgeConfig, stop: asyncio.Event | None = None, *,
                metrics: MetricsAddress | None = None) -> None:
    """Run the bridge of ``config`` until ``stop`` is set or a signal arrives; with
    ``metrics``, also serve its Prometheus metrics and ``/healthz`` (503 until the
    accounts are logged in and the relay runs, and after it stopped)."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if metrics is None:
        await _serve(config, stop, None)
        return
    from .metrics import BridgeCollector, serve_bridge_metrics

    collector = BridgeCollector()
    server = await serve_bridge_metrics(collector, metrics.host, metrics.port)
    try:
        await _serve(config, stop, collector)
    finally:
        await server.close()


async def open_hub(config: BridgeConfig, networks: Sequence[str]) -> OrderingHub:
    """The hub database of ``config`` for ``networks``, ordering by its rule and checking
    GroupInfo within its ``[limits]`` (RFC 9420 §12.4.3.2, docs/security.md "Bounds")."""
    return await OrderingHub.open(config.hub_path, networks, rule=config.ordering,
                                  limits=config.limits.input_limits())


async def _serve(config: BridgeConfig, stop: asyncio.Event,
                 collector: BridgeCollector | None) -> None:
    async with network_accounts(config) as accounts:
        hub = await open_hub(config, tuple(accounts))
        try:
            bridge = Bridge(hub, accounts)
            if collector is not None:
                collector.bridge = bridge
            for pair in config.pairs:
                if pair.creator is not None:
                    await hub.set_anchor(pair.group_id, pair.creator)
                rooms = await bridge.open_group(pair.group_id)
                if pair.matrix_room is not None and rooms.get("matrix") != pair.matrix_room:
                    raise InvalidRequestError(f"{pair.xmpp_room}: the group's Matrix room "
                                              f"is {rooms.get('matrix')}, not "
                                              f"{pair.matrix_room}")
            for group_id in await hub.groups():
                if await hub.view(group_id) is None:
                    log.warning("group %s has no verified view: the bridge answers no "
                                "request about it until %s asks to bridge it", group_id.hex(),
                                await hub.anchor(group_id) or "a creator named in bridge.toml")
            log.info("bridge up: %s as %s, %d configured pairs",
                     ", ".join(accounts), ", ".join(a.user_id for a in accounts.values()),
                     len(config.pairs))
            await bridge.run(stop)
            log.info("bridge stopped; stats %s", json.dumps(bridge.stats, sort_keys=True))
        finally:
            await hub.close()


def main(config_path: Path, metrics: MetricsAddress | None = None) -> int:
    config = BridgeConfig.load(config_path)
    setup_logging(config)
    asyncio.run(serve(config, metrics=metrics))
    return 0
