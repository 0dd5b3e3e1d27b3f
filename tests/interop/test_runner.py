"""Tests of the interop runner (``interop.run``, ``interop.runner``).

Step semantics are checked against :class:`FakeStack`, an in-process gRPC servicer that
models just enough of a group (epochs, epoch authenticators, pending commits, reinit and
branch) for the runner's checks to pass exactly when the runner wires RPCs correctly.
The end-to-end test plays shipped configs against our real client.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import pytest

from interop.run import main
from interop.runner.assign import (
    ScriptPlan,
    capped_power,
    count_full_runs,
    plan_script,
    suite_support,
)
from interop.runner.clients import REPO_ROOT, Client
from interop.runner.config import ACTION_NAMES, Config, load_config, parse_config
from interop.runner.errors import ConfigError
from interop.runner.execute import Options, execute_run, play_config
from interop.runner.proto import rpc_table
from interop.runner.results import dumps_go, go_results, summary_lines
from interop.runner.steps import ACTIONS

CONFIG_DIR = Path("/work/shared/reference/interop/configs")
SHARED_CONFIGS = sorted(CONFIG_DIR.glob("*.json")) if CONFIG_DIR.is_dir() else []
needs_configs = pytest.mark.skipif(not SHARED_CONFIGS, reason="shared interop configs absent")

#: Actor counts per script, RUNNER.md §1.6.
EXPECTED_ACTORS = {
    "application": {"in_order": 2, "out_of_order_within_epoch": 2,
                    "out_of_order_across_epochs": 2},
    "branch": dict.fromkeys(("base", "with_extensions", "external_tree", "force_path"), 5),
    "commit": {"empty": 2, "add": 8, "remove": 5, "update": 2, "group_context_extensions": 2,
               "external_psk": 2, "resumption_psk": 2, "all_together_alice_proposes": 6,
               "all_together_bob_proposes": 6},
    "external_join": {"normal": 2, "with_psk": 2, "removing_prior": 2,
                      "with_external_tree": 2, "with_more_members": 5},
    "external_proposals": {"joiner_signed_add": 2, "external_add": 4, "external_remove": 4,
                           "external_psk": 4, "resumption_psk": 4,
                           "group_context_extensions": 4, "external_reinit": 4,
                           "multiple_external": 5},
    "reinit": dict.fromkeys(("change_ciphersuite", "change_group_id", "change_extensions",
                             "all_same_actor", "external_tree", "force_path"), 5),
    "welcome_join": dict.fromkeys(("no_path_secret", "with_path_secret", "with_psk",
                                   "with_external_tree"), 2),
}

#: Runs per (suite, mode) with K = 2, RUNNER.md §1.6 (deep_random excluded).
EXPECTED_K2_RUNS = {"application": 12, "branch": 128, "commit": 436, "external_join": 48,
                    "external_proposals": 132, "reinit": 192, "welcome_join": 16}


# --- a fake client stack --------------------------------------------------------------


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"|".join(parts)).digest()


def _pack(tag: bytes, **fields: object) -> bytes:
    return tag + json.dumps(fields, sort_keys=True).encode()


def _unpack(tag: bytes, data: bytes) -> dict[str, Any]:
    if not data.startswith(tag):
        raise ValueError(f"expected a {tag!r} message")
    loaded: dict[str, Any] = json.loads(data[len(tag):])
    return loaded


def _require(table: dict[int, Any], key: int) -> None:
    if key not in table:
        raise KeyError(key)


@dataclass
class _Group:
    group_id: str
    epoch: int
    ea: str  # hex


@dataclass
class FakeStack:
    """A toy MLS client: EAs chain by hashing, commits and welcomes carry the next EA.

    ``unimplemented`` names RPCs answered with UNIMPLEMENTED; ``bad_ea`` makes
    HandleCommit return a wrong epoch authenticator; ``calls`` logs (rpc, request).
    """

    name: str = "fake"
    suites: tuple[int, ...] = (1, 2, 3)
    unimplemented: frozenset[str] = frozenset()
    bad_ea: bool = False
    states: dict[int, _Group] = field(default_factory=dict)
    pending: dict[int, _Group] = field(default_factory=dict)
    pending_reinit: dict[int, str] = field(default_factory=dict)
    transactions: set[int] = field(default_factory=set)
    reinits: dict[int, _Group] = field(default_factory=dict)
    signers: set[int] = field(default_factory=set)
    freed: list[int] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> grpc.GenericRpcHandler:
        methods = {}
        for name, spec in rpc_table().items():
            methods[name] = grpc.unary_unary_rpc_method_handler(
                self._method(name),
                request_deserializer=spec.request.FromString,
                response_serializer=spec.response.SerializeToString,
            )
        return grpc.method_handlers_generic_handler("mls_client.MLSClient", methods)

    def _method(self, name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.calls.append((name, request))
                if name in self.unimplemented:
                    context.abort(grpc.StatusCode.UNIMPLEMENTED, f"no {name} here")
                try:
                    fields = getattr(self, f"rpc_{name}")(request)
                except (KeyError, ValueError) as exc:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {exc!r}")
                return rpc_table()[name].response(**fields)

        return call

    def _new_state(self, group: _Group) -> int:
        state_id = next(self._ids)
        self.states[state_id] = group
        return state_id

    def _advance(self, group: _Group, salt: bytes) -> _Group:
        return _Group(group.group_id, group.epoch + 1,
                      _h(bytes.fromhex(group.ea), salt, os.urandom(8)).hex())

    def _commit_message(self, group: _Group, **extra: object) -> bytes:
        return _pack(b"C", g=group.group_id, e=group.epoch, ea=group.ea, **extra)

    # RPCs: each returns the response fields.
    def rpc_Name(self, r: Any) -> dict[str, object]:
        return {"name": self.name}

    def rpc_SupportedCiphersuites(self, r: Any) -> dict[str, object]:
        return {"ciphersuites": list(self.suites)}

    def rpc_CreateGroup(self, r: Any) -> dict[str, object]:
        assert r.identity and r.cipher_suite in self.suites
        group = _Group(r.group_id.hex(), 0, _h(r.group_id).hex())
        return {"state_id": self._new_state(group)}

    def rpc_CreateKeyPackage(self, r: Any) -> dict[str, object]:
        tx = next(self._ids)
        self.transactions.add(tx)
        return {"transaction_id": tx, "key_package": b"\x00\x01\x00\x05" + r.identity}

    def rpc_JoinGroup(self, r: Any) -> dict[str, object]:
        if r.transaction_id not in self.transactions:
            raise KeyError(r.transaction_id)
        return self._join(r.welcome, r.ratchet_tree)

    def _join(self, welcome_bytes: bytes, tree: bytes) -> dict[str, object]:
        welcome = _unpack(b"W", welcome_bytes)
        if welcome.get("tree") and tree != b"tree":
            raise ValueError("a welcome without a tree needs the external tree")
        group = _Group(welcome["g"], welcome["e"], welcome["ea"])
        return {"state_id": self._new_state(group), "epoch_authenticator": bytes.fromhex(group.ea)}

    def rpc_ExternalJoin(self, r: Any) -> dict[str, object]:
        info = _unpack(b"G", r.group_info)
        group = self._advance(_Group(info["g"], info["e"], info["ea"]), b"external")
        return {"state_id": self._new_state(group), "commit": self._commit_message(group),
                "epoch_authenticator": bytes.fromhex(group.ea)}

    def rpc_GroupInfo(self, r: Any) -> dict[str, object]:
        group = self.states[r.state_id]
        return {"group_info": _pack(b"G", g=group.group_id, e=group.epoch, ea=group.ea),
                "ratchet_tree": b"tree" if r.external_tree else b""}

    def rpc_Protect(self, r: Any) -> dict[str, object]:
        group = self.states[r.state_id]
        return {"ciphertext": _pack(b"P", g=group.group_id, ad=r.authenticated_data.hex(),
                                    pt=r.plaintext.hex())}

    def rpc_Unprotect(self, r: Any) -> dict[str, object]:
        message = _unpack(b"P", r.ciphertext)
        if message["g"] != self.states[r.state_id].group_id:
            raise ValueError("wrong group")
        return {"authenticated_data": bytes.fromhex(message["ad"]),
                "plaintext": bytes.fromhex(message["pt"])}

    def rpc_StorePSK(self, r: Any) -> dict[str, object]:
        target = r.state_or_transaction_id
        if target not in self.states and target not in self.transactions:
            raise KeyError(target)
        return {}

    def _proposal(self, r: Any) -> dict[str, object]:
        _require(self.states, r.state_id)
        return {"proposal": b"proposal" + os.urandom(4)}

    rpc_AddProposal = rpc_UpdateProposal = rpc_RemoveProposal = _proposal
    rpc_ExternalPSKProposal = rpc_ResumptionPSKProposal = _proposal
    rpc_GroupContextExtensionsProposal = rpc_AddExternalSigner = _proposal

    def rpc_Commit(self, r: Any) -> dict[str, object]:
        group = self._advance(self.states[r.state_id], b"commit")
        self.pending[r.state_id] = group
        adds = any(p.proposal_type == b"add" for p in r.by_value) or bool(r.by_reference)
        welcome = _pack(b"W", g=group.group_id, e=group.epoch, ea=group.ea,
                        tree=r.external_tree) if adds else b""
        return {"commit": self._commit_message(group), "welcome": welcome,
                "ratchet_tree": b"tree" if r.external_tree else b""}

    def rpc_HandleCommit(self, r: Any) -> dict[str, object]:
        current = self.states[r.state_id]
        commit = _unpack(b"C", r.commit)
        if commit["g"] != current.group_id or commit["e"] != current.epoch + 1:
            raise ValueError("commit for another epoch")
        group = _Group(commit["g"], commit["e"], commit["ea"])
        ea = bytes.fromhex(group.ea)
        return {"state_id": self._new_state(group),
                "epoch_authenticator": ea[::-1] if self.bad_ea else ea}

    def rpc_HandlePendingCommit(self, r: Any) -> dict[str, object]:
        group = self.pending.pop(r.state_id)
        return {"state_id": self._new_state(group),
                "epoch_authenticator": bytes.fromhex(group.ea)}

    def rpc_ReInitProposal(self, r: Any) -> dict[str, object]:
        return {"proposal": _pack(b"R", g=r.group_id.hex(), s=r.cipher_suite)}

    def rpc_ReInitCommit(self, r: Any) -> dict[str, object]:
        proposal = _unpack(b"R", r.by_reference[0])
        group = self._advance(self.states[r.state_id], b"reinit")
        self.pending[r.state_id] = group
        self.pending_reinit[r.state_id] = proposal["g"]
        return {"commit": self._commit_message(group, new=proposal["g"])}

    def _reinit(self, group: _Group, new_group_id: str) -> dict[str, object]:
        reinit_id = next(self._ids)
        self.reinits[reinit_id] = _Group(new_group_id, 0, group.ea)
        return {"reinit_id": reinit_id, "key_package": b"kp" + os.urandom(4),
                "epoch_authenticator": bytes.fromhex(group.ea)}

    def rpc_HandlePendingReInitCommit(self, r: Any) -> dict[str, object]:
        group = self.pending.pop(r.state_id)
        return self._reinit(group, self.pending_reinit.pop(r.state_id))

    def rpc_HandleReInitCommit(self, r: Any) -> dict[str, object]:
        commit = _unpack(b"C", r.commit)
        if commit["g"] != self.states[r.state_id].group_id:
            raise ValueError("reinit commit for another group")
        return self._reinit(_Group(commit["g"], commit["e"], commit["ea"]), commit["new"])

    def rpc_ReInitWelcome(self, r: Any) -> dict[str, object]:
        base = self.reinits[r.reinit_id]
        group = self._advance(base, b"welcome")
        welcome = _pack(b"W", g=group.group_id, e=group.epoch, ea=group.ea, tree=r.external_tree)
        return {"state_id": self._new_state(group), "welcome": welcome,
                "ratchet_tree": b"tree" if r.external_tree else b"",
                "epoch_authenticator": bytes.fromhex(group.ea)}

    def rpc_HandleReInitWelcome(self, r: Any) -> dict[str, object]:
        _require(self.reinits, r.reinit_id)
        return self._join(r.welcome, r.ratchet_tree)

    def rpc_CreateBranch(self, r: Any) -> dict[str, object]:
        _require(self.states, r.state_id)
        group = _Group(r.group_id.hex(), 0, _h(r.group_id, os.urandom(8)).hex())
        welcome = _pack(b"W", g=group.group_id, e=0, ea=group.ea, tree=r.external_tree)
        return {"state_id": self._new_state(group), "welcome": welcome,
                "ratchet_tree": b"tree" if r.external_tree else b"",
                "epoch_authenticator": bytes.fromhex(group.ea)}

    def rpc_HandleBranch(self, r: Any) -> dict[str, object]:
        _require(self.states, r.state_id)
        return self.rpc_JoinGroup(r)

    def rpc_NewMemberAddProposal(self, r: Any) -> dict[str, object]:
        _unpack(b"G", r.group_info)
        tx = next(self._ids)
        self.transactions.add(tx)
        return {"transaction_id": tx, "proposal": b"proposal", "init_priv": b"i",
                "encryption_priv": b"e", "signature_priv": b"s"}

    def rpc_CreateExternalSigner(self, r: Any) -> dict[str, object]:
        signer = next(self._ids)
        self.signers.add(signer)
        return {"signer_id": signer, "external_sender": b"sender" + r.identity}

    def rpc_ExternalSignerProposal(self, r: Any) -> dict[str, object]:
        if r.signer_id not in self.signers or r.ratchet_tree != b"tree":
            raise KeyError(r.signer_id)
        _unpack(b"G", r.group_info)
        description = r.description
        if description.proposal_type == b"reinit":
            return {"proposal": _pack(b"R", g=description.group_id.hex(),
                                      s=description.cipher_suite)}
        return {"proposal": b"proposal" + description.proposal_type}

    def rpc_Free(self, r: Any) -> dict[str, object]:
        del self.states[r.state_id]
        self.freed.append(r.state_id)
        return {}


@pytest.fixture
def fakes() -> Iterator[Callable[..., list[Client]]]:
    """Start in-process fake stacks; returns connected Clients (stopped afterwards)."""
    with ExitStack() as stack:

        def start(*stacks: FakeStack) -> list[Client]:
            clients = []
            for i, fake in enumerate(stacks):
                server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
                server.add_generic_rpc_handlers((fake.handler(),))
                port = server.add_insecure_port("127.0.0.1:0")
                server.start()
                stack.callback(server.stop, None)
                client = Client(label=f"{fake.name}{i}", address=f"127.0.0.1:{port}")
                stack.callback(client.close)
                client.connect(5)
                clients.append(client)
            return clients

        yield start


# --- config parsing -------------------------------------------------------------------


@needs_configs
@pytest.mark.parametrize("path", SHARED_CONFIGS, ids=lambda p: p.stem)
def test_shared_configs_parse(path: Path) -> None:
    config = load_config(path)
    assert config.name == path.stem
    expected = EXPECTED_ACTORS[path.stem]
    assert {s.name: len(s.actors) for s in config.scripts} == expected
    for script in config.scripts:
        for step in script.steps:
            assert step.action in ACTION_NAMES
            assert json.loads(step.raw) == step.fields  # raw text is the step, verbatim


def test_raw_step_text_is_verbatim() -> None:
    text = '{"scripts": {"s": [\n  {"action": "createGroup",\n   "actor": "alice"} ,\n' \
           '  {"action":"protect","actor":"alice","plaintext":"a\\"b"}]}}'
    config = parse_config(text)
    steps = config.scripts[0].steps
    assert steps[0].raw == '{"action": "createGroup",\n   "actor": "alice"}'
    assert steps[1].raw == '{"action":"protect","actor":"alice","plaintext":"a\\"b"}'


def test_actor_set_follows_runner_rules() -> None:
    config = parse_config(json.dumps({"scripts": {"s": [
        {"action": "createGroup", "actor": "alice", "members": ["bob", "carol"]},
        {"action": "fullCommit", "actor": "alice", "members": ["zed"], "joiners": ["yan"]},
        {"action": "externalJoin", "actor": "bob", "joiner": "dave"},
        {"action": "addExternalSigner", "actor": "alice", "signer": "ds"},
        {"action": "installExternalPSK", "clients": ["xavier"]},
        {"ACTION": "newMemberAddProposal", "Actor": "alice", "JOINER": "erin"},
    ]}}))
    assert config.scripts[0].actors == ("alice", "bob", "carol", "dave", "ds", "erin")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"action": "frobnicate", "actor": "a"}], "Unknown action: frobnicate"),
        ([{"actor": "a"}], "missing action"),
        ([{"action": 3}], "action must be a string"),
        ([{"action": "createGroup", "actor": ["a"]}], "actor must be a string"),
        ([{"action": "createGroup", "actor": "a", "members": [1]}], "members"),
        (["createGroup"], "must be a JSON object"),
    ],
)
def test_bad_steps_are_config_errors(steps: list[object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(json.dumps({"scripts": {"s": steps}}), name="bad")
    assert "script s, step 0" in str(info.value)


def test_bad_json_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Failure to parse config file"):
        parse_config('{"scripts": {')


def test_scripts_key_case_and_null() -> None:
    assert parse_config('{"Scripts": {"a": null}, "mode": "x"}').scripts[0].steps == ()
    assert parse_config('{"scripts": null}').scripts == ()


def test_actions_table_matches_names() -> None:
    assert set(ACTIONS) == ACTION_NAMES and len(ACTION_NAMES) == 23


# --- assignment generation ------------------------------------------------------------


def _plan(actors: int, suites: list[frozenset[int]], *, random_mode: bool = False,
          max_runs: int = 10**9, seed: str = "s", only_suite: int = 0) -> ScriptPlan:
    return plan_script(
        config="c", script="s", actor_count=actors,
        support=suite_support(suites, only_suite), modes=(True, False),
        random_mode=random_mode, seed=seed, max_runs=max_runs,
    )


@needs_configs
@pytest.mark.parametrize("name", sorted(EXPECTED_K2_RUNS))
def test_run_counts_match_runner_table(name: str) -> None:
    config = load_config(CONFIG_DIR / f"{name}.json")
    both = [frozenset({1}), frozenset({1})]
    per_suite_mode = sum(_plan(len(s.actors), both).run_count for s in config.scripts) // 2
    assert per_suite_mode == EXPECTED_K2_RUNS[name]
    one = [frozenset({1})]
    assert sum(_plan(len(s.actors), one).run_count for s in config.scripts) == \
        2 * len(config.scripts)


def test_full_matrix_is_true_cartesian_product() -> None:
    plan = _plan(5, [frozenset({1}), frozenset({1})])
    assignments = [spec.assignment for spec in plan.runs()]
    assert len(assignments) == plan.run_count == 2 * 32
    first_mode = assignments[:32]
    assert len(set(first_mode)) == 32  # quirk 1 fixed: every tuple is distinct
    assert first_mode == sorted(first_mode)  # lexicographic, first actor most significant
    assert first_mode[1] == (0, 0, 0, 0, 1)
    assert [spec.encrypt for spec in plan.runs()][::32] == [True, False]


def test_assignments_index_the_suites_supporters() -> None:
    # Clients 0 and 2 support suite 3, client 1 does not (quirk 2 fixed).
    suites = [frozenset({1, 3}), frozenset({1}), frozenset({3, 1})]
    plan = _plan(2, suites, only_suite=3)
    assert {i for spec in plan.runs() for i in spec.assignment} == {0, 2}
    assert plan.run_count == 2 * 2**2
    full = _plan(2, suites)
    assert full.run_count == 2 * 3**2 + 2 * 2**2  # suite 1: K=3, suite 3: K=2
    assert suite_support(suites) == ((1, (0, 1, 2)), (3, (0, 2)))


def test_random_mode_is_reproducible_by_seed() -> None:
    suites = [frozenset({1, 2}), frozenset({1, 2}), frozenset({2})]

    def assignments(seed: str) -> list[tuple[int, ...]]:
        plan = _plan(40, suites, random_mode=True, seed=seed)
        return [spec.assignment for spec in plan.runs()]

    first = assignments("42")
    assert len(first) == 4 and first == assignments("42")
    assert first != assignments("43")
    assert {i for a in first[:2] for i in a} <= {0, 1}  # suite 1 supporters only
    assert len({i for a in first[2:] for i in a}) == 3


def test_cap_switches_to_random_without_enumerating() -> None:
    plan = _plan(841, [frozenset({1, 2})] * 2, max_runs=1000)
    assert plan.switched and plan.random and plan.full_runs is None
    assert plan.run_count == 4
    assert len(next(iter(plan.runs())).assignment) == 841
    assert capped_power(2, 841, 1000) is None and capped_power(2, 9, 1000) == 512
    assert capped_power(1, 10**6, 5) == 1 and capped_power(0, 3, 5) == 0
    assert count_full_runs(3, [(1, (0, 1))], 2, 16) == 16
    assert count_full_runs(3, [(1, (0, 1))], 2, 15) is None


def _random_config(actors: int, epochs: int, seed: int = 7) -> str:
    """A deep_random-like config: adds, removes, updates and external (re)joins."""
    rng = random.Random(seed)
    names = [f"user{i}" for i in range(actors)]
    steps: list[dict[str, object]] = [
        {"action": "createGroup", "actor": names[0], "members": names[1:actors // 2]}
    ]
    members = names[:actors // 2]
    waiting = names[actors // 2:]
    for _ in range(epochs):
        committer = rng.choice(members)
        others = [m for m in members if m != committer]
        kind = rng.choice(["add", "remove", "update", "external"])
        if kind == "add" and waiting:
            joiner = waiting.pop()
            steps.append({"action": "createKeyPackage", "actor": joiner})
            steps.append({"action": "fullCommit", "actor": committer, "members": others,
                          "byValue": [{"proposalType": "add", "keyPackage": len(steps) - 1}],
                          "joiners": [joiner]})
            members.append(joiner)
        elif kind == "remove" and len(others) > 1:
            gone = rng.choice(others)
            members.remove(gone)
            others.remove(gone)
            steps.append({"action": "fullCommit", "actor": committer, "members": others,
                          "byValue": [{"proposalType": "remove", "removed": gone}]})
        elif kind == "external":
            joiner = rng.choice(others or [committer])
            steps.append({"action": "externalJoin", "actor": committer, "joiner": joiner,
                          "members": [m for m in others if m != joiner],
                          "removePrior": True})
        else:
            steps.append({"action": "fullCommit", "actor": committer, "members": others,
                          "force_path": True})
    steps.extend({"action": "createKeyPackage", "actor": name} for name in waiting)
    return json.dumps({"scripts": {"random": steps}}, indent=1)


def test_large_random_config_parses_and_plans_quickly() -> None:
    text = _random_config(actors=200, epochs=100)
    started = time.perf_counter()
    config = parse_config(text, name="deep")
    script = config.scripts[0]
    plans = [
        plan_script(config="deep", script=script.name, actor_count=len(script.actors),
                    support=suite_support([frozenset({1, 2, 3})] * k), modes=(True, False),
                    random_mode=False, seed="1", max_runs=1000)
        for k in (1, 2, 3)
    ]
    runs = [list(plan.runs()) for plan in plans]
    elapsed = time.perf_counter() - started
    assert len(script.actors) == 200 and len(script.steps) > 100
    assert [plan.random for plan in plans] == [False, True, True]
    assert [len(r) for r in runs] == [6, 6, 6]
    assert all(len(spec.assignment) == 200 for r in runs for spec in r)
    assert elapsed < 2.0, f"parsing and planning took {elapsed:.2f} s"


# --- step semantics against the fake stack --------------------------------------------


def _options(**kwargs: Any) -> Options:
    return Options(rpc_timeout=10, **kwargs)


@needs_configs
@pytest.mark.parametrize("path", SHARED_CONFIGS, ids=lambda p: p.stem)
def test_shared_configs_pass_against_fakes(
    path: Path, fakes: Callable[..., list[Client]]
) -> None:
    stacks = [FakeStack(name="A", suites=(1, 2, 3)), FakeStack(name="B", suites=(2, 1))]
    clients = fakes(*stacks)
    # Suite 3 only has one supporter: one run per (mode) per script, all on A.
    result = play_config(load_config(path), clients, _options(suite=3, record=True))
    assert result.failed == 0, summary_lines(result)
    assert result.count("passed") == 2 * len(result.scripts)
    assert all(set(run.actors.values()) == {"A0"} for run in result.runs)
    assert stacks[0].freed, "cleanup freed the states the runner held"
    assert not stacks[1].calls[2:], "B lacks suite 3 and got no run RPC"


@needs_configs
def test_mixed_assignments_against_fakes(fakes: Callable[..., list[Client]]) -> None:
    stacks = [FakeStack(name="A", suites=(1, 2)), FakeStack(name="B", suites=(1, 2))]
    clients = fakes(*stacks)
    result = play_config(load_config(CONFIG_DIR / "welcome_join.json"), clients,
                         _options(suite=1))
    assert (result.count("passed"), result.failed) == (16 * 2, 0)
    combos = {tuple(run.actors.values()) for run in result.runs}
    assert combos == {("A0", "A0"), ("A0", "B1"), ("B1", "A0"), ("B1", "B1")}
    assert stacks[0].freed and stacks[1].freed


def _script(steps: list[dict[str, object]]) -> Config:
    return parse_config(json.dumps({"scripts": {"s": steps}}), name="t")


def _run_one(config: Config, clients: list[Client], **kwargs: Any) -> Any:
    plan = plan_script(config="t", script="s", actor_count=len(config.scripts[0].actors),
                       support=suite_support([c.suites for c in clients], 1), modes=(True,),
                       random_mode=False, seed="0", max_runs=100)
    spec = next(iter(plan.runs()))
    return execute_run(config.scripts[0], spec, clients, _options(**kwargs))


def test_ea_mismatch_reports_member_and_step(fakes: Callable[..., list[Client]]) -> None:
    clients = fakes(FakeStack(bad_ea=True))
    config = _script([{"action": "createGroup", "actor": "alice", "members": ["bob"]},
                      {"action": "fullCommit", "actor": "alice", "members": ["bob"]}])
    run = _run_one(config, clients)
    assert run.verdict == "failed" and run.failed_step == 1
    assert run.error == "Member [bob] failed to agree on epoch authenticator"
    assert run.failed_step_json == config.scripts[0].steps[1].raw


def test_unimplemented_is_unsupported_not_failed(fakes: Callable[..., list[Client]]) -> None:
    stack = FakeStack(unimplemented=frozenset({"StorePSK"}))
    clients = fakes(stack)
    config = _script([{"action": "createGroup", "actor": "alice"},
                      {"action": "installExternalPSK", "clients": ["alice"]}])
    run = _run_one(config, clients)
    assert run.verdict == "unsupported" and run.failed_step == 1
    assert run.error == "rpc error: code = Unimplemented desc = no StorePSK here"
    assert run.unsupported == "fake0 does not implement StorePSK (no StorePSK here)"
    assert len(stack.freed) == 1  # cleanup still freed alice's state


def test_free_failure_overwrites_error(fakes: Callable[..., list[Client]]) -> None:
    clients = fakes(FakeStack(unimplemented=frozenset({"Free"})))
    run = _run_one(_script([{"action": "createGroup", "actor": "alice"}]), clients)
    assert run.verdict == "failed" and run.failed_step == 1 and run.failed_step_json == ""
    assert "code = Unimplemented" in run.error


@pytest.mark.parametrize(
    ("step", "error"),
    [
        ({"action": "addProposal", "actor": "alice", "keyPackage": 0},
         "No message for key key_package at step 0"),
        ({"action": "addProposal", "actor": "alice", "keyPackage": 9},
         "Malformed step: step index 9 out of range"),
        ({"action": "addProposal", "actor": "alice", "keyPackage": 1.5},
         "json: cannot unmarshal number 1.5 into Go struct field addProposal.keyPackage"),
        ({"action": "fullCommit", "actor": "alice", "members": ["nobody"]},
         "Malformed step: unknown actor [nobody]"),
        ({"action": "fullCommit", "actor": "alice", "joiners": ["alice"]},
         "Malformed step: No transaction for alice"),
        ({"action": "fullCommit", "actor": "alice", "byValue": [{"proposalType": "update"}]},
         "unknown proposal type [update]"),
        ({"action": "groupContextExtensionsProposal", "actor": "alice",
          "extensions": [{"extension_type": 3, "extension_data": "A"}]},
         "illegal base64 data"),
        ({"action": "unprotect", "actor": "alice", "ciphertext": 0},
         "No message for key ciphertext at step 0"),
    ],
)
def test_step_errors(step: dict[str, object], error: str,
                     fakes: Callable[..., list[Client]]) -> None:
    clients = fakes(FakeStack())
    config = _script([{"action": "createGroup", "actor": "alice"},
                      {"action": "createKeyPackage", "actor": "bob"}, step])
    run = _run_one(config, clients)
    assert run.failed_step == 2 and run.verdict == "failed"
    assert run.error.startswith(error)


def test_case_insensitive_keys_and_suite_change(fakes: Callable[..., list[Client]]) -> None:
    stack = FakeStack(suites=(1, 2, 3))
    clients = fakes(stack)
    config = _script([
        {"action": "createGroup", "actor": "alice", "members": ["bob"]},
        {"action": "reinit", "proposer": "alice", "committer": "bob", "welcomer": "alice",
         "members": [], "changeCiphersuite": True},
    ])
    run = _run_one(config, clients, record=True)
    assert run.verdict == "passed", run.error
    proposal = next(e for e in run.transcript if e.rpc == "ReInitProposal")
    assert proposal.request.cipher_suite == 2  # the lowest other common suite
    single = fakes(FakeStack(suites=(1,)))
    run = _run_one(config, single)
    assert run.verdict == "unsupported" and run.error == "no remaining supported ciphersuite"


def test_psk_targets_state_or_transaction(fakes: Callable[..., list[Client]]) -> None:
    stack = FakeStack()
    clients = fakes(stack)
    config = _script([{"action": "createGroup", "actor": "alice"},
                      {"action": "createKeyPackage", "actor": "bob"},
                      {"action": "installExternalPSK", "clients": ["alice", "bob"]}])
    run = _run_one(config, clients, record=True)
    assert run.verdict == "passed"
    created = run.transcript[0].response.state_id
    tx = run.transcript[1].response.transaction_id
    stored = [e.request for e in run.transcript if e.rpc == "StorePSK"]
    assert [r.state_or_transaction_id for r in stored] == [created, tx]
    assert stored[0].psk_id == stored[1].psk_id and len(stored[0].psk_secret) == 32


def test_results_json_matches_go_shape(fakes: Callable[..., list[Client]]) -> None:
    clients = fakes(FakeStack(name="Fake<&>"))
    config = _script([{"action": "createGroup", "actor": "alice"},
                      {"action": "protect", "actor": "alice", "authenticatedData": "",
                       "plaintext": "hi"}])
    result = play_config(config, clients, _options(suite=1, record=True))
    document = json.loads(dumps_go(go_results(result)))
    runs = document["scripts"]["s"]
    assert [run["encrypt_flag"] for run in runs] == [True, False]
    public = runs[1]
    assert list(public) == ["cipher_suite", "actors", "encrypt_flag", "transcript"]
    assert public["actors"] == {"alice": "Fake<&>"}
    create, protect = public["transcript"]
    assert create["rpc"] == "CreateGroup" and "encrypt_handshake" not in create["request"]
    assert runs[0]["transcript"][0]["request"]["encrypt_handshake"] is True
    assert create["request"]["identity"] == "YWxpY2U="
    assert protect["request"] == {"state_id": create["response"]["state_id"],
                                  "plaintext": "aGk="}
    assert "\\u003c\\u0026\\u003e" in dumps_go(go_results(result))


def test_summary_lists_unsupported_separately(fakes: Callable[..., list[Client]]) -> None:
    clients = fakes(FakeStack(unimplemented=frozenset({"Protect"})))
    config = _script([{"action": "createGroup", "actor": "alice"},
                      {"action": "protect", "actor": "alice", "plaintext": "x"}])
    result = play_config(config, clients, _options(suite=0))
    lines = summary_lines(result)
    assert lines[0] == "t: 0 passed, 0 failed"
    assert any(line.startswith("  unsupported: s: 6 runs (suite 1,2,3, private/public)")
               for line in lines)
    missing = play_config(config, clients, _options(suite=9))
    assert summary_lines(missing)[1] == (
        "  unsupported: s: 2 runs (suite 9, private/public): no client supports cipher suite 9"
    )


def test_fail_fast_stops_only_the_script(fakes: Callable[..., list[Client]]) -> None:
    clients = fakes(FakeStack(bad_ea=True))
    text = json.dumps({"scripts": {
        "bad": [{"action": "createGroup", "actor": "alice", "members": ["bob"]},
                {"action": "fullCommit", "actor": "alice", "members": ["bob"]}],
        "good": [{"action": "createGroup", "actor": "alice"}],
    }})
    result = play_config(parse_config(text), clients, _options(fail_fast=True))
    assert [(r.script, r.verdict) for r in result.runs] == [("bad", "failed")] + \
        [("good", "passed")] * 6


# --- end to end with our client -------------------------------------------------------


def _our_client_available() -> str | None:
    if not (REPO_ROOT / "interop" / "client.py").exists():
        return "our interop client (interop/client.py) does not exist yet"
    probe = subprocess.run(
        [sys.executable, "-c", "import interop.client"], cwd=REPO_ROOT,
        capture_output=True, timeout=60, check=False,
    )
    if probe.returncode != 0:
        return "interop.client does not import: " + probe.stderr.decode()[-300:]
    return None


@needs_configs
@pytest.mark.parametrize("name", ["welcome_join", "application"])
def test_end_to_end_with_our_client(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    reason = _our_client_available()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "results.json"
    status = main([str(CONFIG_DIR / f"{name}.json"), "--clients", "ours", "--suite", "1",
                   "--json", str(out), "--start-timeout", "60"])
    lines = capsys.readouterr().out.splitlines()
    runs = 2 * len(EXPECTED_ACTORS[name])
    assert lines[0] == f"{name}: {runs} passed, 0 failed", "\n".join(lines)
    assert status == 0
    document = json.loads(out.read_text())
    assert sum(len(v) for v in document["scripts"].values()) == runs


def test_cli_reports_unknown_client_and_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"scripts": {"s": [{"action": "nope"}]}}')
    assert main([str(bad), "--clients", "ours"]) == 2
    assert "Unknown action: nope" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text('{"scripts": {}}')
    assert main([str(good), "--clients", "mystery"]) == 2
    assert "unknown client 'mystery'" in capsys.readouterr().err
