"""Tests of the ``--alternate`` assignment mode and of ``--suites`` (``interop.runner.assign``).

In alternate mode, per (suite, handshake mode), run k = 0..|P_S|-1 gives actor i to
supporter (i + k) mod |P_S|: each supporter plays every actor once and, with two or more
supporters and actors, every run mixes stacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import ExitStack
from pathlib import Path

import grpc  # type: ignore[import-untyped, unused-ignore]
import pytest

from interop.run import build_parser, suite_list
from interop.runner.assign import alternate_assignments, plan_script, suite_support
from interop.runner.clients import Client
from interop.runner.config import load_config
from interop.runner.execute import Options, play_config
from tests.interop.test_runner import CONFIG_DIR, EXPECTED_ACTORS, FakeStack, needs_configs


def test_two_supporters_give_the_two_mixed_assignments() -> None:
    assert list(alternate_assignments(5, (0, 1))) == [(0, 1, 0, 1, 0), (1, 0, 1, 0, 1)]


def test_each_supporter_plays_every_actor_once() -> None:
    runs = list(alternate_assignments(7, (0, 1, 2)))
    assert len(runs) == 3
    for actor in range(7):
        assert sorted(run[actor] for run in runs) == [0, 1, 2]
    assert all(len(set(run)) == 3 for run in runs), "every run mixes all three stacks"


def test_entries_are_the_suites_supporters_not_client_positions() -> None:
    assert list(alternate_assignments(3, (0, 2))) == [(0, 2, 0), (2, 0, 2)]
    assert list(alternate_assignments(4, (1,))) == [(1, 1, 1, 1)]
    assert list(alternate_assignments(0, (0, 1))) == [(), ()]


def test_plan_counts_modes_times_supporters_and_is_never_capped() -> None:
    support = suite_support([frozenset({1, 2}), frozenset({1})], 0)
    assert support == ((1, (0, 1)), (2, (0,)))
    start = time.monotonic()
    plan = plan_script(config="c", script="s", actor_count=841, support=support,
                       modes=(True, False), random_mode=False, seed="0", max_runs=10,
                       alternate=True)
    runs = list(plan.runs())
    assert time.monotonic() - start < 1.0
    assert plan.alternate and not plan.random and not plan.switched
    assert plan.run_count == len(runs) == 2 * (2 + 1)
    assert [(r.suite, r.encrypt) for r in runs] == [
        (1, True), (1, True), (1, False), (1, False), (2, True), (2, False)]
    assert runs[0].assignment[:4] == (0, 1, 0, 1) and runs[1].assignment[:4] == (1, 0, 1, 0)
    assert set(runs[4].assignment) == {0}


def test_random_wins_over_alternate_in_the_planner() -> None:
    plan = plan_script(config="c", script="s", actor_count=3, support=((1, (0, 1)),),
                       modes=(True,), random_mode=True, seed="0", max_runs=10, alternate=True)
    assert plan.random and not plan.alternate and plan.run_count == 1


def test_suite_support_accepts_a_list() -> None:
    clients = [frozenset({1, 2, 3}), frozenset({1, 3})]
    assert suite_support(clients, (3, 1, 9)) == ((1, (0, 1)), (3, (0, 1)), (9, ()))
    assert suite_support(clients, ()) == suite_support(clients, 0)
    assert Options(suite=2).selected_suites() == (2,)
    assert Options(suite=2, suites=(1, 3)).selected_suites() == (1, 3)
    assert Options().selected_suites() == ()


def test_cli_parses_suites_and_alternate(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["c.json", "--alternate", "--suites", "1,2,3"])
    assert args.alternate and args.suites == (1, 2, 3)
    assert parser.parse_args(["c.json", "--suite", "2"]).suites == (2,)
    assert parser.parse_args(["c.json", "--suite", "0"]).suites == ()
    assert suite_list("3, 1") == (3, 1)
    with pytest.raises(SystemExit):
        parser.parse_args(["c.json", "--alternate", "--random"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["c.json", "--suites", "1,x"])
    assert "not a list of suite numbers" in capsys.readouterr().err
    assert "(i + k) mod |P|" in parser.format_help()


@pytest.fixture
def two_stacks() -> Iterator[Callable[[], tuple[list[Client], list[FakeStack]]]]:
    with ExitStack() as stack:

        def start() -> tuple[list[Client], list[FakeStack]]:
            fakes = [FakeStack(name="A", suites=(1, 2, 3)), FakeStack(name="B", suites=(1, 3))]
            clients = []
            for i, fake in enumerate(fakes):
                server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
                server.add_generic_rpc_handlers((fake.handler(),))
                port = server.add_insecure_port("127.0.0.1:0")
                server.start()
                stack.callback(server.stop, None)
                client = Client(label=f"{fake.name}{i}", address=f"127.0.0.1:{port}")
                stack.callback(client.close)
                client.connect(5)
                clients.append(client)
            return clients, fakes

        yield start


@needs_configs
def test_alternate_plays_both_mixed_assignments(
    two_stacks: Callable[[], tuple[list[Client], list[FakeStack]]]
) -> None:
    clients, fakes = two_stacks()
    path: Path = CONFIG_DIR / "welcome_join.json"
    options = Options(suites=(1, 2, 3), alternate=True, rpc_timeout=10)
    result = play_config(load_config(path), clients, options)
    scripts = len(EXPECTED_ACTORS["welcome_join"])
    # Suites 1 and 3: two supporters, two runs per mode; suite 2: A alone, one run.
    assert result.failed == 0 and result.count("passed") == scripts * 2 * (2 + 1 + 2)
    mixed = {tuple(r.actors.values()) for r in result.runs if r.suite in (1, 3)}
    assert mixed == {("A0", "B1"), ("B1", "A0")}
    assert {tuple(r.actors.values()) for r in result.runs if r.suite == 2} == {("A0", "A0")}
    assert sorted({r.suite for r in result.runs}) == [1, 2, 3]
    assert fakes[0].freed and fakes[1].freed
