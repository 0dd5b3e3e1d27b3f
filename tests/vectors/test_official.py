"""Every entry of every official test-vector file, one pytest case each.

The same checkers back ``python -m mls_core.vectors``. A file whose kind has no checker
yet is reported as a skip with the reason, never as a pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mls_core.vectors import KINDS, UnsupportedKind, checker_for, kind_of, load

VECTOR_DIR = Path(
    os.environ.get("MLS_TEST_VECTORS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "test-vectors"
)


def _cases() -> list[object]:
    cases: list[object] = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        if kind_of(path) not in KINDS:
            continue
        for i in range(len(load(path))):
            cases.append(pytest.param(path, i, id=f"{path.stem}-{i}"))
    return cases


_CACHE: dict[Path, list[dict[str, object]]] = {}


@pytest.mark.parametrize(("path", "index"), _cases())
def test_vector(path: Path, index: int) -> None:
    try:
        check = checker_for(path)
    except UnsupportedKind as e:
        pytest.skip(f"not implemented yet: {e}")
    entries = _CACHE.setdefault(path, load(path))  # type: ignore[arg-type]
    check(entries[index])  # type: ignore[arg-type]


def test_vector_dir_present() -> None:
    assert VECTOR_DIR.is_dir(), f"official vectors missing at {VECTOR_DIR}"
    assert len(list(VECTOR_DIR.glob("*.json"))) >= 15
