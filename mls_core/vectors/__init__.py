"""Checkers for the official MLS test vectors (``../shared/reference/test-vectors.md``).

Each kind of vector file has a module here exposing ``check(entry) -> None`` that raises
on the first mismatch. The kind is chosen from the file's name stem. The same checkers run
under pytest (one case per entry) and from ``python -m mls_core.vectors FILE...``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._check import NotReproducible

__all__ = ["KINDS", "NotReproducible", "UnsupportedKind", "checker_for", "kind_of", "load",
           "parts_not_reproduced", "run_file"]

Checker = Callable[[dict[str, Any]], None]

#: file-name stem -> checker module (relative to this package)
KINDS: dict[str, str] = {
    "tree-math": "tree_math",
    "crypto-basics": "crypto_basics",
    "secret-tree": "secret_tree",
    "message-protection": "message_protection",
    "key-schedule": "key_schedule",
    "psk_secret": "psk_secret",
    "transcript-hashes": "transcript_hashes",
    "messages": "messages",
    "deserialization": "deserialization",
    "welcome": "welcome",
    "tree-operations": "tree_operations",
    "tree-validation": "tree_validation",
    "treekem": "treekem",
    "passive-client-welcome": "passive_client",
    "passive-client-handling-commit": "passive_client",
    "passive-client-random": "passive_client",
    # post-quantum HPKE (../shared/reference/pq/)
    "hpke-pq-test-vectors": "hpke_pq",
    "xwing-test-vectors": "xwing",
}


class UnsupportedKind(Exception):
    """The file's kind has no checker."""


def kind_of(path: str | Path) -> str:
    stem = Path(path).stem
    if stem not in KINDS and stem.startswith("passive-client-"):
        return "passive-client-welcome"  # every passive-client scenario shares one format
    return stem


def checker_for(path: str | Path) -> Checker:
    kind = kind_of(path)
    if kind not in KINDS:
        raise UnsupportedKind(f"unknown vector kind {kind!r}")
    try:
        module = importlib.import_module(f"{__name__}.{KINDS[kind]}")
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{KINDS[kind]}":
            raise UnsupportedKind(f"vector kind {kind!r} not implemented") from None
        raise
    fn: Checker = module.check
    return fn


def parts_not_reproduced(path: str | Path, entry: dict[str, Any]) -> list[str]:
    """Parts of ``entry`` its checker cannot reproduce, each with the reason (empty for
    the kinds that reproduce everything)."""
    module = importlib.import_module(f"{__name__}.{KINDS[kind_of(path)]}")
    fn = getattr(module, "parts_not_reproduced", None)
    return list(fn(entry)) if fn is not None else []


def load(path: str | Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(Path(path).read_text())
    return data


def run_file(path: str | Path) -> Iterator[tuple[int, BaseException | None]]:
    """Yield (index, error-or-None) for each entry of a vector file; a
    :class:`NotReproducible` error marks an entry the installed libraries cannot check."""
    check = checker_for(path)
    for i, entry in enumerate(load(path)):
        try:
            check(entry)
        except Exception as e:  # every failure is reported, none hidden
            yield i, e
        else:
            yield i, None
