"""Run results, the summary lines, and the Go runner's results JSON (RUNNER.md §1.5).

Each run is *passed* (no failed step), *unsupported* (the first error was a client's
``UNIMPLEMENTED``, or the run needed a second common cipher suite that the assigned clients
lack), *known* (a failure explained by an entry of ``interop/known_failures.toml``, see
:mod:`interop.runner.known`) or *failed*. Suites that no client supports give unsupported
entries with no run. Unsupported and known runs are neither passed nor failed: the summary
line counts only the others and lists them below it with their reasons.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from interop.runner.known import KnownFailure
from interop.runner.proto import render
from interop.runner.steps import TranscriptEntry

#: At most this many kinds of failure (script, step, error) are listed under a config.
FAILURE_LINES = 10


@dataclass
class RunResult:
    """The outcome of one run, with the fields of the Go runner's result object."""

    script: str
    suite: int
    encrypt: bool
    actors: dict[str, str]  # actor -> client label
    actor_names: dict[str, str]  # actor -> the client's Name (the JSON's "actors")
    transcript: list[TranscriptEntry] = field(default_factory=list)
    error: str = ""
    failed_step: int | None = None
    failed_step_json: str = ""
    unsupported: str | None = None
    known: KnownFailure | None = None

    @property
    def verdict(self) -> str:
        """``passed``, ``unsupported``, ``known`` (upstream failure) or ``failed``."""
        if self.failed_step is None:
            return "passed"
        if self.unsupported:
            return "unsupported"
        return "known" if self.known is not None else "failed"

    def describe(self) -> str:
        """``suite=1 private [alice=ours,bob=ts-mls]``: what was assigned."""
        mode = "private" if self.encrypt else "public"
        actors = ",".join(f"{actor}={label}" for actor, label in self.actors.items())
        if len(actors) > 120:
            actors = actors[:117] + "..."
        return f"suite={self.suite} {mode} [{actors}]"


@dataclass
class Unsupported:
    """Runs that were not played, or not playable, and why."""

    script: str
    reason: str
    suite: int
    encrypt: bool
    count: int = 1


@dataclass
class ConfigResult:
    """Every result of one config file, in execution order."""

    name: str
    scripts: list[str]
    runs: list[RunResult] = field(default_factory=list)
    not_played: list[Unsupported] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(1 for run in self.runs if run.verdict == verdict)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def unsupported(self) -> list[Unsupported]:
        """Unsupported runs and unplayable suites, in order."""
        found = [
            Unsupported(run.script, run.unsupported or "", run.suite, run.encrypt)
            for run in self.runs
            if run.verdict == "unsupported"
        ]
        return self.not_played + found


def summary_lines(result: ConfigResult) -> list[str]:
    """``NAME: N passed, M failed``, then indented notes, unsupported and failed groups."""
    lines = [f"{result.name}: {result.count('passed')} passed, {result.failed} failed"]
    lines.extend(f"  note: {note}" for note in result.notes)
    unsupported: dict[tuple[str, str], list[tuple[int, bool, int]]] = {}
    for item in result.unsupported():
        unsupported.setdefault((item.script, item.reason), []).append(
            (item.suite, item.encrypt, item.count)
        )
    for (script, reason), group in unsupported.items():
        lines.append(f"  unsupported: {script}: {_span(group)}: {reason}")
    lines.extend(_known_lines(result.runs))
    failed: dict[tuple[str, int | None, str], list[RunResult]] = {}
    for run in result.runs:
        if run.verdict == "failed":
            failed.setdefault((run.script, run.failed_step, run.error), []).append(run)
    for (script, step, error), runs in itertools.islice(failed.items(), FAILURE_LINES):
        span = _span([(run.suite, run.encrypt, 1) for run in runs])
        lines.append(
            f"  failed: {script}: {span} at step {step}: {error}; "
            f"first: {runs[0].describe()}"
        )
    if len(failed) > FAILURE_LINES:
        lines.append(f"  ... and {len(failed) - FAILURE_LINES} more kinds of failure")
    return lines


def _known_lines(runs: Sequence[RunResult]) -> list[str]:
    """``known upstream failure: SCRIPT: SPAN: REASON``, one line per script and entry."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for run in runs:
        if run.known is not None and run.verdict == "known":
            groups.setdefault((run.script, run.known.id), []).append(run)
    lines = []
    for (script, _id), group in groups.items():
        known = group[0].known
        assert known is not None
        span = _span([(run.suite, run.encrypt, 1) for run in group])
        lines.append(f"  known upstream failure: {script}: {span}: {known.reason}")
    return lines


def known_counts(results: Sequence[ConfigResult]) -> dict[KnownFailure, int]:
    """How many runs each known-failure entry explained, in order of first use."""
    counts: dict[KnownFailure, int] = {}
    for result in results:
        for run in result.runs:
            if run.known is not None and run.verdict == "known":
                counts[run.known] = counts.get(run.known, 0) + 1
    return counts


def known_summary_line(results: Sequence[ConfigResult]) -> str | None:
    """One final line counting known upstream failures per entry, or None if there were none."""
    counts = known_counts(results)
    if not counts:
        return None
    total = sum(counts.values())
    parts = ", ".join(
        f"{entry.id} ({entry.version}) {count}" for entry, count in counts.items()
    )
    return (
        f"known upstream failures: {total} run{'s' if total != 1 else ''}, not counted "
        f"(--strict counts them as failed): {parts}"
    )


def _span(group: Sequence[tuple[int, bool, int]]) -> str:
    """``3 runs (suite 1,2, private/public)`` for (suite, encrypt, count) entries."""
    count = sum(n for _suite, _encrypt, n in group)
    suites = ",".join(str(s) for s in sorted({suite for suite, _e, _n in group}))
    modes = "/".join(
        name for flag, name in ((True, "private"), (False, "public"))
        if any(encrypt == flag for _s, encrypt, _n in group)
    )
    return f"{count} run{'s' if count != 1 else ''} (suite {suites}, {modes})"


def go_results(result: ConfigResult) -> dict[str, object]:
    """The Go runner's results document: ``{"scripts": {name: [run, ...]}}``."""
    scripts: dict[str, list[object]] = {name: [] for name in sorted(result.scripts)}
    for run in result.runs:
        scripts[run.script].append(_go_run(run))
    return {"scripts": scripts}


def _go_run(run: RunResult) -> dict[str, object]:
    """One run object: struct fields in main.go's declaration order, maps sorted."""
    out: dict[str, object] = {
        "cipher_suite": run.suite,
        "actors": dict(sorted(run.actor_names.items())),
        "encrypt_flag": run.encrypt,
    }
    if run.transcript:
        out["transcript"] = [
            {
                "actor": entry.actor,
                "rpc": entry.rpc,
                "request": render(entry.request),
                "response": render(entry.response),
            }
            for entry in run.transcript
        ]
    if run.error:
        out["error"] = run.error
    if run.failed_step is not None:
        out["failed_step"] = run.failed_step
    if run.failed_step_json:
        out["failed_step_json"] = run.failed_step_json
    if run.known is not None and run.verdict == "known":
        # Not in main.go's result struct: marks a failure the known-failures list explains.
        out["known_failure"] = {
            "id": run.known.id, "client": run.known.client, "version": run.known.version,
            "reason": run.known.reason, "link": run.known.link,
        }
    return out


def dumps_go(document: object) -> str:
    """Go's ``json.MarshalIndent(v, "", "  ")`` plus newline, including HTML escaping."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    for char, escape in (
        ("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
        ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text + "\n"
