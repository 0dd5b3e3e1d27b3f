"""Our MLS stack side by side with peer stacks: ts-mls, mls-rs (two ways) and rfc9420.

``python -m benchmarks.compare [--sizes 16,128,1000,10000]
[--peers ours,ts-mls,mls-rs,mls-rs-objects,rfc9420] [--suites 1] [--json out.json]
[--quick] [--iterations K] [--timeout S] [--metric cpu|wall]``, or ``python -m
benchmarks.compare --from-json out.json [more.json ...] [--metric wall]`` to print saved
runs again.

Install the peers first with ``bash benchmarks/peers/setup.sh`` (npm ci and a separate
venv, so they never enter this project's dependencies). For each group size n, one
process per stack is started (one after another) and sets up the group of
``benchmarks/peers/common.py`` (the Node script mirrors it) on cipher suite 1, or on
each suite of ``--suites`` in turn (``--suite 83`` is the same option): every stack's
driver gets ``--suite``; ours opts in to the experimental post-quantum suites 79-88 when
one is named (docs/pq.md), ts-mls builds them from its pinned PQ packages, and a stack
without the suite (mls-rs, rfc9420) says so in every cell ("n/a"). Then K
rounds: in each, every stack in turn takes one sample of each operation, the stack order
rotating from round to round; round r + 1 starts only when every stack finished round r,
so a change of load on the shared machine hits every stack alike. The operations:

* **build** — create the group and add the other n - 1 members in one Commit (§12.4):
  one sample, at setup;
* **join** — a member joins from that Welcome, ratchet tree included (§12.4.3.1);
* **first_process** — that freshly joined member processes its first Commit (§12.4.2);
* **app** — 1 KiB application messages per second, encrypt + decrypt (§6.3);
* **commit** — an empty Commit with a full UpdatePath, created and merged (§12.4.1);
* **process** — a member that has processed Commits before processes that Commit.

A cell is the median of the K samples of the stack process's CPU time (``--metric
wall``: of wall time); ``--json`` keeps every sample of both. mls-rs has two columns:
``mls-rs (bytes)`` hands every message over as bytes through its Python binding, whose
UniFFI code copies byte by byte; ``mls-rs (objects)`` hands the binding's ``Message``
objects over in memory, with no copy. Each cell prints the ratio ours/peer: for times
below 1 means we are faster, for messages per second above 1 means we are faster. A
stack process that exceeds ``--timeout`` (its own time, summed over setup and rounds) is
killed: its unfinished operations read "timeout", and larger sizes of that stack are not
tried. A stack that is not installed or fails an operation gets "n/a" with the reason.
After the times, three size tables: a joiner's KeyPackage, the build Welcome and the
round Commit, in bytes. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / "benchmarks" / "peers"
PEER_VENV = PEERS_DIR / ".venv"
OPS = ("build", "join", "first_process", "commit", "process", "app")
OP_TITLES = {
    "build": "build the group (create + one Commit adding n-1 members; one sample)",
    "join": "join from the Welcome (ratchet tree inside)",
    "first_process": "first process after a join: a member fresh from the Welcome "
                     "processes its first Commit",
    "commit": "create a full-path Commit (empty, PublicMessage) and merge it",
    "process": "process that Commit as a member that processed Commits before "
               "(steady state)",
    "app": "application messages per second (1 KiB, encrypt + decrypt)",
}
ALL_PEERS = ("ours", "ts-mls", "mls-rs", "mls-rs-objects", "rfc9420")
LABELS = {"mls-rs": "mls-rs (bytes)", "mls-rs-objects": "mls-rs (objects)"}
DEFAULT_SIZES = (16, 128, 1000, 10_000)
QUICK_SIZES = (16, 128)
SETUP_HINT = "run: bash benchmarks/peers/setup.sh"


def label(name: str) -> str:
    """A stack's column title."""
    return LABELS.get(name, name)


# --------------------------------------------------------------------------- stacks


