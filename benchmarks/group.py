"""Scaling of the MLS group layer (RFC 9420 §7, §12) with the number of members.

``python3 -m benchmarks.group [--sizes 16,128,1000,10000] [--suite 1] [--quick]``

``--suite`` may name an experimental post-quantum suite (79-88, docs/pq.md), which is
then enabled for the run; docs/benchmarks.md has their figures at n = 16, 128, 1,000.

For each group size n, in a fresh process (so that peak memory is per size):

* **build** — one creator adds n - 1 members by KeyPackage, ``--batch`` Adds per Commit
  (Add-only Commits need no path, §12.4), and one of them (B) joins from the last
  Welcome. Reported: KeyPackage generation, the creator's commits, B's join.
* **first path commit** — the creator's first empty full-path Commit after the mass add,
  created and processed by B. Every parent node is still blank, so the UpdatePath
  encrypts to every other member: O(n) HPKE by protocol design (§7.6), not a defect.
* **steady state** — the tree as it is once every member has committed at least once:
  every parent node non-blank, no unmerged leaves. It is synthesized by applying, on the
  creator's tree, :func:`~mls_core.treekem.prepare_update_path` (the path-merging half
  of a Commit; its HPKE half only matters to the phantom members) for one leaf under each
  level-1 node, the creator last; the creator's group is rebuilt on that tree as
  ``Group.create`` does. Everything after is the real protocol: a new member J is added
  and joins from the Welcome (validating the whole tree: signatures, parent hashes,
  §12.4.3.1), then the creator makes empty full-path commits that J processes, and
  1 KiB application messages go from the creator to J (encrypt + decrypt).

The closing lines give the steady-state commit create/process cost at the largest size
against the size before it (10,000 vs 1,000 by default): TreeKEM makes both O(log n),
so the target is a ratio within 1.5x. Timings of separate processes on a shared machine
differ by a third from run to run, so the ratio comes from one more process holding both
groups and timing their commits alternately, round by round.

``--profile N`` instead builds the steady-state group of N members and prints cProfile
tables of a new member's join, commit creation and processing. Timing is
time.perf_counter; no pytest.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mls_core.ciphersuite import (
    EXPERIMENTAL_PQ_SUITES,
    CipherSuite,
    enable_experimental_pq,
    get_suite,
)
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.epoch import EpochState
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate, create_key_package
from mls_core.key_schedule import GroupContext, confirmation_tag, secrets_from_epoch_secret
from mls_core.messages import KeyPackage
from mls_core.proposals import Add
from mls_core.ratchet_tree import RatchetTree
from mls_core.transcript import interim_transcript_hash
from mls_core.treekem import TreeKEMPrivate, prepare_update_path

NOW = 1_700_000_000
KIB = bytes(range(256)) * 4
DEFAULT_SIZES = (16, 128, 1000, 10_000)
QUICK_SIZES = (16, 128)
TARGET_RATIO = 1.5


# --------------------------------------------------------------------------- helpers


@dataclass
class Timer:
    """Accumulates wall time of ``with timer.add(name):`` blocks."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def add(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def peak_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Joiner:
    """A prospective member: KeyPackage, its private keys and signature key."""

    key_package: KeyPackage
    private: KeyPackagePrivate
    signature_priv: bytes


def new_joiner(suite: CipherSuite, name: bytes) -> Joiner:
    sig_priv, _ = suite.generate_signature_key_pair()
    kp, priv = create_key_package(suite, Credential.basic(name), sig_priv, now=NOW)
    return Joiner(kp, priv, sig_priv)


# --------------------------------------------------------------------------- building


@dataclass
class BuiltGroup:
    creator: Group
    creator_sig: bytes
    member: Group                      # B, joined from the last Add batch's Welcome
    sig_privs: dict[int, bytes]        # leaf index -> signature private key, every member


def build_group(suite: CipherSuite, n: int, batch: int, timer: Timer) -> BuiltGroup:
    """A group of ``n`` members: the creator plus n - 1 members added ``batch`` per Commit
    (no path), the last of whom (B) joins from its Welcome."""
    if n < 2:
        raise SystemExit("group sizes must be at least 2")
    with timer.add("build_kp"):
        creator_sig, _ = suite.generate_signature_key_pair()
        joiners = [new_joiner(suite, b"member-%d" % i) for i in range(1, n)]
    by_sig = {suite.signature_public_key(j.signature_priv): j.signature_priv for j in joiners}
    by_sig[suite.signature_public_key(creator_sig)] = creator_sig
    with timer.add("build_commits"):
        creator = Group.create(suite.id, Credential.basic(b"creator"), creator_sig,
                               group_id=b"benchmark-group", now=NOW)
        welcome = None
        for start in range(0, len(joiners), batch):
            chunk = joiners[start:start + batch]
            result = creator.commit([Add(j.key_package) for j in chunk], force_path=False,
                                    now=NOW)
            creator.merge_pending_commit()
            welcome = result.welcome
    assert welcome is not None
    last = joiners[-1]
    with timer.add("build_join"):
        member = Group.join(welcome, last.key_package, last.private, now=NOW)
    sig_privs = {m.index: by_sig[m.signature_key] for m in creator.members}
    return BuiltGroup(creator, creator_sig, member, sig_privs)


