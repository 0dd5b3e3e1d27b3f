"""Smoke tests of ``python -m benchmarks.compare`` (docs/benchmarks.md): ours only, at
tiny group sizes, no network and no peer stack needed (the peers' answers to a
post-quantum suite are checked when ``benchmarks/peers/setup.sh`` installed them)."""

from __future__ import annotations

import json
import math
import statistics
import sys
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
        for op in ("join", "first_process", "commit", "process"):
            assert len(cells[op]["samples"]) == 2 == len(cells[op]["cpu_samples"]), op
            assert cells[op]["value"] == statistics.median(cells[op]["cpu_samples"]), op
        assert cells["commit"]["size"] > 0
        assert cells["first_process"]["size"] == cells["commit"]["size"]
        assert len(cells["app"]["cpu_rate"]) == 2
        assert cells["app"]["value"] == statistics.median(cells["app"]["cpu_rate"])
    assert data["metric"] == "cpu" and data["statistic"] == "median"
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
    assert compare.exit_text(-9) == "exit -9 (SIGKILL)" and compare.exit_text(1) == "exit 1"
    assert compare.exit_text(None) == "exit None" and compare.exit_text(-999) == "exit -999"


def test_metric_picks_median_of_cpu_or_wall_samples() -> None:
    record = {"op": "join", "n": 4, "samples": [0.5, 0.3, 0.9], "cpu": [0.2, 0.25, 0.1],
              "bytes": 9}
    assert compare.cell_from_record(record).value == 0.2          # CPU is the default
    assert compare.cell_from_record(record, "wall").value == 0.5
    app = {"op": "app", "n": 4, "rate": [100.0, 300.0], "cpu_rate": [400.0, 200.0, 900.0]}
    assert compare.cell_from_record(app, "wall").value == 200.0
    assert compare.cell_from_record(app).value == 400.0
    assert compare.cell_from_record(app).to_json()["cpu_rate"] == [400.0, 200.0, 900.0]
    old_app = {"op": "app", "rate": 100.0, "cpu_rate": 400.0}  # the earlier best-of lines
    assert compare.cell_from_record(old_app).value == 400.0


def test_median_is_not_the_best() -> None:
    assert compare.median([5.0, 1.0, 3.0]) == 3.0
    assert compare.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        compare.median([])
    cell = compare.Cell()
    for cpu in (0.3, 0.1, 0.2):  # one sample per round, as compare reads them
        cell.add({"op": "process", "samples": [cpu * 2], "cpu": [cpu]})
    assert cell.settle("cpu").value == 0.2 and cell.cpu == [0.3, 0.1, 0.2]
    assert cell.settle("wall").value == 0.4


def test_a_round_with_a_figure_clears_an_earlier_na() -> None:
    cell = compare.Cell()
    cell.add({"op": "join", "na": "no fresh joiner left"})
    assert cell.settle("cpu").value is None and cell.na == "no fresh joiner left"
    cell.add({"op": "join", "samples": [0.2], "cpu": [0.1]})
    assert cell.settle("cpu").value == 0.1 and cell.na is None


def test_round_order_rotates_and_keeps_every_stack() -> None:
    names = ["ours", "ts-mls", "mls-rs", "mls-rs-objects"]
    orders = [compare.round_order(names, r) for r in range(4)]
    assert orders[0] == names
    assert orders[1] == ["ts-mls", "mls-rs", "mls-rs-objects", "ours"]
    assert all(sorted(o) == sorted(names) for o in orders)
    assert sorted(o[0] for o in orders) == sorted(names)  # each stack leads once
    assert compare.round_order(names, 4) == names
    assert compare.round_order([], 3) == []


FAKE_SERVE = """
import json, sys
name, log, fail_round = sys.argv[1], sys.argv[2], int(sys.argv[3])
def emit(r): print(json.dumps(r), flush=True)
emit({"op": "build", "n": 4, "samples": [0.5], "cpu": [0.4], "bytes": 10})
emit({"ready": True})
r = 0
for line in sys.stdin:
    if line.strip() != "round":
        continue
    r += 1
    with open(log, "a") as f:
        f.write(f"{r} {name}\\n")
    if r == fail_round:
        sys.exit("ValueError: fake failure in round %d" % r)
    for op in ("join", "first_process", "commit", "process"):
        emit({"op": op, "n": 4, "samples": [r * 0.02], "cpu": [r * 0.01], "bytes": 7})
    emit({"op": "app", "n": 4, "rate": [100.0 * r], "cpu_rate": [200.0 * r]})
    emit({"done": r})
"""


