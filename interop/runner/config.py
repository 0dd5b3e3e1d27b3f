"""Scenario config files (RUNNER.md §2).

A config is ``{"scripts": {"<name>": [<step>, ...], ...}}``. Each step keeps its raw JSON
text for ``failed_step_json`` (§1.4); its parameters are decoded only when the step runs
(:mod:`interop.runner.params`), so a bad parameter fails that run at that step.

Deviations from the Go runner, all of which turn a crash or a late failure into an early,
clear error: a missing, non-string or unknown ``action`` and a non-string actor name in a
field that defines the actor set make the whole file a :class:`ConfigError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from interop.runner.errors import ConfigError

#: The 23 actions of main.go (RUNNER.md §2.6).
ACTION_NAMES: frozenset[str] = frozenset({
    "createGroup", "createKeyPackage", "joinGroup", "externalJoin", "installExternalPSK",
    "groupInfo", "addProposal", "updateProposal", "removeProposal", "externalPSKProposal",
    "resumptionPSKProposal", "groupContextExtensionsProposal", "fullCommit", "commit",
    "handleCommit", "handlePendingCommit", "protect", "unprotect", "reinit", "branch",
    "newMemberAddProposal", "addExternalSigner", "externalSignerProposal",
})

#: Fields besides ``actor`` whose names join the actor set, per action (RUNNER.md §2.3).
_ACTOR_SET_FIELDS: Mapping[str, tuple[str, ...]] = {
    "createGroup": ("members",),
    "externalJoin": ("joiner",),
    "newMemberAddProposal": ("joiner",),
    "addExternalSigner": ("signer",),
}

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def lookup(fields: Mapping[str, object], key: str) -> object | None:
    """Go ``encoding/json`` key matching: case-insensitive, the last matching key wins.

    JSON ``null`` leaves a Go field at its zero value, so it reads as missing (None).
    """
    folded = key.lower()
    found: object | None = None
    for name, value in fields.items():
        if name == key or name.lower() == folded:
            found = value
    return found


@dataclass(frozen=True)
class Step:
    """One step of a script: its position, action, actor and raw JSON text."""

    index: int
    action: str
    actor: str
    raw: str
    fields: Mapping[str, object]


@dataclass(frozen=True)
class Script:
    """A named list of steps and its actor set, in order of first appearance (§2.3)."""

    name: str
    steps: tuple[Step, ...]
    actors: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    """A parsed config file; ``name`` is the file's stem (``welcome_join``)."""

    name: str
    scripts: tuple[Script, ...]


def load_config(path: Path) -> Config:
    """Read and parse one config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Failure to read config file {path} - {exc}") from exc
    return parse_config(text, name=path.stem)


def parse_config(text: str, *, name: str = "config") -> Config:
    """Parse config text; scripts keep file order (a duplicated name keeps the last)."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Failure to parse config file {name} - {exc}") from exc
    start = _skip(text, 0)
    if text[start] != "{":
        raise ConfigError(f"config {name}: the top level must be a JSON object")
    scripts: dict[str, tuple[Step, ...]] = {}
    for key, begin, _end in _members(text, start):
        if key.lower() == "scripts":
            scripts = _parse_scripts(text, begin, name)
    return Config(
        name=name,
        scripts=tuple(
            Script(name=script, steps=steps, actors=actor_set(steps))
            for script, steps in scripts.items()
        ),
    )


def actor_set(steps: tuple[Step, ...]) -> tuple[str, ...]:
    """The actor set of a script in order of first appearance (RUNNER.md §2.3)."""
    seen: dict[str, None] = {}
    for step in steps:
        if step.actor:
            seen[step.actor] = None
        for key in _ACTOR_SET_FIELDS.get(step.action, ()):
            for actor in _names(step, key):
                if actor:
                    seen[actor] = None
    return tuple(seen)


def _names(step: Step, key: str) -> tuple[str, ...]:
    value = lookup(step.fields, key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) or v is None for v in value):
        return tuple(v for v in value if isinstance(v, str))
    raise ConfigError(f"{key} must name actors as strings")


def _parse_scripts(text: str, pos: int, config: str) -> dict[str, tuple[Step, ...]]:
    if text.startswith("null", pos):
        return {}
    if text[pos] != "{":
        raise ConfigError(f"config {config}: scripts must be an object of step lists")
    scripts: dict[str, tuple[Step, ...]] = {}
    for script, begin, _end in _members(text, pos):
        scripts[script] = _parse_steps(text, begin, f"config {config}, script {script}")
    return scripts


def _parse_steps(text: str, pos: int, where: str) -> tuple[Step, ...]:
    if text.startswith("null", pos):
        return ()
    if text[pos] != "[":
        raise ConfigError(f"{where}: a script must be a list of steps")
    return tuple(
        _parse_step(text[begin:end], value, index, where)
        for index, (value, begin, end) in enumerate(_elements(text, pos))
    )


def _parse_step(raw: str, value: object, index: int, where: str) -> Step:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}, step {index}: a step must be a JSON object")
    action = lookup(value, "action")
    if action is None:
        raise ConfigError(f"{where}, step {index}: missing action")
    if not isinstance(action, str):
        raise ConfigError(f"{where}, step {index}: action must be a string")
    if action not in ACTION_NAMES:
        raise ConfigError(f"{where}, step {index}: Unknown action: {action}")
    actor = lookup(value, "actor")
    if actor is not None and not isinstance(actor, str):
        raise ConfigError(f"{where}, step {index}: actor must be a string")
    step = Step(index=index, action=action, actor=actor or "", raw=raw, fields=value)
    try:
        for key in _ACTOR_SET_FIELDS.get(action, ()):
            _names(step, key)
    except ConfigError as exc:
        raise ConfigError(f"{where}, step {index} ({action}): {exc}") from exc
    return step


def _skip(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def _value(text: str, pos: int) -> tuple[object, int, int]:
    """Decode the JSON value at ``pos``; return it with its span (text is valid JSON)."""
    begin = _skip(text, pos)
    value, end = _DECODER.raw_decode(text, begin)
    return value, begin, end


def _members(text: str, pos: int) -> Iterator[tuple[str, int, int]]:
    """Yield (key, value start, value end) for each member of the object at ``pos``."""
    pos = _skip(text, pos + 1)
    if text[pos] == "}":
        return
    while True:
        key, _begin, pos = _value(text, pos)
        pos = _skip(text, pos) + 1  # the ':'
        _value_obj, begin, end = _value(text, pos)
        yield str(key), begin, end
        pos = _skip(text, end)
        if text[pos] == "}":
            return
        pos += 1  # the ','


def _elements(text: str, pos: int) -> Iterator[tuple[object, int, int]]:
    """Yield (value, start, end) for each element of the array at ``pos``."""
    pos = _skip(text, pos + 1)
    if text[pos] == "]":
        return
    while True:
        value, begin, end = _value(text, pos)
        yield value, begin, end
        pos = _skip(text, end)
        if text[pos] == "]":
            return
        pos += 1