def fill_tree(tree: RatchetTree, group_id: bytes, sig_privs: dict[int, bytes],
              own: int) -> TreeKEMPrivate:
    """Make every parent node non-blank (see the module docstring): merge a fresh path
    for one member under each level-1 node, ``own`` last. Returns ``own``'s keys."""
    for pair in range(0, tree.n_leaves, 2):
        if own in (pair, pair + 1):
            continue
        leaf = next((i for i in (pair, pair + 1) if tree.leaf(i) is not None), None)
        if leaf is not None:
            prepare_update_path(tree, leaf, sig_privs[leaf], group_id)
    return prepare_update_path(tree, own, sig_privs[own], group_id).private


def regroup(old: Group, tree: RatchetTree, private: TreeKEMPrivate, signature_priv: bytes,
            config: GroupConfig) -> Group:
    """``old``'s group continued over ``tree`` with fresh epoch secrets, as
    ``Group.create`` starts a group (the benchmark's only use of internals)."""
    suite, gc = old.suite, old.context
    context = GroupContext(gc.version, gc.cipher_suite, gc.group_id, gc.epoch + 1,
                           tree.tree_hash(), gc.confirmed_transcript_hash, gc.extensions)
    secrets = secrets_from_epoch_secret(suite, os.urandom(suite.hash_length))
    tag = confirmation_tag(suite, secrets.confirmation_key, gc.confirmed_transcript_hash)
    state = EpochState.build(suite, context, tree, old.own_leaf_index, signature_priv, private,
                             secrets, interim_transcript_hash(
                                 suite, gc.confirmed_transcript_hash, tag),
                             tag, config.max_retained_keys, config.max_forward_distance)
    return Group(state, config)


def steady_state_group(suite: CipherSuite, built: BuiltGroup) -> Group:
    creator = built.creator
    tree = creator.tree  # a copy
    private = fill_tree(tree, creator.group_id, built.sig_privs, creator.own_leaf_index)
    return regroup(creator, tree, private, built.creator_sig, GroupConfig())


def add_joiner(suite: CipherSuite, committer: Group) -> tuple[Joiner, bytes]:
    """The committer adds a new member J by KeyPackage: (J, the Welcome)."""
    j = new_joiner(suite, b"joiner")
    result = committer.commit([Add(j.key_package)], now=NOW)
    committer.merge_pending_commit()
    assert result.welcome is not None
    return j, result.welcome


def add_and_join(suite: CipherSuite, committer: Group) -> tuple[float, float, Group, int]:
    """The committer adds a new member J, who joins from the Welcome: (join s, join CPU s,
    J, bytes). CPU time tells the join's own cost apart from a busy machine's."""
    j, welcome = add_joiner(suite, committer)
    cpu = time.process_time()
    seconds, joined = timed(lambda: Group.join(welcome, j.key_package, j.private, now=NOW))
    return seconds, time.process_time() - cpu, joined, len(welcome)


def commit_round(sender: Group, receiver: Group) -> tuple[float, float, int]:
    """One empty full-path Commit: (create s, process s, Commit bytes)."""
    t_create, result = timed(lambda: sender.commit(now=NOW))
    sender.merge_pending_commit()
    t_process, _ = timed(lambda: receiver.process(result.commit, now=NOW))
    assert receiver.epoch_authenticator == sender.epoch_authenticator
    return t_create, t_process, len(result.commit)


def app_rate(sender: Group, receiver: Group, seconds: float) -> float:
    """1 KiB application messages per second, encrypt + decrypt."""
    count, spent = 0, 0.0
    while spent < seconds or count < 20:
        start = time.perf_counter()
        for _ in range(20):
            receiver.process(sender.encrypt(KIB))
        spent += time.perf_counter() - start
        count += 20
    return count / spent


# --------------------------------------------------------------------------- one size


