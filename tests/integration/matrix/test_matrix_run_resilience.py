"""MLSClient.run() loops across a Synapse outage: the homeserver stopped for 6 s and
started again while three members run; nothing raises, each member reports the outage
once (ConnectionLost, then ConnectionRestored), nothing is lost or delivered twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mls_client.events import ConnectionLost, ConnectionRestored
from tests.client.helpers import RunLoops, async_test_within
from transports.base import CredentialsRejectedError
from transports.matrix.api import CLIENT

from .conftest import Homeserver
from .helpers import MatrixNet

log = logging.getLogger(__name__)
MEMBERS = ("alice", "bob", "carol")
#: how long the homeserver stays down (seconds)
OUTAGE = 6.0


@async_test_within(240)
async def test_run_loops_ride_out_a_homeserver_outage(tmp_path: Path,
                                                      homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    loops = None
    server = homeserver.server
    down = False
    try:
        for name in MEMBERS:
            await net.add(name)
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.identity(net.user_of[m])
                                             for m in ("bob", "carol")])
        await net.sync()
        loops = RunLoops(net, *MEMBERS)
        await net["alice"].send(gid, b"before")
        await _until(_got(net, gid, {"bob": [b"before"], "carol": [b"before"]}), 30)

        down = True
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(server.start)
        down = False
        await net["bob"].send(gid, b"after 1")
        await net["carol"].send(gid, b"after 2")
        expected = {"alice": [b"after 1", b"after 2"],
                    "bob": [b"before", b"after 2"],
                    "carol": [b"before", b"after 1"]}
        await _until(_got(net, gid, expected), 60)
        await asyncio.sleep(1.0)  # nothing more (no duplicate) arrives
        assert loops.raised() == {}
        await loops.stop()
        for name in MEMBERS:
            assert net.received(name, gid) == expected[name], name
            lost = loops.count(name, ConnectionLost)
            restored = loops.count(name, ConnectionRestored)
            stats = net[name].stats
            log.warning("%s: lost=%d restored=%d disconnects=%d retries=%d", name, lost,
                        restored, stats.disconnects, stats.reconnect_attempts)
            assert lost == restored == 1, name
            kinds = [type(e) for e in net.events[name]]
            assert kinds.index(ConnectionLost) < kinds.index(ConnectionRestored), name
        await net.agree(gid, list(MEMBERS))
    finally:
        if down:  # keep the session's server up for the other tests
            await asyncio.to_thread(server.start)
        if loops is not None:
            with contextlib.suppress(Exception):  # the test's own failure matters
                await loops.stop()
        await net.close()


def _got(net: MatrixNet, gid: bytes,
         expected: dict[str, list[bytes]]) -> Callable[[], bool]:
    return lambda: all(net.received(name, gid) == msgs for name, msgs in expected.items())


async def _until(check: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)



@async_test_within(120)
async def test_a_revoked_access_token_ends_run_with_a_clear_error(
        tmp_path: Path, homeserver: Homeserver) -> None:
    """A device logged out elsewhere (HTTP 401 M_UNKNOWN_TOKEN on every request) is not an
    outage: run() raises CredentialsRejectedError once instead of retrying for ever, and
    a send fails at once instead of waiting out ``submit_wait``."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        alice = await net.add("alice")
        gid = await alice.create_group()
        seen: list[object] = []

        async def handler(event: object) -> None:
            seen.append(event)

        runner = asyncio.create_task(alice.run(handler))
        await asyncio.sleep(0.5)
        await net.transports["alice"].api.request("POST", f"{CLIENT}/logout", {})
        with pytest.raises(CredentialsRejectedError, match="M_UNKNOWN_TOKEN"):
            await asyncio.wait_for(runner, 30)
        assert not any(isinstance(e, ConnectionLost) for e in seen)
        started = time.monotonic()
        with pytest.raises(CredentialsRejectedError):
            await alice.send(gid, b"after the logout")
        assert time.monotonic() - started < 60
    finally:
        await net.close()
