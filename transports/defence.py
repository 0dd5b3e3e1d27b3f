"""Visible defence against hostile network input (docs/security.md, "Inbound inventory").

Everything a network delivers is hostile until authenticated. When a transport, the
bridged wrapper or the bridge drops an inbound item, it calls :meth:`Drops.drop`: the drop
is counted under a stable *reason* slug and logged at WARNING with network, sender, kind
and reason, once per (sender, reason) per ``interval`` (a flood yields one line per
minute and sender, with the number suppressed since the last line). Counters are
exposed as :meth:`Drops.snapshot` (the client's and the bridge's ``stats``).

:class:`RateLimiter` is the token bucket used for per-claimant KeyPackage claims and for
control requests.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

log = logging.getLogger("mls_bridge.defence")

#: distinct (sender, reason) keys remembered for log rate limiting
MAX_TRACKED = 4096
#: longest sender / detail text put in a log line
_MAX_TEXT = 200


def _clip(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


class Drops:
    """Counts dropped inbound items per reason and logs them, rate-limited per sender.

    ``network`` names the source in log lines (``xmpp``, ``matrix``, ``local``,
    ``bridge``)."""

    def __init__(self, network: str, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | None = None) -> None:
        self.network = network
        self.interval = interval
        self._clock = clock
        self._log = logger or log
        self.counts: Counter[str] = Counter()
        #: (sender, reason) -> (time of the last line, drops suppressed since)
        self._seen: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def drop(self, *, sender: str | None, kind: str, reason: str, detail: str = "",
             benign: bool = False) -> None:
        """Record one dropped item: ``kind`` (e.g. ``claim``, ``welcome``,
        ``control``), ``reason`` a stable slug (e.g. ``not-a-member``), ``detail`` free
        text for the log line (never key material or plaintext). ``benign``: an item
        that changes nothing and that ordinary operation produces (e.g. a claim notice
        re-read after a restart): counted, but logged at INFO, not WARNING."""
        self.counts[reason] += 1
        who = _clip(sender or "an unauthenticated sender")
        key = (who, reason)
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self._seen[key] = (last[0], last[1] + 1)
            return
        suppressed = last[1] if last is not None else 0
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_TRACKED:
            self._seen.popitem(last=False)
        self._log.log(logging.INFO if benign else logging.WARNING,
                      "%s: dropped %s from %s: %s%s%s", self.network, kind, who, reason,
                      f" ({_clip(detail)})" if detail else "",
                      f"; {suppressed} more like it since the last report"
                      if suppressed else "")

    def snapshot(self) -> dict[str, int]:
        """Drops so far, per reason."""
        return dict(self.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class RateLimiter:
    """A token bucket per key: ``burst`` at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        now = self._clock()
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        ok = tokens >= 1
        self._buckets[key] = (tokens - 1 if ok else tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return ok


__all__ = ["Drops", "RateLimiter"]
