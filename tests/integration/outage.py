"""A server outage in the middle of a conversation, the application not retrying
(docs/resilience.md): shared by the XMPP and Matrix outage tests."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mls_client import MLSClient
from transports.base import TransportError


@dataclass
class OutageReport:
    sent: int
    errors: int
    lost: int
    duplicated: int
    down_for: float
    #: the longest send() call (seconds): > 2 s shows a send ran into the outage
    longest_send: float = 0.0

    def __str__(self) -> str:
        return (f"sends={self.sent} errors={self.errors} lost={self.lost} "
                f"duplicated={self.duplicated} down_for={self.down_for:.1f}s "
                f"longest_send={self.longest_send:.1f}s")


async def converse_through_outage(clients: dict[str, MLSClient], group_id: bytes,
                                  stop: Callable[[], None], start: Callable[[], None], *,
                                  messages: int = 60, outage_at: Sequence[int] = (20,),
                                  settle: Callable[[], Awaitable[None]] | None = None,
                                  seed: int | None = None) -> OutageReport:
    """The clients take turns sending ``messages`` messages (one at a time, as an
    application would, never retrying); before message ``outage_at`` the server is
    stopped for 5-8 s (in a thread, so sends run into the outage; ``outage_at`` may
    name several messages, each outage has its own length). Then every client
    catches up and its inbox is compared with what the others sent."""
    rng = random.Random(seed)
    names: Sequence[str] = list(clients)
    sent: dict[str, list[bytes]] = {n: [] for n in names}
    errors = 0
    down_for = 0.0
    longest = 0.0

    def cycle(seconds: float) -> None:
        stop()
        time.sleep(seconds)
        start()

    outage: asyncio.Future[None] | None = None
    for i in range(messages):
        if i in outage_at:
            if outage is not None:
                await outage
            seconds = rng.uniform(5.0, 8.0)
            down_for += seconds
            outage = asyncio.ensure_future(asyncio.to_thread(cycle, seconds))
            await asyncio.sleep(0.5)  # the stop is under way
        name = names[i % len(names)]
        data = f"{name} #{i}".encode()
        began = time.monotonic()
        try:
            await clients[name].send(group_id, data)
        except TransportError:
            errors += 1
        longest = max(longest, time.monotonic() - began)
        sent[name].append(data)  # a failed send may still arrive: count it as sent
    assert outage is not None
    await outage
    for _ in range(3):
        for client in clients.values():
            await client.sync()
        if settle is not None:
            await settle()
    lost = duplicated = 0
    for name in names:
        got = Counter(m.data for m in await clients[name].inbox(group_id) if not m.outgoing)
        want = Counter(d for other in names if other != name for d in sent[other])
        lost += sum((want - got).values())
        duplicated += sum((got - want).values())
    return OutageReport(sum(map(len, sent.values())), errors, lost, duplicated, down_for,
                        longest)
