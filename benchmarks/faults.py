"""Faults mid-stream on real servers: what reaches every member, once (docs/resilience.md).

``python -m benchmarks.faults [--messages 60] [--only xmpp|matrix|bridge] [--json PATH]``

Each case starts its own private servers on loopback (:mod:`devservers`; ``bash
scripts/setup.sh --with-servers`` installs them) and a group whose members are plain
:class:`~mls_client.MLSClient` s, each running its :meth:`~mls_client.MLSClient.run` loop
(the receivers). The members take turns sending ``--messages`` messages, one at a time,
as an application would, and never retry a failed ``send``; meanwhile:

* **xmpp**: 3 members on Prosody; Prosody is stopped with SIGTERM before message N/3 and
  killed with SIGKILL before message 2N/3, each time started again 5-10 s later;
* **matrix**: the same with 3 members on Synapse;
* **bridge**: 2 XMPP + 2 Matrix members in one group through the bridge service as its
  own process (``mls-bridge bridge``, :class:`devservers.bridge.BridgeProcess`), which
  is SIGKILLed twice, at the same points, and started again 5-10 s later.

The outages run in a thread, so sends run into them. Outage lengths are random within
5-10 s from ``--seed``. After the last message, the run loops go on until every member
has every message of the others (or ``--settle`` seconds passed), then 3 s more to see
duplicates. A message whose ``send`` raised is still expected (it may be queued).

Columns: *sent*; *received*: the fewest distinct expected messages any member got, of
the number that member expected; *lost* and *duplicated*: summed over members; *send
errors*: ``send`` calls that raised; *time*: first send until the last member had
everything (or gave up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import SecretStr

from bridge.real import real_servers
from devservers.bridge import BridgeProcess
from devservers.prosody import ProsodyServer
from devservers.synapse import SynapseServer
from mls_client import MLSClient, Settings
from mls_client.events import ClientEvent, ConnectionLost, MessageReceived
from mls_client.settings import KeyPackageSettings
from transports.base import RelayTransport
from transports.bridged import BridgedTransport
from transports.matrix.transport import MatrixDeliveryTransport
from transports.xmpp.settings import XmppSettings
from transports.xmpp.transport import XmppDeliveryTransport

PASSWORD = "faults-bench-pw"
CASES = ("xmpp", "matrix", "bridge")
#: how long each outage lasts (seconds, uniform)
DOWN = (5.0, 10.0)
#: after the last delivery, how long the loops go on to see duplicates (seconds)
QUIET = 3.0
HEADER = ("case", "sent", "received (per member, min)", "lost", "duplicated", "send errors",
          "time")


# ------------------------------------------------------------------ the summary


@dataclass(frozen=True)
class Tally:
    """What the members got, against what the others sent."""

    received_min: int
    expected: int
    lost: int
    duplicated: int


def tally(sent: Mapping[str, Sequence[bytes]],
          received: Mapping[str, Sequence[bytes]]) -> Tally:
    """Each member should get every message of the others exactly once. ``received_min``
    is the fewest distinct expected messages a member got, ``expected`` that member's
    due; ``lost`` and ``duplicated`` are summed over members (a message nobody sent
    counts as duplicated)."""
    lost = duplicated = 0
    worst: tuple[int, int] | None = None
    for name in sent:
        want = Counter(d for other, data in sent.items() if other != name for d in data)
        got = Counter(received.get(name, ()))
        lost += sum((want - got).values())
        duplicated += sum((got - want).values())
        have = sum((want & got).values())
        due = sum(want.values())
        if worst is None or due - have > worst[1] - worst[0]:
            worst = (have, due)
    have, due = worst or (0, 0)
    return Tally(have, due, lost, duplicated)


@dataclass
class CaseResult:
    case: str
    sent: int = 0
    received_min: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    send_errors: int = 0
    seconds: float = 0.0
    #: the longest ``send`` call (s): longer than ~2 s shows a send ran into an outage
    longest_send: float = 0.0
    #: per fault: its kind and how long the service was unreachable (stop to started)
    outages: list[str] = field(default_factory=list)
    #: send errors by exception type, run loops that raised, a case that failed to run
    notes: list[str] = field(default_factory=list)
    failed: bool = False

    @property
    def clean(self) -> bool:
        return not self.failed and (self.lost, self.duplicated, self.send_errors) == (0, 0, 0)

    def cells(self) -> tuple[str, ...]:
        if self.failed:
            return (self.case, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a")
        return (self.case, str(self.sent), f"{self.received_min} of {self.expected}",
                str(self.lost), str(self.duplicated), str(self.send_errors),
                f"{self.seconds:.1f} s")


def format_table(results: Sequence[CaseResult]) -> str:
    """A Markdown table (one row per case), then each case's outages and notes."""
    rows = [HEADER, *(r.cells() for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
    out = [line(HEADER), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
           *(line(r.cells()) for r in results), ""]
    for r in results:
        if r.outages:
            out.append(f"{r.case}: outages {', '.join(r.outages)}; "
                       f"longest send {r.longest_send:.1f} s")
        out.extend(f"{r.case}: {note}" for note in r.notes)
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------ the traffic


@dataclass(frozen=True)
class Fault:
    """Before message ``at``: ``down()``, wait, ``up()`` (blocking, run in a thread)."""

    at: int
    kind: str
    down: Callable[[], None]
    up: Callable[[], None]


def two_faults(messages: int, first: tuple[str, Callable[[], None]],
               second: tuple[str, Callable[[], None]], up: Callable[[], None]) -> list[Fault]:
    """At a third and two thirds of the stream."""
    return [Fault(messages // 3, first[0], first[1], up),
            Fault(2 * messages // 3, second[0], second[1], up)]


class Loops:
    """Every member's ``run()`` loop; what each one decrypted in the group."""

    def __init__(self, clients: Mapping[str, MLSClient], group_id: bytes) -> None:
        self.received: dict[str, list[bytes]] = {name: [] for name in clients}
        self.outages_seen: Counter[str] = Counter()
        self._group = group_id
        self._stop = asyncio.Event()
        self._tasks = {name: asyncio.create_task(client.run(self._handler(name), self._stop))
                       for name, client in clients.items()}

    def _handler(self, name: str) -> Callable[[ClientEvent], Awaitable[None]]:
        async def on_event(event: ClientEvent) -> None:
            if isinstance(event, MessageReceived) and event.group_id == self._group:
                self.received[name].append(event.data)
            elif isinstance(event, ConnectionLost):
                self.outages_seen[name] += 1
        return on_event

    async def stop(self) -> list[str]:
        """End the loops; what any of them raised."""
        self._stop.set()
        results = await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        return [f"{name}'s run loop raised {result!r}"
                for name, result in zip(self._tasks, results, strict=True)
                if isinstance(result, BaseException)]


async def _outage(fault: Fault, seconds: float) -> str:
    def cycle() -> float:
        began = time.monotonic()
        fault.down()
        time.sleep(seconds)
        fault.up()
        return time.monotonic() - began
    unreachable = await asyncio.to_thread(cycle)
    return f"{fault.kind} {unreachable:.1f} s (down {seconds:.1f} s + restart)"


async def converse(clients: Mapping[str, MLSClient], group_id: bytes, messages: int,
                   faults: Sequence[Fault], rng: random.Random, settle: float,
                   result: CaseResult) -> None:
    """The members take turns sending; ``faults`` happen mid-stream; fills ``result``."""
    names = list(clients)
    sent: dict[str, list[bytes]] = {n: [] for n in names}
    errors: Counter[str] = Counter()
    loops = Loops(clients, group_id)
    await asyncio.sleep(1.0)  # the loops are up
    outage: asyncio.Task[str] | None = None
    began = time.monotonic()
    try:
        for i in range(messages):
            for fault in (f for f in faults if f.at == i):
                if outage is not None:
                    result.outages.append(await outage)
                outage = asyncio.create_task(_outage(fault, rng.uniform(*DOWN)))
                await asyncio.sleep(0.5)  # the stop is under way
            name = names[i % len(names)]
            data = f"{name} #{i}".encode()
            start = time.monotonic()
            try:
                await clients[name].send(group_id, data)
            except Exception as exc:  # the application does not retry: count it
                errors[type(exc).__name__] += 1
            result.longest_send = max(result.longest_send, time.monotonic() - start)
            sent[name].append(data)  # a failed send may still arrive: still expected
        if outage is not None:
            result.outages.append(await outage)
        deadline = time.monotonic() + settle
        while tally(sent, loops.received).lost and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        result.seconds = time.monotonic() - began
        await asyncio.sleep(QUIET)
    finally:
        result.notes.extend(await loops.stop())
    counted = tally(sent, loops.received)
    result.sent = sum(map(len, sent.values()))
    result.received_min, result.expected = counted.received_min, counted.expected
    result.lost, result.duplicated = counted.lost, counted.duplicated
    result.send_errors = sum(errors.values())
    if errors:
        result.notes.append("send errors: " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
    if counted.lost:
        short = {n: len(set(d for o in names if o != n for d in sent[o])
                        - set(loops.received[n])) for n in names}
        result.notes.append(f"missing per member: {short}")
    seen = {n: loops.outages_seen[n] for n in names}
    result.notes.append(f"ConnectionLost events per member: {seen}")


# ------------------------------------------------------------------ members


def _settings(root: Path, name: str) -> Settings:
    return Settings(state_dir=root / name, poll_interval=0.05,
                    key_packages=KeyPackageSettings(pool_size=2, threshold=1))


async def _xmpp(prosody: ProsodyServer, name: str, bridge: str | None = None
                ) -> XmppDeliveryTransport:
    jid = await asyncio.to_thread(prosody.register, name, PASSWORD)
    return await XmppDeliveryTransport.connect(XmppSettings(
        jid=f"{jid}/bench", password=SecretStr(PASSWORD), host="127.0.0.1",
        port=prosody.port, muc_service=prosody.muc_domain, allow_plaintext=True,
        bridge=bridge))


async def _matrix(synapse: SynapseServer, root: Path, name: str, bridge: str | None = None
                  ) -> MatrixDeliveryTransport:
    user = await asyncio.to_thread(synapse.register, name, PASSWORD)
    return await MatrixDeliveryTransport.connect(
        synapse.url, user, password=PASSWORD, device_id="BENCH",
        journal_path=root / f"{name}.journal", long_poll_ms=500, bridge=bridge)


async def _member(stack: contextlib.AsyncExitStack, root: Path, name: str,
                  inner: RelayTransport, outer: RelayTransport | None = None) -> MLSClient:
    stack.push_async_callback(inner.close)  # a client does not own its transport
    client = await MLSClient.open(_settings(root, name), outer or inner)
    stack.push_async_callback(client.close)
    await client.create_identity(inner.user_id, inner.client_id)
    await client.publish_key_packages()
    return client


async def _group(clients: Mapping[str, MLSClient], timeout: float = 60.0) -> bytes:
    """The first member creates a group and adds the others; until all joined."""
    creator, *others = clients.values()
    group_id = await creator.create_group()
    await creator.add_members(group_id, [c.user_id for c in others])
    deadline = time.monotonic() + timeout
    pending = list(others)
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} member(s) did not join in {timeout:.0f} s")
        for client in list(pending):
            await client.sync(housekeeping=False)
            if any(g.group_id == group_id and g.active for g in await client.groups()):
                pending.remove(client)
        await asyncio.sleep(0.05)
    return group_id


# ------------------------------------------------------------------ cases


@contextlib.asynccontextmanager
async def _prosody(root: Path) -> AsyncIterator[ProsodyServer]:
    server = ProsodyServer(root / "prosody")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def _synapse(root: Path) -> AsyncIterator[SynapseServer]:
    server = SynapseServer(root / "synapse")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def xmpp_case(root: Path, args: argparse.Namespace, result: CaseResult) -> None:
    async with _prosody(root) as server, contextlib.AsyncExitStack() as stack:
        clients = {n: await _member(stack, root, n, await _xmpp(server, n))
                   for n in ("alice", "bob", "carol")}
        gid = await _group(clients)
        faults = two_faults(args.messages, ("Prosody SIGTERM", server.stop),
                            ("Prosody SIGKILL", server.kill), server.start)
        await converse(clients, gid, args.messages, faults, args.rng, args.settle, result)


async def matrix_case(root: Path, args: argparse.Namespace, result: CaseResult) -> None:
    async with _synapse(root) as server, contextlib.AsyncExitStack() as stack:
        clients = {n: await _member(stack, root, n, await _matrix(server, root, n))
                   for n in ("alice", "bob", "carol")}
        gid = await _group(clients)
        faults = two_faults(args.messages, ("Synapse SIGTERM", server.stop),
                            ("Synapse SIGKILL", server.kill), server.start)
        await converse(clients, gid, args.messages, faults, args.rng, args.settle, result)


async def bridge_case(root: Path, args: argparse.Namespace, result: CaseResult) -> None:
    async with real_servers(root) as (prosody, synapse), \
            contextlib.AsyncExitStack() as stack:
        (root / "bridge").mkdir()
        bridge = await asyncio.to_thread(BridgeProcess, root / "bridge", prosody, synapse,
                                         "f", PASSWORD)
        await asyncio.to_thread(bridge.start)
        stack.push_async_callback(asyncio.to_thread, bridge.stop)  # after the members
        clients: dict[str, MLSClient] = {}
        for name in ("x1", "m1", "x2", "m2"):
            network = "xmpp" if name.startswith("x") else "matrix"
            inner: RelayTransport = (await _xmpp(prosody, name, bridge.jid)
                                     if network == "xmpp" else
                                     await _matrix(synapse, root, name, bridge.matrix_user))
            wrapped = BridgedTransport(inner, bridge.identity(network))
            clients[name] = await _member(stack, root, name, inner, wrapped)
        gid = await _group(clients)
        faults = two_faults(args.messages, ("bridge SIGKILL", bridge.kill),
                            ("bridge SIGKILL", bridge.kill), bridge.start)
        await converse(clients, gid, args.messages, faults, args.rng, args.settle, result)


RUNNERS = {"xmpp": xmpp_case, "matrix": matrix_case, "bridge": bridge_case}
TITLES = {"xmpp": "xmpp: 3 members, Prosody SIGTERM + SIGKILL",
          "matrix": "matrix: 3 members, Synapse SIGTERM + SIGKILL",
          "bridge": "bridge: 2 XMPP + 2 Matrix, bridge SIGKILL x2"}


async def run_case(case: str, args: argparse.Namespace) -> CaseResult:
    result = CaseResult(TITLES[case])
    args.rng = random.Random(f"{args.seed}:{case}")  # the same outages with --only
    with tempfile.TemporaryDirectory(prefix=f"bench-faults-{case}-") as tmp:
        try:
            await RUNNERS[case](Path(tmp), args, result)
        except Exception as exc:  # one case failing to run does not hide the others
            traceback.print_exc()
            result.failed = True
            result.notes.append(f"the case did not run to its end: {exc!r}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults")
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--only", choices=CASES)
    parser.add_argument("--json", type=Path, metavar="PATH")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settle", type=float, default=120.0,
                        help="after the last send, how long to wait for deliveries (s)")
    args = parser.parse_args(argv)
    if args.messages < 6:
        parser.error("--messages must be at least 6")
    started = datetime.datetime.now(datetime.UTC)
    results = [asyncio.run(run_case(case, args))
               for case in ([args.only] if args.only else CASES)]
    print(format_table(results), end="")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "date": started.isoformat(timespec="seconds"),
            "machine": f"{platform.platform()}, {os.cpu_count()} cores",
            "command": " ".join(["python -m benchmarks.faults", *(argv or sys.argv[1:])]),
            "seed": args.seed, "messages": args.messages,
            "cases": [asdict(r) for r in results]}, indent=1))
    return 0 if all(r.clean for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