def run_size(n: int, suite_id: int, batch: int, reps: int) -> dict[str, float]:
    """Every figure of one group size (run in its own process)."""
    suite = get_suite(suite_id)
    rss_start = peak_rss_mib()
    timer = Timer()
    built = build_group(suite, n, batch, timer)
    out: dict[str, float] = {"n": n, **timer.seconds}
    out["build"] = sum(timer.seconds.values())

    create, process, size = commit_round(built.creator, built.member)
    out |= {"first_create": create, "first_process": process, "first_bytes": size}

    start = time.perf_counter()
    creator = steady_state_group(suite, built)
    out["fill"] = time.perf_counter() - start
    del built  # the old epochs' trees: the peak figure is the steady state's
    out["kp_bytes"] = len(new_joiner(suite, b"joiner").key_package.encode())
    out["join"], out["join_cpu"], member, out["welcome_bytes"] = add_and_join(suite, creator)
    commit_round(creator, member)  # warm-up: J now holds its path keys, as members do
    rounds = [commit_round(creator, member) for _ in range(reps)]
    out["create"] = min(r[0] for r in rounds)  # best of: the machine may be shared
    out["process"] = min(r[1] for r in rounds)
    out["commit_bytes"] = rounds[-1][2]
    out["app_rate"] = app_rate(creator, member, 0.5)
    out["rss_start"] = rss_start
    out["rss_peak"] = peak_rss_mib()
    return out


def steady_pair(suite: CipherSuite, n: int, batch: int) -> tuple[Group, Group]:
    """(creator, J) of a steady-state group of n members plus J, warmed up."""
    built = build_group(suite, n, batch, Timer())
    creator = steady_state_group(suite, built)
    del built
    _, _, member, _ = add_and_join(suite, creator)
    commit_round(creator, member)
    return creator, member


def run_ratio(small: int, big: int, suite_id: int, batch: int,
              reps: int) -> dict[str, float]:
    """Steady-state commit cost at ``big`` over ``small``, both groups in this process
    and their rounds alternated, so that a burst of load skews neither side."""
    suite = get_suite(suite_id)
    pairs = {n: steady_pair(suite, n, batch) for n in (small, big)}
    rounds: dict[int, list[tuple[float, float, int]]] = {small: [], big: []}
    for _ in range(reps):
        for n, (creator, member) in pairs.items():
            rounds[n].append(commit_round(creator, member))
    out: dict[str, float] = {"small": small, "big": big}
    for i, key in enumerate(("create", "process")):
        for stat, fn in (("best", min), ("median", statistics.median)):
            out[f"{key}_{stat}"] = (fn(r[i] for r in rounds[big])
                                    / fn(r[i] for r in rounds[small]))
    return out


