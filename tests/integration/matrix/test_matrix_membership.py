"""Room membership and MLS membership with plain :meth:`MLSClient.run` over a real
Synapse (no ``MatrixBot``): a user kicked from the room is removed from the MLS group
by the designated remover, and the kicked device stops cleanly (mls_client.room_access,
docs/matrix.md "Native moderation → MLS removal")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from mls_client.events import ClientEvent, ConnectionLost, KickedFromRoom
from mls_client.matrix_rights import POWER_LEVELS
from mls_core.room_policy import Role, RoomPolicy
from tests.client.helpers import async_test_within, run_for, warnings_logged
from transports.matrix.api import CLIENT, quote
from transports.matrix.transport import MatrixDeliveryTransport

from .conftest import Homeserver
from .helpers import MatrixNet

#: the brief's bound: kick to MLS removal on every member
REMOVAL_BOUND = 15.0
QUIET_WINDOW = 10.0


def _count_requests(transport: MatrixDeliveryTransport) -> dict[str, int]:
    """Count the device's API calls other than ``/sync``, and those that failed."""
    counts = {"requests": 0, "failed": 0}
    api: Any = transport.api
    for name in ("request", "raw"):
        original = getattr(api, name)

        async def counted(method: str, path: str, *args: Any, _orig: Any = original,
                          **kwargs: Any) -> Any:
            if not path.endswith("/sync"):
                counts["requests"] += 1
            try:
                return await _orig(method, path, *args, **kwargs)
            except Exception:
                counts["failed"] += 1
                raise

        setattr(api, name, counted)
    return counts


@async_test_within(180)
async def test_plain_clients_kick_removes_and_kicked_device_stops(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    seen: dict[str, list[ClientEvent]] = {}
    try:
        for name in ("alice", "bob", "carol"):
            await net.add(name)
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.identity("bob"), net.identity("carol")])
        await net.sync()
        for name, client in net.clients.items():
            seen[name] = []

            async def record(event: ClientEvent, name: str = name) -> None:
                seen[name].append(event)

            tasks.append(asyncio.ensure_future(client.run(record, stop)))
        room = net.transports["alice"].room_id(gid)
        assert room is not None
        kicked_at = time.monotonic()
        await net.transports["alice"].api.request(
            "POST", f"{CLIENT}/rooms/{quote(room)}/kick",
            {"user_id": net.users["bob"], "reason": "test"})

        async def bob_gone(name: str) -> bool:
            names = {m.credential.identity for m in await net[name].members(gid)}
            return net.identity("bob").encode() not in names

        while not (await bob_gone("carol") and await bob_gone("alice")):
            assert time.monotonic() - kicked_at < REMOVAL_BOUND, "bob was not removed"
            await asyncio.sleep(0.05)
        removal = time.monotonic() - kicked_at
        print(f"matrix: kick -> MLS removal seen by every member in {removal:.1f} s")
        while not any(isinstance(e, KickedFromRoom) for e in seen["bob"]):
            assert time.monotonic() - kicked_at < REMOVAL_BOUND, "bob saw no kick"
            await asyncio.sleep(0.05)
        # the kicked device: its send fails at once, it stays quiet
        with pytest.raises(Exception):  # noqa: B017 - any refusal, but at once
            async with asyncio.timeout(5):
                await net["bob"].send(gid, b"after the kick")
        counts = _count_requests(net.transports["bob"])
        with warnings_logged() as warned:
            await asyncio.sleep(QUIET_WINDOW)
        stop.set()
        await asyncio.gather(*tasks)
        tasks.clear()
        assert [type(e) for e in seen["bob"] if isinstance(e, KickedFromRoom)] == \
            [KickedFromRoom]
        assert not any(isinstance(e, ConnectionLost) for e in seen["bob"])
        assert counts["failed"] == 0, counts
        assert warned.records == [], [r.getMessage() for r in warned.records]

        # reopened from disk: still quiet, no second event
        bob = await net.reopen("bob")
        counts = _count_requests(net.transports["bob"])
        again: list[ClientEvent] = []
        with warnings_logged() as warned:
            await run_for(bob, QUIET_WINDOW, again)
        assert again == [], again
        assert counts["failed"] == 0, counts
        assert warned.records == [], [r.getMessage() for r in warned.records]
        await net["alice"].send(gid, b"without bob")
        await net.sync("alice", "carol")
        await net.agree(gid, ["alice", "carol"])
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await net.close()


@async_test_within(180)
async def test_plain_clients_follow_the_policy_and_record_a_ban(
        tmp_path: Path, homeserver: Homeserver) -> None:
    """No ``MatrixBot``: the plain clients write the power levels the policy derives, and
    a room ban removes the user and gives it the policy role ``banned``."""
    net = MatrixNet(tmp_path, homeserver)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    seen: dict[str, list[ClientEvent]] = {}
    try:
        for name in ("alice", "carol", "dave"):
            await net.add(name)
        ident = {n: net.identity(n).encode() for n in ("alice", "carol", "dave")}
        gid = await net["alice"].create_group(
            policy=RoomPolicy.standard([ident["alice"], ident["carol"]]))
        await net["alice"].add_members(gid, [net.identity("carol"), net.identity("dave")])
        await net.sync()
        for name, client in net.clients.items():
            seen[name] = []

            async def record(event: ClientEvent, name: str = name) -> None:
                seen[name].append(event)

            tasks.append(asyncio.ensure_future(client.run(record, stop)))
        alice_t = net.transports["alice"]
        room = alice_t.room_id(gid)
        assert room is not None
        path = f"{CLIENT}/rooms/{quote(room)}/state/{POWER_LEVELS}/"
        deadline = time.monotonic() + REMOVAL_BOUND
        while (await alice_t.api.request("GET", path)).get("users", {}).get(
                net.users["carol"]) != 100:
            assert time.monotonic() < deadline, "power levels not derived"
            await asyncio.sleep(0.1)

        banned_at = time.monotonic()
        await alice_t.api.request("POST", f"{CLIENT}/rooms/{quote(room)}/ban",
                                  {"user_id": net.users["dave"], "reason": "test"})

        async def recorded(name: str) -> bool:
            policy = await net[name].policy(gid)
            names = {m.credential.identity for m in await net[name].members(gid)}
            return ident["dave"] not in names and policy is not None \
                and policy.role_of(ident["dave"]) == Role.BANNED

        while not (await recorded("alice") and await recorded("carol")):
            assert time.monotonic() - banned_at < REMOVAL_BOUND, "ban not followed"
            await asyncio.sleep(0.05)
        print(f"matrix: ban -> removal and policy role in {time.monotonic() - banned_at:.1f} s")
        while not any(isinstance(e, KickedFromRoom) for e in seen["dave"]):
            assert time.monotonic() - banned_at < REMOVAL_BOUND, "dave saw no ban"
            await asyncio.sleep(0.05)
        assert [e.banned for e in seen["dave"] if isinstance(e, KickedFromRoom)] == [True]
        stop.set()
        await asyncio.gather(*tasks)
        tasks.clear()
        await net.agree(gid, ["alice", "carol"])
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await net.close()
