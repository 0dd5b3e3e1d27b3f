"""MLSClient.run() loops across a Prosody outage: the server stopped for 6 s and started
again while three members run; nothing raises, nothing is lost or delivered twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mls_client.events import ConnectionLost, ConnectionRestored
from tests.client.helpers import RunLoops
from tests.servers.prosody import ProsodyServer

from .helpers import XNet, xmpp_test

log = logging.getLogger(__name__)
MEMBERS = ("alice", "bob", "carol")
#: how long the server stays down (seconds)
OUTAGE = 6.0


@pytest.mark.parametrize("submit_timeout", [20.0, 2.0])
@xmpp_test
async def test_run_loops_ride_out_a_server_outage(prosody: ProsodyServer, tmp_path: Path,
                                                  submit_timeout: float) -> None:
    """The XMPP transport reconnects by itself (jittered backoff, docs/xmpp.md); its
    calls wait up to ``submit_timeout`` for the session. An outage shorter than that
    (20 s) is no transport error for the client: run() reports nothing. A longer one
    (2 s here) fails the client's reads: run() reports one ConnectionLost and one
    ConnectionRestored per member. Either way the transport reconnected exactly once
    and every message arrives once."""
    net = XNet(prosody, tmp_path, submit_timeout=submit_timeout)
    reported = 0 if submit_timeout > OUTAGE else 1
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

        async def restored() -> bool:
            return all(loops.count(n, ConnectionRestored) == reported for n in MEMBERS)

        await net.wait_for(restored, timeout=60)
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
            lost = loops.count(name, ConnectionLost)
            transport = net.transports[name]
            log.warning("%s: lost=%d restored=%d sessions=%d reconnect attempts=%d", name,
                        lost, loops.count(name, ConnectionRestored), transport.sessions,
                        transport.reconnect_attempts)
            assert lost == loops.count(name, ConnectionRestored) == reported, name
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
