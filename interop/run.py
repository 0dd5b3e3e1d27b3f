"""Play MLS interop scenario configs against client stacks: ``python -m interop.run``.

Example::

    python -m interop.run interop/configs/welcome_join.json --clients ours,ts-mls

The runner starts the named clients itself (``ours`` = ``python -m interop.client``,
``ts-mls`` = ``node interop/ts-mls/server.mjs``) on free loopback ports, or connects to
running ones with ``--connect host:port``. It plays every script of every config over every
assignment of clients to actors, every cipher suite the assigned clients support and both
handshake modes, as the IETF runner does (RUNNER.md) with its two assignment bugs fixed.
Per config it prints ``NAME: N passed, M failed``, followed by indented notes, unsupported
runs with their reasons, and failed runs. Exit status: 0 if no run failed, 1 if one did,
2 if a config or a client could not be used.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from interop.runner.clients import LAUNCHERS, Client, connect_clients, start_clients
from interop.runner.config import Config, load_config
from interop.runner.errors import RunnerError
from interop.runner.execute import Options, play_config
from interop.runner.results import ConfigResult, RunResult, dumps_go, go_results, summary_lines

DEFAULT_MAX_RUNS = 1000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m interop.run",
        description="Play MLS interop scenario configs against client stacks (see RUNNER.md).",
        epilog="Exit status: 0 if no run failed, 1 if a run failed, 2 if a config or a "
        "client could not be used. Unsupported runs are listed, not counted.",
    )
    parser.add_argument(
        "configs", nargs="+", type=Path, metavar="CONFIG", help="scenario config files (JSON)"
    )
    parser.add_argument(
        "--clients", default="ours,ts-mls",
        help=f"comma-separated stacks to start, from {', '.join(LAUNCHERS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--connect", action="append", default=[], metavar="HOST:PORT",
        help="use an already running client instead of starting --clients (repeatable)",
    )
    parser.add_argument("--suite", type=int, default=0, help="only this cipher suite (0: all)")
    parser.add_argument(
        "--random", action="store_true",
        help="one seeded random assignment per (suite, handshake mode)",
    )
    parser.add_argument("--seed", help="seed for random assignments (default: drawn, printed)")
    parser.add_argument("--public", action="store_true", help="only PublicMessage handshakes")
    parser.add_argument("--private", action="store_true", help="only PrivateMessage handshakes")
    parser.add_argument(
        "--fail-fast", action="store_true", help="skip a script's remaining runs once one fails"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results JSON here")
    parser.add_argument(
        "--max-runs", type=int, default=DEFAULT_MAX_RUNS,
        help="a script whose full matrix has more runs is played in random mode "
        "(default: %(default)s)",
    )
    parser.add_argument("--rpc-timeout", type=float, default=120.0, help="seconds per RPC")
    parser.add_argument(
        "--start-timeout", type=float, default=60.0, help="seconds to wait for a client"
    )
    parser.add_argument("--log-dir", type=Path, help="keep client logs in this directory")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print each run's verdict to stderr"
    )
    return parser


def options_from(args: argparse.Namespace, seed: str) -> Options:
    modes: tuple[bool, ...] = (True, False)
    if args.private != args.public:
        modes = (bool(args.private),)
    return Options(
        suite=args.suite, modes=modes, random_mode=args.random, seed=seed,
        max_runs=args.max_runs, fail_fast=args.fail_fast, rpc_timeout=args.rpc_timeout,
        record=args.json is not None, progress=_print_progress if args.verbose else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seed = args.seed if args.seed is not None else str(random.SystemRandom().randrange(2**32))
    if args.random:
        print(f"random assignment seed: {seed}", flush=True)
    previous = _on_sigterm(_exit_on_signal)
    try:
        configs = [load_config(path) for path in args.configs]
        with ExitStack() as stack:
            clients = _clients(args, stack)
            options = options_from(args, seed)
            results = [play_and_print(c, clients, options) for c in configs]
            _report_dead_clients(clients)
    except RunnerError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    finally:
        _on_sigterm(previous)
    if args.json is not None:
        try:
            args.json.write_text(dumps_go(_json_document(configs, results)), encoding="utf-8")
        except OSError as exc:
            print(f"Error: cannot write {args.json}: {exc}", file=sys.stderr)
            return 2
    return 1 if any(result.failed for result in results) else 0


def _clients(args: argparse.Namespace, stack: ExitStack) -> list[Client]:
    if args.connect:
        return connect_clients(args.connect, stack, timeout=args.start_timeout)
    kinds = [kind.strip() for kind in args.clients.split(",") if kind.strip()]
    if not kinds:
        raise RunnerError("--clients names no client")
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    clients = start_clients(kinds, stack, timeout=args.start_timeout, log_dir=args.log_dir)
    for client in clients:
        suites = ",".join(str(s) for s in sorted(client.suites)) or "none"
        print(f"client {client.label}: {client.name} (suites {suites})", file=sys.stderr)
    return clients


def _print_progress(run: RunResult) -> None:
    line = f"{run.verdict}: {run.script} {run.describe()}"
    if run.error:
        line += f" step {run.failed_step}: {run.error}"
    print(line, file=sys.stderr, flush=True)


def play_and_print(config: Config, clients: Sequence[Client], options: Options) -> ConfigResult:
    """Play one config and print its summary as soon as it is done."""
    result = play_config(config, clients, options)
    print("\n".join(summary_lines(result)), flush=True)
    return result


def _report_dead_clients(clients: Sequence[Client]) -> None:
    for client in clients:
        status = client.exit_status()
        if status is not None:
            print(
                f"note: client {client.label} exited with status {status} during the run\n"
                + client.log_tail(),
                file=sys.stderr,
            )


def _json_document(configs: Sequence[Config], results: Sequence[ConfigResult]) -> object:
    """One config: the Go runner's document. Several: config name -> that document."""
    if len(results) == 1:
        return go_results(results[0])
    names = [c.name for c in configs]
    keys = [
        name if names.count(name) == 1 else f"{name}#{i}" for i, name in enumerate(names)
    ]
    return {key: go_results(result) for key, result in zip(keys, results, strict=True)}


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so the client processes are stopped on the way out."""
    raise SystemExit(128 + signum)


_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _on_sigterm(handler: _Handler) -> _Handler:
    """Install a SIGTERM handler (main thread only) and return the previous one."""
    if threading.current_thread() is not threading.main_thread() or handler is None:
        return None
    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
