"""The fuzz harnesses (fuzz/, docs/fuzzing.md) run on their seeds, deterministically and
without atheris, so they cannot rot: every seed must be handled without a crash, the
seeds must reach the accepting paths (else the fuzzer would start from nothing), and
cheap mutations of them must be rejected with an MLSError, never a crash."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz import decoders, harness, process, run
from fuzz.harness import InvariantViolation, Outcome, join_chunks, mutations, split_chunks
from fuzz.vectors import vectors_dir
from fuzz.world import World, build_world


@pytest.fixture(scope="module", autouse=True)
def fresh_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A world built for this test run (not the developer's cached one)."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "world.json"
    world = build_world()
    path.write_text(world.to_json())
    mp = pytest.MonkeyPatch()
    mp.setenv("MLS_FUZZ_WORLD", str(path))
    for module in (process, harness.target("join"), harness.target("join_external")):
        for name in ("live", "_setup", "_world"):
            cached = getattr(module, name, None)
            if cached is not None:
                cached.cache_clear()
    yield world
    mp.undo()


def test_runner_lists_every_target() -> None:
    assert run.TARGETS == harness.TARGETS
    for name in harness.TARGETS:
        module = harness.target(name)
        assert callable(module.TestOneInput) and callable(module.run_one)


@pytest.mark.parametrize("name", harness.TARGETS)
def test_seeds_run_and_reach_acceptance(name: str) -> None:
    module = harness.target(name)
    seeds = list(module.seeds())
    outcomes = Counter(module.run_one(s) for s in seeds)
    assert len(seeds) >= 10, outcomes
    # a harness whose seeds never get through would fuzz only the first checks
    assert outcomes[Outcome.ACCEPTED] >= len(seeds) // 2, outcomes
    assert outcomes[Outcome.SKIPPED] == 0, outcomes


@pytest.mark.parametrize("name", harness.TARGETS)
def test_mutated_seeds_never_crash(name: str) -> None:
    module = harness.target(name)
    outcomes: Counter[Outcome] = Counter()
    for i, seed in enumerate(list(module.seeds())[:12]):
        for data in mutations(seed, 6, rng_seed=i):
            outcomes[module.run_one(data)] += 1  # a crash raises here
    assert outcomes[Outcome.REJECTED] > 0, outcomes


@pytest.mark.parametrize("name", ["process_public", "process_private"])
def test_resigned_mutation_gets_past_the_signature(name: str) -> None:
    """Mode 1 makes a mutated proposal authentic: it is rejected (or accepted) by the
    checks behind the signature, and the state is unchanged either way."""
    module = harness.target(name)
    lv = process.live()
    update = next(s for s in module.seeds() if s[0] == 1)
    assert module.run_one(update) is Outcome.ACCEPTED
    # garble the membership tag, which the harness recomputes: still accepted
    tampered = bytearray(update)
    tampered[-10] ^= 0xFF
    assert module.run_one(bytes(tampered)) is Outcome.ACCEPTED
    # the same bytes unauthenticated (mode 0) are refused by the membership tag check
    assert module.run_one(b"\x00" + bytes(tampered[1:])) is Outcome.REJECTED
    assert lv.group.to_bytes() == lv.state


def test_rejected_message_that_changes_state_is_a_finding(monkeypatch: pytest.MonkeyPatch,
                                                         ) -> None:
    """The process oracle fires when a rejected message leaves the state changed."""
    lv = process.live()
    real = type(lv.group).process

    def corrupting(self: object, data: bytes, *, now: int | None = None) -> object:
        lv.group._state.secret_tree.next(1, 1)
        return real(lv.group, data, now=now)

    monkeypatch.setattr(type(lv.group), "process", corrupting)
    with pytest.raises(InvariantViolation, match="changed the group state"):
        process.run_one(b"\x00garbage", process.PUBLIC)
    monkeypatch.undo()
    assert lv.group.to_bytes() == lv.state


def test_decoder_round_trip_oracle() -> None:
    i = decoders.selector("Remove")
    assert decoders.run_one(bytes([i]) + b"\x00\x00\x00\x07") is Outcome.ACCEPTED
    assert decoders.run_one(bytes([i]) + b"\x00\x00\x07") is Outcome.REJECTED
    bad = decoders.Decoder("lossy", lambda b: b[:1], lambda v: bytes(v))
    with pytest.raises(InvariantViolation, match="lossy"):
        decoders._decode_and_check(bad, b"ab")


def test_chunks_round_trip_and_tolerate_short_input() -> None:
    parts = [b"abc", b"", b"x" * 300]
    assert split_chunks(join_chunks(*parts), 3) == parts
    assert split_chunks(b"\x00", 3) == [b"", b"", b""]
    assert split_chunks(b"\xff\xffab", 2) == [b"ab", b""]


@pytest.mark.skipif(not (vectors_dir() / "messages.json").is_file(),
                    reason="official vectors not beside the repository")
def test_decoder_seeds_cover_the_main_structs() -> None:
    names = {decoders.DECODERS[s[0]].name for s in decoders.seeds()}
    assert {"MLSMessage", "Welcome", "GroupInfo", "KeyPackage", "ratchet_tree", "LeafNode",
            "Commit", "Proposal", "GroupSecrets", "Group.from_bytes"} <= names


def test_reproduce_replays_files_and_fails_on_a_crash(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seed = next(iter(harness.target("decoders").seeds()))
    good = tmp_path / "seed"
    good.write_bytes(seed)
    assert run.main(["decoders", "--reproduce", str(good)]) == 0

    def crash(data: bytes) -> Outcome:
        raise IndexError("not an MLSError")

    monkeypatch.setattr(decoders, "run_one", crash)
    assert run.main(["decoders", "--reproduce", str(good)]) == 1


def test_inner_resigning_gets_a_mutated_key_package_past_its_signatures() -> None:
    """Mode 3 re-signs the KeyPackage inside a Commit: a mutated lifetime then fails a
    later check (§7.9.2 parent hash) instead of the KeyPackage's own signature."""
    from dataclasses import replace

    from fuzz.world import NOW
    from mls_core.errors import MLSError
    from mls_core.framing import MLSMessage
    from mls_core.nodes import Lifetime
    from mls_core.proposals import Add, ProposalOrRef

    lv = process.live()

    def add_commit(seed: bytes) -> bool:
        pub = MLSMessage.decode(seed[1:]).public_message
        c = None if pub is None else pub.content.commit
        return c is not None and any(p.proposal is not None and isinstance(p.proposal.body, Add)
                                     for p in c.proposals)

    seed = next(s for s in process.seeds(process.PUBLIC) if s[0] == 1 and add_commit(s))
    pub = MLSMessage.decode(seed[1:]).public_message
    assert pub is not None and pub.content.commit is not None
    commit = pub.content.commit
    por = next(p for p in commit.proposals if p.proposal is not None)
    assert por.proposal is not None and isinstance(por.proposal.body, Add)
    kp = por.proposal.body.key_package
    kp = replace(kp, leaf_node=replace(kp.leaf_node, source_data=Lifetime(NOW - 10, NOW + 10)))
    proposals = tuple(ProposalOrRef.by_value(replace(p.proposal, body=Add(kp)))
                      if p is por and p.proposal is not None else p for p in commit.proposals)
    mutated = MLSMessage.of(replace(pub, content=replace(
        pub.content, body=replace(commit, proposals=proposals)))).encode()
    errors = []
    for inner in (False, True):
        message = process.rebuild(lv, mutated, process.PUBLIC, inner, 0)
        assert message is not None
        with pytest.raises(MLSError) as e:
            lv.world.group("alice").process(message, now=NOW)
        errors.append(str(e.value))
    assert "signature on LeafNode" in errors[0]
    assert "signature" not in errors[1], errors[1]
