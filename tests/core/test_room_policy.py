"""The room policy GroupContext extension and its enforcement (mls_core.room_policy)."""

from __future__ import annotations

import pytest

from mls_core.ciphersuite import get_suite
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.errors import PolicyError
from mls_core.external import external_proposal
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate, create_key_package, default_capabilities
from mls_core.messages import ExternalSender, KeyPackage, external_senders_extension
from mls_core.proposals import Add, GroupContextExtensions, Proposal, ProposalType, Remove
from mls_core.room_policy import (
    ROOM_POLICY_EXTENSION,
    Action,
    Role,
    RoomPolicy,
    RoomPolicyEnforcer,
    removal_label,
)

NOW = 1_800_000_000
SUITE = get_suite(1)
CAPS = default_capabilities(extensions=[ROOM_POLICY_EXTENSION])


class Member:
    def __init__(self, name: bytes, *, enforce: bool = True) -> None:
        self.name = name
        self.sig = SUITE.generate_signature_key_pair()[0]
        self.config = GroupConfig(commit_policy=RoomPolicyEnforcer() if enforce else None)
        self.group: Group | None = None

    @property
    def g(self) -> Group:
        assert self.group is not None
        return self.group

    def key_package(self) -> tuple[KeyPackage, KeyPackagePrivate]:
        return create_key_package(SUITE, Credential.basic(self.name), self.sig, now=NOW,
                                  capabilities=CAPS)


def _room(policy: RoomPolicy, *names: bytes, extra: tuple = ()) -> list[Member]:  # type: ignore[type-arg]
    """The first name creates the group with ``policy`` and adds the others."""
    members = [Member(n) for n in names]
    first = members[0]
    first.group = Group.create(1, Credential.basic(first.name), first.sig, now=NOW,
                               extensions=[policy.extension(), *extra], config=first.config)
    for m in members[1:]:
        kp, priv = m.key_package()
        result = first.g.commit([Add(kp)], now=NOW)
        first.g.merge_pending_commit()
        for other in members[1:]:
            if other.group is not None:
                other.g.process(result.commit, now=NOW)
        assert result.welcome is not None
        m.group = Group.join(result.welcome, kp, priv, config=m.config, now=NOW)
    return members


def _state(members: list[Member]) -> set[tuple[int, bytes]]:
    return {(m.g.epoch, m.g.epoch_authenticator) for m in members}


def test_policy_codec_and_validation() -> None:
    policy = RoomPolicy.build({b"alice": Role.ADMIN, b"bob": Role.MODERATOR,
                               b"mallory": Role.BANNED},
                              rules={Action.EXTERNAL_JOIN: Role.MEMBER},
                              external_senders={0: [ProposalType.REMOVE]})
    again = RoomPolicy.from_extensions([policy.extension()])
    assert again == policy
    assert policy.role_of(b"bob") is Role.MODERATOR and policy.role_of(b"zed") is Role.MEMBER
    assert policy.min_role(Action.EXTERNAL_JOIN) is Role.MEMBER
    with pytest.raises(PolicyError, match="at least one admin"):
        RoomPolicy.build({b"bob": Role.MEMBER})
    unsorted = RoomPolicy(1, tuple(reversed(policy.roles)), 1, policy.rules, ())
    with pytest.raises(PolicyError, match="sorted and unique"):
        unsorted.validate()
    from mls_core.extensions import Extension

    with pytest.raises(PolicyError, match="undecodable"):
        RoomPolicy.from_extensions([Extension(ROOM_POLICY_EXTENSION, b"\x00\x01\xff")])
    assert RoomPolicy.from_extensions([]) is None


def test_member_without_the_right_cannot_add_or_remove() -> None:
    policy = RoomPolicy.standard([b"alice"])
    alice, bob, carol = _room(policy, b"alice", b"bob", b"carol")
    dave = Member(b"dave")
    kp, _ = dave.key_package()
    with pytest.raises(PolicyError, match=r"bob \(member\) may not add \(needs moderator\)"):
        bob.g.commit([Add(kp)], now=NOW)
    assert not bob.g.has_pending_commit
    # a client that does not enforce the policy sends it anyway: every other client
    # rejects it with the same error and keeps its state
    rogue = Group.from_bytes(bob.g.to_bytes(), GroupConfig())
    forged = rogue.commit([Remove(carol.g.own_leaf_index)], now=NOW).commit
    before = _state([alice, carol])
    errors = []
    for m in (alice, carol):
        with pytest.raises(PolicyError) as info:
            m.g.process(forged, now=NOW)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and "bob (member) may not remove" in errors[0]
    assert _state([alice, carol]) == before
    # a member may always leave
    leave = bob.g.propose(Remove(bob.g.own_leaf_index))
    alice.g.process(leave, now=NOW)
    carol.g.process(leave, now=NOW)
    result = alice.g.commit(now=NOW)
    alice.g.merge_pending_commit()
    carol.g.process(result.commit, now=NOW)
    assert _state([alice, carol]) == {(alice.g.epoch, alice.g.epoch_authenticator)}
    assert len(alice.g.members) == 2


