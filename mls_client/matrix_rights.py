"""Room power levels derived from the MLS group's room policy (client layer: the Matrix
transport only moves the bytes; every ``MLSClient`` on Matrix applies this after the
Commits and joins it processes, see :meth:`MLSClient.sync`).

The room policy (:mod:`mls_core.room_policy`, a GroupContext extension) is the single
source of rights; the room's ``m.room.power_levels`` (Matrix client-server API,
"m.room.power_levels"; room auth rules, room versions spec §"Authorization rules") is
kept in step with it so that the room and the group agree (``docs/bridge.md``):

================  =====================
policy role       Matrix power level
================  =====================
admin             100
moderator         50
member            0
banned            banned in the room
================  =====================

``invite`` takes the level of the policy's ``add`` rule, ``kick`` and ``ban`` the level
of its ``remove`` rule; ``users_default`` is the level of the policy's default role. Our
own event types keep working for every member: messages and GroupInfo need level 0,
the room ↔ group binding and the power levels themselves need 100
(:data:`~.events.MLS_EVENT_LEVELS`, the same levels a new room gets, so writing the
power levels also migrates rooms created before). Event types the homeserver protects
by default (history visibility, tombstone, server ACL, encryption) get level 100 when a
room lacks them (rooms created before kept no ``events`` entry for them). Only
identities ``matrix:<user id>`` are mapped; other networks' identities in the policy
are ignored.

The bridge account of bridged groups (``MatrixSettings.bridge``, docs/bridge.md) is not
an MLS member and never named by the policy's rights: it always keeps level 100 and is
never banned, whatever the policy says about it.

Whenever the policy in force differs from what the room says, the *writer* — the
lowest-index MLS member whose Matrix user may change the power levels under the room's
current ones — writes the derived content (and bans users whose role is ``banned``).
Every device runs the same rule over the same group state, so one writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mls_core.errors import MLSError
from mls_core.room_policy import Action, Role, RoomPolicy
from transports.base import TransportError
from transports.matrix import events as ev
from transports.matrix.api import CLIENT, MatrixApiError, quote

if TYPE_CHECKING:
    from mls_core.group import Group
    from transports.matrix.transport import MatrixDeliveryTransport

    from .client import MLSClient

log = logging.getLogger(__name__)

POWER_LEVELS = "m.room.power_levels"
ADMIN_LEVEL = 100
#: stands for a room creator's unlimited power (room version 12)
CREATOR_LEVEL = 2**53
#: policy role -> Matrix power level (``banned`` is a room ban, level 0 meanwhile)
LEVEL_OF_ROLE: Mapping[Role, int] = {
    Role.BANNED: 0,
    Role.MEMBER: 0,
    Role.MODERATOR: 50,
    Role.ADMIN: ADMIN_LEVEL,
    # "nobody" cannot be expressed: a sender cannot set a level above its own (auth
    # rules), so the highest level we can write is the admins'; MLS still refuses
    Role.NOBODY: ADMIN_LEVEL,
}
#: event types whose required level we fix (the rest of ``events`` is kept)
FIXED_EVENT_LEVELS: Mapping[str, int] = {
    **ev.MLS_EVENT_LEVELS,
    POWER_LEVELS: ADMIN_LEVEL,
}
#: levels a room gets for these types only if its ``events`` has no entry (Synapse's
#: defaults; rooms created with an ``events`` override before lost them)
DEFAULT_EVENT_LEVELS: Mapping[str, int] = {
    "m.room.history_visibility": ADMIN_LEVEL,
    "m.room.tombstone": ADMIN_LEVEL,
    "m.room.server_acl": ADMIN_LEVEL,
    "m.room.encryption": ADMIN_LEVEL,
}
_MARK = "policy_sync."


def matrix_user(identity: bytes) -> str | None:
    """The Matrix user id of a ``matrix:<user id>`` identity, else None."""
    try:
        text = identity.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.startswith(ev.IDENTITY_PREFIX):
        return None
    user = text[len(ev.IDENTITY_PREFIX):]
    return user if user.startswith("@") and ":" in user else None


def room_creators(create_event: Mapping[str, Any]) -> frozenset[str]:
    """The users with unlimited power by the room version's rules: from room version 12
    (MSC4289) the ``m.room.create`` sender and its ``additional_creators``; none for
    older room versions (their creator is an ordinary ``users`` entry)."""
    content = create_event.get("content")
    content = content if isinstance(content, dict) else {}
    version = str(content.get("room_version", "1"))
    if not (version.isdigit() and int(version) >= 12):
        return frozenset()
    sender = create_event.get("sender")
    extra = content.get("additional_creators")
    users = [sender, *(extra if isinstance(extra, list) else [])]
    return frozenset(u for u in users if isinstance(u, str))


def derive_power_levels(policy: RoomPolicy, current: Mapping[str, Any],
                        creators: frozenset[str] = frozenset(),
                        bridge: str | None = None) -> dict[str, Any]:
    """The ``m.room.power_levels`` content that matches ``policy``; keys the policy does
    not decide (``redact``, ``state_default``, other event types...) are kept from
    ``current``. Room creators (``creators``) must not be listed in ``users``; the
    ``bridge`` user (if any) is always at :data:`ADMIN_LEVEL`."""
    out = dict(current)
    default = out["users_default"] = LEVEL_OF_ROLE[Role(policy.default_role)]
    # banned users are banned from the room instead; default levels need no entry
    out["users"] = {user: level for r in policy.roles
                    if (user := matrix_user(r.identity)) is not None
                    and user not in creators and r.role != Role.BANNED
                    and (level := LEVEL_OF_ROLE[Role(r.role)]) != default}
    if bridge is not None and bridge not in creators:
        out["users"][bridge] = ADMIN_LEVEL
    out["invite"] = LEVEL_OF_ROLE[policy.min_role(Action.ADD)]
    out["kick"] = out["ban"] = LEVEL_OF_ROLE[policy.min_role(Action.REMOVE)]
    events = current.get("events")
    out["events"] = {**DEFAULT_EVENT_LEVELS, **(events if isinstance(events, dict) else {}),
                     **FIXED_EVENT_LEVELS}
    return out


def banned_users(policy: RoomPolicy, bridge: str | None = None) -> list[str]:
    """Matrix users whose policy role is ``banned`` (never the ``bridge`` user)."""
    return [user for r in policy.roles if r.role == Role.BANNED
            if (user := matrix_user(r.identity)) is not None and user != bridge]


def level_of(levels: Mapping[str, Any], user: str,
             creators: frozenset[str] = frozenset()) -> int:
    """A user's power level under ``levels`` (Matrix spec: ``users`` else
    ``users_default`` else 0; room creators are above every level)."""
    if user in creators:
        return CREATOR_LEVEL
    users = levels.get("users")
    if isinstance(users, dict) and isinstance(users.get(user), int):
        return int(users[user])
    default = levels.get("users_default", 0)
    return default if isinstance(default, int) else 0


def needed_for_power_levels(levels: Mapping[str, Any]) -> int:
    """The level needed to send ``m.room.power_levels`` under ``levels``."""
    events = levels.get("events")
    if isinstance(events, dict) and isinstance(events.get(POWER_LEVELS), int):
        return int(events[POWER_LEVELS])
    default = levels.get("state_default", 50)
    return default if isinstance(default, int) else 50


def writer(group: Group, levels: Mapping[str, Any],
           creators: frozenset[str] = frozenset()) -> int | None:
    """Leaf index of the member that writes the power levels: the lowest-index member
    whose Matrix user may send ``m.room.power_levels`` now."""
    needed = needed_for_power_levels(levels)
    for member in sorted(group.members, key=lambda m: m.index):
        user = matrix_user(member.credential.identity or b"")
        if user is not None and level_of(levels, user, creators) >= needed:
            return member.index
    return None


def policy_digest(policy: RoomPolicy) -> str:
    """What a device remembers of the policy it last saw mirrored in the room."""
    return hashlib.sha256(policy.encode()).hexdigest()


class PolicySync:
    """Keeps one device's bound rooms' power levels in step with the groups' policies."""

    def __init__(self, client: MLSClient, transport: MatrixDeliveryTransport) -> None:
        self.client = client
        self.transport = transport
        self._creators: dict[str, frozenset[str]] = {}

    async def creators(self, room_id: str) -> frozenset[str]:
        """The room's creators (:func:`room_creators`), looked up once per room."""
        if room_id not in self._creators:
            state = await self.transport.api.raw("GET", f"{CLIENT}/rooms/{quote(room_id)}/state")
            try:
                events = json.loads(state)
            except ValueError:
                raise TransportError("room state: invalid JSON") from None
            create = next((e for e in events if isinstance(e, dict)
                           and e.get("type") == "m.room.create"), None) \
                if isinstance(events, list) else None
            if create is None:
                raise TransportError(f"room state of {room_id} has no m.room.create")
            self._creators[room_id] = room_creators(create)
        return self._creators[room_id]

    def _path(self, room_id: str) -> str:
        return f"{CLIENT}/rooms/{quote(room_id)}/state/{POWER_LEVELS}/"

    async def power_levels(self, group_id: bytes) -> dict[str, Any]:
        """The bound room's current ``m.room.power_levels`` content."""
        room_id = self.transport.room_id(group_id)
        if room_id is None:
            return {}
        return await self.transport.api.request("GET", self._path(room_id))

    async def reconcile(self, group_id: bytes) -> bool:
        """If the policy in force is not yet reflected in the room and we are the
        writer, write the derived power levels and ban ``banned`` users. Returns True
        if the room is known to match the policy. Failures are retried at the
        next trigger (the mark is only set once the room matches); a refusal by the
        homeserver is logged, other transport errors are raised."""
        room_id = self.transport.room_id(group_id)
        try:
            group = await self.client.group(group_id)
        except MLSError:
            return False  # not (or no longer) a member
        policy = RoomPolicy.from_extensions(group.context.extensions)
        if room_id is None or policy is None:
            return False
        digest = policy_digest(policy)
        mark = _MARK + group_id.hex()
        if self.transport.mark(mark) == digest:
            return True
        try:
            creators = await self.creators(room_id)
            current = await self.power_levels(group_id)
            bridge = self.transport.bridge_user
            desired = derive_power_levels(policy, current, creators, bridge)
            to_ban = [u for u in banned_users(policy, bridge) if u not in creators
                      and self.transport.current_membership(room_id, u) != "ban"]
            if desired == current and not to_ban:
                self.transport.set_mark(mark, digest)
                return True
            if writer(group, current, creators) != group.own_leaf_index:
                return False
            if desired != current:
                await self.transport.api.request("PUT", self._path(room_id), desired)
            for user in to_ban:
                await self.transport.api.ban(room_id, user, "banned by the MLS room policy")
        except MatrixApiError as exc:
            # e.g. demoting another admin: Matrix lets nobody lower an equal level
            log.warning("cannot apply the room policy of %s to %s: %s", group_id.hex(),
                        room_id, exc)
            return False
        self.transport.set_mark(mark, digest)
        log.info("power levels of %s follow the room policy of %s", room_id,
                 group_id.hex())
        return True
