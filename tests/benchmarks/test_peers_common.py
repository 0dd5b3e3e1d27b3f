"""The shared round driver of the bench scripts (``benchmarks/peers/common.py``), on a
stand-in stack: which member does what in each round, and what a broken receiver does."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from benchmarks.peers import common


class FakeStack(common.Stack[int]):
    """Members are joiner indices; Commits are epoch numbers; every call is logged."""

    def __init__(self, reject_from: int | None = None) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.epoch = 0
        self.reject_from = reject_from  # receivers reject Commits from this epoch on

    def prepare(self, n: int) -> None:
        self.log.append(("prepare", n))

    def build(self) -> int:
        self.epoch = 1
        return 100

    def join(self, joiner: int) -> int:
        self.log.append(("join", joiner))
        return joiner

    def commit(self) -> int:
        self.epoch += 1
        self.log.append(("commit", self.epoch))
        return self.epoch

    def process(self, member: int, commit: int) -> None:
        if self.reject_from is not None and commit >= self.reject_from:
            raise ValueError(f"bad commit {commit}")
        self.log.append(("process", member, commit))

    def app_round(self, member: int) -> None:
        self.log.append(("app", member))

    def agree(self, member: int) -> bool:
        return True

    def wire_size(self, commit: Any) -> int:
        return 42


def test_each_round_joins_a_fresh_member_who_processes_c1() -> None:
    stack = FakeStack()
    bench = common.Bench(stack, n=5, app_seconds=0.0)
    assert [r["op"] for r in bench.setup()] == ["build"]
    assert stack.log[-1] == ("commit", 2)   # C1, untimed
    ops = [[r["op"] for r in bench.round()] for _ in range(3)]
    assert ops == [["join", "first_process", "app", "commit", "process"]] * 3
    joins = [e[1] for e in stack.log if e[0] == "join"]
    assert joins == [3, 2, 1]               # a different joiner each round, 3 = B
    firsts = [e for e in stack.log if e[0] == "process" and e[2] == 2]
    assert firsts == [("process", 3, 2), ("process", 2, 2), ("process", 1, 2)]
    steady = [e for e in stack.log if e[0] == "process" and e[2] > 2]
    assert steady == [("process", 3, 3), ("process", 3, 4), ("process", 3, 5)]  # B only
    assert {e[1] for e in stack.log if e[0] == "app"} == {3}


def test_no_fresh_joiner_left_is_na_but_commits_go_on() -> None:
    bench = common.Bench(FakeStack(), n=2, app_seconds=0.0)
    bench.setup()
    bench.round()
    second = {r["op"]: r for r in bench.round()}
    assert "no fresh joiner left" in second["join"]["na"]
    assert len(second["process"]["cpu"]) == 1 and "na" not in second["process"]


def test_a_rejected_commit_forks_the_group() -> None:
    bench = common.Bench(FakeStack(reject_from=3), n=6, app_seconds=0.0)
    bench.setup()
    records = bench.round() + bench.round()
    merged = {r["op"]: r for r in common.merge(records)}
    assert len(merged["first_process"]["cpu"]) == 2      # C1 (epoch 2) is accepted
    assert "bad commit 3" in merged["process"]["na"]
    assert len(merged["commit"]["cpu"]) == 2 and "bad commit 3" in merged["commit"]["note"]
    assert len(merged["app"]["cpu_rate"]) == 1           # round 1 only: then forked
    assert "na" not in merged["app"]
    assert merged["commit"]["bytes"] == 42


def test_merge_concatenates_rounds_in_op_order() -> None:
    records = [{"op": "process", "n": 3, "samples": [2.0], "cpu": [1.0]},
               {"op": "join", "n": 3, "na": "first"},
               {"op": "process", "n": 3, "samples": [4.0], "cpu": [3.0], "note": "x"},
               {"op": "join", "n": 3, "na": "second"}]
    merged = common.merge(records)
    assert [r["op"] for r in merged] == ["join", "process"]
    assert merged[0]["na"] == "first"
    assert merged[1]["cpu"] == [1.0, 3.0] and merged[1]["note"] == "x"


def test_serve_answers_each_round_line(capsys: pytest.CaptureFixture[str]) -> None:
    common.serve(FakeStack(), 4, 0.0, io.StringIO("round\nnoise\nround\n"))
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert lines[0]["op"] == "build" and lines[1] == {"ready": True}
    assert [ln["done"] for ln in lines if "done" in ln] == [1, 2]
    assert sum(1 for ln in lines if ln.get("op") == "process") == 2


class SizedStack(FakeStack):
    """A stand-in that knows its KeyPackage's size, made for one suite only."""

    def __init__(self, suite: int) -> None:
        common.require_suite_1("sized", suite, "a stand-in for suite 1")
        super().__init__()

    def key_package_size(self) -> int | None:
        return 77


def test_the_build_line_has_the_key_package_size() -> None:
    assert common.Bench(SizedStack(1), n=3, app_seconds=0.0).setup()[0][
        "key_package_bytes"] == 77
    assert "key_package_bytes" not in common.Bench(FakeStack(), 3, 0.0).setup()[0]
    merged = common.merge([{"op": "build", "n": 3, "samples": [1.0], "key_package_bytes": 77}])
    assert merged[0]["key_package_bytes"] == 77


def test_main_makes_the_stack_for_the_asked_suite(capsys: pytest.CaptureFixture[str]) -> None:
    asked: list[int] = []

    def make(suite: int) -> SizedStack:
        asked.append(suite)
        return SizedStack(suite)

    assert common.main(make, ["build", "3"]) == 0
    assert asked == [1]                                  # the default suite
    line = json.loads(capsys.readouterr().out)
    assert line["op"] == "build" and line["key_package_bytes"] == 77


@pytest.mark.parametrize(("op", "ops"), [("serve", common.OPS), ("all", common.OPS),
                                         ("join", ("join",))])
def test_a_suite_the_stack_lacks_is_na_per_operation(
        op: str, ops: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert common.main(SizedStack, [op, "4", "--suite", "83"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [ln["op"] for ln in lines] == list(ops)       # no "ready": nothing to serve
    assert all(ln["na"] == "sized cannot run cipher suite 83: a stand-in for suite 1"
               and ln["n"] == 4 for ln in lines)


def test_ours_opts_in_to_a_pq_suite_and_names_one_it_lacks() -> None:
    from benchmarks.peers import ours_bench
    from mls_core import ciphersuite

    was = ciphersuite.experimental_pq_enabled()
    try:
        assert ours_bench.make(1).suite.id == 1
        ciphersuite.enable_experimental_pq(False)
        assert ours_bench.make(83).suite.id == 83       # naming it is the opt-in
        assert ciphersuite.experimental_pq_enabled()
        with pytest.raises(common.UnsupportedSuite, match=r"cipher suite 77.*ML-KEM-512"):
            ours_bench.make(77)
        # the Welcome of 1,000 members on suite 85 (10.6 MB) must not hit the default bounds
        limits = ours_bench.config().limits
        assert limits.message_bytes(ours_bench.make(85).suite) > 11_000_000
        assert limits.message_bytes(ours_bench.make(1).suite) < 11_000_000
    finally:
        ciphersuite.enable_experimental_pq(was)
