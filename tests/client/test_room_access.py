"""Room kicks and bans in the client layer (mls_client.room_access, MLSClient): the
rules, and a client acting on the RoomEvents a transport reports (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mls_client import MLSClient
from mls_client.events import ClientEvent, CommitProcessed, KickedFromRoom
from mls_client.room_access import (
    bans_into_policy,
    designated_remover,
    network_of,
    policy_changer,
)
from mls_core.credentials import Credential
from mls_core.events import Member
from mls_core.room_policy import Action, Role, RoomPolicy
from transports.base import RoomChange, RoomEvent
from transports.local import LocalDeliveryService

from .helpers import async_test, settings_for

A, B, C, M = b"xmpp:a@x", b"xmpp:b@x", b"xmpp:c@x", b"matrix:@m:x"


def _member(index: int, identity: bytes) -> Member:
    return Member(index, Credential.basic(identity), bytes([index]) * 32)


def test_rules() -> None:
    members = [_member(0, M), _member(1, A), _member(2, B), _member(3, C)]
    assert designated_remover(members, None, B) == 1  # lowest XMPP member, not matrix
    assert designated_remover(members, None, A) == 2
    assert designated_remover(members, None, b"xmpp:z@x") is None  # not a member
    policy = RoomPolicy.build({C: Role.ADMIN}, rules={Action.REMOVE: Role.ADMIN})
    assert designated_remover(members, policy, B) == 3
    assert designated_remover(members, policy, C) is None  # nobody else may
    assert policy_changer(members, policy, B) == 3
    assert policy_changer(members, None, B) is None
    assert network_of(M) == "matrix" and network_of(b"plain") == ""
    ban = RoomEvent(b"g", M.decode(), RoomChange.BANNED)
    assert bans_into_policy(ban, policy)
    assert not bans_into_policy(RoomEvent(b"g", B.decode(), RoomChange.BANNED), policy)
    assert not bans_into_policy(RoomEvent(b"g", M.decode(), RoomChange.KICKED), policy)


class _Rooms:
    """One device's view of the shared delivery service, with room events to report."""

    def __init__(self, ds: LocalDeliveryService) -> None:
        self._ds = ds
        self.pending: list[RoomEvent] = []
        self.taken = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ds, name)

    def room_events(self) -> list[RoomEvent]:
        self.taken += 1
        out, self.pending = self.pending, []
        return out


@async_test
async def test_a_kick_is_followed_by_the_designated_remover_and_ends_the_kicked(
        tmp_path: Path) -> None:
    ds = LocalDeliveryService(tmp_path / "ds.sqlite", poll_interval=0.01)
    rooms: dict[str, _Rooms] = {}
    clients: dict[str, MLSClient] = {}
    seen: dict[str, list[ClientEvent]] = {}
    try:
        for name, ident in (("a", A), ("b", B), ("c", C)):
            rooms[name] = _Rooms(ds)
            clients[name] = await MLSClient.open(settings_for(tmp_path, name),
                                                 rooms[name])
            await clients[name].create_identity(ident.decode(), f"{name}-dev")
            await clients[name].publish_key_packages()
            seen[name] = []
        gid = await clients["a"].create_group()
        await clients["a"].add_members(gid, [B.decode(), C.decode()])
        for name in ("b", "c"):
            seen[name] += await clients[name].sync()
        # c is kicked: every device hears of it, a (leaf 0) removes c, c drops the group
        for name in rooms:
            rooms[name].pending.append(RoomEvent(gid, C.decode(), RoomChange.KICKED,
                                                 self=name == "c"))
        for _ in range(3):
            for name in clients:
                seen[name] += await clients[name].sync()
        commits = [e for e in seen["b"] if isinstance(e, CommitProcessed) and e.removed]
        assert [(e.committer, e.removed) for e in commits] == [(A.decode(), (C.decode(),))]
        assert [m.credential.identity for m in await clients["b"].members(gid)] == [A, B]
        assert [type(e) for e in seen["c"] if isinstance(e, KickedFromRoom)] == \
            [KickedFromRoom]
        assert not next(g for g in await clients["c"].groups() if g.group_id == gid).active
        # a second report of the same kick changes nothing
        rooms["c"].pending.append(RoomEvent(gid, C.decode(), RoomChange.KICKED, self=True))
        assert not any(isinstance(e, KickedFromRoom) for e in await clients["c"].sync())
    finally:
        for client in clients.values():
            await client.close()
        await ds.close()