@dataclass(frozen=True)
class Peer:
    """How to start one stack's bench process, and why it cannot start (if so)."""

    name: str
    command: tuple[str, ...]
    missing: str | None = None  # the reason the stack is unavailable

    def argv(self, op: str, n: int, iterations: int, app_seconds: float,
             suite: int = 1) -> list[str]:
        return [*self.command, op, str(n), str(iterations), "--app-seconds", str(app_seconds),
                "--suite", str(suite)]


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def python_peer(name: str, module: str, package_glob: str, venv: Path,
                extra: tuple[str, ...] = ()) -> Peer:
    python = venv_python(venv)
    command = (str(python), "-m", f"benchmarks.peers.{module}", *extra)
    if not python.exists():
        return Peer(name, command, f"no venv at {venv} ({SETUP_HINT})")
    if not glob.glob(str(venv / "lib" / "python*" / "site-packages" / package_glob)):
        return Peer(name, command, f"package not installed in {venv} ({SETUP_HINT})")
    return Peer(name, command)


def node_peer(peers_dir: Path) -> Peer:
    command = ("node", str(peers_dir / "ts_mls_bench.mjs"))
    if shutil.which("node") is None:
        return Peer("ts-mls", command, "node is not installed (Node.js >= 20 needed)")
    if not (peers_dir / "node_modules" / "ts-mls").is_dir():
        return Peer("ts-mls", command, f"ts-mls not installed ({SETUP_HINT})")
    return Peer("ts-mls", command)


def find_peer(name: str, venv: Path = PEER_VENV, peers_dir: Path = PEERS_DIR) -> Peer:
    if name == "ours":
        return Peer("ours", (sys.executable, "-m", "benchmarks.peers.ours_bench"))
    if name == "ts-mls":
        return node_peer(peers_dir)
    if name == "mls-rs":
        return python_peer(name, "mls_rs_bench", "mls_rs_uniffi", venv)
    if name == "mls-rs-objects":
        return python_peer(name, "mls_rs_bench", "mls_rs_uniffi", venv, ("--objects",))
    if name == "rfc9420":
        return python_peer(name, "rfc9420_bench", "rfc9420", venv)
    raise SystemExit(f"unknown peer {name!r} (choose from {', '.join(ALL_PEERS)})")


# --------------------------------------------------------------------------- cells


def median(values: Sequence[float]) -> float:
    """The median of K samples (the mean of the middle two when K is even)."""
    if not values:
        raise ValueError("no samples")
    return float(statistics.median(values))


