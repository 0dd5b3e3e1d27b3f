"""Prosody stopped for 5-8 s in the middle of a 3-member conversation: no send fails,
nothing is lost or duplicated (docs/resilience.md)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.client.helpers import async_test_within
from tests.integration.outage import converse_through_outage
from tests.servers.prosody import ProsodyServer

from .helpers import XNet


@async_test_within(300)
async def test_a_server_outage_mid_stream_no_error_no_loss_no_duplicate(
        prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob", "carol")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob"), net.user("carol")])
        await net.joined("bob", gid)
        await net.joined("carol", gid)
        await net.settle()
        report = await converse_through_outage(net.clients, gid, prosody.stop, prosody.start,
                                               settle=net.settle)
        print(f"xmpp outage: {report}")
        assert report.longest_send > 2.0, report  # a send did run into the outage
        assert (report.errors, report.lost, report.duplicated) == (0, 0, 0), report
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        if not prosody.running:  # keep the session's server up for the other tests
            await asyncio.to_thread(prosody.start)
        await net.close()


@pytest.mark.skipif(os.environ.get("MLS_OUTAGE_LONG") != "1",
                    reason="the long measurement: set MLS_OUTAGE_LONG=1 (~1 min)")
@async_test_within(900)
async def test_300_messages_through_two_server_outages(prosody: ProsodyServer,
                                                       tmp_path: Path) -> None:
    """The measurement of docs/resilience.md: 300 messages, Prosody stopped twice."""
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob", "carol")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob"), net.user("carol")])
        await net.joined("bob", gid)
        await net.joined("carol", gid)
        await net.settle()
        report = await converse_through_outage(net.clients, gid, prosody.stop, prosody.start,
                                               messages=300, outage_at=(80, 200),
                                               settle=net.settle)
        print(f"xmpp outage x2: {report}")
        assert (report.errors, report.lost, report.duplicated) == (0, 0, 0), report
    finally:
        if not prosody.running:
            await asyncio.to_thread(prosody.start)
        await net.close()
