"""The driver every Python bench of ``benchmarks.compare`` shares (stdlib only, so it also
runs in the peers' own venv, ``benchmarks/peers/.venv``).

``python -m benchmarks.peers.<stack>_bench OP N ITERATIONS [--app-seconds S] [--suite S]``
with OP one of ``build join first_process commit process app all serve``. ``--suite``
is the cipher suite id (default 1); a stack that cannot run it prints, for every
operation asked, ``{"op": ..., "n": N, "na": "why"}`` and exits with status 0.

The bench is a sequence of *rounds* on one group, built once per process:

* **setup** — the creator makes the group and one Commit adding the n - 1 other members
  by value (Add-only, so no UpdatePath, §12.4), and merges it: the **build** sample (one;
  OP ``build`` builds ITERATIONS times instead). Its line has the Welcome's bytes
  (``bytes``) and one joiner's KeyPackage's (``key_package_bytes``: the KeyPackage
  struct of §10, without an MLSMessage header). The joiners' KeyPackages are made
  beforehand, untimed (in a real group every joiner makes its own). Then, untimed, the
  creator makes one empty full-path Commit C1 and merges it: every member that joins from
  the build Welcome is in the epoch C1 leaves, so each can process C1 as its first message.
* **round r** (r = 0, 1, ...), one sample of each operation:

  * **join** — joiner r (a different member each round) joins from the build Welcome,
    the ratchet tree in it (§12.4.3.1);
  * **first_process** — that fresh member processes C1 (§12.4.2): its first Commit, with
    whatever caches a stack builds lazily still cold. Joiner 0 stays as member B;
  * **app** — the creator encrypts 1 KiB and B decrypts it (§6.3), both to and from wire
    bytes, for ``--app-seconds``: one rate (messages per wall and per CPU second);
  * **commit** — the creator makes an empty Commit with a full UpdatePath (§12.4.1,
    §7.5), sent as a PublicMessage, and merges it; the timing ends with its wire form;
  * **process** — B processes that Commit: B's second and later Commits, the steady
    state. Then the creator and B must derive the same exporter secret (§8.5), untimed.

OP ``all`` runs setup and ITERATIONS rounds and prints one JSON line per operation:

* ``{"op": "commit", "n": 1000, "samples": [s, ...], "cpu": [s, ...], "bytes": 82656}``:
  wall seconds per sample (``time.perf_counter``) and CPU seconds of the process
  (``time.process_time``, every thread);
* ``{"op": "app", "n": 1000, "rate": [r, ...], "cpu_rate": [r, ...], "messages": 600}``:
  1 KiB application messages per second of wall time and of CPU time, one per round;
* ``{"op": "process", "n": 1000, "na": "reason"}``: the stack cannot do it.

OP ``serve`` is how ``benchmarks.compare`` interleaves stacks: after setup it prints the
build line and ``{"ready": true}``, then runs one round per ``round`` line read on stdin,
printing that round's lines (one sample each) and ``{"done": R}``, until EOF.

The tree after the mass add has every parent node blank, so every one of these commits
encrypts its path secrets to all n - 1 other members: O(n) HPKE, in every stack alike.
When a stack's receiver rejects a Commit, the group has forked: later rounds time only
join and commit (each is fresh work), and app and process keep the rounds before.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

KIB = bytes(range(256)) * 4
OPS = ("build", "join", "first_process", "app", "commit", "process")
GROUP_ID = b"benchmark-group-" + bytes(16)
MLS_MESSAGE_HEADER = 4  # version and wire_format (uint16 each) before a KeyPackage


class UnsupportedSuite(Exception):
    """The stack cannot run the asked cipher suite; the message says why (its cells then
    read n/a)."""


def require_suite_1(stack: str, suite: int, why: str) -> None:
    """Raise :class:`UnsupportedSuite` unless ``suite`` is 1, the only suite ``stack``
    runs here (``why`` says why)."""
    if suite != 1:
        raise UnsupportedSuite(f"{stack} cannot run cipher suite {suite}: {why}")

M = TypeVar("M")  # a stack's handle on a member's group state


class Stack(ABC, Generic[M]):
    """One MLS stack under test: the creator's group, KeyPackages of n - 1 joiners."""

    name = "stack"

    @abstractmethod
    def prepare(self, n: int) -> None:
        """Make the creator and the n - 1 joiners' KeyPackages (untimed)."""

    @abstractmethod
    def build(self) -> int | None:
        """Create the group and add every joiner in one Commit; returns Welcome bytes (or
        None: then :meth:`welcome_size` says, outside the timer)."""

    @abstractmethod
    def join(self, joiner: int) -> M:
        """Joiner ``joiner`` (0 <= joiner < n - 1) joins from the build Welcome."""

    @abstractmethod
    def commit(self) -> Any:
        """The creator's empty full-path Commit, merged; its MLSMessage as the stack hands
        it to a receiver (bytes, unless a stack passes objects)."""

    @abstractmethod
    def process(self, member: M, commit: Any) -> None:
        """``member`` processes the creator's Commit (as :meth:`commit` returned it)."""

    @abstractmethod
    def app_round(self, member: M) -> None:
        """The creator encrypts 1 KiB, ``member`` decrypts it (and checks it)."""

    @abstractmethod
    def agree(self, member: M) -> bool:
        """Do the creator and ``member`` derive the same exporter secret (§8.5)?"""

    def welcome_size(self) -> int | None:
        """Bytes of the build Welcome, when :meth:`build` did not return them."""
        return None

    def key_package_size(self) -> int | None:
        """Bytes of one joiner's KeyPackage (§10, no MLSMessage header), after
        :meth:`prepare`; None if the stack cannot tell."""
        return None

    def wire_size(self, commit: Any) -> int:
        """Bytes of a Commit :meth:`commit` returned (called outside the timer)."""
        return len(commit)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


