"""Playing runs: one run (RUNNER.md §1.4), then every run of every script of a config.

Runs are strictly sequential because the clients are stateful and shared. Each run starts
with fresh runner state, stops at the first failing step, and always frees every state ID
it still holds; a failing ``Free`` overwrites ``error`` and sets ``failed_step`` to the
number of steps, as main.go does (RUNNER.md §5 item 10). A failed run whose error an entry
of the known-failures list explains, for one of the run's clients, is marked known
(:mod:`interop.runner.known`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from interop.runner.assign import RunSpec, ScriptPlan, describe_matrix, plan_script, suite_support
from interop.runner.clients import Client
from interop.runner.config import Config, Script
from interop.runner.errors import StepError
from interop.runner.known import KnownFailure, match_known
from interop.runner.proto import rpc_table
from interop.runner.results import ConfigResult, RunResult, Unsupported
from interop.runner.steps import RunState, execute_step


@dataclass(frozen=True)
class Options:
    """How runs are chosen and played (the CLI flags of RUNNER.md §1.1 and ours)."""

    suite: int = 0
    suites: tuple[int, ...] = ()  # several suites; overrides ``suite`` when not empty
    modes: tuple[bool, ...] = (True, False)
    random_mode: bool = False
    alternate: bool = False
    seed: str = "0"
    max_runs: int = 1000
    fail_fast: bool = False
    rpc_timeout: float = 120.0
    record: bool = False
    progress: Callable[[RunResult], None] | None = None
    known: tuple[KnownFailure, ...] = ()

    def selected_suites(self) -> tuple[int, ...]:
        """The suites to test; empty means every suite some client supports."""
        if self.suites:
            return self.suites
        return (self.suite,) if self.suite else ()


def play_config(config: Config, clients: Sequence[Client], options: Options) -> ConfigResult:
    """Play every script of ``config`` over its planned runs."""
    result = ConfigResult(name=config.name, scripts=[s.name for s in config.scripts])
    support = suite_support([client.suites for client in clients], options.selected_suites())
    if not support:
        result.notes.append("no cipher suite is supported by any client")
    for script in config.scripts:
        for suite, supporters in support:
            if not supporters:
                result.not_played.extend(
                    Unsupported(script.name, f"no client supports cipher suite {suite}",
                                suite, encrypt)
                    for encrypt in options.modes
                )
        plan = plan_script(
            config=config.name, script=script.name, actor_count=len(script.actors),
            support=support, modes=options.modes, random_mode=options.random_mode,
            seed=options.seed, max_runs=options.max_runs, alternate=options.alternate,
        )
        if plan.switched:
            result.notes.append(
                f"{script.name}: the full matrix ({describe_matrix(plan)}) exceeds "
                f"--max-runs {options.max_runs}; playing one random assignment per "
                f"(suite, mode), seed {options.seed}"
            )
        result.runs.extend(play_script(script, plan, clients, options))
    return result


def play_script(
    script: Script, plan: ScriptPlan, clients: Sequence[Client], options: Options
) -> list[RunResult]:
    """Play a script's runs; with ``fail_fast`` stop after its first failed run."""
    results = []
    for spec in plan.runs():
        run = execute_run(script, spec, clients, options)
        results.append(run)
        if options.progress is not None:
            options.progress(run)
        if options.fail_fast and run.verdict == "failed":
            break
    return results


def execute_run(
    script: Script, spec: RunSpec, clients: Sequence[Client], options: Options
) -> RunResult:
    """One run: fresh state, steps in order until the first error, then cleanup."""
    assigned = {
        actor: clients[index] for actor, index in zip(script.actors, spec.assignment, strict=True)
    }
    common = frozenset({spec.suite}).union(*(c.suites for c in assigned.values()))
    for client in assigned.values():
        common &= client.suites
    state = RunState(
        script=script, clients=assigned, suite=spec.suite, encrypt=spec.encrypt,
        common_suites=tuple(sorted(common)), rpc_timeout=options.rpc_timeout,
        record=options.record,
    )
    result = RunResult(
        script=script.name, suite=spec.suite, encrypt=spec.encrypt,
        actors={actor: client.label for actor, client in assigned.items()},
        actor_names={actor: client.name for actor, client in assigned.items()},
        transcript=state.transcript,
    )
    for step in script.steps:
        try:
            execute_step(state, step)
        except StepError as exc:
            result.error, result.failed_step = str(exc), step.index
            result.failed_step_json, result.unsupported = step.raw, exc.unsupported
            break
    _free_states(state, result)
    if result.verdict == "failed":
        result.known = match_known(
            options.known, result.error, [(c.kind, c.name) for c in assigned.values()]
        )
    return result


def _free_states(state: RunState, result: RunResult) -> None:
    """Free every state ID in the state table; failures overwrite error and failed_step."""
    free = rpc_table()["Free"].request
    for actor, state_id in state.states.items():
        try:
            state.client(actor).call("Free", free(state_id=state_id), state.rpc_timeout)
        except StepError as exc:
            if result.failed_step is None:
                result.unsupported = None  # a run that played through is not "unsupported"
            result.error, result.failed_step = str(exc), len(state.script.steps)
