"""Smoke test of ``python -m benchmarks.hostile_inputs`` (docs/security.md, "Bounds"):
the scaled-down inputs, each refused (or accepted) the way the benchmark expects. No
timing: the figures belong to the benchmark's own run."""

from __future__ import annotations

import pytest

from benchmarks import hostile_inputs


def test_quick_run_meets_every_expected_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    assert hostile_inputs.main(["--quick", "--no-memory", "--repeat", "1"]) == 0
    printed = capsys.readouterr().out
    assert "0 unexpected outcome(s)" in printed
    assert printed.count("LimitError") == 3
    assert printed.count("VersionError") == 2
    assert "accepted" in printed
