"""Play MLS interop scenario configs against client stacks: ``python -m interop.run``.

Examples::

    python -m interop.run interop/configs/welcome_join.json --clients ours,ts-mls
    python -m interop.run CONFIGS... --clients ours,ts-mls --alternate --suites 1,2,3
    python -m interop.run CONFIGS... --clients ours,ts-mls --suites 79,80,81,82,83,84,85,86,87,88

The runner starts the named clients itself (``ours`` = ``python -m interop.client``,
``ts-mls`` = ``node interop/ts-mls/server.mjs``) on free loopback ports, or connects to
running ones with ``--connect host:port``. It plays every script of every config over every
cipher suite the assigned clients support and both handshake modes, as the IETF runner does
(RUNNER.md) with its two assignment bugs fixed. Assignments of clients to actors:

* default, the full matrix: every assignment (|P_S|^A per suite S with supporters P_S and
  A actors); a script whose matrix exceeds ``--max-runs`` switches to random mode;
* ``--random``: one seeded random assignment per (suite, handshake mode);
* ``--alternate``: |P_S| assignments per (suite, handshake mode), actor i played by
  supporter (i + k) mod |P_S| for k = 0..|P_S|-1. With ``ours,ts-mls`` these are
  (ours, ts-mls, ours, ...) and (ts-mls, ours, ts-mls, ...): each stack plays every actor
  once and every run mixes stacks. This is the CI subset.

Per config it prints ``NAME: N passed, M failed``, followed by indented notes, unsupported
runs with their reasons, known upstream failures and failed runs. A *known upstream
failure* is a failed run whose error matches an entry of ``interop/known_failures.toml``
for a client of the run at the exact version named there (the client's Name, e.g.
``ts-mls 1.6.4``): it is listed with the entry's reason, counted neither as passed nor as
failed, and counted per entry on a final line. ``--strict`` counts them as failures.
Exit status: 0 if no run failed, 1 if one did, 2 if a config, the known-failures list or a
client could not be used.
"""
from __future__ import annotations

import argparse
import os
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
from interop.runner.known import DEFAULT_PATH, KnownFailure, load_known_failures
from interop.runner.results import (
    ConfigResult,
    RunResult,
    dumps_go,
    go_results,
    known_summary_line,
    summary_lines,
)
from mls_core.ciphersuite import EXPERIMENTAL_PQ_SUITES

DEFAULT_MAX_RUNS = 1000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m interop.run",
        description="Play MLS interop scenario configs against client stacks (see RUNNER.md).",
        epilog="Exit status: 0 if no run failed, 1 if a run failed, 2 if a config, the "
        "known-failures list or a client could not be used. Unsupported runs and known "
        "upstream failures are listed, not counted. CI subset: --clients ours,ts-mls "
        "--alternate --suites 1,2,3.",
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
    parser.add_argument(
        "--suite", "--suites", dest="suites", type=suite_list, default=(), metavar="N[,N...]",
        help="only these cipher suites, e.g. 1 or 1,2,3 (0: every suite a client supports)",
    )
    assignment = parser.add_mutually_exclusive_group()
    assignment.add_argument(
        "--random", action="store_true",
        help="one seeded random assignment per (suite, handshake mode)",
    )
    assignment.add_argument(
        "--alternate", action="store_true",
        help="per (suite, handshake mode) |P| runs, P = the clients supporting the suite: in "
        "run k = 0..|P|-1 actor i is played by client (i + k) mod |P|, so each client plays "
        "every actor once and every run of two or more actors mixes clients",
    )
    parser.add_argument(
        "--experimental-pq", action="store_true",
        help="let our client serve the experimental PQ suites 79-88 (docs/pq.md); implied "
        "when --suites names one of them",
    )
    parser.add_argument("--seed", help="seed for random assignments (default: drawn, printed)")
    parser.add_argument("--public", action="store_true", help="only PublicMessage handshakes")
    parser.add_argument("--private", action="store_true", help="only PrivateMessage handshakes")
    parser.add_argument(
        "--fail-fast", action="store_true", help="skip a script's remaining runs once one fails"
    )
    parser.add_argument(
        "--strict", "--no-known-failures", dest="strict", action="store_true",
        help="count known upstream failures as failures (ignore the known-failures list)",
    )
    parser.add_argument(
        "--known-failures", type=Path, default=DEFAULT_PATH, metavar="TOML",
        help="known upstream failures list (default: interop/known_failures.toml)",
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


def suite_list(text: str) -> tuple[int, ...]:
    """``1,2,3`` -> (1, 2, 3); ``0`` -> () (every suite)."""
    try:
        suites = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of suite numbers: {text!r}") from None
    if any(not 0 <= suite <= 0xFFFF for suite in suites):
        raise argparse.ArgumentTypeError(f"cipher suites are 0..65535: {text!r}")
    return tuple(suite for suite in suites if suite)


def options_from(
    args: argparse.Namespace, seed: str, known: tuple[KnownFailure, ...] = ()
) -> Options:
    modes: tuple[bool, ...] = (True, False)
    if args.private != args.public:
        modes = (bool(args.private),)
    return Options(
        suites=args.suites, modes=modes, random_mode=args.random, alternate=args.alternate,
        seed=seed, max_runs=args.max_runs, fail_fast=args.fail_fast,
        rpc_timeout=args.rpc_timeout, record=args.json is not None,
        progress=_print_progress if args.verbose else None, known=known,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seed = args.seed if args.seed is not None else str(random.SystemRandom().randrange(2**32))
    if args.random:
        print(f"random assignment seed: {seed}", flush=True)
    previous = _on_sigterm(_exit_on_signal)
    try:
        configs = [load_config(path) for path in args.configs]
        known = () if args.strict else load_known_failures(args.known_failures)
        with ExitStack() as stack:
            clients = _clients(args, stack)
            options = options_from(args, seed, known)
            results = [play_and_print(c, clients, options) for c in configs]
            _report_dead_clients(clients)
        known_line = known_summary_line(results)
        if known_line is not None:
            print(known_line, flush=True)
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
    if args.experimental_pq or set(args.suites) & set(EXPERIMENTAL_PQ_SUITES):
        # inherited by the `ours` client it starts: it then serves suites 79-88 too
        os.environ["MLS_EXPERIMENTAL_PQ"] = "1"
    clients = start_clients(kinds, stack, timeout=args.start_timeout, log_dir=args.log_dir)
    for client in clients:
        suites = ",".join(str(s) for s in sorted(client.suites)) or "none"
        print(f"client {client.label}: {client.name} (suites {suites})", file=sys.stderr)
    return clients


def _print_progress(run: RunResult) -> None:
    verdict = run.verdict
    if run.known is not None and verdict == "known":
        verdict = f"known upstream failure ({run.known.id})"
    line = f"{verdict}: {run.script} {run.describe()}"
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
