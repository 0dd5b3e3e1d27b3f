"""The driver every Python bench of ``benchmarks.compare`` shares (stdlib only, so it also
runs in the peers' own venv, ``benchmarks/peers/.venv``).

``python -m benchmarks.peers.<stack>_bench OP N ITERATIONS [--app-seconds S]`` with OP one
of ``build join commit process app all``. Each finished operation prints one JSON line:

* ``{"op": "commit", "n": 1000, "samples": [s, ...], "cpu": [s, ...], "bytes": 82656}``:
  wall seconds per iteration (``time.perf_counter``), and CPU seconds of the process;
* ``{"op": "app", "n": 1000, "rate": 1234.5, "cpu_rate": 1300.2, "messages": 600}``: 1 KiB
  application messages per second of wall time (and of CPU time), encrypt + decrypt;
* ``{"op": "process", "n": 1000, "na": "reason"}``: the stack cannot do it.

What is timed (RFC 9420 section in brackets), the same in every stack:

* **build** — the creator makes the group and one Commit adding the n - 1 other members
  by value (Add-only, so no UpdatePath, §12.4), and merges it. Their KeyPackages are made
  beforehand, untimed (in a real group every joiner makes its own). One sample unless
  OP is ``build``, which builds ITERATIONS times.
* **join** — one added member joins from that Commit's Welcome, the ratchet tree in it
  (§12.4.3.1): ITERATIONS distinct members, one sample each.
* **app** — the creator encrypts 1 KiB and the first joined member (B) decrypts it (§6.3),
  both to and from wire bytes, until ``--app-seconds`` have passed.
* **commit** — the creator makes an empty Commit with a full UpdatePath (§12.4.1, §7.5),
  sent as a PublicMessage, and merges it; the timing ends with its wire bytes.
* **process** — B decodes and processes that Commit (§12.4.2). Commit and process
  alternate ITERATIONS times; after the last round the stacks are asked to agree on an
  exporter secret (§8.5), untimed.

The tree after the mass add has every parent node blank, so every one of these commits
encrypts its path secrets to all n - 1 other members: O(n) HPKE, in every stack alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

KIB = bytes(range(256)) * 4
OPS = ("build", "join", "app", "commit", "process")
GROUP_ID = b"benchmark-group-" + bytes(16)

M = TypeVar("M")  # a stack's handle on a member's group state


class Stack(ABC, Generic[M]):
    """One MLS stack under test: the creator's group, KeyPackages of n - 1 joiners."""

    name = "stack"

    @abstractmethod
    def prepare(self, n: int) -> None:
        """Make the creator and the n - 1 joiners' KeyPackages (untimed)."""

    @abstractmethod
    def build(self) -> int:
        """Create the group and add every joiner in one Commit; returns Welcome bytes."""

    @abstractmethod
    def join(self, joiner: int) -> M:
        """Joiner ``joiner`` (0 <= joiner < n - 1) joins from the build Welcome."""

    @abstractmethod
    def commit(self) -> bytes:
        """The creator's empty full-path Commit, merged; its MLSMessage bytes."""

    @abstractmethod
    def process(self, member: M, commit: bytes) -> None:
        """``member`` processes the creator's Commit."""

    @abstractmethod
    def app_round(self, member: M) -> None:
        """The creator encrypts 1 KiB, ``member`` decrypts it (and checks it)."""

    @abstractmethod
    def agree(self, member: M) -> bool:
        """Do the creator and ``member`` derive the same exporter secret (§8.5)?"""


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

    def record(self, op: str, n: int, size: int, **extra: Any) -> dict[str, Any]:
        return {"op": op, "n": n, "samples": self.wall, "cpu": self.cpu, "bytes": size,
                **extra}


def reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def run_build_only(stack: Stack[Any], n: int, iterations: int) -> None:
    samples = Samples()
    size = 0
    for _ in range(iterations):
        stack.prepare(n)
        size = samples.time(stack.build)
    emit(samples.record("build", n, size))


def run_all(stack: Stack[M], n: int, iterations: int, wanted: set[str],
            app_seconds: float) -> None:
    """Every operation in order (build, join, app, commit + process), emitting the
    ``wanted`` ones as soon as each is done."""
    def out(record: dict[str, Any]) -> None:
        if record["op"] in wanted:
            emit(record)

    stack.prepare(n)
    builds, joins = Samples(), Samples()
    welcome_bytes = builds.time(stack.build)
    out(builds.record("build", n, welcome_bytes))
    members = [joins.time(partial(stack.join, n - 2 - j))
               for j in range(min(iterations, n - 1))]
    out(joins.record("join", n, welcome_bytes))
    member = members[0]
    del members[1:]  # the other joiners' states are not needed any more
    if wanted & {"app"}:
        run_app(stack, member, n, app_seconds, out)
    if wanted & {"commit", "process"}:
        run_commits(stack, member, n, iterations, out)


def run_app(stack: Stack[M], member: M, n: int, seconds: float,
            out: Callable[[dict[str, Any]], None]) -> None:
    try:
        count, spent, cpu = 0, 0.0, time.process_time()
        while spent < seconds or count < 20:
            start = time.perf_counter()
            for _ in range(10):
                stack.app_round(member)
            spent += time.perf_counter() - start
            count += 10
        cpu = time.process_time() - cpu
        out({"op": "app", "n": n, "rate": count / spent, "cpu_rate": count / max(cpu, 1e-9),
             "messages": count})
    except Exception as exc:  # a peer's own failure becomes its table cell
        out({"op": "app", "n": n, "na": reason(exc)})


def run_commits(stack: Stack[M], member: M, n: int, iterations: int,
                out: Callable[[dict[str, Any]], None]) -> None:
    creates, processes = Samples(), Samples()
    size = 0
    for _ in range(iterations):
        try:
            commit = creates.time(stack.commit)
        except Exception as exc:
            out({"op": "commit", "n": n, "na": reason(exc)})
            out({"op": "process", "n": n, "na": "no commit to process"})
            return
        size = len(commit)
        try:
            processes.time(partial(stack.process, member, commit))
        except Exception as exc:
            out(creates.record("commit", n, size,
                               note=f"rejected by the stack's own receiver: {reason(exc)}"))
            out({"op": "process", "n": n, "na": f"receiver rejects the commit: {reason(exc)}"})
            return
    if not stack.agree(member):
        out({"op": "commit", "n": n, "na": "creator and member disagree after the commits"})
        out({"op": "process", "n": n, "na": "creator and member disagree after the commits"})
        return
    out(creates.record("commit", n, size))
    out(processes.record("process", n, size))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("op", choices=(*OPS, "all"))
    ap.add_argument("n", type=int, help="group size (>= 2)")
    ap.add_argument("iterations", type=int, help="samples per timed operation (>= 1)")
    ap.add_argument("--app-seconds", type=float, default=1.0,
                    help="time spent on application messages (default %(default)s)")
    args = ap.parse_args(argv)
    if args.n < 2 or args.iterations < 1:
        ap.error("n must be at least 2 and iterations at least 1")
    return args


def main(stack: Stack[Any], argv: list[str] | None = None) -> int:
    """The CLI of every Python bench script: run OP and print its JSON line(s)."""
    args = parse_args(argv)
    if args.op == "build":
        run_build_only(stack, args.n, args.iterations)
        return 0
    wanted = set(OPS) if args.op == "all" else {args.op}
    run_all(stack, args.n, args.iterations, wanted, args.app_seconds)
    return 0


if __name__ == "__main__":
    sys.exit("run a stack's script, e.g. python -m benchmarks.peers.ours_bench all 16 3")
