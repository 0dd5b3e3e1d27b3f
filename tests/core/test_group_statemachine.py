"""Stateful property test of the group layer (RFC 9420 §12): a hypothesis state machine
drives 2-30 members through random adds (by Welcome, with the tree in the Welcome or out
of band), removes, updates (empty Commits and Update proposals), external and resumption
PSKs, proposals by reference, external joins and resyncs, application messages (also
late ones), and concurrent Commits over an ordering Delivery Service where the first
Commit of an epoch wins and the losers discard theirs, process the winner and retry.

After every step all members agree on epoch, epoch_authenticator, exporter output,
GroupContext and member list (``World.check``); removed members cannot read later
application messages and new members cannot read earlier ones (checked as messages are
sent and as members join).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from mls_core.commit_flow import CommitResult
from mls_core.errors import ValidationError
from mls_core.framing import WireFormat
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate
from mls_core.messages import KeyPackage
from mls_core.nodes import LeafNodeSource
from mls_core.proposals import Add, PreSharedKey, Remove
from mls_core.psk import (
    ExternalPSK,
    PreSharedKeyID,
    PSKType,
    ResumptionPSK,
    ResumptionPSKUsage,
)

from .group_helpers import NOW, AnyProposal, Client, World

MIN_MEMBERS = 2
MAX_MEMBERS = 30
picks = st.integers(min_value=0, max_value=2**16)

Joiner = tuple[Client, KeyPackage, KeyPackagePrivate]


def _holds_resumption_psk(g: Group, epoch: int) -> bool:
    try:
        g.resumption_psk(epoch)
    except ValidationError:
        return False
    return True


class GroupMachine(RuleBasedStateMachine):
    """One group, its members and an ordering Delivery Service."""

    def __init__(self) -> None:
        super().__init__()
        self.w: World | None = None
        self.psk_ids = 0

    @property
    def world(self) -> World:
        assert self.w is not None
        return self.w

    # ------------------------------------------------------------------ helpers

    def names(self) -> list[bytes]:
        return sorted(self.world.members)

    def pick(self, i: int, *, exclude: tuple[bytes, ...] = ()) -> bytes:
        names = [n for n in self.names() if n not in exclude]
        return names[i % len(names)]

    def size(self) -> int:
        return len(self.world.members)

    def new_joiners(self, count: int) -> list[Joiner]:
        out = []
        for _ in range(count):
            j = self.world.client()
            kp, priv = j.key_package()
            out.append((j, kp, priv))
        return out

    def new_psk(self) -> PreSharedKey:
        self.psk_ids += 1
        psk_id = b"psk-%d" % self.psk_ids
        self.world.psks[psk_id] = os.urandom(32)
        nonce = os.urandom(self.world.suite.hash_length)
        return PreSharedKey(PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(psk_id), nonce))

    def resumption_psk(self, back: int) -> PreSharedKey:
        """A resumption PSK of an epoch up to ``back`` epochs ago that every member still
        holds (members hold those of the epochs since they joined)."""
        groups = [c.g for c in self.world.members.values()]
        g = groups[0]
        epoch = next(e for e in range(max(0, g.epoch - back), g.epoch + 1)
                     if all(_holds_resumption_psk(x, e) for x in groups))
        pid = PreSharedKeyID(PSKType.RESUMPTION,
                             ResumptionPSK(ResumptionPSKUsage.APPLICATION, g.group_id, epoch),
                             os.urandom(self.world.suite.hash_length))
        return PreSharedKey(pid)

    # ------------------------------------------------------------------ setup

    @initialize(suite=st.sampled_from([1, 3]),
                wire_format=st.sampled_from([WireFormat.MLS_PUBLIC_MESSAGE,
                                             WireFormat.MLS_PRIVATE_MESSAGE]),
                initial=st.integers(min_value=1, max_value=4))
    def setup(self, suite: int, wire_format: int, initial: int) -> None:
        self.w = World(suite, wire_format=wire_format, max_past_epochs=1)
        self.world.add(b"m0", initial)

    # ------------------------------------------------------------------ membership

    @precondition(lambda self: self.w is not None and self.size() < MAX_MEMBERS)
    @rule(committer=picks, count=st.integers(min_value=1, max_value=3),
          tree_in_welcome=st.booleans())
    def add(self, committer: int, count: int, tree_in_welcome: bool) -> None:
        count = min(count, MAX_MEMBERS - self.size())
        joiners = self.new_joiners(count)
        self.world.commit(self.pick(committer), [Add(kp) for _, kp, _ in joiners], joiners,
                          tree_in_welcome=tree_in_welcome)

    @precondition(lambda self: self.w is not None and self.size() > MIN_MEMBERS)
    @rule(committer=picks, victim=picks)
    def remove(self, committer: int, victim: int) -> None:
        by = self.pick(committer)
        self.world.remove(by, self.pick(victim, exclude=(by,)))

    @precondition(lambda self: self.w is not None and self.size() > MIN_MEMBERS)
    @rule(proposer=picks, committer=picks, victim=picks)
    def remove_by_reference(self, proposer: int, committer: int, victim: int) -> None:
        by = self.pick(committer)
        target = self.pick(victim, exclude=(by,))
        self.world.propose(self.pick(proposer), Remove(self.world.members[target].g
                                                       .own_leaf_index))
        self.world.commit(by)
        assert target in self.world.former

    @precondition(lambda self: self.w is not None and self.size() < MAX_MEMBERS)
    @rule(via=picks)
    def external_join(self, via: int) -> None:
        self.world.external_join(self.pick(via))

    @precondition(lambda self: self.w is not None)
    @rule(member=picks, via=picks)
    def resync(self, member: int, via: int) -> None:
        name = self.pick(member)
        self.world.external_join(self.pick(via), self.world.members[name], resync=True)

    # ------------------------------------------------------------------ key updates, PSKs

    @precondition(lambda self: self.w is not None)
    @rule(committer=picks)
    def update(self, committer: int) -> None:
        self.world.commit(self.pick(committer))

    @precondition(lambda self: self.w is not None)
    @rule(proposers=st.lists(picks, min_size=1, max_size=3), committer=picks)
    def update_proposals(self, proposers: list[int], committer: int) -> None:
        """Members propose Updates of their own leaves (§12.1.2); another commits them."""
        w = self.world
        by = self.pick(committer)
        names = sorted({self.pick(p, exclude=(by,)) for p in proposers})
        for name in names:
            assert w.ds.submit(name, w.members[name].g.propose_update(now=NOW))
            w.sync_all()
        w.commit(by)
        for name in names:
            g = w.members[name].g
            leaf = g.tree.leaf(g.own_leaf_index)
            assert leaf is not None and leaf.leaf_node_source == LeafNodeSource.UPDATE

    @precondition(lambda self: self.w is not None)
    @rule(proposer=picks, committer=picks, by_reference=st.booleans())
    def external_psk(self, proposer: int, committer: int, by_reference: bool) -> None:
        psk = self.new_psk()
        if by_reference:
            self.world.propose(self.pick(proposer), psk)
            self.world.commit(self.pick(committer))
        else:
            self.world.commit(self.pick(committer), [psk])

    @precondition(lambda self: self.w is not None)
    @rule(proposer=picks, committer=picks, back=st.integers(min_value=0, max_value=3))
    def resumption(self, proposer: int, committer: int, back: int) -> None:
        self.world.propose(self.pick(proposer), self.resumption_psk(back))
        self.world.commit(self.pick(committer))

    # ------------------------------------------------------------------ application data

    @precondition(lambda self: self.w is not None)
    @rule(sender=picks, size=st.integers(min_value=0, max_value=200))
    def send(self, sender: int, size: int) -> None:
        data = self.world.send(self.pick(sender), os.urandom(size))
        self.world.check_former_cannot_read(data)

    @precondition(lambda self: self.w is not None)
    @rule(sender=picks, committer=picks)
    def late_send(self, sender: int, committer: int) -> None:
        """A message sent just before a Commit is delivered after it (§14)."""
        name = self.pick(sender)
        c = self.world.members[name]
        plaintext = os.urandom(16)
        data = c.g.encrypt(plaintext)
        self.world.commit(self.pick(committer))
        if name not in self.world.members:
            return
        assert self.world.ds.submit(name, data)
        self.world.deliver_application(name, plaintext)

    # ------------------------------------------------------------------ concurrency

    def _intent(self, name: bytes, kind: int, victim: int,
                avoid: tuple[bytes, ...]) -> tuple[list[AnyProposal], list[Joiner], bytes | None]:
        """What a racing member wants to commit: 0 update, 1 add, 2 remove, 3 PSK.
        Returns the proposals, the joiners to welcome and the member to remove."""
        if kind == 1 and self.size() < MAX_MEMBERS - 1:
            joiners = self.new_joiners(1)
            return [Add(joiners[0][1])], joiners, None
        if kind == 2 and self.size() > MIN_MEMBERS + 1:
            target = self.pick(victim, exclude=(name, *avoid))
            return [Remove(self.world.members[target].g.own_leaf_index)], [], target
        if kind == 3:
            return [self.new_psk()], [], None
        return [], [], None

    @precondition(lambda self: self.w is not None and self.size() >= 2)
    @rule(first=picks, second=picks, kinds=st.tuples(st.integers(0, 3), st.integers(0, 3)),
          victims=st.tuples(picks, picks))
    def concurrent_commits(self, first: int, second: int, kinds: tuple[int, int],
                           victims: tuple[int, int]) -> None:
        """Two members commit in the same epoch; the DS takes the first; the loser
        discards its Commit, processes the winner and retries."""
        w = self.world
        a = self.pick(first)
        b = self.pick(second, exclude=(a,))
        pa, ja, _ = self._intent(a, kinds[0], victims[0], (b,))
        pb, jb, target = self._intent(b, kinds[1], victims[1], (a,))
        ra = w.members[a].g.commit(pa, now=NOW)
        rb = w.members[b].g.commit(pb, now=NOW)
        assert w.ds.submit(a, ra.commit)
        assert not w.ds.submit(b, rb.commit)
        w.members[b].g.discard_pending_commit()
        w.accepted(a, ra, ja)
        if b not in w.members:
            return  # the winner removed the loser
        if target is not None:  # the winner may have removed our target already
            pb = ([Remove(w.members[target].g.own_leaf_index)]
                  if target in w.members else [])
        assert w.try_commit(b, pb, jb) is not None

    @precondition(lambda self: self.w is not None and self.size() < MAX_MEMBERS)
    @rule(via=picks, committer=picks, joiner_first=st.booleans())
    def external_join_races_commit(self, via: int, committer: int,
                                   joiner_first: bool) -> None:
        """An external joiner races a member's Commit. A rejected joiner drops its
        group and retries with a fresh GroupInfo; a rejected member retries its Commit."""
        w = self.world
        member = self.pick(committer)
        joiner = w.client()
        group, ext_commit = w.external_commit(self.pick(via), joiner)
        result: CommitResult = w.members[member].g.commit(now=NOW)
        if joiner_first:
            assert w.ds.submit(joiner.name, ext_commit)
            assert not w.ds.submit(member, result.commit)
            w.members[member].g.discard_pending_commit()
            w.external_accepted(joiner, group, resync=False)
            assert w.try_commit(member) is not None
        else:
            assert w.ds.submit(member, result.commit)
            assert not w.ds.submit(joiner.name, ext_commit)
            w.accepted(member, result)
            del group  # stale: never used
            w.external_join(self.pick(via), joiner)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def members_agree(self) -> None:
        if self.w is not None:
            self.world.check()
            assert MIN_MEMBERS <= self.size() <= MAX_MEMBERS


GroupMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestGroupMachine = GroupMachine.TestCase

