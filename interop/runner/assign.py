"""Which runs a script expands into (RUNNER.md §1.3), with both Go quirks fixed.

For suite S with supporters P_S (the clients that report S, in client order) and A actors:

* the full matrix is the true Cartesian product P_S^A, first actor most significant
  (fixes quirk 1, combination aliasing), and entry j picks the j-th *supporter* of S, not
  the j-th client overall (fixes quirk 2), so an assigned client always supports S;
* random mode plays one assignment per (suite, handshake mode), each actor drawn uniformly
  from P_S by a generator seeded from (seed, config, script, suite, mode);
* alternate mode plays |P_S| assignments per (suite, handshake mode): in the k-th
  (k = 0..|P_S|-1), actor i (in order of first appearance) is played by supporter
  (i + k) mod |P_S|. Each supporter thus plays every actor once, and with two or more
  supporters and actors every run mixes stacks; with ``ours,ts-mls`` these are the two
  assignments (ours, ts-mls, ours, ...) and (ts-mls, ours, ts-mls, ...).

Runs per script = Σ_S |modes| × |P_S|^A, Σ_S |modes| in random mode, or
Σ_S |modes| × |P_S| in alternate mode. The count is
worked out with an early stop at the cap before anything is enumerated, so a script with
hundreds of actors costs O(log cap) to size, and assignments are produced lazily.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

#: Handshake modes in the Go runner's order: PrivateMessage first (RUNNER.md §1.3).
ALL_MODES: tuple[bool, ...] = (True, False)


@dataclass(frozen=True)
class RunSpec:
    """One run: initial suite, encrypt flag, and the client index of each actor."""

    suite: int
    encrypt: bool
    assignment: tuple[int, ...]


@dataclass(frozen=True)
class ScriptPlan:
    """The runs of one script, sized before any is generated."""

    config: str
    script: str
    actor_count: int
    support: tuple[tuple[int, tuple[int, ...]], ...]  # (suite, supporters), suites ascending
    modes: tuple[bool, ...]
    random: bool
    seed: str
    full_runs: int | None  # None: the full matrix exceeds the cap
    switched: bool  # random because the full matrix exceeded the cap
    alternate: bool = False

    @property
    def run_count(self) -> int:
        if self.random:
            return len(self.support) * len(self.modes)
        if self.alternate:
            return len(self.modes) * sum(len(sup) for _suite, sup in self.support)
        assert self.full_runs is not None
        return self.full_runs

    def runs(self) -> Iterator[RunSpec]:
        """The runs in order: suites ascending, then modes, then assignments."""
        for suite, supporters in self.support:
            for encrypt in self.modes:
                for assignment in self._assignments(suite, encrypt, supporters):
                    yield RunSpec(suite=suite, encrypt=encrypt, assignment=assignment)

    def _assignments(
        self, suite: int, encrypt: bool, supporters: tuple[int, ...]
    ) -> Iterator[tuple[int, ...]]:
        if self.random:
            yield random_assignment(
                self.actor_count,
                supporters,
                run_rng(self.seed, self.config, self.script, suite, encrypt),
            )
        elif self.alternate:
            yield from alternate_assignments(self.actor_count, supporters)
        else:
            yield from itertools.product(supporters, repeat=self.actor_count)


def capped_power(base: int, exponent: int, cap: int) -> int | None:
    """``base ** exponent``, or None once it exceeds ``cap`` (at most log2(cap) steps)."""
    if exponent == 0:
        return 1
    if base <= 1:
        return base
    result = 1
    for _ in range(exponent):
        result *= base
        if result > cap:
            return None
    return result


def count_full_runs(
    actor_count: int, support: Sequence[tuple[int, Sequence[int]]], modes: int, cap: int
) -> int | None:
    """Σ_S modes × |P_S|^A, or None as soon as it exceeds ``cap``."""
    total = 0
    for _suite, supporters in support:
        per_mode = capped_power(len(supporters), actor_count, cap)
        if per_mode is None:
            return None
        total += modes * per_mode
        if total > cap:
            return None
    return total


def random_assignment(
    actor_count: int, supporters: Sequence[int], rng: random.Random
) -> tuple[int, ...]:
    return tuple(rng.choice(supporters) for _ in range(actor_count))


def alternate_assignments(
    actor_count: int, supporters: Sequence[int]
) -> Iterator[tuple[int, ...]]:
    """For k = 0..|P|-1: actor i is played by supporter (i + k) mod |P|."""
    width = len(supporters)
    for shift in range(width):
        yield tuple(supporters[(i + shift) % width] for i in range(actor_count))


def run_rng(seed: str, config: str, script: str, suite: int, encrypt: bool) -> random.Random:
    """A generator that depends only on its inputs (str seeds are hashed with SHA-512)."""
    return random.Random(f"{seed}\x00{config}\x00{script}\x00{suite}\x00{int(encrypt)}")


def suite_support(
    client_suites: Sequence[frozenset[int]], only: int | Sequence[int] = 0
) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """(suite, supporting client indices) for the suites to test, ascending.

    With ``only`` 0 or empty these are the suites at least one client supports (the
    union); otherwise just those suites, whose supporter lists may be empty.
    """
    wanted = ([only] if only else []) if isinstance(only, int) else list(only)
    if wanted:
        suites = sorted(set(wanted))
    else:
        suites = sorted(set().union(*client_suites)) if client_suites else []
    return tuple(
        (suite, tuple(i for i, supported in enumerate(client_suites) if suite in supported))
        for suite in suites
    )


def plan_script(
    *,
    config: str,
    script: str,
    actor_count: int,
    support: Sequence[tuple[int, tuple[int, ...]]],
    modes: Sequence[bool],
    random_mode: bool,
    seed: str,
    max_runs: int,
    alternate: bool = False,
) -> ScriptPlan:
    """Size a script's runs and choose full, alternate or random mode (RUNNER.md §1.3).

    Suites without supporters are left out; the caller reports them as unsupported. Only
    the full matrix is capped: alternate mode plays at most |modes| × Σ_S |P_S| runs.
    """
    playable = tuple((suite, sup) for suite, sup in support if sup)
    full = count_full_runs(actor_count, playable, len(modes), max_runs)
    switched = not random_mode and not alternate and full is None
    return ScriptPlan(
        config=config,
        script=script,
        actor_count=actor_count,
        support=playable,
        modes=tuple(modes),
        random=random_mode or switched,
        seed=seed,
        full_runs=full,
        switched=switched,
        alternate=alternate and not random_mode,
    )


def describe_matrix(plan: ScriptPlan) -> str:
    """The size of a plan's full matrix as text, e.g. ``2 suites x 2 modes x 2^841``."""
    widths = sorted({len(supporters) for _suite, supporters in plan.support})
    sizes = " or ".join(f"{k}^{plan.actor_count}" for k in widths)
    return f"{len(plan.support)} suites x {len(plan.modes)} modes x {sizes} assignments"
