"""Room policy -> power levels, and who acts for the group (no server needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from mls_client.matrix_bot import designated_remover, may_remove, policy_changer, with_role
from mls_client.matrix_rights import (
    CREATOR_LEVEL,
    POWER_LEVELS,
    banned_users,
    derive_power_levels,
    level_of,
    matrix_user,
    room_creators,
    writer,
)
from mls_core.credentials import Credential
from mls_core.events import Member
from mls_core.extensions import Extension
from mls_core.room_policy import Action, Role, RoomPolicy
from transports.matrix import events as ev

if TYPE_CHECKING:
    from mls_core.group import Group

A, B, C = "@a:hs", "@b:hs", "@c:hs"


def ident(user: str) -> bytes:
    return f"matrix:{user}".encode()


@dataclass
class _Context:
    extensions: tuple[Extension, ...]


@dataclass
class _Group:
    """What the rules read from a Group."""

    members: list[Member]
    context: _Context
    own_leaf_index: int = 0


def group(users: list[str], policy: RoomPolicy | None) -> Group:
    members = [Member(i, Credential.basic(ident(u)), bytes([i])) for i, u in enumerate(users)]
    exts = () if policy is None else (policy.extension(),)
    return cast("Group", _Group(members, _Context(exts)))


def test_matrix_user_only_maps_matrix_identities() -> None:
    assert matrix_user(b"matrix:@a:hs") == "@a:hs"
    assert matrix_user(b"xmpp:a@hs") is None
    assert matrix_user(b"matrix:nobody") is None
    assert matrix_user(b"\xff") is None


def test_derived_levels_follow_roles_and_rules() -> None:
    policy = RoomPolicy.build({ident(A): Role.ADMIN, ident(B): Role.MODERATOR,
                               ident(C): Role.BANNED, b"xmpp:z@x": Role.ADMIN},
                              rules={Action.ADD: Role.MEMBER, Action.REMOVE: Role.ADMIN})
    current = {"users": {"@old:hs": 100}, "redact": 50, "state_default": 50,
               "events": {"m.room.name": 50, POWER_LEVELS: 50, "m.room.tombstone": 150,
                          ev.GROUP_STATE: 50}}
    out = derive_power_levels(policy, current)
    assert out["users"] == {A: 100, B: 50}
    assert (out["users_default"], out["invite"], out["kick"], out["ban"]) == (0, 0, 100, 100)
    assert out["redact"] == 50 and out["events"]["m.room.name"] == 50
    assert out["events"][POWER_LEVELS] == 100
    assert out["events"][ev.MESSAGE_EVENT] == out["events"][ev.GROUP_INFO_STATE] == 0
    # the binding is migrated to 100; protected types get 100 only where missing
    assert out["events"][ev.GROUP_STATE] == 100
    assert out["events"]["m.room.tombstone"] == 150
    assert out["events"]["m.room.history_visibility"] == 100
    assert banned_users(policy) == [C]
    assert current["users"] == {"@old:hs": 100}  # not modified in place


def test_default_role_and_nobody() -> None:
    policy = RoomPolicy.build({ident(A): Role.ADMIN, ident(B): Role.MEMBER},
                              default_role=Role.MODERATOR,
                              rules={Action.REMOVE: Role.NOBODY})
    out = derive_power_levels(policy, {})
    assert out["users_default"] == 50 and out["users"] == {A: 100, B: 0}
    assert out["kick"] == 100  # "nobody" cannot be expressed above the admins


def test_creators_of_room_version_12_are_not_listed() -> None:
    create = {"sender": A, "content": {"room_version": "12", "additional_creators": [B]}}
    creators = room_creators(create)
    assert creators == {A, B}
    assert room_creators({"sender": A, "content": {"room_version": "10"}}) == frozenset()
    policy = RoomPolicy.standard([ident(A), ident(C)])
    out = derive_power_levels(policy, {}, creators)
    assert out["users"] == {C: 100}
    assert level_of(out, A, creators) == CREATOR_LEVEL
    assert level_of(out, B, creators) == CREATOR_LEVEL
    assert level_of(out, "@x:hs", creators) == 0


def test_writer_is_lowest_member_with_power() -> None:
    g = group([B, A, C], None)
    levels = {"users": {A: 100, C: 100}, "events": {POWER_LEVELS: 100}}
    assert writer(g, levels) == 1
    assert writer(g, {"users": {}, "state_default": 50}) is None
    assert writer(g, {"users": {}}, frozenset({C})) == 2


def test_designated_remover_needs_the_remove_right() -> None:
    policy = RoomPolicy.build({ident(C): Role.ADMIN, ident(B): Role.MODERATOR})
    g = group([A, B, C, "@d:hs"], policy)
    assert designated_remover(g, ident("@d:hs")) == 1  # not A (leaf 0, a member)
    assert designated_remover(g, ident(B)) == 2  # B does not remove itself
    assert designated_remover(g, ident("@stranger:hs")) is None
    assert designated_remover(group([A, B], None), ident(A)) == 1  # no policy: anyone
    only_admin_removes = RoomPolicy.build({ident(A): Role.ADMIN},
                                          rules={Action.REMOVE: Role.ADMIN})
    assert designated_remover(group([A, B], only_admin_removes), ident(A)) is None
    assert not may_remove(policy, ident(A)) and may_remove(policy, ident(B))
    assert may_remove(None, None)


def test_only_members_on_matrix_act_on_room_bans() -> None:
    """In a bridged group an XMPP member never sees the Matrix room's bans."""
    policy = RoomPolicy.standard([b"xmpp:root@x", ident(A)])
    members = [Member(0, Credential.basic(b"xmpp:root@x"), b"\x00"),
               Member(1, Credential.basic(ident(A)), b"\x01"),
               Member(2, Credential.basic(ident(B)), b"\x02")]
    g = cast("Group", _Group(members, _Context((policy.extension(),))))
    assert designated_remover(g, ident(B)) == 1  # not the XMPP admin at leaf 0
    assert policy_changer(g, ident(B)) == 1