def run_worker(flags: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Run this module with ``flags`` in a fresh process; its last line is JSON."""
    cmd = [sys.executable, "-m", "benchmarks.group", *flags, "--suite", str(args.suite),
           "--batch", str(args.batch), "--reps", str(args.reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{' '.join(flags)} failed (exit {proc.returncode})")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- output

COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (key, header, format)
    ("n", "n", "{:.0f}"),
    ("build", "build s", "{:.2f}"),
    ("build_kp", "(KPs s", "{:.2f}"),
    ("build_commits", "commits s", "{:.2f}"),
    ("build_join", "join s)", "{:.2f}"),
    ("first_create", "1st create s", "{:.3f}"),
    ("first_process", "1st proc s", "{:.3f}"),
    ("fill", "fill s", "{:.2f}"),
    ("join", "join ms", "{:.1f}"),
    ("join_cpu", "(CPU ms)", "{:.1f}"),
    ("create", "create ms", "{:.2f}"),
    ("process", "process ms", "{:.2f}"),
    ("app_rate", "app msg/s", "{:,.0f}"),
    ("rss_peak", "peak MiB", "{:.0f}"),
)
MS_KEYS = {"join", "join_cpu", "create", "process"}


def format_row(r: dict[str, float]) -> str:
    cells = []
    for key, header, fmt in COLUMNS:
        value = r[key] * 1000 if key in MS_KEYS else r[key]
        cells.append(f"{fmt.format(value):>{max(len(header), 9)}}")
    return " ".join(cells)


def print_header(suite_id: int, batch: int) -> None:
    print(f"MLS group layer, cipher suite {suite_id}, {batch} Adds per build Commit")
    print("1st = the first empty path Commit after the mass add (all parents blank: it "
          "encrypts to every member)")
    print("join/create/process = steady state (every parent node set); join = a new member "
          "from a Welcome (wall time, then this process's CPU time);")
    print("create/process = empty full-path Commit, best of --reps; app = 1 KiB "
          "encrypt+decrypt")
    header = " ".join(f"{h:>{max(len(h), 9)}}" for _, h, _ in COLUMNS)
    print(header)
    print("-" * len(header), flush=True)


def print_sizes(results: list[dict[str, float]]) -> None:
    print()
    print(f"KeyPackage {results[0]['kp_bytes']:,.0f} B; message sizes: " + "; ".join(
        f"n={r['n']:.0f}: 1st Commit {r['first_bytes'] / 1024:,.1f} KiB, Commit "
        f"{r['commit_bytes']:,.0f} B, Welcome {r['welcome_bytes'] / 1024:,.1f} KiB"
        for r in results))
    print("peak RSS includes the interpreter (" +
          ", ".join(f"{r['rss_start']:.0f}" for r in results[:1]) + " MiB at start)")


def print_ratios(results: list[dict[str, float]], ratio: dict[str, float]) -> bool:
    """Steady-state commit create/process at the largest size vs the one before
    (``ratio``, from :func:`run_ratio`), then the O(n) first commit for contrast."""
    small, big = results[-2], results[-1]
    ok = True
    print()
    print(f"steady-state commit cost, n={big['n']:.0f} / n={small['n']:.0f}, both groups in "
          "one process, rounds alternated:")
    for key in ("create", "process"):
        best, median = ratio[f"{key}_best"], ratio[f"{key}_median"]
        good = best <= TARGET_RATIO
        ok &= good
        print(f"  commit {key:<8} {best:.2f}x best of rounds, {median:.2f}x median   "
              f"target <= {TARGET_RATIO}x: {'ok' if good else 'MISSED'}")
    first = big["first_create"] / small["first_create"]
    print(f"  1st commit create after the mass add: {first:.2f}x (O(n) by design)")
    return ok


# --------------------------------------------------------------------------- profile


def profile(n: int, suite_id: int, batch: int, rows: int) -> None:
    """cProfile of a new member's join from the Welcome (which validates the whole tree,
    §12.4.3.1) and of steady-state commit creation and processing at ``n`` members."""
    suite = get_suite(suite_id)
    built = build_group(suite, n, batch, Timer())
    creator = steady_state_group(suite, built)
    del built
    j, welcome = add_joiner(suite, creator)
    join = cProfile.Profile()
    join.enable()
    member = Group.join(welcome, j.key_package, j.private, now=NOW)
    join.disable()
    commit_round(creator, member)  # warm-up, as in run_size
    create, process = cProfile.Profile(), cProfile.Profile()
    create.enable()
    result = creator.commit(now=NOW)
    create.disable()
    creator.merge_pending_commit()
    process.enable()
    member.process(result.commit, now=NOW)
    process.disable()
    for what, prof in (("join", join), ("commit create", create), ("commit process", process)):
        for order in ("tottime", "cumulative"):
            print(f"\n===== {what} at n={n}, by {order} =====")
            pstats.Stats(prof, stream=sys.stdout).strip_dirs().sort_stats(order) \
                .print_stats(rows)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.group", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                    help="comma-separated group sizes (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} only")
    ap.add_argument("--suite", type=int, default=1, help="cipher suite id (default 1)")
    ap.add_argument("--batch", type=int, default=1000, help="Adds per build Commit")
    ap.add_argument("--reps", type=int, default=15,
                    help="steady-state commits timed per size (default %(default)s)")
    ap.add_argument("--profile", type=int, metavar="N",
                    help="profile a join and a commit at N members")
    ap.add_argument("--rows", type=int, default=30, help="rows per profile table")
    # workers, each printing one JSON line: one size's figures; the ratio of two sizes
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ratio", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.suite in EXPERIMENTAL_PQ_SUITES:  # naming one is the opt-in (docs/pq.md)
        enable_experimental_pq()
    if args.one is not None:
        print(json.dumps(run_size(args.one, args.suite, args.batch, args.reps)))
        return 0
    if args.ratio is not None:
        small, big = (int(s) for s in args.ratio.split(","))
        print(json.dumps(run_ratio(small, big, args.suite, args.batch, args.reps)))
        return 0
    if args.profile is not None:
        profile(args.profile, args.suite, args.batch, args.rows)
        return 0
    sizes = QUICK_SIZES if args.quick else tuple(int(s) for s in args.sizes.split(","))
    start = time.perf_counter()
    print_header(args.suite, args.batch)
    results = []
    for n in sizes:
        results.append(run_worker(["--one", str(n)], args))
        print(format_row(results[-1]), flush=True)
    print_sizes(results)
    ok = True
    if len(sizes) >= 2:
        ratio = run_worker(["--ratio", f"{sizes[-2]},{sizes[-1]}"], args)
        ok = print_ratios(results, ratio)
    print(f"\n({time.perf_counter() - start:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
