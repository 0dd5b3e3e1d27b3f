"""Smoke tests of ``python -m benchmarks.compare`` (docs/benchmarks.md): ours only, at
tiny group sizes, no network and no peer stack needed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import compare

TINY = ["--sizes", "3,5", "--iterations", "2", "--app-seconds", "0.05"]


def test_ours_only_writes_every_operation(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert compare.main(["--peers", "ours", *TINY, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["sizes"] == [3, 5]
    assert data["suite"] == 1
    for n in ("3", "5"):
        cells = data["results"]["ours"][n]
        assert set(cells) == set(compare.OPS)
        for op, cell in cells.items():
            assert "na" not in cell, (op, cell)
            assert isinstance(cell["value"], float) and math.isfinite(cell["value"])
            assert cell["value"] > 0
        assert len(cells["commit"]["samples"]) == 2
        assert len(cells["process"]["samples"]) == 2
        assert cells["commit"]["value"] == min(cells["commit"]["samples"])
        assert cells["commit"]["size"] > 0
        assert len(cells["join"]["cpu_samples"]) == 2
        assert cells["app"]["cpu_rate"] > 0
    printed = capsys.readouterr().out
    for op in compare.OPS:
        assert f"{op}: " in printed


def test_missing_peer_is_na_with_reason(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    peer = compare.find_peer("mls-rs", venv=tmp_path / "no-venv")
    assert peer.missing is not None and "setup.sh" in peer.missing
    results = compare.run_all([compare.find_peer("ours"), peer], [3], 1, 0.05, 120,
                              progress=False)
    assert all(c.na == peer.missing for c in results["mls-rs"][3].values())
    assert all(c.value is not None for c in results["ours"][3].values())
    lines = "\n".join(compare.table(results, [3]))
    assert "n/a" in lines and "setup.sh" in lines


def test_timeout_marks_cells_and_skips_larger_sizes() -> None:
    ours = compare.find_peer("ours")
    results = compare.run_all([ours], [200, 400], 1, 0.05, timeout=0.01, progress=False)
    for n in (200, 400):
        assert all(c.timeout and c.value is None for c in results["ours"][n].values())
    assert "n=200" in (results["ours"][400]["commit"].na or "")
    row = [ln for ln in compare.table(results, [200, 400]) if ln.strip().startswith("200")]
    assert row and "timeout" in row[0]


def test_ratio_is_ours_over_peer() -> None:
    ours, peer = compare.Cell(value=2.0), compare.Cell(value=4.0)
    assert compare.ratio(ours, peer) == 0.5
    assert compare.fmt_cell("commit", peer, ours, is_ours=False) == "4.00 s (0.50x)"
    assert compare.fmt_cell("app", compare.Cell(value=100.0), compare.Cell(value=300.0),
                            is_ours=False) == "100/s (3.00x)"
    assert compare.fmt_cell("join", compare.Cell(na="x"), ours, is_ours=False) == "n/a"


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(SystemExit):
        compare.parse_args(["--sizes", "1,16"])
    with pytest.raises(SystemExit):
        compare.find_peer("openmls")


def test_error_summary_skips_stack_frames() -> None:
    node = ("RangeError: Maximum call stack size exceeded\n"
            "    at writeTotal (file:///x/variableLength.js:106:17)\n"
            "    at writeTotal (file:///x/variableLength.js:106:17)\n")
    assert compare.error_summary(node) == "RangeError: Maximum call stack size exceeded"
    python = ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
              "    boom()\nValueError: bad\n")
    assert compare.error_summary(python) == "ValueError: bad"
    assert compare.error_summary("") == "no output"


def test_metric_picks_wall_or_cpu_samples() -> None:
    record = {"op": "join", "n": 4, "samples": [0.5, 0.3], "cpu": [0.2, 0.25], "bytes": 9}
    assert compare.cell_from_record(record).value == 0.3
    assert compare.cell_from_record(record, "cpu").value == 0.2
    app = {"op": "app", "n": 4, "rate": 100.0, "cpu_rate": 400.0, "messages": 20}
    assert compare.cell_from_record(app).value == 100.0
    assert compare.cell_from_record(app, "cpu").value == 400.0
    assert compare.cell_from_record(app, "cpu").to_json()["cpu_rate"] == 400.0


def test_from_json_reprints_saved_runs(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert compare.main(["--peers", "ours", *TINY[:2], "--iterations", "1",
                         "--app-seconds", "0.05", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())["results"]["ours"]
    capsys.readouterr()
    results, sizes = compare.load_results([out], "cpu")
    assert sizes == [3, 5]
    join = results["ours"][5]["join"]
    assert join.value == min(saved["5"]["join"]["cpu_samples"])
    assert results["ours"][5]["app"].value == saved["5"]["app"]["cpu_rate"]
    assert compare.main(["--from-json", str(out), "--metric", "cpu"]) == 0
    assert "process: " in capsys.readouterr().out
