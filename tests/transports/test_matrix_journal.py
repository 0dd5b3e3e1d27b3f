"""Unit tests of the Matrix transport's journal: ordering, Welcome anchors, cursors."""

from __future__ import annotations

from pathlib import Path

import pytest

from transports.base import MessageKind, StorageError
from transports.matrix.journal import (
    Bind,
    GroupEvent,
    Journal,
    Membership,
    Rejected,
    Seen,
    Subscribe,
    Welcome,
)

GID = b"group-1"


def _msg(n: int, *, epoch: int = 0, commit: bool = False, room: str = "!r:hs",
         gid: bytes = GID) -> GroupEvent:
    return GroupEvent(room, f"$e{n}", gid, epoch, commit, f"@u:hs/D{n}", "matrix:@u:hs",
                      f"payload {n}".encode())


def test_positions_follow_the_timeline_and_subscription(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.apply([Bind("!r:hs", GID), _msg(0)], token="t1")
    j.apply([Subscribe("!r:hs", GID), _msg(1), _msg(1), _msg(2, commit=True)], token="t2")
    assert j.meta("sync_token") == "t2"
    items = j.fetch(0, 10)
    assert [i.payload for i in items] == [b"payload 1", b"payload 2"]  # $e0 before subscribing
    assert [i.position for i in items] == [1, 2]
    assert [i.sender_identity for i in items] == ["matrix:@u:hs"] * 2
    assert j.fetch(int(items[0].cursor), 10) == items[1:]
    assert j.earlier_commit(GID, 0, 3) and not j.earlier_commit(GID, 0, 2)
    assert j.event_at("!r:hs", 2) == "$e2"
    j.close()
    reopened = Journal(tmp_path / "j.sqlite")
    assert reopened.fetch(0, 10) == items  # durable
    reopened.close()


def test_welcome_delivers_what_follows_the_adding_commit(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.apply([Bind("!r:hs", GID), _msg(0, commit=True), _msg(1, epoch=1), _msg(2, epoch=1)])
    j.apply([Welcome(GID, "!r:hs", "$e0", b"welcome", "@a:hs"), _msg(3, epoch=1)])
    got = j.fetch(0, 10)
    assert got[0].kind is MessageKind.WELCOME and got[0].payload == b"welcome"
    assert [i.payload for i in got[1:]] == [b"payload 1", b"payload 2", b"payload 3"]


def test_welcome_before_its_commit_waits_for_the_anchor(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.apply([Welcome(GID, "!r:hs", "$e1", b"welcome", "@a:hs")])
    j.apply([_msg(0), _msg(1, commit=True), _msg(2, epoch=1)])
    assert [i.payload for i in j.fetch(0, 10)] == [b"welcome", b"payload 2"]
    assert j.pending_anchor_rooms() == []


def test_first_binding_wins_and_foreign_group_messages_are_rejected(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.apply([Bind("!r:hs", GID), Bind("!r:hs", b"other"), Bind("!s:hs", GID),
             Subscribe("!r:hs", GID), _msg(0, gid=b"other"), _msg(1, room="!s:hs")])
    room = j.room_for_group(GID)
    assert room is not None and room.room_id == "!r:hs"
    assert j.fetch(0, 10) == []
    assert "not the room's group" in (j.rejection("$e0") or "")
    assert j.rejection("$e1") is not None


def test_membership_log_and_seen(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.apply([Bind("!r:hs", GID), Membership("!r:hs", "$m1", "@b:hs", "join", "@b:hs"),
             Membership("!r:hs", "$m2", "@b:hs", "leave", "@a:hs"),
             Membership("!r:hs", "$m2", "@b:hs", "leave", "@a:hs"),
             Membership("!r:hs", "$m3", "@c:hs", "leave", "@c:hs"),
             Seen("!r:hs", "$m3"), Rejected("$x", "bad")])
    changes = j.member_changes()
    assert [(c.user_id, c.kicked_or_banned) for c in changes] == [
        ("@b:hs", False), ("@b:hs", True), ("@c:hs", False)]
    assert changes[1].group_id == GID
    assert j.membership("!r:hs", "@b:hs") == "leave"
    room = j.room("!r:hs")
    assert room is not None and room.last_event == "$m3"
    assert j.rejections() == [("$x", "bad")]
    assert j.member_changes(after=changes[1].id) == changes[2:]


def test_unreadable_journal_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError):
        Journal(path)
