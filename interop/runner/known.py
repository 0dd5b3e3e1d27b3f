"""Known upstream failures: runs that fail because of a documented bug in another stack.

The list lives in ``interop/known_failures.toml``. Each ``[[failure]]`` entry names

* ``id``: a short stable name, used in the summary (``ts-mls-external-senders``);
* ``client``: the stack it concerns, the runner's kind (``ts-mls``), or for clients given
  with ``--connect`` the first word of their ``Name``;
* ``version``: the exact ``Name`` that stack answers to the Name RPC (``ts-mls 1.6.4``), so
  that upgrading the stack re-exposes the entry's failures instead of hiding them;
* ``error``: a regular expression searched for in the run's error text;
* ``reason``: one sentence, citing the RFC 9420 section the stack deviates from;
* ``link``: the upstream bug, fix or the README section that documents it.

A failed run is a *known upstream failure* when its error matches an entry and one of its
assigned clients is that entry's stack at that version. Known failures are never counted
as passed and are not counted as failed either; ``--strict`` turns the list off.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from interop.runner.errors import ConfigError

#: The list the runner uses unless told otherwise.
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "known_failures.toml"

_FIELDS = ("id", "client", "version", "error", "reason", "link")


@dataclass(frozen=True)
class KnownFailure:
    """One documented upstream bug and the error text it produces."""

    id: str
    client: str
    version: str
    error: re.Pattern[str]
    reason: str
    link: str

    def applies_to(self, kind: str, name: str) -> bool:
        """True for a client of this entry's stack whose Name is exactly ``version``."""
        return kind == self.client and name == self.version

    def matches(self, error: str, clients: Iterable[tuple[str, str]]) -> bool:
        """True if ``error`` matches and a (kind, Name) of the run's clients applies."""
        return bool(self.error.search(error)) and any(
            self.applies_to(kind, name) for kind, name in clients
        )


def load_known_failures(path: Path = DEFAULT_PATH) -> tuple[KnownFailure, ...]:
    """Read and check a known-failures file; any problem is a :class:`ConfigError`."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read known failures {path}: {exc}") from exc
    return parse_known_failures(document, where=str(path))


def parse_known_failures(
    document: Mapping[str, object], *, where: str = "known failures"
) -> tuple[KnownFailure, ...]:
    """The entries of a parsed TOML document (``[[failure]]`` tables)."""
    entries = document.get("failure", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'failure' must be an array of tables")
    known = tuple(_entry(entry, f"{where}, failure {i}") for i, entry in enumerate(entries))
    ids = [entry.id for entry in known]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{where}: duplicate id {duplicates[0]!r}")
    return known


def _entry(entry: object, where: str) -> KnownFailure:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    values: dict[str, str] = {}
    for name in _FIELDS:
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: {name!r} must be a non-empty string")
        values[name] = value
    extra = sorted(set(entry) - set(_FIELDS))
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r}")
    try:
        pattern = re.compile(values["error"])
    except re.error as exc:
        raise ConfigError(f"{where}: bad 'error' pattern: {exc}") from exc
    return KnownFailure(
        id=values["id"], client=values["client"], version=values["version"],
        error=pattern, reason=values["reason"], link=values["link"],
    )


def match_known(
    known: Sequence[KnownFailure], error: str, clients: Iterable[tuple[str, str]]
) -> KnownFailure | None:
    """The first entry explaining ``error`` for a run with these (kind, Name) clients."""
    pairs = tuple(clients)
    for entry in known:
        if entry.matches(error, pairs):
            return entry
    return None
