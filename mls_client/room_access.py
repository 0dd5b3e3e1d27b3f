"""Room membership and MLS membership kept consistent, whatever wraps the client.

Transports only *report* room membership changes (:class:`~transports.base.RoomEvent`:
joined, left, kicked, banned); this module decides what they mean for the MLS group
(docs/xmpp.md "Rooms and the group binding", docs/matrix.md "Native moderation → MLS
removal"):

* a user kicked or banned from the room loses all its leaves: the **designated
  remover**, the lowest-index staying member *on the room's network* whose room-policy
  role may remove others (:mod:`mls_core.room_policy`; any member without a policy),
  commits the Removes (RFC 9420 §12.1.3, §12.4). Every member runs the same rule over the
  same group state, so one commits, and the room's ordering resolves races (RFC 9750
  "Ordering"); every client checks that Commit against the policy (§12.2);
* a user banned from a Matrix room also gets the policy role ``banned``
  (:func:`policy_changer`, a GroupContextExtensions Commit, §12.1.7), so no client
  accepts adding it again;
* we ourselves kicked or banned: the group is over for this device (no room access, so
  no Commit would ever reach it): its state and outbox are dropped and one
  :class:`~mls_client.events.KickedFromRoom` is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from mls_core.events import Member
from mls_core.room_policy import Action, Role, RoomPolicy
from transports.base import RoomChange, RoomEvent

#: networks whose room bans are recorded in the room policy (on XMPP an outcast
#: affiliation already follows the policy the other way round: docs/xmpp.md)
BAN_TO_POLICY = frozenset({"matrix"})


def network_of(identity: bytes | str | None) -> str:
    """The network prefix of a credential identity (``xmpp``, ``matrix``; "" if none)."""
    text = identity.decode("utf-8", "replace") if isinstance(identity, bytes) else identity
    head, sep, _ = (text or "").partition(":")
    return head if sep else ""


def may_remove(policy: RoomPolicy | None, identity: bytes | None) -> bool:
    """Whether the room policy lets ``identity`` remove others (no policy: yes)."""
    if policy is None:
        return True
    role = policy.role_of(identity)
    needed = policy.min_role(Action.REMOVE)
    return role != Role.BANNED and needed != Role.NOBODY and role >= needed


def may_change_policy(policy: RoomPolicy, identity: bytes | None) -> bool:
    """Whether the room policy lets ``identity`` replace it (RFC 9420 §12.1.7)."""
    role = policy.role_of(identity)
    needed = policy.min_role(Action.CHANGE_POLICY)
    return role != Role.BANNED and needed != Role.NOBODY and role >= needed


def designated_remover(members: Sequence[Member], policy: RoomPolicy | None,
                       removed: bytes, network: str | None = None) -> int | None:
    """Leaf index of the member that removes the user ``removed`` (a credential identity)
    after a room kick or ban: the lowest-index member that stays, is on ``network``
    (default: the removed user's; only members there see that room's kicks) and may
    remove others. None if ``removed`` is no member or nobody may."""
    network = network_of(removed) if network is None else network
    if not any(m.credential.identity == removed for m in members):
        return None
    allowed = [m.index for m in members
               if m.credential.identity != removed and network_of(m.credential.identity)
               == network and may_remove(policy, m.credential.identity)]
    return min(allowed, default=None)


def policy_changer(members: Sequence[Member], policy: RoomPolicy | None, excluded: bytes,
                   network: str | None = None) -> int | None:
    """Leaf index of the lowest-index member other than ``excluded``, on ``network``
    (default: ``excluded``'s), whose policy role may change the policy (None without a
    policy or such a member)."""
    if policy is None:
        return None
    network = network_of(excluded) if network is None else network
    allowed = [m.index for m in members
               if m.credential.identity != excluded and network_of(m.credential.identity)
               == network and may_change_policy(policy, m.credential.identity)]
    return min(allowed, default=None)


def with_role(policy: RoomPolicy, identity: bytes, role: Role) -> RoomPolicy:
    """``policy`` with ``identity`` given ``role`` (everything else unchanged)."""
    roles = {r.identity: Role(r.role) for r in policy.roles}
    roles[identity] = role
    return RoomPolicy.build(roles, default_role=Role(policy.default_role),
                            rules={Action(r.action): Role(r.min_role) for r in policy.rules},
                            external_senders={e.index: e.allowed
                                              for e in policy.external_senders})


def bans_into_policy(event: RoomEvent, policy: RoomPolicy | None) -> bool:
    """Whether a room ban is to be recorded as the policy role ``banned``."""
    return (event.change is RoomChange.BANNED and policy is not None
            and network_of(event.user) in BAN_TO_POLICY
            and policy.role_of(event.user.encode()) != Role.BANNED)