@dataclass
class Cell:
    """One (stack, n, operation) result: a value, or the reason there is none."""

    value: float | None = None          # seconds (median sample) or messages per second
    samples: list[float] = field(default_factory=list)   # wall seconds
    cpu: list[float] = field(default_factory=list)       # CPU seconds of the same calls
    rates: dict[str, list[float]] = field(default_factory=dict)  # app: "rate", "cpu_rate"
    size: int | None = None             # bytes of the Commit / Welcome
    key_package_size: int | None = None  # build: bytes of one joiner's KeyPackage
    na: str | None = None               # not available, and why
    timeout: bool = False
    note: str | None = None             # e.g. "the stack's own receiver rejects it"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value}
        if self.samples:
            out["samples"] = self.samples
        if self.cpu:
            out["cpu_samples"] = self.cpu
        out.update(self.rates)
        for key in ("size", "key_package_size", "na", "note"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.timeout:
            out["timeout"] = True
        return out

    def add(self, record: dict[str, Any]) -> None:
        """Add one bench line (one round's sample, or several) to this cell. An "na"
        stands only while no round gave a figure; the first note and size stay."""
        if "na" in record:
            self.na = self.na or str(record["na"])
        for key in ("rate", "cpu_rate"):
            if key in record:
                got = record[key]
                self.rates.setdefault(key, []).extend(
                    [float(v) for v in got] if isinstance(got, list) else [float(got)])
        self.samples.extend(float(v) for v in record.get("samples", []))
        self.cpu.extend(float(v) for v in record.get("cpu", []))
        if self.size is None and record.get("bytes") is not None:
            self.size = int(record["bytes"])
        if self.key_package_size is None and record.get("key_package_bytes") is not None:
            self.key_package_size = int(record["key_package_bytes"])
        if self.note is None and record.get("note"):
            self.note = str(record["note"])

    def settle(self, metric: str) -> Cell:
        """Set :attr:`value`: the median of the CPU (``metric="cpu"``) or wall samples,
        or of the per-round rates; clear "na" if there is a figure."""
        if self.rates:
            key = "cpu_rate" if metric == "cpu" and "cpu_rate" in self.rates else "rate"
            self.value = median(self.rates[key])
        elif self.samples or self.cpu:
            self.value = median(self.cpu if metric == "cpu" and self.cpu else self.samples)
        if self.value is not None:
            self.na = None
            self.timeout = False
        return self


def cell_from_record(record: dict[str, Any], metric: str = "cpu") -> Cell:
    """A bench script's JSON line as a table cell; its value is the median CPU-time (or,
    with ``metric="wall"``, wall-time) sample, or the median messages per second."""
    cell = Cell()
    cell.add(record)
    return cell.settle(metric)


def parse_output(stdout: str, metric: str = "cpu") -> dict[str, Cell]:
    """The cells of a bench process's output (``all``, or lines of ``serve`` rounds)."""
    cells: dict[str, Cell] = {}
    for record in parse_lines(stdout.splitlines()):
        if record.get("op") in OPS:
            cells.setdefault(record["op"], Cell()).add(record)
    return {op: cell.settle(metric) for op, cell in cells.items()}


def parse_lines(lines: Sequence[str]) -> list[dict[str, Any]]:
    """The JSON objects among a bench process's output lines."""
    out: list[dict[str, Any]] = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def error_summary(stderr: str) -> str:
    """The error line of a failed bench process: the last line that is not a stack frame
    (Python puts the exception last; Node puts it above its "at ..." frames)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    messages = [ln for ln in lines if not ln.startswith(("at ", "File ", "^", "~"))]
    return (messages or lines or ["no output"])[-1][:300]


# --------------------------------------------------------------------------- running


def exit_text(code: int | None) -> str:
    """A process's exit status, naming the signal that ended it ("exit -9 (SIGKILL)": the
    kernel's OOM killer sends that one too)."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"exit {code} ({signal.Signals(-code).name})"
    return f"exit {code}"


def round_order(names: Sequence[str], r: int) -> list[str]:
    """The stacks' order in round r: rotated by r, so that no stack always runs right
    after the same other one, or always first."""
    if not names:
        return []
    k = r % len(names)
    return [*names[k:], *names[:k]]


class Session:
    """One stack's ``serve`` process at one size: set up once, then asked for one
    sample of every operation per :meth:`round`. ``spent`` is the wall time this
    stack's process was working (setup and rounds), which ``--timeout`` caps."""

    def __init__(self, peer: Peer, n: int, app_seconds: float, timeout: float,
                 metric: str, suite: int = 1) -> None:
        self.peer, self.n, self.timeout, self.metric = peer, n, timeout, metric
        self.cells: dict[str, Cell] = {}
        self.spent = 0.0
        self.dead: str | None = None     # why no more rounds can run
        self.timed_out = False
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: IO[str] | None = None
        if peer.missing is not None:
            self.dead = peer.missing
            return
        self.stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in close())
        try:
            self.proc = subprocess.Popen(peer.argv("serve", n, 1, app_seconds, suite), cwd=ROOT,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.stderr, text=True, bufsize=1)
        except OSError as exc:
            self.dead = f"cannot start: {exc}"
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _until(self, key: str) -> bool:
        """Take the process's lines into the cells until one has ``key``: False if the
        process died or ran out of time first (then :attr:`dead` says why)."""
        start = time.perf_counter()
        try:
            while True:
                left = self.timeout - self.spent - (time.perf_counter() - start)
                try:
                    line = self.lines.get(timeout=max(left, 0.0))
                except queue.Empty:
                    self.timed_out = True
                    self.dead = f"timeout (> {self.timeout:.0f} s)"
                    self.close()
                    return False
                if line is None:
                    self.dead = self._ended()
                    return False
                for record in parse_lines([line]):
                    if record.get(key) is not None:
                        return True
                    if record.get("op") in OPS:
                        self.cells.setdefault(record["op"], Cell()).add(record)
        finally:
            self.spent += time.perf_counter() - start

    def start(self) -> bool:
        """Wait for the setup (the build); False if the stack cannot go on."""
        return self.dead is None and self._until("ready")

    def round(self) -> bool:
        """One sample of every operation; False if the stack cannot go on."""
        if self.dead is not None or self.proc is None or self.proc.stdin is None:
            return False
        try:
            self.proc.stdin.write("round\n")
            self.proc.stdin.flush()
        except OSError:
            self.dead = f"{exit_text(self._exit_code())}: {self._error()}"
            return False
        return self._until("done")

    def _ended(self) -> str:
        """Why the process is gone: the stack's own "na" if it exited cleanly after
        giving one (a suite it does not have), else its exit status and error."""
        code = self._exit_code()
        own = next((c.na for c in self.cells.values() if c.na), None)
        return own if code == 0 and own else f"{exit_text(code)}: {self._error()}"

    def _exit_code(self) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

    def _error(self) -> str:
        if self.stderr is None:
            return "no output"
        self.stderr.seek(0)
        return error_summary(self.stderr.read())

    def close(self) -> None:
        """End the process (EOF on its stdin; killed if it was cut off by the timeout)."""
        if self.proc is not None and self.proc.poll() is None:
            if self.timed_out:
                self.proc.kill()
            elif self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    def result(self) -> dict[str, Cell]:
        """Every operation's cell; those without a figure say why."""
        cells = {op: cell.settle(self.metric) for op, cell in self.cells.items()}
        for op in OPS:
            cell = cells.setdefault(op, Cell())
            if cell.value is None and cell.na is None:  # the stack's own "na" stands
                cell.timeout = self.timed_out
                cell.na = self.dead or "no figure"
        return cells


