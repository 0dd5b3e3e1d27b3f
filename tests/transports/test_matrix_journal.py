"""Unit tests of the Matrix transport's journal: ordering, Welcome anchors, cursors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from transports.base import MessageKind, StorageError
from transports.matrix.journal import (
    Bind,
    Control,
    GroupEvent,
    Invite,
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


def test_relay_fields_control_items_and_invites(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    relayed = GroupEvent("!r:hs", "$h1", GID, 0, False, "xmpp:c@x/phone",
                         "matrix:@bridge:hs", b"hub item", 3, "xmpp:c@x")
    j.apply([Subscribe("!r:hs", GID), relayed, _msg(1),
             Control(b'{"op": "claim"}', "@a:hs/DEV", "matrix:@a:hs"),
             Invite("!i:hs", b"g2", "@a:hs"), Invite("!j:hs", b"g2", "@b:hs"),
             Invite("!k:hs", b"g3", "@b:hs")])
    hub, plain, control = j.fetch(0, 10)
    assert (hub.kind, hub.relay_seq, hub.relayed_for, hub.sender, hub.sender_identity) == (
        MessageKind.GROUP, 3, "xmpp:c@x", "xmpp:c@x/phone", "matrix:@bridge:hs")
    assert plain.relay_seq is None and plain.relayed_for is None
    assert (control.kind, control.payload, control.group_id, control.sender,
            control.sender_identity, control.position) == (
        MessageKind.CONTROL, b'{"op": "claim"}', None, "@a:hs/DEV", "matrix:@a:hs", None)
    assert j.invited_rooms(b"g2") == ["!i:hs", "!j:hs"]
    j.apply([Invite("!i:hs", None)])
    assert j.invited_rooms(b"g2") == ["!j:hs"] and j.invited_rooms(b"g3") == ["!k:hs"]


_SCHEMA_1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE rooms (room_id TEXT PRIMARY KEY, group_id BLOB UNIQUE, subscribed "
    "INTEGER NOT NULL DEFAULT 0, next_position INTEGER NOT NULL DEFAULT 0, last_event "
    "TEXT, anchor TEXT)",
    "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, room_id TEXT NOT NULL, "
    "event_id TEXT NOT NULL UNIQUE, group_id BLOB NOT NULL, position INTEGER NOT NULL, "
    "epoch INTEGER NOT NULL, is_commit INTEGER NOT NULL, sender TEXT, sender_identity "
    "TEXT NOT NULL, payload BLOB NOT NULL)",
    "CREATE INDEX events_by_group ON events (group_id, epoch, is_commit, position)",
    "CREATE UNIQUE INDEX events_by_position ON events (room_id, position)",
    "CREATE TABLE mailbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL CHECK "
    "(kind IN ('group', 'welcome')), event_row INTEGER REFERENCES events (id), group_id "
    "BLOB NOT NULL, payload BLOB, sender TEXT)",
    "CREATE TABLE sent_txns (txn_id TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE published_refs (ref BLOB PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE members (room_id TEXT NOT NULL, user_id TEXT NOT NULL, membership TEXT "
    "NOT NULL, PRIMARY KEY (room_id, user_id)) WITHOUT ROWID",
    "CREATE TABLE member_log (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL "
    "UNIQUE, room_id TEXT NOT NULL, user_id TEXT NOT NULL, membership TEXT NOT NULL, "
    "sender TEXT NOT NULL)",
    "CREATE TABLE rejected (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, "
    "reason TEXT NOT NULL)",
)


def test_a_schema_1_journal_is_migrated_with_its_cursors(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for statement in _SCHEMA_1:
        db.execute(statement)
    db.execute("INSERT INTO rooms (room_id, group_id, subscribed, next_position) "
               "VALUES ('!r:hs', ?, 1, 1)", (GID,))
    db.execute("INSERT INTO events (room_id, event_id, group_id, position, epoch, "
               "is_commit, sender, sender_identity, payload) VALUES ('!r:hs', '$e0', ?, 0, "
               "0, 0, '@u:hs/D', 'matrix:@u:hs', x'01')", (GID,))
    db.execute("INSERT INTO mailbox (id, kind, group_id, payload, sender) VALUES "
               "(7, 'welcome', ?, x'02', '@a:hs')", (GID,))
    db.execute("INSERT INTO mailbox (id, kind, event_row, group_id) VALUES (9, 'group', 1, ?)",
               (GID,))
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    j = Journal(path)
    before = j.fetch(0, 10)
    assert [(i.cursor, i.kind, i.payload) for i in before] == [
        ("7", MessageKind.WELCOME, b"\x02"), ("9", MessageKind.GROUP, b"\x01")]
    j.apply([Control(b"ctl", None, "matrix:@b:hs"), _msg(1)])
    after = j.fetch(9, 10)
    assert [(i.kind, i.payload) for i in after] == [
        (MessageKind.CONTROL, b"ctl"), (MessageKind.GROUP, b"payload 1")]
    assert int(after[0].cursor) > 9  # cursors keep growing after the migration
    j.close()
