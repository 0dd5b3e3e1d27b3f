"""Opt-in Prometheus metrics and ``/healthz`` of the bridge service (docs/operations.md).

Needs ``prometheus-client`` (the ``metrics`` extra), like :mod:`mls_client.metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from mls_client.metrics import (
    DEFAULT_HOST,
    Collector,
    Metric,
    MetricsServer,
    by_label,
    counter,
    new_registry,
)

from .service import Bridge

log = logging.getLogger("mls_bridge.metrics")


class BridgeCollector(Collector):
    """``mls_bridge_*``: :attr:`Bridge.stats` and the hub's republication lag per
    network. :attr:`bridge` is None until the service is up (nothing is reported and
    ``/healthz`` answers 503 while the accounts log in)."""

    def __init__(self, bridge: Bridge | None = None) -> None:
        self.bridge = bridge
        #: the lag read by the last :meth:`refresh` (None: unreadable)
        self._lag: dict[str, int] | None = None

    async def refresh(self) -> None:
        self._lag = None
        if self.bridge is None:
            return
        try:
            self._lag = await self.bridge.hub.lag()
        except Exception as exc:  # a closed or broken hub: the gauge is left out
            log.debug("hub lag unreadable: %s", exc)

    def collect(self) -> Iterable[Metric]:
        if self.bridge is None:
            return []
        s = self.bridge.stats
        p = "mls_bridge_"
        out: list[Metric] = [
            counter(p + "offers", "Members' messages offered to the hub (sequenced or "
                    "recognised as repeats)", s["offers"]),
            counter(p + "relayed", "Hub items published into rooms", s["relayed"]),
            counter(p + "rejected", "Items not acted on: refused, rejected by the hub, or "
                    "failed", s["rejected"]),
            counter(p + "requests", "Well-formed control requests received", s["requests"]),
            by_label(p + "dropped", "Refused items per reason", "reason", s["dropped"]),
        ]
        if self._lag is not None:
            out.append(by_label(p + "hub_lag_messages", "Hub items sequenced but not yet "
                                "published into the network's rooms", "network", self._lag,
                                kind="gauge"))
        return out

    async def health(self) -> tuple[bool, Mapping[str, object]]:
        """``/healthz``: see :meth:`Bridge.health`."""
        if self.bridge is None:
            return False, {"status": "starting"}
        return await self.bridge.health()


async def serve_bridge_metrics(collector: BridgeCollector, host: str = DEFAULT_HOST,
                               port: int = 0) -> MetricsServer:
    """``/metrics`` and ``/healthz`` of the bridge on ``host:port``."""
    return await MetricsServer.start(new_registry(collector), host, port,
                                     refresh=[collector.refresh], health=collector.health)
