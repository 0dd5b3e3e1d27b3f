"""Synapse stopped for 5-8 s in the middle of a 3-member conversation: no send fails,
nothing is lost or duplicated (docs/resilience.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.client.helpers import async_test_within
from tests.integration.outage import converse_through_outage

from .conftest import Homeserver
from .helpers import MatrixNet


@async_test_within(300)
async def test_a_homeserver_outage_mid_stream_no_error_no_loss_no_duplicate(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    server = homeserver.server
    try:
        for name in ("alice", "bob", "carol"):
            await net.add(name)
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.identity(net.user_of[m])
                                             for m in ("bob", "carol")])
        await net.sync()
        report = await converse_through_outage(net.clients, gid, server.stop, server.start)
        print(f"matrix outage: {report}")
        assert report.longest_send > 2.0, report  # a send did run into the outage
        assert (report.errors, report.lost, report.duplicated) == (0, 0, 0), report
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        if server._proc is None:  # keep the session's server up for the other tests
            server.start()
        await net.close()


@pytest.mark.skipif(os.environ.get("MLS_OUTAGE_LONG") != "1",
                    reason="the long measurement: set MLS_OUTAGE_LONG=1 (~2 min)")
@async_test_within(900)
async def test_300_messages_through_two_homeserver_outages(
        tmp_path: Path, homeserver: Homeserver) -> None:
    """The measurement of docs/resilience.md: 300 messages, Synapse stopped twice."""
    net = MatrixNet(tmp_path, homeserver)
    server = homeserver.server
    try:
        for name in ("alice", "bob", "carol"):
            await net.add(name)
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.identity(net.user_of[m])
                                             for m in ("bob", "carol")])
        await net.sync()
        report = await converse_through_outage(net.clients, gid, server.stop, server.start,
                                               messages=300, outage_at=(80, 200))
        print(f"matrix outage x2: {report}")
        assert (report.errors, report.lost, report.duplicated) == (0, 0, 0), report
    finally:
        if server._proc is None:
            server.start()
        await net.close()
