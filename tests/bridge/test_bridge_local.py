"""One MLS group over two networks through the bridge (embedded networks)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.hub import OrderingHub, Rule
from bridge.service import Bridge
from mls_client.events import MessageRejected, RemovedFromGroup
from mls_core.errors import PolicyError
from mls_core.proposals import ProposalType
from mls_core.room_policy import Role, RoomPolicy
from tests.bridge.helpers import bridged_net, identity
from tests.client.helpers import async_test
from transports.base import IncomingMessage, SessionConflictError, TransportError


@async_test
async def test_cross_network_group(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice", "bob")
        await net.add("matrix", "carol", "dave")
        alice = net.clients["alice"]
        gid = await alice.create_group()
        assert net.hub is not None and set(await net.hub.rooms(gid)) == {"xmpp", "matrix"}
        added = await alice.add_members(gid, [identity("matrix", "carol"),
                                              identity("xmpp", "bob")])
        assert not added.missing_users
        await net.settle()
        await net.agree(gid, ["alice", "bob", "carol"])
        # a Matrix member adds an XMPP-side... and a Matrix user
        carol = net.clients["carol"]
        await carol.add_members(gid, [identity("matrix", "dave")])
        await net.settle()
        await net.agree(gid, ["alice", "bob", "carol", "dave"])
        await carol.send(gid, b"hello from matrix")
        await alice.send(gid, b"hello from xmpp")
        await net.settle()
        assert b"hello from matrix" in net.received("bob", gid)
        assert b"hello from xmpp" in net.received("dave", gid)


@pytest.mark.parametrize("rule", list(Rule))
@async_test
async def test_crossing_commits_one_wins_everywhere(tmp_path: Path, rule: Rule) -> None:
    """Under either hub rule: the hub lets through every Commit (members apply the
    first valid one) or only the first one offered (the later one never comes back)."""
    async with bridged_net(tmp_path, rule) as net:
        await net.add("xmpp", "alice", "bob")
        await net.add("matrix", "carol", "dave")
        c = net.clients
        gid = await net.group("alice", ["bob", "carol", "dave"])
        for round_ in range(3):
            epoch = await c["alice"].epoch(gid)
            results = await asyncio.gather(c["bob"].update(gid), c["carol"].update(gid))
            assert len(results) == 2
            await net.settle()
            assert await c["dave"].epoch(gid) == epoch + 2, round_
            await net.agree(gid, list(c))
        assert sum(cl.stats.commits_lost for cl in c.values()) >= 1


@async_test
async def test_policy_enforced_identically_on_both_networks(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice", "bob")
        await net.add("matrix", "carol", "dave")
        c = net.clients
        ids = {n: identity(net.network[n], n) for n in c}
        gid = await net.group("alice", ["bob", "carol"],
                              RoomPolicy.standard([ids["alice"].encode()]))
        epoch = await c["carol"].epoch(gid)
        with pytest.raises(PolicyError, match="may not add"):
            await c["carol"].add_members(gid, [ids["dave"]])
        # a Matrix client that skips its own check: everyone else rejects its Commit
        c["carol"]._ctx.config.commit_policy = None
        await c["carol"].remove_members(gid, [ids["bob"]])
        events = await net.settle("alice", "bob")
        for name in ("alice", "bob"):
            rejected = [e for e in events[name] if isinstance(e, MessageRejected)]
            assert len(rejected) == 1 and "PolicyError" in rejected[0].reason, events[name]
            assert await c[name].epoch(gid) == epoch
        await net.agree(gid, ["alice", "bob"])
        # the group goes on: the admin makes dave... carol is rogue: remove her, then a
        # policy change gives bob the moderator role and his add is accepted everywhere
        await c["alice"].remove_members(gid, [ids["carol"]])
        await c["alice"].set_policy(gid, RoomPolicy.build({ids["alice"].encode(): Role.ADMIN,
                                                           ids["bob"].encode(): Role.MODERATOR}))
        await net.settle()
        await c["bob"].add_members(gid, [ids["dave"]])
        await net.settle()
        await net.agree(gid, ["alice", "bob", "dave"])
        assert await c["dave"].policy(gid) == await c["alice"].policy(gid)


@async_test
async def test_the_bridge_never_sees_plaintext(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    canary = b"canary-4471: the plaintext the bridge must never hold"
    caplog.set_level(logging.DEBUG)
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice")
        await net.add("matrix", "carol")
        gid = await net.group("alice", ["carol"])
        await net.clients["carol"].send(gid, canary)
        await net.clients["alice"].send(gid, canary)
        await net.settle()
        assert canary in net.received("alice", gid) and canary in net.received("carol", gid)
        assert net.bridge is not None and net.bridge.stats["relayed"] > 0
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("hub.sqlite*"))
    assert stored and canary not in stored
    assert canary.decode() not in caplog.text
    # the networks themselves carry only ciphertext too
    for net_file in tmp_path.glob("*-network*.sqlite*"):
        assert canary not in net_file.read_bytes()


@async_test
async def test_bridge_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice")
        await net.add("matrix", "carol")
        gid = await net.group("alice", ["carol"])
        sent = []
        for i in range(12):
            if i == 4:
                await net.stop_bridge()  # messages 4..7 are offered while it is down
            if i == 8:
                await net.start_bridge()
            who = "alice" if i % 2 else "carol"
            data = f"message {i}".encode()
            await net.clients[who].send(gid, data)
            sent.append((who, data))
        await net.settle()
        for name in ("alice", "carol"):
            got = net.received(name, gid)
            expected = [d for who, d in sent if who != name]
            assert got == expected, name  # all, once each, in order


@async_test
async def test_members_ignore_relays_not_from_the_bridge(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice", "mallory")
        await net.add("matrix", "carol")
        c = net.clients
        gid = await net.group("alice", ["carol", "mallory"])
        # mallory posts a hub item herself, claiming it is carol's: alice ignores it
        group = await c["mallory"].group(gid)
        forged = group.encrypt(b"forged ordering")
        account = c["mallory"]._ctx.transport.inner  # type: ignore[attr-defined]
        await account.relay_group(gid, forged, seq=999, sender_identity=identity("matrix",
                                                                                 "carol"))
        await net.settle()
        assert b"forged ordering" not in net.received("alice", gid)
        # a malformed control message to the bridge is dropped; the bridge goes on
        await account.send_control(identity("xmpp", "bridge"), b"{not json")
        await c["carol"].send(gid, b"still relayed")
        await net.settle()
        assert b"still relayed" in net.received("alice", gid)
        assert net.bridge is not None and net.bridge.stats["rejected"] >= 2
        assert net.bridge.stats["dropped"] == {"relay-not-from-bridge": 1, "malformed": 1}
        # alice's and mallory's own transports dropped the forged hub item, with a count
        assert net.transport("alice").drops.snapshot() == {"relay-not-from-bridge": 1}


@async_test
async def test_a_network_failure_while_publishing_is_retried(tmp_path: Path) -> None:
    """The outbox keeps a hub item whose republication failed; the bridge retries."""
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice")
        await net.add("matrix", "carol")
        gid = await net.group("alice", ["carol"])
        assert net.bridge is not None
        matrix = net.bridge.networks["matrix"]
        real = matrix.relay_group
        failures = 0

        async def flaky(*args: Any, **kwargs: Any) -> int | None:
            nonlocal failures
            if failures < 2:
                failures += 1
                raise TransportError("homeserver unreachable")
            return await real(*args, **kwargs)
        matrix.relay_group = flaky  # type: ignore[method-assign]
        await net.clients["alice"].send(gid, b"through a flaky network")
        deadline = asyncio.get_running_loop().time() + 20
        while b"through a flaky network" not in net.received("carol", gid):
            assert asyncio.get_running_loop().time() < deadline
            await net.settle("carol")
        assert failures == 2


@async_test
async def test_a_room_ban_becomes_the_bridges_remove_proposal(tmp_path: Path) -> None:
    """The bridge is the group's external sender (RFC 9420 §12.1.8), allowed by the room
    policy to propose Remove; a ban on either network removes the user everywhere."""
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice")
        await net.add("matrix", "carol", "dave")
        c = net.clients
        ids = {n: identity(net.network[n], n) for n in c}
        gid = await c["alice"].create_group(policy=RoomPolicy.standard([ids["alice"].encode()]))
        policy = await c["alice"].policy(gid)
        assert policy is not None and policy.external_sender_may(0, ProposalType.REMOVE)
        await c["alice"].add_members(gid, [ids["carol"], ids["dave"]])
        await net.settle()
        epoch = await c["carol"].epoch(gid)
        assert net.bridge is not None
        await net.bridge.ban("matrix", gid, ids["dave"])
        events = await net.settle()
        assert await c["carol"].epoch(gid) == epoch + 1
        members = [m.credential.identity for m in await c["carol"].members(gid)]
        assert ids["dave"].encode() not in members and ids["carol"].encode() in members
        assert any(isinstance(e, RemovedFromGroup) for e in events["dave"])
        await net.agree(gid, ["alice", "carol"])
        # the ban is done: nothing more is proposed at later epochs
        await c["alice"].update(gid)
        await net.settle()
        assert await net.hub.bans(gid) == []  # type: ignore[union-attr]


@async_test
async def test_own_messages_coming_back_are_no_false_alarm(tmp_path: Path) -> None:
    """Hub items of our own messages come back without naming our device: the client
    recognises them by their hash (its outgoing inbox row) instead of rejecting them."""
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice")
        await net.add("matrix", "carol")
        alice, carol = net.clients["alice"], net.clients["carol"]
        gid = await alice.create_group()
        await alice.add_members(gid, [identity("matrix", "carol")])
        await net.settle()
        for i in range(3):
            await alice.send(gid, f"from alice {i}".encode())
            await carol.send(gid, f"from carol {i}".encode())
        await net.settle()
        assert net.received("carol", gid) == [f"from alice {i}".encode() for i in range(3)]
        for name in ("alice", "carol"):
            rejected = [e for e in net.events[name] if isinstance(e, MessageRejected)]
            assert rejected == [], (name, rejected)


@async_test
async def test_a_session_conflict_stops_the_bridge_with_its_error(tmp_path: Path) -> None:
    """A second bridge login took the account's session (SessionConflictError, a
    FatalTransportError): retrying cannot help, so Bridge.run() ends with the error
    instead of retrying for ever."""
    async with bridged_net(tmp_path) as net:
        assert net.bridge is not None and net.hub is not None
        xmpp = net.bridge.networks["xmpp"]
        reads = 0

        async def replaced(client_id: str, after: str | None = None
                           ) -> AsyncIterator[IncomingMessage]:
            nonlocal reads
            reads += 1
            raise SessionConflictError(f"another session is using {client_id}")
            yield  # an async generator, like receive()

        await net.stop_bridge()
        net.hub = await OrderingHub.open(tmp_path / "hub.sqlite", ("xmpp", "matrix"))
        bridge = Bridge(net.hub, dict(net.bridge.networks))
        xmpp.receive = replaced  # type: ignore[method-assign]
        with pytest.raises(SessionConflictError, match="another session is using"):
            await asyncio.wait_for(bridge.run(asyncio.Event()), 10)
        assert reads == 1