Results = dict[str, dict[int, dict[str, Cell]]]


@dataclass
class SizeRun:
    """What :func:`run_size` measured: cells per stack, each round's stack order, and
    the stacks cut off by ``--timeout``."""

    cells: dict[str, dict[str, Cell]]
    orders: list[list[str]]
    timed_out: set[str]


def run_size(peers: Sequence[Peer], n: int, iterations: int, app_seconds: float,
             timeout: float, metric: str = "cpu", progress: bool = True,
             suite: int = 1) -> SizeRun:
    """Every stack at size n on cipher suite ``suite``: the setups one after another, then
    ``iterations`` interleaved rounds (:func:`round_order`)."""
    sessions: dict[str, Session] = {}
    orders: list[list[str]] = []
    try:
        for peer in peers:
            session = Session(peer, n, app_seconds, timeout, metric, suite)
            sessions[peer.name] = session
            session.start()
            if progress:
                print(f"  {peer.name:14} n={n:<6} setup {session.spent:7.1f} s"
                      + (f" ({session.dead})" if session.dead else ""),
                      file=sys.stderr, flush=True)
        names = [p.name for p in peers]
        for r in range(iterations):
            order = [name for name in round_order(names, r) if sessions[name].dead is None]
            orders.append(order)
            for name in order:
                sessions[name].round()
            if progress and order:
                print(f"  round {r + 1}/{iterations} n={n}: {', '.join(order)}",
                      file=sys.stderr, flush=True)
    finally:
        for session in sessions.values():
            session.close()
    return SizeRun({name: s.result() for name, s in sessions.items()}, orders,
                   {name for name, s in sessions.items() if s.timed_out})


