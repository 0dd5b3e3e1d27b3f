"""Multi-client scenarios over a real LocalDeliveryService and real SQLite files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mls_client import CommitConflictError, DeliveryPendingError, NotFoundError
from mls_client.demo import CrossingCommits
from mls_client.events import (
    CommitProcessed,
    GroupJoined,
    MessageReceived,
    ProposalQueued,
    RemovedFromGroup,
)
from mls_core.errors import MLSError, UsageError
from mls_core.proposals import ProposalType
from transports.base import SubmitResult, TransportError

from .helpers import Net, async_test


@async_test
async def test_six_clients_two_groups(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, carol, dave, erin, frank = await net.add(
            "alice", "bob", "carol", "dave", "erin", "frank")
        team = await alice.create_group(name="team")
        added = await alice.add_members(team, ["bob", "carol", "dave", "erin"])
        assert added.epoch == 1 and added.missing_users == ()
        assert set(added.added_clients) == {"bob-dev", "carol-dev", "dave-dev", "erin-dev"}
        await net.sync()
        pair = await erin.create_group(name="pair")
        await erin.add_members(pair, ["frank", "carol"])
        await net.sync()

        await bob.send(team, b"team 1")
        await carol.send(pair, b"pair 1")
        await frank.send(pair, b"pair 2")
        await net.sync()
        for name in ("alice", "carol", "dave", "erin"):
            assert b"team 1" in net.received(name, team)
        assert net.received("frank") == [b"pair 1"]
        assert net.received("erin", pair) == [b"pair 1", b"pair 2"]
        assert b"pair 1" not in net.received("alice")

        await alice.remove_members(team, ["dave"])
        await net.sync()
        assert any(isinstance(e, RemovedFromGroup) for e in net.events["dave"])
        await carol.send(team, b"after dave left")
        await net.sync()
        assert b"after dave left" not in net.received("dave")
        assert b"after dave left" in net.received("bob")
        with pytest.raises(NotFoundError):
            await dave.send(team, b"still here?")
        await net.agree(team, ["alice", "bob", "carol", "erin"])
        await net.agree(pair, ["erin", "frank", "carol"])
        names = {g.name: g.members for g in await alice.groups()}
        assert sorted(names["team"]) == ["alice", "bob", "carol", "erin"]
        # nobody got an application message twice
        for name in net.clients:
            got = net.received(name)
            assert len(got) == len(set(got)), name
    finally:
        await net.close()


@async_test
async def test_offline_client_catches_up_in_order(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        # carol is offline while the group moves on by several epochs
        for i in range(3):
            await alice.send(gid, b"a%d" % i)
            await bob.update(gid)
            await bob.send(gid, b"b%d" % i)
        await alice.sync()
        await net.sync("carol")
        assert net.received("carol") == [b"a0", b"b0", b"a1", b"b1", b"a2", b"b2"]
        assert await carol.epoch(gid) == 4
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        await net.close()


@async_test
async def test_concurrent_commits_one_loses_and_retries(tmp_path: Path) -> None:
    net = Net(tmp_path)
    crossing = CrossingCommits(net.ds)
    net.transport = crossing
    try:
        alice, bob, carol, dave, _ = await net.add("alice", "bob", "carol", "dave", "erin")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        crossing.arm(2)
        results = await asyncio.gather(bob.update(gid), carol.update(gid))
        assert sorted(r.epoch for r in results) == [2, 3]
        assert bob.stats.commits_lost + carol.stats.commits_lost == 1
        # two members adding different users at the same time: both end up added
        crossing.arm(2)
        adds = await asyncio.gather(bob.add_members(gid, ["dave"]),
                                    carol.add_members(gid, ["erin"]))
        assert sorted(a.epoch for a in adds) == [4, 5]
        assert bob.stats.commits_lost + carol.stats.commits_lost == 2
        await net.sync()
        await net.agree(gid, ["alice", "bob", "carol", "dave", "erin"])
        await dave.send(gid, b"hi from dave")
        await net.sync()
        assert net.received("erin") == [b"hi from dave"]
    finally:
        await net.close()


class _AlwaysTaken(CrossingCommits):
    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        if is_commit:
            from transports.base import SubmitStatus

            return SubmitResult(SubmitStatus.REJECTED_EPOCH_TAKEN)
        return await super().submit(group_id, epoch, payload, is_commit=is_commit,
                                    sender=sender, message_id=message_id)


@async_test
async def test_commit_retries_are_bounded(tmp_path: Path) -> None:
    net = Net(tmp_path)
    net.transport = _AlwaysTaken(net.ds)  # every Commit loses its epoch
    try:
        (alice,) = await net.add("alice", commit_retries=2)
        gid = await alice.create_group()
        with pytest.raises(CommitConflictError):
            await alice.update(gid)
        assert alice.stats.commits_lost == 3
        assert await alice.epoch(gid) == 0
        assert not (await alice.group(gid)).has_pending_commit
        assert await alice.store.outbox() == []
    finally:
        await net.close()


@async_test
async def test_restart_from_database_mid_conversation(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        await alice.send(gid, b"before restart")
        await net.sync("bob")
        bob = await net.reopen("bob")
        await alice.send(gid, b"while bob restarts")
        await carol.update(gid)
        await alice.send(gid, b"after the update")
        await net.sync("bob")
        bob = await net.reopen("bob")  # and once more, with nothing new
        await net.sync("bob")
        assert net.received("bob") == [b"before restart", b"while bob restarts",
                                       b"after the update"]
        await bob.send(gid, b"bob is back")
        await net.sync()
        assert net.received("carol")[-1] == b"bob is back"
        await net.agree(gid, ["alice", "bob", "carol"])
        inbox = [m.data for m in await bob.inbox(gid) if not m.outgoing]
        assert inbox == [b"before restart", b"while bob restarts", b"after the update"]
    finally:
        await net.close()


@async_test
async def test_recover_after_state_loss(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        carol_leaf = (await carol.group(gid)).own_leaf_index
        async with carol.store.transaction() as tx:  # carol loses the group's state
            await tx.delete_group(gid)
        carol = await net.reopen("carol")
        await alice.send(gid, b"lost to carol")
        await bob.update(gid)
        epoch = await carol.recover_group(gid)
        assert epoch == 3
        await net.sync()
        members = await alice.members(gid)
        assert len(members) == 3  # the stale leaf was removed, not duplicated
        assert carol_leaf in {m.index for m in members}  # external joiner took the blank
        await alice.send(gid, b"welcome back")
        await net.sync()
        assert net.received("carol") == [b"welcome back"]
        assert any(isinstance(e, GroupJoined) and e.via == "external"
                   for e in net.events["carol"])
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        await net.close()


@async_test
async def test_removed_member_cannot_recover(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob = await net.add("alice", "bob")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync()
        await alice.remove_members(gid, ["bob"])
        await net.sync()
        with pytest.raises(UsageError):
            await bob.recover_group(gid)
    finally:
        await net.close()


@async_test
async def test_key_package_pool_and_last_resort(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob = await net.add("alice", "bob", pool_size=3, threshold=2)
        ds = net.ds
        assert await ds.key_package_count("bob-dev") == 3
        stored = await bob.store.key_packages()
        assert sum(kp.last_resort for kp in stored) == 1 and len(stored) == 4
        g1 = await alice.create_group()
        await alice.add_members(g1, ["bob"])
        await net.sync("bob")
        # the used KeyPackage's private keys are gone; 2 left is not below the threshold
        assert len(await bob.store.key_packages()) == 3
        assert await ds.key_package_count("bob-dev") == 2
        # exhaust the one-use KeyPackages: the next add uses the last-resort one
        for _ in range(2):
            await ds.claim_key_package("bob-dev")
        old_last_resort = [kp.ref for kp in await bob.store.key_packages() if kp.last_resort]
        g2 = await alice.create_group()
        await alice.add_members(g2, ["bob"])
        events = await bob.sync()
        joined = [e for e in events if isinstance(e, GroupJoined)]
        assert joined and joined[0].last_resort
        # RFC 9750: update the leaf soon, rotate the last-resort KeyPackage
        assert any(isinstance(e, CommitProcessed) and e.own for e in events)
        assert await bob.epoch(g2) == 2
        refs = [kp.ref for kp in await bob.store.key_packages() if kp.last_resort]
        assert len(refs) == 1 and refs != old_last_resort
        assert await ds.key_package_count("bob-dev") == 3
        await alice.sync()
        await net.agree(g2, ["alice", "bob"])
    finally:
        await net.close()


@async_test
async def test_add_user_without_key_packages(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, _ = await net.add("alice", "bob")
        gid = await alice.create_group()
        result = await alice.add_members(gid, ["nobody", "bob"])
        assert result.missing_users == ("nobody",)
        assert result.added_clients == ("bob-dev",)
    finally:
        await net.close()


@async_test
async def test_leave_is_committed_by_designated_member(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        await bob.leave(gid)
        with pytest.raises(UsageError):
            await bob.send(gid, b"leaving")
        events = await net.sync("carol", "alice")
        assert any(isinstance(e, ProposalQueued) and e.proposal_type == ProposalType.REMOVE
                   for e in events["carol"])
        assert any(isinstance(e, CommitProcessed) and e.own and e.removed == ("bob",)
                   for e in events["alice"])  # alice has the lowest leaf index
        await net.sync()
        assert any(isinstance(e, RemovedFromGroup) for e in net.events["bob"])
        await net.agree(gid, ["alice", "carol"])
        assert [m.credential.identity for m in await carol.members(gid)] == [b"alice",
                                                                              b"carol"]
    finally:
        await net.close()


@async_test
async def test_pending_proposal_is_committed_before_sending(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        await carol.leave(gid)
        await bob.send(gid, b"bob commits carol's leave first")  # alice is not around
        await net.sync()
        assert net.received("alice") == [b"bob commits carol's leave first"]
        assert b"bob commits carol's leave first" not in net.received("carol")
        await net.agree(gid, ["alice", "bob"])
    finally:
        await net.close()


@async_test
async def test_duplicate_ciphertext_is_delivered_once(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob = await net.add("alice", "bob")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync()
        ciphertext = await alice.send(gid, b"once")
        result = await net.ds.submit(gid, 1, ciphertext, is_commit=False, sender="alice-dev")
        assert result.accepted  # the service appended a second copy
        await net.sync("bob")
        assert net.received("bob") == [b"once"]
        assert len(await bob.inbox(gid)) == 1
    finally:
        await net.close()


@async_test
async def test_messages_before_the_welcome_are_buffered(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync()
        await net.ds.subscribe("carol-dev", gid)  # carol sees traffic before her Welcome
        await bob.send(gid, b"before carol")
        await alice.add_members(gid, ["carol"])
        await bob.send(gid, b"after carol joined")
        await net.sync("carol")
        assert net.received("carol") == [b"after carol joined"]
        assert await carol.store.buffered(gid) == []
        await net.sync()
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        await net.close()


@async_test
async def test_events_loop_delivers_while_running(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob = await net.add("alice", "bob")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        got: list[bytes] = []
        stop = asyncio.Event()

        async def handler(event: object) -> None:
            if isinstance(event, MessageReceived):
                got.append(event.data)
                if len(got) == 2:
                    stop.set()

        runner = asyncio.create_task(bob.run(handler, stop))
        await asyncio.sleep(0.1)
        await alice.send(gid, b"one")
        await alice.send(gid, b"two")
        await asyncio.wait_for(runner, timeout=10)
        assert got == [b"one", b"two"]

        stream = alice.events()
        await bob.send(gid, b"three")
        event = await asyncio.wait_for(anext(stream), timeout=10)
        while not isinstance(event, MessageReceived):
            event = await asyncio.wait_for(anext(stream), timeout=10)
        assert event.data == b"three" and event.sender == "bob"
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await net.close()


class _FailAfterSubmit(CrossingCommits):
    """The Commit reaches the service but the answer is lost (transport failure)."""

    def __init__(self, inner: object, before: bool) -> None:
        super().__init__(inner)  # type: ignore[arg-type]
        self.before = before
        self.armed = False

    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        if is_commit and self.armed:
            self.armed = False
            if not self.before:
                await super().submit(group_id, epoch, payload, is_commit=is_commit,
                                     sender=sender, message_id=message_id)
            raise TransportError("connection lost")
        return await super().submit(group_id, epoch, payload, is_commit=is_commit,
                                    sender=sender, message_id=message_id)


@pytest.mark.parametrize("before", [False, True], ids=["answer-lost", "never-arrived"])
@async_test
async def test_commit_outcome_unknown_is_waited_out(tmp_path: Path, before: bool) -> None:
    """One transient failure: the Commit is submitted again under its message id
    (answer-lost: the service returns its first result), no error, one Commit."""
    net = Net(tmp_path)
    flaky = _FailAfterSubmit(net.ds, before)
    net.transport = flaky
    try:
        alice, _, _ = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync()
        flaky.armed = True
        await alice.add_members(gid, ["carol"])
        assert await alice.epoch(gid) == 2 and alice.stats.submit_retries == 1
        await net.sync()
        assert await alice.store.outbox() == []
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        await net.close()


@pytest.mark.parametrize("before", [False, True], ids=["answer-lost", "never-arrived"])
@async_test
async def test_commit_outcome_unknown_is_resolved(tmp_path: Path, before: bool) -> None:
    """``submit_wait = 0``: the failure is raised at once, as DeliveryPendingError (a
    TransportError), and the next sync finishes the job."""
    net = Net(tmp_path)
    flaky = _FailAfterSubmit(net.ds, before)
    net.transport = flaky
    try:
        alice, _, _ = await net.add("alice", "bob", "carol", submit_wait=0)
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync()
        flaky.armed = True
        with pytest.raises(DeliveryPendingError):
            await alice.add_members(gid, ["carol"])
        assert (await alice.group(gid)).has_pending_commit
        # the next sync learns the outcome from the stream (or resubmits) and finishes
        # the job: merge, Welcome to carol, GroupInfo
        await net.sync()
        await net.sync()
        assert await alice.epoch(gid) == 2
        assert await alice.store.outbox() == []
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        await net.close()


@async_test
async def test_unreadable_group_state_is_a_typed_error(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        (alice,) = await net.add("alice")
        gid = await alice.create_group()
        async with alice.store.transaction() as tx:
            await tx.put_group(gid, b"garbage", 0)
        alice = await net.reopen("alice")
        with pytest.raises(MLSError, match="unreadable"):
            await alice.send(gid, b"x")
    finally:
        await net.close()


@async_test
async def test_past_epoch_window_comes_from_settings(tmp_path: Path) -> None:
    from mls_client.settings import WindowSettings

    net = Net(tmp_path)
    try:
        alice, bob = await net.add("alice", "bob")
        (carol,) = await net.add("carol", windows=WindowSettings(max_past_epochs=0))
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        stale_bob = await bob.group(gid)  # bob's view at epoch 1, as if he were lagging
        await alice.update(gid)
        late = stale_bob.encrypt(b"late from epoch 1")
        assert (await net.ds.submit(gid, 1, late, is_commit=False, sender="bob-dev")).accepted
        await net.sync("alice", "carol")
        assert net.received("alice") == [b"late from epoch 1"]  # default: 2 past epochs
        assert net.received("carol") == []  # max_past_epochs = 0: the keys are gone
        assert carol.stats.messages_rejected == 1
    finally:
        await net.close()
