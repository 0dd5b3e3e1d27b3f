"""Our MLS stack side by side with peer stacks: ts-mls, mls-rs and rfc9420.

``python -m benchmarks.compare [--sizes 16,128,1000,10000] [--peers ours,ts-mls,mls-rs,rfc9420]
[--json out.json] [--quick] [--iterations K] [--timeout S] [--metric wall|cpu]``, or
``python -m benchmarks.compare --from-json out.json [more.json ...] [--metric cpu]`` to
print saved runs again.

Install the peers first with ``bash benchmarks/peers/setup.sh`` (npm ci and a separate
venv, so they never enter this project's dependencies). For each group size n and each
stack, one fresh process runs the shared sequence of ``benchmarks/peers/common.py`` (the
Node script mirrors it) on cipher suite 1, and prints one JSON line per operation:

* **build** — create the group and add the other n - 1 members in one Commit (§12.4);
* **join** — a member joins from that Welcome, ratchet tree included (§12.4.3.1);
* **app** — 1 KiB application messages per second, encrypt + decrypt (§6.3);
* **commit** — an empty Commit with a full UpdatePath, created and merged (§12.4.1);
* **process** — another member processes that Commit (§12.4.2).

Time cells are the best of ``--iterations`` samples of wall time, or with ``--metric cpu``
of the stack process's CPU time (the machine is shared; ``--json`` keeps every sample of
both). Each cell prints the ratio ours/peer: for times below 1 means we
are faster, for messages per second above 1 means we are faster. A stack process that
exceeds ``--timeout`` is killed: the operations it had not finished read "timeout", and
larger sizes of that stack are not tried. A stack that is not installed or fails an
operation gets "n/a" with the reason. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / "benchmarks" / "peers"
PEER_VENV = PEERS_DIR / ".venv"
OPS = ("build", "join", "commit", "process", "app")
OP_TITLES = {
    "build": "build the group (create + one Commit adding n-1 members)",
    "join": "join from the Welcome (ratchet tree inside)",
    "commit": "create a full-path Commit (empty, PublicMessage) and merge it",
    "process": "process that Commit as another member",
    "app": "application messages per second (1 KiB, encrypt + decrypt)",
}
ALL_PEERS = ("ours", "ts-mls", "mls-rs", "rfc9420")
DEFAULT_SIZES = (16, 128, 1000, 10_000)
QUICK_SIZES = (16, 128)
SETUP_HINT = "run: bash benchmarks/peers/setup.sh"


# --------------------------------------------------------------------------- stacks


@dataclass(frozen=True)
class Peer:
    """How to start one stack's bench process, and why it cannot start (if so)."""

    name: str
    command: tuple[str, ...]
    missing: str | None = None  # the reason the stack is unavailable

    def argv(self, op: str, n: int, iterations: int, app_seconds: float) -> list[str]:
        return [*self.command, op, str(n), str(iterations), "--app-seconds", str(app_seconds)]


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def python_peer(name: str, module: str, package_glob: str, venv: Path) -> Peer:
    python = venv_python(venv)
    command = (str(python), "-m", f"benchmarks.peers.{module}")
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
    if name == "rfc9420":
        return python_peer(name, "rfc9420_bench", "rfc9420", venv)
    raise SystemExit(f"unknown peer {name!r} (choose from {', '.join(ALL_PEERS)})")


# --------------------------------------------------------------------------- running