def run_all(peers: Sequence[Peer], sizes: Sequence[int], iterations: int, app_seconds: float,
            timeout: float, progress: bool = True, metric: str = "cpu",
            suite: int = 1) -> Results:
    """Size by size on cipher suite ``suite``, the stacks interleaved round by round (same
    run, same machine). A stack that timed out at a size is not tried at larger ones."""
    results: Results = {p.name: {} for p in peers}
    timed_out: dict[str, int] = {}
    for n in sizes:
        live = [p for p in peers if p.name not in timed_out]
        for peer in peers:
            if peer.name in timed_out:
                why = f"timeout (> {timeout:.0f} s at n={timed_out[peer.name]})"
                results[peer.name][n] = {op: Cell(timeout=True, na=why) for op in OPS}
        run = run_size(live, n, iterations, app_seconds, timeout, metric, progress, suite)
        for name, per_op in run.cells.items():
            results[name][n] = per_op
            if name in run.timed_out:
                timed_out[name] = n
    return results


# --------------------------------------------------------------------------- output


def fmt_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_value(op: str, value: float) -> str:
    return f"{value:,.0f}/s" if op == "app" else fmt_seconds(value)


def ratio(ours: Cell | None, peer: Cell) -> float | None:
    if ours is None or ours.value is None or peer.value is None or peer.value == 0:
        return None
    return ours.value / peer.value


def fmt_ratio(r: float) -> str:
    """Two significant digits at least: 0.0044x, 0.20x, 12.35x."""
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def fmt_cell(op: str, cell: Cell, ours: Cell | None, is_ours: bool) -> str:
    if cell.value is None:
        return "timeout" if cell.timeout else "n/a"
    text = fmt_value(op, cell.value) + ("!" if cell.note else "")
    r = None if is_ours else ratio(ours, cell)
    return text if r is None else f"{text} ({fmt_ratio(r)})"


WIDTH = 24
#: the size tables: (the operation whose cell holds it, the Cell attribute, title)
SIZES = {
    "key_package": ("build", "key_package_size", "one joiner's KeyPackage (§10)"),
    "welcome": ("build", "size", "the build Welcome (n-1 members added, ratchet tree inside)"),
    "commit": ("commit", "size", "the round's empty full-path Commit (PublicMessage)"),
}


def suite_tag(suite: int) -> str:
    """What a table title adds to name its cipher suite (nothing for suite 1)."""
    return "" if suite == 1 else f" [cipher suite {suite}]"


def block(title: str, names: Sequence[str], sizes: Sequence[int],
          text: Callable[[str, int], str]) -> list[str]:
    """One table: the title, a row per size n, a column per stack (``text(name, n)``)."""
    lines = ["", title, f"{'n':>7} " + " ".join(f"{label(name):>{WIDTH}}" for name in names)]
    for n in sizes:
        lines.append(f"{n:>7} " + " ".join(f"{text(name, n):>{WIDTH}}" for name in names))
    return lines


def size_of(results: Results, name: str, n: int, kind: str) -> int | None:
    """Bytes of a ``SIZES`` kind for one stack and size, if the run has them."""
    op, attr, _ = SIZES[kind]
    cell = results.get(name, {}).get(n, {}).get(op)
    return None if cell is None else getattr(cell, attr)


def fmt_size(size: int | None, ours: int | None, is_ours: bool) -> str:
    if size is None:
        return "n/a"
    text = f"{size:,} B"
    return text if is_ours or not ours or not size else f"{text} ({fmt_ratio(ours / size)})"


def size_tables(results: Results, sizes: Sequence[int], suite: int = 1) -> list[str]:
    """One table per ``SIZES`` kind, in bytes, with the ratio ours/peer."""
    lines: list[str] = []
    for kind, (_, _, title) in SIZES.items():
        def text(name: str, n: int, kind: str = kind) -> str:
            return fmt_size(size_of(results, name, n, kind), size_of(results, "ours", n, kind),
                            name == "ours")
        lines += block(f"{kind} bytes: {title}{suite_tag(suite)}", list(results), sizes, text)
    return lines