class Samples:
    """Wall seconds (``time.perf_counter``) and this process's CPU seconds
    (``time.process_time``) of each timed call: on a shared machine the second shows
    how much of the first was waiting for a core."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def time(self, fn: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)
        return out

    def record(self, op: str, n: int, size: int | None, **extra: Any) -> dict[str, Any]:
        out = {"op": op, "n": n, "samples": self.wall, "cpu": self.cpu, **extra}
        if size is not None:
            out["bytes"] = size
        return out


def reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def build_record(stack: Stack[Any], samples: Samples, n: int,
                 welcome_bytes: int | None) -> dict[str, Any]:
    """The build line: its samples, the Welcome's and a KeyPackage's bytes."""
    if welcome_bytes is None:
        welcome_bytes = stack.welcome_size()
    kp_bytes = stack.key_package_size()
    extra = {} if kp_bytes is None else {"key_package_bytes": kp_bytes}
    return samples.record("build", n, welcome_bytes, **extra)


def run_build_only(stack: Stack[Any], n: int, iterations: int) -> None:
    samples = Samples()
    size = None
    for _ in range(iterations):
        stack.prepare(n)
        size = samples.time(stack.build)
    emit(build_record(stack, samples, n, size))


def app_rate(stack: Stack[M], member: M, n: int, seconds: float) -> dict[str, Any]:
    """One app sample: messages per wall and per CPU second over ``seconds``."""
    try:
        count, spent, cpu = 0, 0.0, time.process_time()
        while spent < seconds or count < 20:
            start = time.perf_counter()
            for _ in range(10):
                stack.app_round(member)
            spent += time.perf_counter() - start
            count += 10
        cpu = time.process_time() - cpu
        return {"op": "app", "n": n, "rate": [count / spent],
                "cpu_rate": [count / max(cpu, 1e-9)], "messages": count}
    except Exception as exc:  # a peer's own failure becomes its table cell
        return {"op": "app", "n": n, "na": reason(exc)}


@dataclass
class Bench(Generic[M]):
    """Setup once, then one sample of every operation per :meth:`round` (see the module
    docstring). Each method returns the JSON records it produced."""

    stack: Stack[M]
    n: int
    app_seconds: float
    first_commit: Any = None
    member: M | None = None          # B: joiner 0, the steady-state receiver
    forked: str | None = None        # why B cannot follow the creator any more
    first_broken: str | None = None  # why a fresh joiner cannot process C1
    size: int | None = None          # bytes of the round Commits
    first_size: int | None = None    # bytes of C1
    rounds: int = field(default=0)

    def setup(self) -> list[dict[str, Any]]:
        self.stack.prepare(self.n)
        builds = Samples()
        welcome_bytes = builds.time(self.stack.build)
        try:
            self.first_commit = self.stack.commit()
            self.first_size = self.stack.wire_size(self.first_commit)
        except Exception as exc:
            self.first_broken = f"no Commit to process: {reason(exc)}"
        return [build_record(self.stack, builds, self.n, welcome_bytes)]

    def round(self) -> list[dict[str, Any]]:
        r, n = self.rounds, self.n
        self.rounds += 1
        out: list[dict[str, Any]] = []
        if r >= n - 1:
            why = f"no fresh joiner left (n - 1 = {n - 1} joiners, round {r + 1})"
            out += [{"op": "join", "n": n, "na": why}, {"op": "first_process", "n": n,
                                                         "na": why}]
        else:
            out += self._join(r)
        if self.forked is None and self.member is not None:
            out.append(app_rate(self.stack, self.member, n, self.app_seconds))
        else:
            out.append({"op": "app", "n": n, "na": "no member is in the creator's epoch: "
                        f"{self.forked or 'no member B'}"})
        out += self._commit_and_process()
        return out

    def _join(self, r: int) -> list[dict[str, Any]]:
        n, joins, firsts = self.n, Samples(), Samples()
        try:
            member = joins.time(lambda: self.stack.join(n - 2 - r))
        except Exception as exc:
            why = reason(exc)
            if r == 0:
                self.forked = f"no member B: {why}"
            return [{"op": "join", "n": n, "na": why},
                    {"op": "first_process", "n": n, "na": "no joined member"}]
        out = [joins.record("join", n, None)]
        if r == 0:
            self.member = member
        if self.first_broken is None:
            try:
                firsts.time(lambda: self.stack.process(member, self.first_commit))
                out.append(firsts.record("first_process", n, self.first_size))
            except Exception as exc:
                self.first_broken = f"receiver rejects the commit: {reason(exc)}"
        if self.first_broken is not None:
            out.append({"op": "first_process", "n": n, "na": self.first_broken})
            if r == 0:
                self.forked = self.first_broken
        return out

    def _commit_and_process(self) -> list[dict[str, Any]]:
        n, creates, processes = self.n, Samples(), Samples()
        try:
            commit = creates.time(self.stack.commit)
        except Exception as exc:
            return [{"op": "commit", "n": n, "na": reason(exc)},
                    {"op": "process", "n": n, "na": "no commit to process"}]
        if self.size is None:
            self.size = self.stack.wire_size(commit)
        if self.forked is not None or self.member is None:
            why = self.forked or "no member B"
            return [creates.record("commit", n, self.size, note=why),
                    {"op": "process", "n": n, "na": why}]
        member = self.member
        try:
            processes.time(lambda: self.stack.process(member, commit))
        except Exception as exc:
            self.forked = f"receiver rejects the commit: {reason(exc)}"
            return [creates.record("commit", n, self.size,
                                   note=f"rejected by the stack's own receiver: {reason(exc)}"),
                    {"op": "process", "n": n, "na": self.forked}]
        if not self.stack.agree(member):
            self.forked = "creator and member disagree after the commits"
            return [{"op": op, "n": n, "na": self.forked} for op in ("commit", "process")]
        return [creates.record("commit", n, self.size),
                processes.record("process", n, self.size)]


def merge(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-round records of one process as one record per operation, in ``OPS`` order:
    samples (and app rates) concatenated; the first "na" stands only if no round
    produced a figure; the first note and size are kept."""
    merged: dict[str, dict[str, Any]] = {}
    for rec in records:
        cur = merged.setdefault(rec["op"], {"op": rec["op"], "n": rec["n"]})
        for key in ("samples", "cpu", "rate", "cpu_rate"):
            if key in rec:
                cur.setdefault(key, []).extend(rec[key])
        if "messages" in rec:
            cur["messages"] = cur.get("messages", 0) + rec["messages"]
        for key in ("bytes", "key_package_bytes", "note", "na"):
            if key in rec:
                cur.setdefault(key, rec[key])
    for cur in merged.values():
        if "na" in cur and ("samples" in cur or "rate" in cur):
            del cur["na"]
    return [merged[op] for op in OPS if op in merged]