def fake_peer(name: str, log: Path, fail_round: int = 0) -> compare.Peer:
    """A stand-in stack speaking the serve protocol: it logs each round it runs."""
    return compare.Peer(name, (sys.executable, "-c", FAKE_SERVE, name, str(log),
                               str(fail_round), "--"))


def test_stacks_are_interleaved_round_by_round(tmp_path: Path) -> None:
    log = tmp_path / "rounds.log"
    peers = [fake_peer(name, log) for name in ("a", "b", "c")]
    run = compare.run_size(peers, 4, 3, 0.0, timeout=60, progress=False)
    cells, orders = run.cells, run.orders
    assert run.timed_out == set()
    ran = [tuple(line.split()) for line in log.read_text().splitlines()]
    assert ran == [("1", "a"), ("1", "b"), ("1", "c"), ("2", "b"), ("2", "c"), ("2", "a"),
                   ("3", "c"), ("3", "a"), ("3", "b")]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for name in "abc":
        assert cells[name]["process"].cpu == [0.01, 0.02, 0.03]
        assert cells[name]["process"].value == 0.02            # median CPU, not best
        assert cells[name]["app"].value == 400.0               # median CPU rate
        assert cells[name]["build"].value == 0.4


def test_a_stack_that_dies_keeps_its_rounds_and_says_why(tmp_path: Path) -> None:
    log = tmp_path / "rounds.log"
    peers = [fake_peer("ok", log), fake_peer("late", log, fail_round=2),
             fake_peer("early", log, fail_round=1)]
    run = compare.run_size(peers, 4, 3, 0.0, timeout=60, progress=False)
    cells, orders = run.cells, run.orders
    assert orders == [["ok", "late", "early"], ["late", "ok"], ["ok"]]  # dead: not asked
    assert cells["ok"]["commit"].cpu == [0.01, 0.02, 0.03]
    assert cells["late"]["commit"].cpu == [0.01] and cells["late"]["commit"].na is None
    early = cells["early"]
    assert early["build"].value == 0.4
    assert early["process"].value is None
    assert "fake failure in round 1" in (early["process"].na or "")


def test_mls_rs_has_a_bytes_and_an_objects_column(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "lib" / "python3.11" / "site-packages" / "mls_rs_uniffi").mkdir(parents=True)
    bytes_peer = compare.find_peer("mls-rs", venv=venv)
    objects_peer = compare.find_peer("mls-rs-objects", venv=venv)
    assert bytes_peer.missing is None and objects_peer.missing is None
    assert "--objects" not in bytes_peer.command
    assert objects_peer.argv("serve", 16, 1, 0.5)[3:5] == ["--objects", "serve"]
    results: compare.Results = {
        "ours": {1000: {"join": compare.Cell(value=0.2)}},
        "mls-rs": {1000: {"join": compare.Cell(value=0.25)}},
        "mls-rs-objects": {1000: {"join": compare.Cell(value=0.1)}},
    }
    lines = compare.table(results, [1000])
    at = next(i for i, ln in enumerate(lines) if ln.startswith("join: "))
    header, row = lines[at + 1], lines[at + 2]
    assert "mls-rs (bytes)" in header and "mls-rs (objects)" in header
    assert header.index("mls-rs (bytes)") < header.index("mls-rs (objects)")
    assert "(0.80x)" in row and "(2.00x)" in row
    target = [t for t in compare.targets(results) if "issue 16: join" in t]
    assert target and "2.00x" in target[0] and "NOT met" in target[0]


