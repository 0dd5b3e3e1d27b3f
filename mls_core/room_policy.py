"""The room policy: roles and rights agreed inside the group, as a GroupContext extension.

One policy for a group, whatever networks its members are on (the approach of IETF MIMI:
the room's policy lives in the group's own state). It is set when the group is created
and changed only by a GroupContextExtensions Commit that the policy in force allows. It
is a private-use extension type (RFC 9420 §17.3: 0xF000-0xFFFF), so every member must
list it in its capabilities (§12.1.7), and :class:`RoomPolicyEnforcer` — the
:class:`~mls_core.policy.CommitPolicy` every client installs — checks each proposal and
Commit against it. Violations raise :class:`~mls_core.errors.PolicyError` with a message
that names the rule, identically on every client.

Wire format (TLS presentation language, §2.1)::

    enum { banned(0), member(1), moderator(2), admin(3), nobody(255) } Role;
    enum { add(1), remove(2), change_policy(3), change_extensions(4),
           external_join(5), psk(6), reinit(7) } Action;

    struct { opaque identity<V>; Role role; } RoleAssignment;
    struct { Action action; Role min_role; } Rule;
    struct { uint32 index; ProposalType allowed<V>; } ExternalSenderRight;

    struct {
        uint16 version = 1;
        RoleAssignment roles<V>;      // sorted by identity, unique
        Role default_role;            // the role of identities not listed
        Rule rules<V>;                // one per Action, sorted by action
        ExternalSenderRight external_senders<V>;
    } RoomPolicy;

Semantics: a member's role is the role of its credential's identity. The *proposer* of
each proposal needs ``min_role`` of its action (an Update, or a Remove of one's own leaf,
is always allowed); a member of role ``banned`` may not be added or join. External
Commits need ``external_join`` for the joiner's identity. An external sender (§12.1.8.1,
e.g. a bridge) may send only the proposal types its ``ExternalSenderRight`` lists; a
new-member proposal (§12.1.8) needs a committer with the ``add`` right. A change of the
policy must keep at least one admin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

from .codec import U16, Struct, Uint8, Uint16, Uint32, VarBytes, Vec
from .credentials import Credential
from .errors import MLSError, PolicyError
from .extensions import Extension
from .framing import Sender, SenderType
from .policy import PolicyReview
from .proposal_list import CommittedProposal
from .proposals import Add, GroupContextExtensions, ProposalType, Remove

#: private-use extension type of the room policy (§17.3)
ROOM_POLICY_EXTENSION = 0xF0A1
POLICY_VERSION = 1


class Role(IntEnum):
    BANNED = 0
    MEMBER = 1
    MODERATOR = 2
    ADMIN = 3
    #: as a rule's min_role: nobody may
    NOBODY = 255


class Action(IntEnum):
    ADD = 1
    REMOVE = 2
    CHANGE_POLICY = 3
    CHANGE_EXTENSIONS = 4
    EXTERNAL_JOIN = 5
    PSK = 6
    REINIT = 7


#: rules of :meth:`RoomPolicy.standard`
STANDARD_RULES: Mapping[Action, Role] = {
    Action.ADD: Role.MODERATOR,
    Action.REMOVE: Role.MODERATOR,
    Action.CHANGE_POLICY: Role.ADMIN,
    Action.CHANGE_EXTENSIONS: Role.ADMIN,
    Action.EXTERNAL_JOIN: Role.NOBODY,
    Action.PSK: Role.MEMBER,
    Action.REINIT: Role.ADMIN,
}

_ACTION_OF: Mapping[int, Action] = {
    ProposalType.ADD: Action.ADD,
    ProposalType.REMOVE: Action.REMOVE,
    ProposalType.PSK: Action.PSK,
    ProposalType.REINIT: Action.REINIT,
}


@dataclass(frozen=True)
class RoleAssignment(Struct):
    """struct { opaque identity<V>; Role role; } RoleAssignment;"""

    identity: VarBytes
    role: Uint8


@dataclass(frozen=True)
class Rule(Struct):
    """struct { Action action; Role min_role; } Rule;"""

    action: Uint8
    min_role: Uint8


@dataclass(frozen=True)
class ExternalSenderRight(Struct):
    """struct { uint32 index; ProposalType allowed<V>; } ExternalSenderRight;"""

    index: Uint32
    allowed: Annotated[tuple[int, ...], Vec(U16)]


@dataclass(frozen=True)
class RoomPolicy(Struct):
    """The policy extension's body (see the module docstring)."""

    version: Uint16
    roles: Annotated[tuple[RoleAssignment, ...], Vec(RoleAssignment)]
    default_role: Uint8
    rules: Annotated[tuple[Rule, ...], Vec(Rule)]
    external_senders: Annotated[tuple[ExternalSenderRight, ...], Vec(ExternalSenderRight)]

    @classmethod
    def build(cls, roles: Mapping[bytes, Role], *, default_role: Role = Role.MEMBER,
              rules: Mapping[Action, Role] = STANDARD_RULES,
              external_senders: Mapping[int, Iterable[int]] | None = None) -> RoomPolicy:
        """A canonical policy (sorted, every action ruled); validated."""
        full = {**STANDARD_RULES, **rules}
        policy = cls(POLICY_VERSION,
                     tuple(RoleAssignment(i, int(r)) for i, r in sorted(roles.items())),
                     int(default_role),
                     tuple(Rule(int(a), int(full[a])) for a in sorted(full)),
                     tuple(ExternalSenderRight(i, tuple(sorted(set(t))))
                           for i, t in sorted((external_senders or {}).items())))
        policy.validate()
        return policy

    @classmethod
    def standard(cls, admins: Iterable[bytes], *,
                 external_senders: Mapping[int, Iterable[int]] | None = None) -> RoomPolicy:
        """Admins as given, everyone else a member; moderators add and remove."""
        return cls.build({a: Role.ADMIN for a in admins}, external_senders=external_senders)

    @classmethod
    def from_extensions(cls, extensions: Iterable[Extension]) -> RoomPolicy | None:
        """The policy among GroupContext extensions, or None if the group has none."""
        for ext in extensions:
            if ext.extension_type == ROOM_POLICY_EXTENSION:
                try:
                    policy = cls.decode(ext.extension_data)
                except MLSError as exc:
                    raise PolicyError(f"room policy: undecodable ({exc})") from None
                policy.validate()
                return policy
        return None

    def extension(self) -> Extension:
        return Extension(ROOM_POLICY_EXTENSION, self.encode())

    def validate(self) -> None:
        """Well-formedness: version, known roles and actions, sorted unique entries,
        at least one admin."""
        if self.version != POLICY_VERSION:
            raise PolicyError(f"room policy: unsupported version {self.version}")
        ids = [r.identity for r in self.roles]
        if ids != sorted(set(ids)):
            raise PolicyError("room policy: role assignments must be sorted and unique")
        roles = [r.role for r in self.roles] + [self.default_role]
        roles += [r.min_role for r in self.rules]
        if any(r not in Role.__members__.values() for r in roles):
            raise PolicyError("room policy: unknown role value")
        actions = [r.action for r in self.rules]
        if actions != sorted(Action) or len(actions) != len(Action):
            raise PolicyError("room policy: exactly one rule per action, in order")
        indexes = [e.index for e in self.external_senders]
        if indexes != sorted(set(indexes)):
            raise PolicyError("room policy: external sender rights must be sorted and unique")
        if self.default_role == Role.NOBODY or Role.NOBODY in {r.role for r in self.roles}:
            raise PolicyError("room policy: 'nobody' is only a rule's min_role")
        if Role.ADMIN not in {r.role for r in self.roles} and self.default_role != Role.ADMIN:
            raise PolicyError("room policy: at least one admin is required")

    def role_of(self, identity: bytes | None) -> Role:
        if identity is not None:
            for r in self.roles:
                if r.identity == identity:
                    return Role(r.role)
        return Role(self.default_role)

    def min_role(self, action: Action) -> Role:
        for r in self.rules:
            if r.action == action:
                return Role(r.min_role)
        return Role.NOBODY

    def external_sender_may(self, index: int, proposal_type: int) -> bool:
        return any(e.index == index and proposal_type in e.allowed
                   for e in self.external_senders)

    def granting(self, index: int, proposal_types: Iterable[int]) -> RoomPolicy:
        """This policy with ``external_senders[index]`` (§12.1.8.1) also allowed to
        send ``proposal_types`` (e.g. a bridge proposing Remove after a room ban)."""
        rights = {e.index: tuple(e.allowed) for e in self.external_senders}
        rights[index] = tuple(sorted({*rights.get(index, ()), *proposal_types}))
        return RoomPolicy.build({r.identity: Role(r.role) for r in self.roles},
                                default_role=Role(self.default_role),
                                rules={Action(r.action): Role(r.min_role) for r in self.rules},
                                external_senders=rights)