def run_all(stack: Stack[Any], n: int, iterations: int, wanted: set[str],
            app_seconds: float) -> None:
    """Setup and ``iterations`` rounds in this process; the ``wanted`` operations, each
    as one JSON line of all its samples."""
    bench = Bench(stack, n, app_seconds)
    records = bench.setup()
    for _ in range(iterations):
        records += bench.round()
    for record in merge(records):
        if record["op"] in wanted:
            emit(record)


def serve(stack: Stack[Any], n: int, app_seconds: float,
          lines: Iterable[str] = sys.stdin) -> None:
    """Setup, ``{"ready": true}``, then one round per ``round`` line until EOF."""
    bench = Bench(stack, n, app_seconds)
    for record in bench.setup():
        emit(record)
    emit({"ready": True})
    for line in lines:
        if line.strip() != "round":
            continue
        for record in bench.round():
            emit(record)
        emit({"done": bench.rounds})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("op", choices=(*OPS, "all", "serve"))
    ap.add_argument("n", type=int, help="group size (>= 2)")
    ap.add_argument("iterations", type=int, nargs="?", default=1,
                    help="rounds, or builds for OP build (>= 1; serve: unused)")
    ap.add_argument("--app-seconds", type=float, default=1.0,
                    help="time spent on application messages per round (default %(default)s)")
    ap.add_argument("--suite", type=int, default=1, help="cipher suite id (default 1)")
    args = ap.parse_args(argv)
    if args.n < 2 or args.iterations < 1:
        ap.error("n must be at least 2 and iterations at least 1")
    return args


def asked_ops(op: str) -> tuple[str, ...]:
    """The operations OP reports on (``all`` and ``serve``: every one)."""
    return OPS if op in ("all", "serve") else (op,)


def main(make_stack: Callable[[int], Stack[Any]], argv: list[str] | None = None) -> int:
    """The CLI of every Python bench script: make the stack for ``--suite`` with
    ``make_stack`` and run OP, printing its JSON line(s); if the stack cannot run that
    suite, one "na" line per operation asked."""
    args = parse_args(argv)
    try:
        stack = make_stack(args.suite)
    except UnsupportedSuite as exc:
        for op in asked_ops(args.op):
            emit({"op": op, "n": args.n, "na": str(exc)})
        return 0
    if args.op == "build":
        run_build_only(stack, args.n, args.iterations)
    elif args.op == "serve":
        serve(stack, args.n, args.app_seconds)
    else:
        run_all(stack, args.n, args.iterations, set(asked_ops(args.op)), args.app_seconds)
    return 0


if __name__ == "__main__":
    sys.exit("run a stack's script, e.g. python -m benchmarks.peers.ours_bench all 16 3")