def table(results: Results, sizes: Sequence[int], suite: int = 1) -> list[str]:
    """One block per operation, then the sizes: a row per size, a column per stack. Each
    title names the suite unless it is suite 1."""
    notes: dict[str, str] = {}
    lines: list[str] = []
    for op in OPS:
        def text(name: str, n: int, op: str = op) -> str:
            cell = results[name].get(n, {}).get(op, Cell(na="not run"))
            for why in (cell.na if cell.value is None else None, cell.note):
                if why:
                    notes.setdefault(f"{label(name)}: {why}", f"{op} n={n}")
            return fmt_cell(op, cell, results.get("ours", {}).get(n, {}).get(op),
                            name == "ours")
        lines += block(f"{op}: {OP_TITLES[op]}{suite_tag(suite)}", list(results), sizes, text)
    lines += size_tables(results, sizes, suite)
    lines.append("")
    lines.append("(ratio) = ours/peer: for times < 1 means ours is faster; for msg/s > 1 "
                 "means ours is faster; for bytes < 1 means ours is smaller. ! = see notes.")
    if notes:
        lines.append("notes (first cell where each appears):")
        lines.extend(f"  [{where}] {why}" for why, where in notes.items())
    return lines


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = shutil.which("node")
    node_version = (subprocess.run([node, "--version"], capture_output=True, text=True,
                                   check=False).stdout.strip() if node else None)
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "node": node_version,
            "versions": peer_versions()}


def peer_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    pkg = PEERS_DIR / "node_modules" / "ts-mls" / "package.json"
    if pkg.exists():
        versions["ts-mls"] = json.loads(pkg.read_text())["version"]
    for dist, name in (("agentvault_mls_rs_uniffi", "mls-rs"), ("rfc9420", "rfc9420")):
        found = glob.glob(str(PEER_VENV / "lib" / "python*" / "site-packages"
                              / f"{dist}-*.dist-info"))
        if found:
            versions[name] = Path(found[0]).name.removesuffix(".dist-info").split("-")[-1]
    return versions


def targets(results: Results) -> list[str]:
    """The issues' targets, where this run has the figures (reported, not asserted)."""
    ours = results.get("ours", {})
    lines: list[str] = []

    def cell(name: str, n: int, op: str) -> Cell | None:
        return results.get(name, {}).get(n, {}).get(op)

    def versus(op: str, name: str, limit: float | None, what: str) -> None:
        us, them = cell("ours", 1000, op), cell(name, 1000, op)
        if us is None or us.value is None or them is None:
            return
        if them.value is None:
            lines.append(f"{what} n=1000 vs {label(name)}: cannot tell, "
                         f"{'timeout' if them.timeout else 'n/a'} ({them.na})")
            return
        r = us.value / them.value
        verdict = "" if limit is None else (
            f" (target <= {limit:g}x): {'met' if r <= limit else 'NOT met'}")
        lines.append(f"{what} n=1000 vs {label(name)}: {fmt_seconds(us.value)} / "
                     f"{fmt_seconds(them.value)} = {fmt_ratio(r)}{verdict}")

    versus("join", "mls-rs-objects", 1.0, "issue 16: join")
    versus("process", "mls-rs-objects", None, "issue 16: process commit")
    versus("first_process", "mls-rs-objects", None, "issue 16: first process after a join")
    for n in sorted(ours):
        first, steady = cell("ours", n, "first_process"), cell("ours", n, "process")
        if first and steady and first.value is not None and steady.value:
            cold = (f" (round 1, in a process that never processed a Commit before: "
                    f"{fmt_seconds(first.cpu[0])})" if first.cpu else "")
            lines.append(f"ours n={n}: first process after a join {fmt_seconds(first.value)}"
                         f"{cold}, steady process {fmt_seconds(steady.value)} "
                         f"({first.value / steady.value:.1f}x)")
    for name, limit in (("ts-mls", 1.0), ("rfc9420", 1.0), ("mls-rs", 3.0),
                        ("mls-rs-objects", 3.0)):
        versus("process", name, limit, "issue 6: process commit")
    big, small = cell("ours", 10_000, "commit"), cell("ours", 1000, "commit")
    if big and small and big.value is not None and small.value:
        lines.append(f"issue 6: commit n=10000 / n=1000: {big.value / small.value:.2f}x "
                     "(target <= 1.5x; this table's commit encrypts to every member, O(n): "
                     "the O(log n) steady-state ratio is benchmarks.group's)")
    join = cell("ours", 10_000, "join")
    if join is not None and join.value is not None:
        lines.append(f"issue 6: join n=10000: {join.value:.2f} s (target < 2 s): "
                     f"{'met' if join.value < 2 else 'NOT met'}")
    return lines if ours else []


