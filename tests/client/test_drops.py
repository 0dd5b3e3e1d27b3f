"""The client counts and logs what it refuses (docs/security.md, "Inbound inventory"):
a Welcome for none of its KeyPackages, a message MLS rejects."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mls_client.events import MessageRejected

from .helpers import Net, async_test


@async_test
async def test_refused_welcomes_and_messages_are_counted_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, mallory = await net.add("alice", "bob", "mallory")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync("bob")
        # mallory's own group's Welcome, replayed at bob (not for his KeyPackages)
        other = await mallory.create_group()
        await mallory.add_members(other, ["alice"])
        welcome = next(m for m in await net.ds.fetch("alice-dev") if m.kind.value == "welcome")
        await net.ds.send_welcome(["bob-dev"], welcome.payload, other)
        await net.ds.send_welcome(["bob-dev"], b"\x00\x01garbage", other)
        with caplog.at_level(logging.WARNING, "mls_bridge.defence"):
            await net.sync("bob")
        dropped = bob.stats.dropped
        assert dropped.get("mls-key-package-error") == 1, dropped
        assert sum(dropped.values()) == 2, dropped
        lines = [r.getMessage() for r in caplog.records]
        assert any(line.startswith("client: dropped welcome from") for line in lines), lines
        assert sum(isinstance(e, MessageRejected) for e in net.events["bob"]) == 2
        assert await bob.groups() and len(await bob.groups()) == 1
        # real traffic still flows
        await alice.send(gid, b"still here")
        await net.sync("bob")
        assert net.received("bob", gid) == [b"still here"]
    finally:
        await net.close()
