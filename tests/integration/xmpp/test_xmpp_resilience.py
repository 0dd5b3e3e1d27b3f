"""MLSClient.run() loops across a Prosody outage: the server stopped for 6 s and started
again while three members run; nothing raises, nothing is lost or delivered twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from mls_client.events import ConnectionLost, ConnectionRestored
from tests.client.helpers import RunLoops
from tests.servers.prosody import ProsodyServer

from .helpers import XNet, xmpp_test

log = logging.getLogger(__name__)
MEMBERS = ("alice", "bob", "carol")
#: how long the server stays down (seconds)
OUTAGE = 6.0


@xmpp_test
async def test_run_loops_ride_out_a_server_outage(prosody: ProsodyServer,
                                                  tmp_path: Path) -> None:
    """The XMPP transport reconnects by itself (jittered backoff, docs/xmpp.md) and its
    calls wait up to ``submit_timeout`` for the session, longer than the outage: the
    client sees no transport error, so run() reports no ConnectionLost at all."""
    net = XNet(prosody, tmp_path)
    loops = None
    try:
        await net.add(*MEMBERS)
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob"), net.user("carol")])
        await net.joined("bob", gid)
        await net.joined("carol", gid)
        await net.settle()
        loops = RunLoops(net, *MEMBERS)
        await net["alice"].send(gid, b"before")
        await net.wait_for(_got(net, gid, {"bob": [b"before"], "carol": [b"before"]}))

        await asyncio.to_thread(prosody.stop)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(prosody.start)
        await net["bob"].send(gid, b"after 1")
        await net["carol"].send(gid, b"after 2")
        expected = {"alice": [b"after 1", b"after 2"],
                    "bob": [b"before", b"after 2"],
                    "carol": [b"before", b"after 1"]}
        await net.wait_for(_got(net, gid, expected), timeout=60)
        await asyncio.sleep(1.0)  # nothing more (no duplicate) arrives
        assert loops.raised() == {}
        await loops.stop()
        for name in MEMBERS:
            assert net.received(name, gid) == expected[name], name
            lost, restored = loops.count(name, ConnectionLost), loops.count(name,
                                                                            ConnectionRestored)
            transport = net.transports[name]
            log.warning("%s: lost=%d restored=%d sessions=%d reconnect attempts=%d", name,
                        lost, restored, transport.sessions, transport.reconnect_attempts)
            assert lost == restored == 0, name
            assert transport.sessions == 2, name  # reconnected exactly once
            assert 1 <= transport.reconnect_attempts <= 6, name  # 6 s, ceiling up to 5 s
        await net.agree(gid, list(MEMBERS))
    finally:
        if not prosody.running:  # keep the session's server up for the other tests
            await asyncio.to_thread(prosody.start)
        if loops is not None:
            with contextlib.suppress(Exception):  # the test's own failure matters
                await loops.stop()
        await net.close()


def _got(net: XNet, gid: bytes,
         expected: dict[str, list[bytes]]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(net.received(name, gid) == msgs for name, msgs in expected.items())
    return check
