"""The incoming stream on a real Synapse: receive() wakes on new events, and a fetch()
preempts a long-polling receive() instead of waiting for it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.client.helpers import async_test
from transports.base import IncomingMessage

from .conftest import Homeserver
from .helpers import MatrixNet


@async_test
async def test_receive_wakes_and_fetch_preempts_the_long_poll(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        alice = await net.add("alice")
        await net.add("bob", long_poll_ms=20_000)
        gid = await alice.create_group()
        await alice.add_members(gid, [net.identity("bob")])
        await net.sync()
        tb = net.transports["bob"]
        cursor = await net["bob"].store.cursor()
        got: list[IncomingMessage] = []

        async def listen() -> None:
            async for item in tb.receive(tb.client_id, after=cursor):
                got.append(item)
                return

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.5)  # the listener is now long-polling /sync (20 s)
        t0 = time.perf_counter()
        assert await tb.fetch(tb.client_id, after=cursor) == []
        assert time.perf_counter() - t0 < 5  # did not wait for the 20 s long poll
        assert not listener.done()  # preempted, not ended: it polls again
        await alice.send(gid, b"wake up")
        await asyncio.wait_for(listener, 15)
        assert len(got) == 1 and got[0].sender == net.transports["alice"].client_id
        assert got[0].sender_identity == net.identity("alice")
        await net.sync("bob")
        assert net.received("bob", gid) == [b"wake up"]
    finally:
        await net.close()
