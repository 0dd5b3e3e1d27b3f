"""Our own scenario configs that reproduce ts-mls 1.6.4 bugs (``interop/configs/ts-mls-*.json``).

Each config is played end to end through the CLI (``python -m interop.run``): ours x ours
must pass every run, and ours x ts-mls (``--alternate``, suite 1, both handshake modes) must
fail exactly the runs where ts-mls plays the affected actor, each reported as the known
upstream failure of ``interop/known_failures.toml`` that documents the bug; the other runs
pass. ``--strict`` counts them as failed. The ts-mls tests are skipped when Node or the npm
dependencies (``bash interop/ts-mls/install.sh``) are missing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from interop.run import main
from interop.runner.clients import start_clients

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "interop" / "configs"
UNMERGED = CONFIGS / "ts-mls-unmerged-leaves.json"
REUSE = CONFIGS / "ts-mls-leaf-reuse.json"
TS_MLS_NAME = "ts-mls 1.6.4"

_TS_MLS_MISSING = (
    "node is not installed" if shutil.which("node") is None
    else None if (ROOT / "interop" / "ts-mls" / "node_modules" / "ts-mls").is_dir()
    else "ts-mls npm dependencies missing: run `bash interop/ts-mls/install.sh`"
)
needs_ts_mls = pytest.mark.skipif(_TS_MLS_MISSING is not None, reason=str(_TS_MLS_MISSING))

#: config -> script -> (the actor ts-mls must play for the bug, failing step, entry id);
#: None for a control script that passes whoever plays which actor.
EXPECTED: dict[Path, dict[str, tuple[str, int, str] | None]] = {
    UNMERGED: {"unmerged_leaf_under_a_recommitted_root": ("grace", 6, "ts-mls-unmerged-leaves")},
    REUSE: {
        "removed_member_leaf_reused_by_add": ("bob", 3, "ts-mls-removed-leaf-reused"),
        "removed_member_leaf_left_blank": None,
    },
}
ERRORS = {
    "ts-mls-unmerged-leaves": "rpc error: code = InvalidArgument desc = ts-mls ValidationError: "
    "non-blank intermediate node must list leaf node in its unmerged_leaves",
    "ts-mls-removed-leaf-reused": "rpc error: code = Internal desc = ts-mls InternalError: This "
    "error should never occur, if you see this please submit a bug report. Message: No overlap "
    "between provided private keys and update path",
}


def _run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[str]]:
    status = main(argv)
    return status, capsys.readouterr().out.splitlines()


def test_configs_pass_ours_x_ours(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "ours.json"
    status, lines = _run_cli(capsys, [str(UNMERGED), str(REUSE), "--clients", "ours",
                                      "--suite", "1", "--json", str(out)])
    assert status == 0, lines
    assert lines == ["ts-mls-unmerged-leaves: 2 passed, 0 failed",
                     "ts-mls-leaf-reuse: 4 passed, 0 failed"]
    document = json.loads(out.read_text())
    for config, scripts in EXPECTED.items():
        for script in scripts:
            runs = document[config.stem]["scripts"][script]
            assert len(runs) == 2 and not any("error" in run for run in runs), script


@pytest.fixture(scope="module")
def addresses() -> Iterator[list[str]]:
    """Our client and the ts-mls client, started once for the module's runs."""
    with ExitStack() as stack:
        clients = start_clients(["ours", "ts-mls"], stack, timeout=60)
        assert clients[1].name == TS_MLS_NAME, f"ts-mls is {clients[1].name!r}: update the list"
        yield [client.address for client in clients]


def _play(addresses: list[str], capsys: pytest.CaptureFixture[str], out: Path,
          *flags: str) -> tuple[int, list[str], dict[str, Any]]:
    argv = [str(UNMERGED), str(REUSE), "--suite", "1", "--alternate", "--json", str(out),
            *flags]
    for address in addresses:
        argv += ["--connect", address]
    status, lines = _run_cli(capsys, argv)
    return status, lines, json.loads(out.read_text())


@needs_ts_mls
def test_ts_mls_runs_are_the_documented_known_failures(
    addresses: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, lines, document = _play(addresses, capsys, tmp_path / "known.json")
    assert status == 0, lines
    assert "ts-mls-unmerged-leaves: 2 passed, 0 failed" in lines
    assert "ts-mls-leaf-reuse: 6 passed, 0 failed" in lines
    assert lines[-1] == ("known upstream failures: 4 runs, not counted (--strict counts them "
                         "as failed): ts-mls-unmerged-leaves (ts-mls 1.6.4) 2, "
                         "ts-mls-removed-leaf-reused (ts-mls 1.6.4) 2")
    assert not any(line.lstrip().startswith("failed:") for line in lines), lines
    for config, scripts in EXPECTED.items():
        for script, expected in scripts.items():
            runs = document[config.stem]["scripts"][script]
            assert len(runs) == 4, script  # 2 assignments x 2 handshake modes
            for run in runs:
                if expected is None or run["actors"][expected[0]] != TS_MLS_NAME:
                    assert "error" not in run, (script, run["actors"], run.get("error"))
                    continue
                _, step, entry_id = expected
                assert run["known_failure"]["id"] == entry_id
                assert run["failed_step"] == step
                assert run["error"] == ERRORS[entry_id]
            if expected is not None:  # each handshake mode had one run with ts-mls there
                assert sum("known_failure" in run for run in runs) == 2, script


@needs_ts_mls
def test_strict_counts_them_as_failed(
    addresses: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, lines, document = _play(addresses, capsys, tmp_path / "strict.json", "--strict")
    assert status == 1
    assert "ts-mls-unmerged-leaves: 2 passed, 2 failed" in lines
    assert "ts-mls-leaf-reuse: 6 passed, 2 failed" in lines
    assert not any("known upstream" in line for line in lines)
    failed = [line.strip() for line in lines if line.lstrip().startswith("failed:")]
    assert len(failed) == 2
    assert failed[0].startswith("failed: unmerged_leaf_under_a_recommitted_root: 2 runs "
                                "(suite 1, private/public) at step 6: "
                                + ERRORS["ts-mls-unmerged-leaves"])
    assert failed[1].startswith("failed: removed_member_leaf_reused_by_add: 2 runs "
                                "(suite 1, private/public) at step 3: "
                                + ERRORS["ts-mls-removed-leaf-reused"])
    assert all("known_failure" not in run for config in document.values()
               for runs in config["scripts"].values() for run in runs)