def to_json(results: Results, args: argparse.Namespace, sizes: Sequence[int],
            target_lines: list[str], suite: int = 1) -> dict[str, Any]:
    """One suite's run: every cell, the ratios, the sizes in bytes, the machine."""
    def ratios(name: str) -> dict[str, dict[str, float | None]]:
        return {str(n): {op: ratio(results.get("ours", {}).get(n, {}).get(op), c)
                         for op, c in cells.items()} for n, cells in results[name].items()}

    unit = "CPU s" if args.metric == "cpu" else "wall s"
    return {
        "suite": suite,
        "sizes": list(sizes),
        "iterations": args.iterations,
        "timeout_s": args.timeout,
        "metric": args.metric,
        "statistic": "median",
        "schedule": "interleaved: one process per stack and size, one sample of every "
                    "operation per round, stack order rotated each round",
        "units": {op: ("messages/s (median of the rounds)" if op == "app"
                       else f"{unit} (median sample)") for op in OPS},
        "machine": machine(),
        "results": {name: {str(n): {op: c.to_json() for op, c in cells.items()}
                           for n, cells in per.items()} for name, per in results.items()},
        "ratio_ours_over_peer": {name: ratios(name) for name in results if name != "ours"},
        "bytes": {name: {str(n): {kind: size_of(results, name, n, kind) for kind in SIZES}
                         for n in per} for name, per in results.items()},
        "targets": target_lines,
    }


def json_document(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The ``--json`` file: one suite's run as is (the format of a suite-1 run before
    ``--suites`` existed), several as ``{"suites": [...], "runs": {"83": run, ...}}``."""
    if len(runs) == 1:
        return next(iter(runs.values()))
    return {"suites": list(runs), "runs": {str(suite): run for suite, run in runs.items()}}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", help="comma-separated group sizes (default "
                    f"{','.join(map(str, DEFAULT_SIZES))}; --quick: "
                    f"{','.join(map(str, QUICK_SIZES))})")
    ap.add_argument("--peers", default=",".join(ALL_PEERS),
                    help="comma-separated stacks (default %(default)s)")
    ap.add_argument("--suites", "--suite", default="1", metavar="IDS",
                    help="comma-separated cipher suite ids, run one after another; 79-88 "
                    "are the experimental post-quantum suites (docs/pq.md) (default 1)")
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    ap.add_argument("--from-json", type=Path, nargs="+", metavar="FILE",
                    help="run nothing: print the tables of earlier --json files (merged)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, 2 rounds, 0.15 s of application messages per round")
    ap.add_argument("--iterations", type=int,
                    help="rounds: samples per timed operation (default 5)")
    ap.add_argument("--app-seconds", type=float,
                    help="time per app sample, each round (default 1)")
    ap.add_argument("--metric", choices=("cpu", "wall"), default="cpu",
                    help="table figures from the stack process's CPU time or from wall "
                    "time (default %(default)s; both are in --json)")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds per stack and size before 'timeout' (default %(default)s)")
    args = ap.parse_args(argv)
    default_sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    args.sizes = (tuple(int(s) for s in args.sizes.split(",")) if args.sizes
                  else default_sizes)
    if any(n < 2 for n in args.sizes):
        ap.error("group sizes must be at least 2")
    try:
        args.suites = tuple(dict.fromkeys(int(s, 0) for s in args.suites.split(",")))
    except ValueError:
        ap.error(f"--suites: not a list of suite ids: {args.suites!r}")
    args.iterations = args.iterations or (2 if args.quick else 5)
    args.app_seconds = args.app_seconds or (0.15 if args.quick else 1.0)
    if args.iterations < 1:
        ap.error("--iterations must be at least 1")
    return args


def cell_from_json(op: str, data: dict[str, Any], metric: str) -> Cell:
    """The inverse of :meth:`Cell.to_json`, re-picking the value by ``metric`` (files of
    the earlier best-of format load too: their single app rate is its own median)."""
    if data.get("value") is None:
        return Cell(na=data.get("na"), timeout=bool(data.get("timeout")))
    if op == "app":
        rates = {k: v for k, v in data.items() if k in ("rate", "cpu_rate")}
        return cell_from_record(rates or {"rate": data["value"]}, metric)
    return cell_from_record({"samples": data["samples"], "cpu": data.get("cpu_samples", []),
                             "bytes": data.get("size"), "note": data.get("note"),
                             "key_package_bytes": data.get("key_package_size")}, metric)


def load_results(paths: Sequence[Path], metric: str) -> dict[int, tuple[Results, list[int]]]:
    """Results of earlier ``--json`` files per cipher suite, merged (a later file wins a
    cell), each with its sizes."""
    by_suite: dict[int, Results] = {}
    for path in paths:
        data = json.loads(path.read_text())
        for run in data["runs"].values() if "runs" in data else [data]:
            results = by_suite.setdefault(int(run.get("suite", 1)), {})
            for name, per in run["results"].items():
                for n, cells in per.items():
                    results.setdefault(name, {})[int(n)] = {
                        op: cell_from_json(op, cell, metric) for op, cell in cells.items()}
    return {suite: (results, sorted({n for per in results.values() for n in per}))
            for suite, results in by_suite.items()}


def print_targets(results: Results) -> None:
    target_lines = targets(results)
    if target_lines:
        print("\ntargets:")
        print("\n".join(f"  {line}" for line in target_lines))


def print_suite(results: Results, sizes: Sequence[int], suite: int, several: bool) -> None:
    """One suite's tables (under a heading if the run has several suites), and the
    issues' targets for suite 1, the suite they are set on."""
    if several:
        print(f"\n=== cipher suite {suite} ===")
    print("\n".join(table(results, sizes, suite)))
    if suite == 1:
        print_targets(results)


