"""Crash safety: a client process is SIGKILLed at random points while it processes
Commits and application messages (and sends some of its own), then restarted from its
database. After every round all members share one epoch_authenticator, the victim's
inbox holds every message sent to it exactly once, and every message the victim
recorded as sent reached the others exactly once (RFC 9750 "Ordering"; one transaction
per processed message, see mls_client.store).

Each trial forks the test process (already importing everything, so a trial costs a few
milliseconds), lets the child run the victim client and kills it after a random delay.
``MLS_CRASH_TRIALS`` (default 200) sets the number of kills, ``MLS_CRASH_SEED`` the seed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import traceback
from collections import Counter
from pathlib import Path

import pytest

from mls_client import MLSClient
from transports.local import LocalDeliveryService

from .helpers import settings_for

TRIALS = int(os.environ.get("MLS_CRASH_TRIALS", "200"))
SEED = int(os.environ.get("MLS_CRASH_SEED", str(random.randrange(1 << 30))))
KILLS_PER_ROUND = 10
DRIVERS = ("alice", "bob", "carol", "dave")
VICTIM = "victim"

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


async def _open(root: Path, name: str, ds: LocalDeliveryService) -> MLSClient:
    return await MLSClient.open(settings_for(root, name, pool_size=3, threshold=1), ds)


async def _setup(root: Path) -> bytes:
    async with LocalDeliveryService(root / "ds.sqlite") as ds:
        clients = []
        for name in (*DRIVERS, VICTIM):
            client = await _open(root, name, ds)
            await client.create_identity(name, name)
            await client.publish_key_packages()
            clients.append(client)
        alice = clients[0]
        gid = await alice.create_group(name="g")
        await alice.add_members(gid, ["bob", "carol", VICTIM])
        for client in clients:
            await client.sync()
            await client.close()
        return gid


async def _drivers_act(root: Path, gid: bytes, rng: random.Random, round_no: int,
                       expected: list[bytes]) -> None:
    """The other members send messages, update, add and remove dave."""
    async with LocalDeliveryService(root / "ds.sqlite") as ds:
        clients = {name: await _open(root, name, ds) for name in DRIVERS}
        try:
            for name in DRIVERS:
                await clients[name].sync()
            dave_in = b"dave" in {m.credential.identity for m in
                                  await clients["alice"].members(gid)}
            for i in range(rng.randint(2, 5)):
                action = rng.choice(["send", "send", "send", "update", "membership"])
                who = rng.choice(["alice", "bob", "carol", *(["dave"] if dave_in else [])])
                if action == "send":
                    text = b"%s r%d.%d" % (who.encode(), round_no, i)
                    await clients[who].send(gid, text)
                    expected.append(text)
                elif action == "update":
                    await clients[who].update(gid)
                elif dave_in:
                    await clients["alice"].remove_members(gid, ["dave"])
                    await clients["dave"].sync()
                    dave_in = False
                else:
                    await clients["carol"].add_members(gid, ["dave"])
                    await clients["dave"].sync()
                    dave_in = True
        finally:
            for client in clients.values():
                await client.close()


async def _victim(root: Path, gid: bytes, seed: int, act: bool) -> None:
    """What the killed process does: catch up, maybe send and update, catch up."""
    rng = random.Random(seed)
    async with LocalDeliveryService(root / "ds.sqlite") as ds:
        client = await _open(root, VICTIM, ds)
        try:
            await client.sync()
            if act and rng.random() < 0.4:
                await client.send(gid, b"victim %d" % seed)
            if act and rng.random() < 0.2:
                await client.update(gid)
            await client.sync()
        finally:
            await client.close()


def _fork_victim(root: Path, gid: bytes, seed: int, act: bool) -> int:
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            asyncio.run(_victim(root, gid, seed, act))
            code = 0
        except BaseException:
            with (root / "child-errors.log").open("a") as f:
                traceback.print_exc(file=f)
        finally:
            os._exit(code)
    return pid


def _run_to_completion(root: Path, gid: bytes, seed: int) -> float:
    start = time.monotonic()
    pid = _fork_victim(root, gid, seed, act=False)
    _, status = os.waitpid(pid, 0)
    errors = root / "child-errors.log"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (
        errors.read_text() if errors.exists() else status)
    return time.monotonic() - start


def _kill_at_random(root: Path, gid: bytes, seed: int, window: float,
                    rng: random.Random) -> bool:
    """One trial; True if the child was killed (not finished) when the signal came."""
    pid = _fork_victim(root, gid, seed, act=True)
    time.sleep(rng.uniform(0, window))
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return True
    errors = root / "child-errors.log"
    assert os.WEXITSTATUS(status) == 0, errors.read_text() if errors.exists() else status
    return False


async def _check(root: Path, gid: bytes, expected: list[bytes]) -> None:
    async with LocalDeliveryService(root / "ds.sqlite") as ds:
        clients = {name: await _open(root, name, ds) for name in (*DRIVERS, VICTIM)}
        try:
            for name in DRIVERS:
                await clients[name].sync(housekeeping=False)
            victim = clients[VICTIM]
            assert await victim.store.outbox() == []
            members = [n for n in ("alice", "bob", "carol", "dave", VICTIM)
                       if n.encode() in {m.credential.identity
                                         for m in await clients["alice"].members(gid)}]
            auths = {n: await clients[n].epoch_authenticator(gid) for n in members}
            assert len(set(auths.values())) == 1, {n: await clients[n].epoch(gid)
                                                   for n in members}
            inbox = await victim.store.inbox(gid)
            received = Counter(m.data for m in inbox if not m.outgoing)
            assert received == Counter(expected)  # none lost, none twice
            sent = Counter(m.data for m in inbox if m.outgoing)
            at_alice = Counter(m.data for m in await clients["alice"].store.inbox(gid)
                               if m.sender == VICTIM)
            assert at_alice == sent  # every recorded send arrived, once
            assert max(sent.values(), default=1) == 1
        finally:
            for client in clients.values():
                await client.close()


def test_sigkill_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    gid = asyncio.run(_setup(tmp_path))
    expected: list[bytes] = []
    window = 0.3
    kills = rounds = 0
    started = time.monotonic()
    while kills < TRIALS:
        rounds += 1
        asyncio.run(_drivers_act(tmp_path, gid, rng, rounds, expected))
        for _ in range(KILLS_PER_ROUND):
            kills += _kill_at_random(tmp_path, gid, rng.randrange(1 << 30), window, rng)
        window = 1.5 * _run_to_completion(tmp_path, gid, rng.randrange(1 << 30)) + 0.02
        asyncio.run(_check(tmp_path, gid, expected))
        assert time.monotonic() - started < 0.75 * max(TRIALS, 200), f"too slow: {kills} kills"
    echo_merges = asyncio.run(_count_echo_merges(tmp_path))
    print(f"crash test: seed {SEED}, {kills} kills in {rounds} rounds, "
          f"{len(expected)} messages, {echo_merges} own Commits merged from their echo "
          f"after a restart, {time.monotonic() - started:.1f} s")


async def _count_echo_merges(root: Path) -> int:
    async with LocalDeliveryService(root / "ds.sqlite") as ds:
        victim = await _open(root, VICTIM, ds)
        try:
            return await victim.store.processed_count("own_commit")
        finally:
            await victim.close()
