"""The post-quantum HPKE vectors of ../shared/reference/pq/ (draft-ietf-hpke-pq and the
X-Wing draft), one pytest case per entry. An entry cryptography 51 cannot reproduce is a
skip naming why (after its reproducible parts were checked), never a pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mls_core.vectors import NotReproducible, checker_for, load, parts_not_reproduced

PQ_DIR = Path(
    os.environ.get("MLS_PQ_VECTORS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "pq"
)
FILES = ("hpke-pq-test-vectors.json", "xwing-test-vectors.json")


def _cases() -> list[object]:
    cases: list[object] = []
    for name in FILES:
        path = PQ_DIR / name
        if path.is_file():
            cases += [pytest.param(path, i, id=f"{path.stem}-{i}")
                      for i in range(len(load(path)))]
    return cases


@pytest.mark.parametrize(("path", "index"), _cases())
def test_pq_vector(path: Path, index: int) -> None:
    entry = load(path)[index]
    try:
        checker_for(path)(entry)
    except NotReproducible as e:
        pytest.skip(f"not reproducible with cryptography 51: {e}")


def test_pq_vectors_present_and_mostly_reproducible() -> None:
    """The files are there, and the PQ KEM entries we claim (ML-KEM-768/1024, X-Wing) are
    not among the wholly unreproducible ones."""
    entries = load(PQ_DIR / FILES[0])
    assert len(entries) == 13
    claimed = [e for e in entries if e["kem_id"] in (0x41, 0x42, 0x647A)]
    assert len(claimed) == 5
    for e in claimed:
        assert not any(p.startswith("everything") for p in parts_not_reproduced(
            PQ_DIR / FILES[0], e))
    assert len(load(PQ_DIR / FILES[1])) == 3


def test_cli_counts_not_reproducible_apart(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m mls_core.vectors`` on the PQ files: passes, failures and the entries
    cryptography cannot reproduce are three separate counts, each reason printed."""
    from mls_core.vectors.__main__ import main

    assert main([str(PQ_DIR / name) for name in FILES]) == 0
    out = capsys.readouterr().out
    assert "hpke-pq-test-vectors: 6 passed, 0 failed, 7 not reproducible" in out
    assert "xwing-test-vectors: 3 passed, 0 failed" in out
    assert "entry 0 not reproducible: everything: KEM 0x0040 (ML-KEM-512)" in out
    assert out.count("not reproduced: encapsulation with fixed randomness") == 7