def reprint(args: argparse.Namespace) -> int:
    """``--from-json``: print the tables and targets of saved runs again."""
    by_suite = load_results(args.from_json, args.metric)
    print(f"MLS stacks side by side, from {', '.join(map(str, args.from_json))} "
          f"(median {args.metric} time)")
    for suite, (results, sizes) in by_suite.items():
        names = ([n for n in ALL_PEERS if n in results]
                 + [n for n in results if n not in ALL_PEERS])
        print_suite({n: results[n] for n in names}, sizes, suite, len(by_suite) > 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return reprint(args)
    names = [p.strip() for p in args.peers.split(",") if p.strip()]
    peers = [find_peer(name) for name in names]
    if "ours" not in names:
        print("note: 'ours' is not in --peers, so no ratios", file=sys.stderr)
    suites = ", ".join(map(str, args.suites))
    print(f"MLS stacks side by side: cipher suite{'s' if len(args.suites) > 1 else ''} "
          f"{suites}, sizes {list(args.sizes)}, median of "
          f"{args.iterations} ({args.metric} time), stacks interleaved round by round, "
          f"timeout {args.timeout:.0f} s per stack and size")
    for peer in peers:
        if peer.missing:
            print(f"  {label(peer.name)}: n/a ({peer.missing})")
    start = time.perf_counter()
    runs: dict[int, dict[str, Any]] = {}
    for suite in args.suites:
        results = run_all(peers, args.sizes, args.iterations, args.app_seconds, args.timeout,
                          metric=args.metric, suite=suite)
        print_suite(results, args.sizes, suite, len(args.suites) > 1)
        runs[suite] = to_json(results, args, args.sizes,
                              targets(results) if suite == 1 else [], suite)
    if args.json is not None:
        args.json.write_text(json.dumps(json_document(runs), indent=2))
        print(f"\nJSON: {args.json}")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