def test_admin_changes_the_policy_and_the_new_rights_apply() -> None:
    policy = RoomPolicy.standard([b"alice"])
    alice, bob, carol = _room(policy, b"alice", b"bob", b"carol")
    promoted = RoomPolicy.build({b"alice": Role.ADMIN, b"bob": Role.MODERATOR})
    # bob cannot promote himself
    with pytest.raises(PolicyError, match="may not change the room policy"):
        bob.g.commit([GroupContextExtensions((promoted.extension(),))], now=NOW)
    result = alice.g.commit([GroupContextExtensions((promoted.extension(),))], now=NOW)
    alice.g.merge_pending_commit()
    for m in (bob, carol):
        m.g.process(result.commit, now=NOW)
    assert len(_state([alice, bob, carol])) == 1
    dave = Member(b"dave")
    kp, priv = dave.key_package()
    added = bob.g.commit([Add(kp)], now=NOW)
    bob.g.merge_pending_commit()
    for m in (alice, carol):
        m.g.process(added.commit, now=NOW)
    assert added.welcome is not None
    dave.group = Group.join(added.welcome, kp, priv, config=dave.config, now=NOW)
    assert len(_state([alice, bob, carol, dave])) == 1
    # the policy cannot be dropped, and the last admin cannot be demoted
    with pytest.raises(PolicyError, match="may not drop the room policy"):
        alice.g.commit([GroupContextExtensions(())], now=NOW)
    with pytest.raises(PolicyError, match="at least one admin"):
        RoomPolicy.build({b"alice": Role.MEMBER})


def test_banned_identities_and_external_rights() -> None:
    bridge_priv, bridge_pub = SUITE.generate_signature_key_pair()
    senders = external_senders_extension([ExternalSender(bridge_pub,
                                                         Credential.basic(b"bridge"))])
    policy = RoomPolicy.build({b"alice": Role.ADMIN, b"mallory": Role.BANNED},
                              external_senders={0: [ProposalType.REMOVE]})
    alice, bob = _room(policy, b"alice", b"bob", extra=(senders,))
    mallory = Member(b"mallory")
    kp, _ = mallory.key_package()
    with pytest.raises(PolicyError, match="mallory is banned"):
        alice.g.commit([Add(kp)], now=NOW)
    # the bridge may propose removals but not additions
    carol_kp, _ = Member(b"carol").key_package()
    add = external_proposal(1, alice.g.group_id, alice.g.epoch, 0, bridge_priv,
                            Proposal.of(Add(carol_kp)))
    with pytest.raises(PolicyError, match="external sender 0 may not"):
        alice.g.process(add, now=NOW)
    # a Remove must name the member it removes (authenticated_data), so an external
    # sender misled about the tree cannot remove someone else
    for wrong in (b"", removal_label(b"alice")):
        steered = external_proposal(1, alice.g.group_id, alice.g.epoch, 0, bridge_priv,
                                    Proposal.of(Remove(bob.g.own_leaf_index)), wrong)
        with pytest.raises(PolicyError, match="does not name that member"):
            alice.g.process(steered, now=NOW)
    remove = external_proposal(1, alice.g.group_id, alice.g.epoch, 0, bridge_priv,
                               Proposal.of(Remove(bob.g.own_leaf_index)),
                               removal_label(b"bob"))
    alice.g.process(remove, now=NOW)
    bob.g.process(remove, now=NOW)
    result = alice.g.commit(now=NOW)
    alice.g.merge_pending_commit()
    assert bob.g.process(result.commit, now=NOW).removed_self  # type: ignore[union-attr]


def test_external_join_follows_the_rule() -> None:
    closed = RoomPolicy.standard([b"alice"])
    (alice,) = _room(closed, b"alice")
    erin = Member(b"erin")
    with pytest.raises(PolicyError, match="may not join by external Commit"):
        Group.join_external(alice.g.group_info(), Credential.basic(b"erin"), erin.sig,
                            config=erin.config, now=NOW)
    # a joiner that does not check still cannot get in: the members reject it
    _, commit = Group.join_external(alice.g.group_info(), Credential.basic(b"erin"),
                                    erin.sig, config=GroupConfig(), now=NOW)
    with pytest.raises(PolicyError, match="erin"):
        alice.g.process(commit, now=NOW)
    open_room = RoomPolicy.build({b"alice": Role.ADMIN},
                                 rules={Action.EXTERNAL_JOIN: Role.MEMBER})
    (alice,) = _room(open_room, b"alice")
    joined, commit = Group.join_external(alice.g.group_info(), Credential.basic(b"erin"),
                                         erin.sig, config=erin.config, now=NOW)
    alice.g.process(commit, now=NOW)
    assert joined.epoch_authenticator == alice.g.epoch_authenticator


def test_granting_an_external_sender_keeps_everything_else() -> None:
    policy = RoomPolicy.build({b"alice": Role.ADMIN}, rules={Action.ADD: Role.MODERATOR},
                              external_senders={1: [ProposalType.ADD]})
    granted = policy.granting(0, [ProposalType.REMOVE]).granting(1, [ProposalType.REMOVE])
    assert granted.external_sender_may(0, ProposalType.REMOVE)
    assert granted.external_sender_may(1, ProposalType.ADD)
    assert granted.external_sender_may(1, ProposalType.REMOVE)
    assert not granted.external_sender_may(0, ProposalType.ADD)
    assert granted.roles == policy.roles and granted.rules == policy.rules