def test_from_json_reprints_saved_runs(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert compare.main(["--peers", "ours", *TINY[:2], "--iterations", "1",
                         "--app-seconds", "0.05", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())["results"]["ours"]
    capsys.readouterr()
    loaded = compare.load_results([out], "cpu")
    assert list(loaded) == [1]                  # a one-suite file: the suite-1 format
    results, sizes = loaded[1]
    assert sizes == [3, 5]
    join = results["ours"][5]["join"]
    assert join.value == statistics.median(saved["5"]["join"]["cpu_samples"])
    assert results["ours"][5]["app"].value == statistics.median(saved["5"]["app"]["cpu_rate"])
    assert compare.main(["--from-json", str(out), "--metric", "cpu"]) == 0
    assert "process: " in capsys.readouterr().out


HANGS = """
import json, sys, time
def emit(r): print(json.dumps(r), flush=True)
emit({"op": "build", "n": 4, "samples": [0.5], "cpu": [0.4]})
emit({"ready": True})
r = 0
for line in sys.stdin:
    r += 1
    if r == 2:
        time.sleep(60)
    emit({"op": "join", "n": 4, "samples": [0.02], "cpu": [0.01]})
    emit({"op": "process", "n": 4, "na": "receiver rejects the commit"})
    emit({"done": r})
"""


def test_timeout_keeps_a_stacks_own_na_and_skips_larger_sizes() -> None:
    peer = compare.Peer("hangs", (sys.executable, "-c", HANGS, "--"))
    results = compare.run_all([peer], [4, 8], 3, 0.0, timeout=3, progress=False)
    cells = results["hangs"][4]
    assert cells["join"].value == 0.01 and not cells["join"].timeout
    assert cells["process"].na == "receiver rejects the commit"
    assert not cells["process"].timeout                 # its own reason, not the timeout
    assert cells["commit"].timeout and "timeout" in (cells["commit"].na or "")
    assert all(c.timeout for c in results["hangs"][8].values())  # not tried at n = 8


def test_ours_runs_the_asked_pq_suite(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert compare.main(["--peers", "ours", "--sizes", "3", "--iterations", "1",
                         "--app-seconds", "0.05", "--suites", "1,83", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["suites"] == [1, 83]
    one, pq = data["runs"]["1"], data["runs"]["83"]
    assert one["suite"] == 1 and pq["suite"] == 83
    assert all("na" not in cell for cell in pq["results"]["ours"]["3"].values())
    sizes = {suite: run["bytes"]["ours"]["3"] for suite, run in data["runs"].items()}
    # X-Wing keys are 1,216 B against X25519's 32: the suite was used, not suite 1
    assert sizes["83"]["key_package"] > 2000 and sizes["1"]["key_package"] < 400
    assert sizes["83"]["welcome"] > 4 * sizes["1"]["welcome"]
    assert sizes["83"]["commit"] > 4 * sizes["1"]["commit"]
    build = pq["results"]["ours"]["3"]["build"]
    assert build["key_package_size"] == sizes["83"]["key_package"]
    assert build["size"] == sizes["83"]["welcome"]
    printed = capsys.readouterr().out
    assert "=== cipher suite 83 ===" in printed
    assert "join: join from the Welcome (ratchet tree inside) [cipher suite 83]" in printed
    assert "key_package bytes: one joiner's KeyPackage (§10) [cipher suite 83]" in printed
    assert compare.main(["--from-json", str(out)]) == 0
    again = capsys.readouterr().out
    assert "=== cipher suite 83 ===" in again and "=== cipher suite 1 ===" in again
    loaded = compare.load_results([out], "cpu")
    assert loaded[83][0]["ours"][3]["build"].key_package_size == sizes["83"]["key_package"]


def test_suite_option_reaches_every_driver() -> None:
    assert compare.parse_args([]).suites == (1,)
    assert compare.parse_args(["--suite", "83"]).suites == (83,)
    assert compare.parse_args(["--suites", "83,85,83"]).suites == (83, 85)
    with pytest.raises(SystemExit):
        compare.parse_args(["--suites", "x"])
    for name in compare.ALL_PEERS:
        peer = compare.find_peer(name)
        assert peer.argv("serve", 16, 1, 0.5, 85)[-2:] == ["--suite", "85"]
        assert peer.argv("serve", 16, 1, 0.5)[-2:] == ["--suite", "1"]


NO_SUITE = """
import json, sys
for op in ("build", "join", "first_process", "app", "commit", "process"):
    print(json.dumps({"op": op, "n": 4, "na": "nosuite cannot run cipher suite 83: none"}))
"""


def test_a_stack_without_the_suite_is_na_with_its_reason() -> None:
    peer = compare.Peer("nosuite", (sys.executable, "-c", NO_SUITE, "--"))
    cells = compare.run_size([peer], 4, 2, 0.0, timeout=60, progress=False, suite=83).cells
    assert {c.na for c in cells["nosuite"].values()} == {
        "nosuite cannot run cipher suite 83: none"}           # not "exit 0: no output"


@pytest.mark.parametrize("name", ["mls-rs", "mls-rs-objects", "rfc9420"])
def test_peers_without_pq_suites_say_na(name: str) -> None:
    peer = compare.find_peer(name)
    if peer.missing:
        pytest.skip(peer.missing)
    results = compare.run_all([peer], [3], 1, 0.05, 120, progress=False, suite=83)
    for op, cell in results[name][3].items():
        assert cell.value is None and not cell.timeout, op
        assert f"{name} cannot run cipher suite 83" in (cell.na or ""), (op, cell.na)


def test_ts_mls_runs_a_pq_suite() -> None:
    peer = compare.find_peer("ts-mls")
    if peer.missing:
        pytest.skip(peer.missing)
    cells = compare.run_all([peer], [3], 1, 0.05, 120, progress=False, suite=83)["ts-mls"][3]
    assert all(c.value is not None for c in cells.values()), cells
    assert (cells["build"].key_package_size or 0) > 2000   # an X-Wing KeyPackage