@dataclass
class Cell:
    """One (stack, n, operation) result: a value, or the reason there is none."""

    value: float | None = None          # seconds (best sample) or messages per second
    samples: list[float] = field(default_factory=list)   # wall seconds
    cpu: list[float] = field(default_factory=list)       # CPU seconds of the same calls
    rates: dict[str, float] = field(default_factory=dict)  # app: "rate", "cpu_rate"
    size: int | None = None             # bytes of the Commit / Welcome
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
        for key in ("size", "na", "note"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.timeout:
            out["timeout"] = True
        return out


def cell_from_record(record: dict[str, Any], metric: str = "wall") -> Cell:
    """A bench script's JSON line as a table cell; its value is the best wall-time (or,
    with ``metric="cpu"``, CPU-time) sample, or the messages per second of that time."""
    if "na" in record:
        return Cell(na=str(record["na"]))
    if "rate" in record:
        rates: dict[str, float] = {k: float(record[k]) for k in ("rate", "cpu_rate")
                                   if k in record}
        key = "cpu_rate" if metric == "cpu" and "cpu_rate" in rates else "rate"
        return Cell(value=rates[key], rates=rates)
    samples = [float(s) for s in record["samples"]]
    cpu = [float(s) for s in record.get("cpu", [])]
    best = min(cpu) if metric == "cpu" and cpu else min(samples)
    return Cell(value=best, samples=samples, cpu=cpu, size=record.get("bytes"),
                note=record.get("note"))


def parse_output(stdout: str, metric: str = "wall") -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("op") in OPS:
            cells[record["op"]] = cell_from_record(record, metric)
    return cells


def error_summary(stderr: str) -> str:
    """The error line of a failed bench process: the last line that is not a stack frame
    (Python puts the exception last; Node puts it above its "at ..." frames)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    messages = [ln for ln in lines if not ln.startswith(("at ", "File ", "^", "~"))]
    return (messages or lines or ["no output"])[-1][:300]


def run_peer(peer: Peer, n: int, iterations: int, app_seconds: float,
             timeout: float, metric: str = "wall") -> dict[str, Cell]:
    """Every operation of one stack at one size, in a fresh process."""
    if peer.missing is not None:
        return {op: Cell(na=peer.missing) for op in OPS}
    argv = peer.argv("all", n, iterations, app_seconds)
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        cells = parse_output(_text(exc.stdout), metric)
        for op in OPS:
            cells.setdefault(op, Cell(timeout=True, na=f"timeout (> {timeout:.0f} s)"))
        return cells
    except OSError as exc:
        return {op: Cell(na=f"cannot start: {exc}") for op in OPS}
    cells = parse_output(proc.stdout, metric)
    for op in OPS:
        if op not in cells:
            why = f"exit {proc.returncode}: {error_summary(proc.stderr)}"
            cells[op] = Cell(na=why)
    return cells


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


Results = dict[str, dict[int, dict[str, Cell]]]


def run_all(peers: Sequence[Peer], sizes: Sequence[int], iterations: int, app_seconds: float,
            timeout: float, progress: bool = True, metric: str = "wall") -> Results:
    """Size by size, every stack in turn (same run, same machine). A stack that timed
    out at a size is not tried at larger ones."""
    results: Results = {p.name: {} for p in peers}
    timed_out: dict[str, int] = {}
    for n in sizes:
        for peer in peers:
            if peer.name in timed_out:
                why = f"timeout (> {timeout:.0f} s at n={timed_out[peer.name]})"
                results[peer.name][n] = {op: Cell(timeout=True, na=why) for op in OPS}
                continue
            start = time.perf_counter()
            cells = run_peer(peer, n, iterations, app_seconds, timeout, metric)
            results[peer.name][n] = cells
            if any(c.timeout for c in cells.values()):
                timed_out[peer.name] = n
            if progress:
                print(f"  {peer.name:8} n={n:<6} {time.perf_counter() - start:7.1f} s",
                      file=sys.stderr, flush=True)
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


def table(results: Results, sizes: Sequence[int]) -> list[str]:
    """One block per operation: a row per size, a column per stack."""
    names = list(results)
    lines: list[str] = []
    notes: dict[str, str] = {}
    width = 24
    for op in OPS:
        lines.append("")
        lines.append(f"{op}: {OP_TITLES[op]}")
        lines.append(f"{'n':>7} " + " ".join(f"{name:>{width}}" for name in names))
        for n in sizes:
            ours = results.get("ours", {}).get(n, {}).get(op)
            row = []
            for name in names:
                cell = results[name].get(n, {}).get(op, Cell(na="not run"))
                row.append(f"{fmt_cell(op, cell, ours, name == 'ours'):>{width}}")
                for why in (cell.na if cell.value is None else None, cell.note):
                    if why:
                        notes.setdefault(f"{name}: {why}", f"{op} n={n}")
            lines.append(f"{n:>7} " + " ".join(row))
    lines.append("")
    lines.append("(ratio) = ours/peer: for times < 1 means ours is faster; for msg/s > 1 "
                 "means ours is faster. ! = see notes.")
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
    """The issue's targets, where this run has the figures (reported, not asserted)."""
    ours = results.get("ours", {})
    lines: list[str] = []

    def value(name: str, n: int, op: str) -> float | None:
        return results.get(name, {}).get(n, {}).get(op, Cell()).value

    us = value("ours", 1000, "process")
    for name, limit in (("ts-mls", 1.0), ("rfc9420", 1.0), ("mls-rs", 3.0)):
        cell = results.get(name, {}).get(1000, {}).get("process")
        if us is None or cell is None:
            continue
        if cell.value is None:
            lines.append(f"process commit n=1000 vs {name}: cannot tell, {name} is "
                         f"{'timeout' if cell.timeout else 'n/a'} ({cell.na})")
            continue
        r = us / cell.value
        lines.append(f"process commit n=1000 vs {name}: {fmt_ratio(r)} (target <= "
                     f"{limit:g}x): {'met' if r <= limit else 'NOT met'}")
    big, small = value("ours", 10_000, "commit"), value("ours", 1000, "commit")
    if big is not None and small is not None:
        lines.append(f"commit n=10000 / n=1000: {big / small:.2f}x (target <= 1.5x; this "
                     "table's commit encrypts to every member, O(n): the O(log n) "
                     "steady-state ratio is benchmarks.group's)")
    join_cell = ours.get(10_000, {}).get("join")
    if join_cell is not None and join_cell.value is not None:
        join = join_cell.value
        cpu = f", best CPU time {min(join_cell.cpu):.2f} s" if join_cell.cpu else ""
        lines.append(f"join n=10000: {join:.2f} s{cpu} (target < 2 s): "
                     f"{'met' if join < 2 else 'NOT met'}")
    return lines if ours else []


def to_json(results: Results, args: argparse.Namespace, sizes: Sequence[int],
            target_lines: list[str]) -> dict[str, Any]:
    def ratios(name: str) -> dict[str, dict[str, float | None]]:
        return {str(n): {op: ratio(results.get("ours", {}).get(n, {}).get(op), c)
                         for op, c in cells.items()} for n, cells in results[name].items()}

    return {
        "suite": 1,
        "sizes": list(sizes),
        "iterations": args.iterations,
        "timeout_s": args.timeout,
        "metric": args.metric,
        "units": {op: ("messages/s" if op == "app" else "s (best sample)") for op in OPS},
        "machine": machine(),
        "results": {name: {str(n): {op: c.to_json() for op, c in cells.items()}
                           for n, cells in per.items()} for name, per in results.items()},
        "ratio_ours_over_peer": {name: ratios(name) for name in results if name != "ours"},
        "targets": target_lines,
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", help="comma-separated group sizes (default "
                    f"{','.join(map(str, DEFAULT_SIZES))}; --quick: "
                    f"{','.join(map(str, QUICK_SIZES))})")
    ap.add_argument("--peers", default=",".join(ALL_PEERS),
                    help="comma-separated stacks (default %(default)s)")
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    ap.add_argument("--from-json", type=Path, nargs="+", metavar="FILE",
                    help="run nothing: print the tables of earlier --json files (merged)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, 2 iterations, 0.3 s of application messages")
    ap.add_argument("--iterations", type=int, help="samples per timed operation (default 5)")
    ap.add_argument("--app-seconds", type=float, help="time per app figure (default 1)")
    ap.add_argument("--metric", choices=("wall", "cpu"), default="wall",
                    help="table figures from wall time or from the stack process's CPU "
                    "time (default %(default)s; both are in --json)")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds per stack and size before 'timeout' (default %(default)s)")
    args = ap.parse_args(argv)
    default_sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    args.sizes = (tuple(int(s) for s in args.sizes.split(",")) if args.sizes
                  else default_sizes)
    if any(n < 2 for n in args.sizes):
        ap.error("group sizes must be at least 2")
    args.iterations = args.iterations or (2 if args.quick else 5)
    args.app_seconds = args.app_seconds or (0.3 if args.quick else 1.0)
    if args.iterations < 1:
        ap.error("--iterations must be at least 1")
    return args


def cell_from_json(op: str, data: dict[str, Any], metric: str) -> Cell:
    """The inverse of :meth:`Cell.to_json`, re-picking the value by ``metric``."""
    if data.get("value") is None:
        return Cell(na=data.get("na"), timeout=bool(data.get("timeout")))
    if op == "app":
        rates = {"rate": data["value"], **{k: v for k, v in data.items() if k.endswith("rate")}}
        return cell_from_record(rates, metric)
    return cell_from_record({"samples": data["samples"], "cpu": data.get("cpu_samples", []),
                             "bytes": data.get("size"), "note": data.get("note")}, metric)


def load_results(paths: Sequence[Path], metric: str) -> tuple[Results, list[int]]:
    """Results of earlier ``--json`` files, merged (a later file wins a cell)."""
    results: Results = {}
    for path in paths:
        data = json.loads(path.read_text())
        for name, per in data["results"].items():
            for n, cells in per.items():
                results.setdefault(name, {})[int(n)] = {
                    op: cell_from_json(op, cell, metric) for op, cell in cells.items()}
    sizes = sorted({n for per in results.values() for n in per})
    return results, sizes


def reprint(args: argparse.Namespace) -> int:
    """``--from-json``: print the tables and targets of saved runs again."""
    results, sizes = load_results(args.from_json, args.metric)
    print(f"MLS stacks side by side, from {', '.join(map(str, args.from_json))} "
          f"({args.metric} time)")
    print("\n".join(table(results, sizes)))
    target_lines = targets(results)
    if target_lines:
        print("\ntargets (issue 6):")
        print("\n".join(f"  {line}" for line in target_lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return reprint(args)
    names = [p.strip() for p in args.peers.split(",") if p.strip()]
    peers = [find_peer(name) for name in names]
    if "ours" not in names:
        print("note: 'ours' is not in --peers, so no ratios", file=sys.stderr)
    print(f"MLS stacks side by side: cipher suite 1, sizes {list(args.sizes)}, best of "
          f"{args.iterations} ({args.metric} time), timeout {args.timeout:.0f} s per stack "
          "and size")
    for peer in peers:
        if peer.missing:
            print(f"  {peer.name}: n/a ({peer.missing})")
    start = time.perf_counter()
    results = run_all(peers, args.sizes, args.iterations, args.app_seconds, args.timeout,
                      metric=args.metric)
    print("\n".join(table(results, args.sizes)))
    target_lines = targets(results)
    if target_lines:
        print("\ntargets (issue 6):")
        print("\n".join(f"  {line}" for line in target_lines))
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(results, args, args.sizes, target_lines),
                                        indent=2))
        print(f"\nJSON: {args.json}")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