def test_ban_is_recorded_by_the_lowest_member_allowed_to_change_the_policy() -> None:
    policy = RoomPolicy.build({ident(C): Role.ADMIN, ident(B): Role.MODERATOR},
                              rules={Action.ADD: Role.MEMBER})
    g = group([A, B, C], policy)
    assert policy_changer(g, ident(B)) == 2  # only the admin may change the policy
    assert policy_changer(g, ident(C)) is None  # nobody else
    assert policy_changer(group([A, B], None), ident(A)) is None
    banned = with_role(policy, ident(A), Role.BANNED)
    assert banned.role_of(ident(A)) == Role.BANNED
    assert banned.role_of(ident(B)) == Role.MODERATOR
    assert banned.min_role(Action.ADD) == Role.MEMBER  # rules kept
    assert with_role(banned, ident(A), Role.MEMBER).role_of(ident(A)) == Role.MEMBER


def test_the_bridge_keeps_level_100_and_is_never_banned() -> None:
    bridge = "@bridge:hs"
    current = {"users": {A: 100, bridge: 100}}
    silent = RoomPolicy.build({ident(A): Role.ADMIN})  # does not name the bridge
    assert derive_power_levels(silent, current)["users"] == {A: 100}  # what it would do
    assert derive_power_levels(silent, current, bridge=bridge)["users"] == {
        A: 100, bridge: 100}
    hostile = RoomPolicy.build({ident(A): Role.ADMIN, ident(bridge): Role.BANNED,
                                ident(B): Role.BANNED}, default_role=Role.ADMIN)
    out = derive_power_levels(hostile, current, bridge=bridge)
    assert out["users"] == {bridge: 100} and out["users_default"] == 100
    assert banned_users(hostile, bridge) == [B]
    # a bridge that created the room (version 12) has unlimited power: not listed
    assert derive_power_levels(silent, {}, frozenset({bridge}), bridge)["users"] == {A: 100}