#: the authenticated_data of an external sender's Remove names the removed identity
REMOVE_LABEL = b"remove:"


def removal_label(identity: bytes) -> bytes:
    """The ``authenticated_data`` an external sender puts on a Remove of ``identity``."""
    return REMOVE_LABEL + identity


def _check_named_removal(review: PolicyReview, index: int, removed: int,
                         authenticated_data: bytes) -> None:
    """An external sender (a bridge) that locates a member's leaf from information it
    cannot fully verify must say whom it means to remove: a Remove whose leaf does not
    hold that identity is refused by every member, so it cannot be steered at another."""
    credential = review.credential_at(removed)
    identity = None if credential is None else credential.identity
    if identity is None or authenticated_data != removal_label(identity):
        raise PolicyError(f"room policy: external sender {index}'s Remove of leaf "
                          f"{removed} does not name that member")


def _identity(credential: Credential | None) -> bytes | None:
    return None if credential is None else credential.identity


def _without_policy(extensions: Iterable[Extension]) -> list[Extension]:
    return [e for e in extensions if e.extension_type != ROOM_POLICY_EXTENSION]


def _name(identity: bytes | None) -> str:
    return "an unnamed member" if identity is None else identity.decode("utf-8", "replace")


class RoomPolicyEnforcer:
    """The :class:`~mls_core.policy.CommitPolicy` of groups with a room policy; groups
    without the extension are not restricted."""

    def check(self, review: PolicyReview) -> None:
        policy = RoomPolicy.from_extensions(review.extensions)
        if policy is None:
            return
        for cp in review.proposals:
            self._check_proposal(policy, review, cp)
        if review.committer is not None \
                and review.committer.sender_type == SenderType.NEW_MEMBER_COMMIT:
            joiner = _identity(review.joiner)
            self._require(policy, joiner, Action.EXTERNAL_JOIN, "join by external Commit")
        if review.committer is not None and any(
                cp.sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL
                for cp in review.proposals):
            who = _identity(review.sender_credential(review.committer))
            self._require(policy, who, Action.ADD, "commit a join request")

    def _check_proposal(self, policy: RoomPolicy, review: PolicyReview,
                        cp: CommittedProposal) -> None:
        sender = cp.sender
        body = cp.proposal.body
        ptype = cp.proposal.proposal_type
        if sender.sender_type == SenderType.EXTERNAL:
            if not policy.external_sender_may(sender.index or 0, ptype):
                raise PolicyError(f"room policy: external sender {sender.index} may not "
                                  f"send proposals of type {ptype}")
            if isinstance(body, Remove) and cp.authenticated_data is not None:
                _check_named_removal(review, sender.index or 0, body.removed,
                                     cp.authenticated_data)
        elif sender.sender_type == SenderType.MEMBER:
            self._check_member_proposal(policy, review, sender, cp)
        if isinstance(body, Add):
            added = body.key_package.leaf_node.credential.identity
            if policy.role_of(added) == Role.BANNED:
                raise PolicyError(f"room policy: {_name(added)} is banned")

    def _check_member_proposal(self, policy: RoomPolicy, review: PolicyReview, sender: Sender,
                               cp: CommittedProposal) -> None:
        body = cp.proposal.body
        who = _identity(review.sender_credential(sender))
        if isinstance(body, Remove) and body.removed == sender.index:
            return  # leaving is always allowed
        if isinstance(body, GroupContextExtensions):
            self._check_extensions_change(policy, review, who, body)
            return
        action = _ACTION_OF.get(cp.proposal.proposal_type)
        if action is not None:
            self._require(policy, who, action, action.name.lower().replace("_", " "))

    def _check_extensions_change(self, policy: RoomPolicy, review: PolicyReview,
                                 who: bytes | None, body: GroupContextExtensions) -> None:
        new = RoomPolicy.from_extensions(body.extensions)
        if new is None:
            raise PolicyError("room policy: a GroupContextExtensions proposal may not "
                              "drop the room policy")
        if new != policy:
            self._require(policy, who, Action.CHANGE_POLICY, "change the room policy")
        if _without_policy(body.extensions) != _without_policy(review.extensions):
            self._require(policy, who, Action.CHANGE_EXTENSIONS, "change group extensions")

    @staticmethod
    def _require(policy: RoomPolicy, identity: bytes | None, action: Action,
                 what: str) -> None:
        role = policy.role_of(identity)
        needed = policy.min_role(action)
        if role == Role.BANNED or needed == Role.NOBODY or role < needed:
            raise PolicyError(f"room policy: {_name(identity)} ({role.name.lower()}) may not "
                              f"{what} (needs {needed.name.lower()})")
