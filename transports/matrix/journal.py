"""The device's local journal of what the homeserver delivered (one SQLite file).

The Matrix room timeline is the group's total order; the journal records it durably:

* ``events``: every MLS room event of every bound room, in timeline order, with its
  ``position`` (index among the room's MLS events since the room's creation, the same at
  every device that sees the room's full history);
* ``mailbox``: what this device receives, in order: Welcomes, and the room events of
  groups it is subscribed to. Its ids are the transport's opaque cursors;
* ``meta``: the ``/sync`` token, written in the same transaction as what that sync
  brought, so a restart resumes exactly where the last applied sync ended;
* ``rooms`` (binding, subscription, last seen event, pending Welcome anchor), current
  ``members``, the ``member_log`` of membership changes, ``rejected`` events, and the
  pending ``invites`` with the group each one names (a hint, checked when joining).

Schema 2 (bridge support) added the relay fields of group events, CONTROL items in the
mailbox (no group) and ``invites``; a schema-1 journal is migrated in place.

Writes happen in :meth:`Journal.apply`, one synchronous transaction per sync response and
without any ``await`` inside, so a cancelled sync can never leave half of a batch behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transports.base import IncomingMessage, MessageKind, StorageError

SCHEMA_VERSION = 3
_MAILBOX = """CREATE TABLE mailbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('group', 'welcome', 'control')),
        event_row INTEGER REFERENCES events (id),
        group_id BLOB,
        payload BLOB,
        sender TEXT,
        sender_identity TEXT
    )"""
_INVITES = """CREATE TABLE invites (
        room_id TEXT PRIMARY KEY, group_id BLOB NOT NULL, inviter TEXT NOT NULL
    )"""
#: schema 1 -> 2: relay fields, CONTROL items (SQLite cannot alter a CHECK constraint,
#: so the mailbox is copied into a new table, ids and cursors unchanged)
_MIGRATE_2 = (
    "ALTER TABLE events ADD COLUMN relay_seq INTEGER",
    "ALTER TABLE events ADD COLUMN relayed_for TEXT",
    "ALTER TABLE mailbox RENAME TO mailbox_v1",
    _MAILBOX,
    "INSERT INTO mailbox (id, kind, event_row, group_id, payload, sender) "
    "SELECT id, kind, event_row, group_id, payload, sender FROM mailbox_v1",
    "DROP TABLE mailbox_v1",
    _INVITES,
)
#: schema 2 -> 3: the sender's message id of an event (DeliveryTransport.submit)
_MIGRATE_3 = ("ALTER TABLE events ADD COLUMN message_id TEXT",)
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE rooms (
        room_id TEXT PRIMARY KEY,
        group_id BLOB UNIQUE,
        subscribed INTEGER NOT NULL DEFAULT 0,
        next_position INTEGER NOT NULL DEFAULT 0,
        last_event TEXT,
        anchor TEXT
    )""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id TEXT NOT NULL,
        event_id TEXT NOT NULL UNIQUE,
        group_id BLOB NOT NULL,
        position INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        is_commit INTEGER NOT NULL,
        sender TEXT,
        sender_identity TEXT NOT NULL,
        payload BLOB NOT NULL,
        relay_seq INTEGER,
        relayed_for TEXT,
        message_id TEXT
    )""",
    "CREATE INDEX events_by_group ON events (group_id, epoch, is_commit, position)",
    "CREATE UNIQUE INDEX events_by_position ON events (room_id, position)",
    _MAILBOX,
    _INVITES,
    "CREATE TABLE sent_txns (txn_id TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE published_refs (ref BLOB PRIMARY KEY) WITHOUT ROWID",
    """CREATE TABLE members (
        room_id TEXT NOT NULL, user_id TEXT NOT NULL, membership TEXT NOT NULL,
        PRIMARY KEY (room_id, user_id)) WITHOUT ROWID""",
    """CREATE TABLE member_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        membership TEXT NOT NULL,
        sender TEXT NOT NULL
    )""",
    """CREATE TABLE rejected (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        reason TEXT NOT NULL
    )""",
)


# ------------------------------------------------------------------------ operations


@dataclass(frozen=True)
class Bind:
    """The room is bound to ``group_id`` (its :data:`GROUP_STATE`), as ``sender`` wrote
    it in event ``event_id`` (empty: our own doing)."""

    room_id: str
    group_id: bytes
    sender: str = ""
    event_id: str = ""


@dataclass(frozen=True)
class GroupEvent:
    """An MLS room event, already resolved (media downloaded) and its header read."""

    room_id: str
    event_id: str
    group_id: bytes
    epoch: int
    is_commit: bool
    sender: str | None
    sender_identity: str
    payload: bytes
    #: relay fields as the poster wrote them (events.Relay), for any sender
    relay_seq: int | None = None
    relayed_for: str | None = None
    #: the sender's message id (the event content's ``msg_id``), if it wrote one
    message_id: str | None = None


@dataclass(frozen=True)
class Welcome:
    group_id: bytes
    room_id: str
    after_event: str | None
    payload: bytes
    sender: str


@dataclass(frozen=True)
class Control:
    """A bridge control body sent to this user's devices (to-device)."""

    payload: bytes
    sender: str | None
    sender_identity: str


@dataclass(frozen=True)
class Invite:
    """This user was invited to ``room_id``, whose invite names ``group_id``; None
    forgets the invite (joined, left or withdrawn)."""

    room_id: str
    group_id: bytes | None
    inviter: str = ""


@dataclass(frozen=True)
class Membership:
    room_id: str
    event_id: str
    user_id: str
    membership: str
    sender: str


@dataclass(frozen=True)
class Seen:
    """The last timeline event of the room this device has looked at."""

    room_id: str
    event_id: str


@dataclass(frozen=True)
class Rejected:
    """An item refused for good: ``reason`` is kept (``rejections()``); ``slug`` (a stable
    reason), ``kind`` and ``sender`` (the account the homeserver named, ``matrix:…``)
    are what the transport reports through its drop counters."""

    event_id: str
    reason: str
    slug: str = "malformed"
    kind: str = "room-event"
    sender: str | None = None


@dataclass(frozen=True)
class Subscribe:
    room_id: str
    group_id: bytes


Op = (Bind | GroupEvent | Welcome | Control | Invite | Membership | Seen | Rejected
      | Subscribe)


@dataclass(frozen=True)
class RoomRecord:
    room_id: str
    group_id: bytes | None
    subscribed: bool
    last_event: str | None
    anchor: str | None


@dataclass(frozen=True)
class EventRecord:
    event_id: str
    group_id: bytes
    position: int
    epoch: int
    is_commit: bool


@dataclass(frozen=True)
class MembershipChange:
    """One ``m.room.member`` change seen in a bound room (for the bot's access control)."""

    id: int
    room_id: str
    group_id: bytes | None
    user_id: str
    membership: str
    sender: str

    @property
    def kicked_or_banned(self) -> bool:
        """Someone else removed the user: a kick (leave by another) or a ban."""
        return self.membership == "ban" or (self.membership == "leave"
                                             and self.sender != self.user_id)


class Journal:
    """The journal file (see module docstring). Not thread-safe; one per transport."""

    def __init__(self, path: str | Path) -> None:
        self._refused: list[Rejected] = []
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the Matrix journal {path}: {exc}") from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(f"journal schema {version} is newer than this code")
        if version < SCHEMA_VERSION:
            with self._tx():
                steps = (_SCHEMA if version == 0 else
                         (*_MIGRATE_2, *_MIGRATE_3) if version == 1 else _MIGRATE_3)
                for statement in steps:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ meta

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx():
            self._set_meta(key, value)

    def set_metas(self, values: dict[str, str]) -> None:
        """Several meta values in one transaction."""
        with self._tx():
            for key, value in values.items():
                self._set_meta(key, value)

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                         "DO UPDATE SET value = excluded.value", (key, value))

    def record_txn(self, txn_id: str) -> None:
        """Remember a transaction id we send with (our own echoes carry it back)."""
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO sent_txns (txn_id) VALUES (?)", (txn_id,))

    def record_refs(self, refs: Iterable[bytes]) -> int:
        """Remember the KeyPackageRefs this device published (a Welcome must name one);
        returns how many were new."""
        with self._tx():
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO published_refs (ref) VALUES (?)",
                                 [(r,) for r in refs])
            return self._db.total_changes - before

    def published_any(self, refs: Iterable[bytes]) -> bool:
        return any(self._db.execute("SELECT 1 FROM published_refs WHERE ref = ?",
                                    (r,)).fetchone() is not None for r in refs)

    def sent_txn(self, txn_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM sent_txns WHERE txn_id = ?",
                                (txn_id,)).fetchone() is not None

    # ------------------------------------------------------------------ reads

    def room(self, room_id: str) -> RoomRecord | None:
        row = self._db.execute("SELECT room_id, group_id, subscribed, last_event, anchor "
                               "FROM rooms WHERE room_id = ?", (room_id,)).fetchone()
        return None if row is None else _room(row)

    def room_for_group(self, group_id: bytes) -> RoomRecord | None:
        row = self._db.execute("SELECT room_id, group_id, subscribed, last_event, anchor "
                               "FROM rooms WHERE group_id = ?", (group_id,)).fetchone()
        return None if row is None else _room(row)

    def event(self, event_id: str) -> EventRecord | None:
        row = self._db.execute("SELECT event_id, group_id, position, epoch, is_commit "
                               "FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else _event(row)

    def event_at(self, room_id: str, position: int) -> str | None:
        row = self._db.execute("SELECT event_id FROM events WHERE room_id = ? AND "
                               "position = ?", (room_id, position)).fetchone()
        return None if row is None else str(row[0])

    def rejection(self, event_id: str) -> str | None:
        row = self._db.execute("SELECT reason FROM rejected WHERE event_id = ? "
                               "ORDER BY id DESC LIMIT 1", (event_id,)).fetchone()
        return None if row is None else str(row[0])

    def rejections(self) -> list[tuple[str, str]]:
        return [(str(e), str(r)) for e, r in
                self._db.execute("SELECT event_id, reason FROM rejected ORDER BY id")]

    def earlier_commit(self, group_id: bytes, epoch: int, position: int) -> bool:
        """Whether a Commit for ``epoch`` precedes ``position`` in the group's order."""
        return self._db.execute(
            "SELECT 1 FROM events WHERE group_id = ? AND epoch = ? AND is_commit = 1 "
            "AND position < ? LIMIT 1", (group_id, epoch, position)).fetchone() is not None

    def membership(self, room_id: str, user_id: str) -> str | None:
        row = self._db.execute("SELECT membership FROM members WHERE room_id = ? AND "
                               "user_id = ?", (room_id, user_id)).fetchone()
        return None if row is None else str(row[0])

    def member_changes(self, after: int = 0, limit: int = 1000) -> list[MembershipChange]:
        rows = self._db.execute(
            "SELECT l.id, l.room_id, r.group_id, l.user_id, l.membership, l.sender "
            "FROM member_log l LEFT JOIN rooms r ON r.room_id = l.room_id "
            "WHERE l.id > ? ORDER BY l.id LIMIT ?", (after, limit))
        return [MembershipChange(int(i), str(room), None if g is None else bytes(g),
                                 str(u), str(m), str(s)) for i, room, g, u, m, s in rows]

    def inviter(self, room_id: str) -> str | None:
        """Who invited us to ``room_id`` (pending invites only)."""
        row = self._db.execute("SELECT inviter FROM invites WHERE room_id = ?",
                               (room_id,)).fetchone()
        return None if row is None else str(row[0])

    def invited_rooms(self, group_id: bytes) -> list[str]:
        """Rooms we are invited to whose invite names ``group_id``, oldest first."""
        return [str(r[0]) for r in self._db.execute(
            "SELECT room_id FROM invites WHERE group_id = ? ORDER BY rowid", (group_id,))]

    def fetch(self, after: int, limit: int) -> list[IncomingMessage]:
        rows = self._db.execute(
            "SELECT m.id, m.kind, COALESCE(e.payload, m.payload), m.group_id, "
            "COALESCE(e.sender, m.sender), e.position, "
            "COALESCE(e.sender_identity, m.sender_identity), e.relay_seq, e.relayed_for, "
            "e.message_id FROM mailbox m LEFT JOIN events e ON e.id = m.event_row "
            "WHERE m.id > ? ORDER BY m.id LIMIT ?", (after, limit))
        return [_incoming(row) for row in rows]

    # ------------------------------------------------------------------ writes

    def apply(self, ops: Iterable[Op], token: str | None = None) -> list[Rejected]:
        """Apply one sync's operations and store its token, atomically. Returns every
        item refused meanwhile (the ``Rejected`` operations and what the journal itself
        refused: messages naming another group, conflicting bindings)."""
        self._refused = []
        with self._tx():
            for op in ops:
                self._apply(op)
            if token is not None:
                self._set_meta("sync_token", token)
        return self._refused

    def _apply(self, op: Op) -> None:
        if isinstance(op, GroupEvent):
            self._group_event(op)
        elif isinstance(op, Welcome):
            self._welcome(op)
        elif isinstance(op, Control):
            self._db.execute("INSERT INTO mailbox (kind, payload, sender, sender_identity) "
                             "VALUES ('control', ?, ?, ?)",
                             (op.payload, op.sender, op.sender_identity))
        elif isinstance(op, Invite):
            self._invite(op)
        elif isinstance(op, Bind):
            self._bind(op)
        elif isinstance(op, Membership):
            self._membership(op)
        elif isinstance(op, Seen):
            self._ensure_room(op.room_id)
            self._db.execute("UPDATE rooms SET last_event = ? WHERE room_id = ?",
                             (op.event_id, op.room_id))
        elif isinstance(op, Subscribe):
            self._bind(Bind(op.room_id, op.group_id))
            self._db.execute("UPDATE rooms SET subscribed = 1 WHERE room_id = ?",
                             (op.room_id,))
        else:
            self._reject(op)

    def _reject(self, op: Rejected) -> None:
        self._db.execute("INSERT INTO rejected (event_id, reason) VALUES (?, ?)",
                         (op.event_id, op.reason))
        self._refused.append(op)

    def _ensure_room(self, room_id: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO rooms (room_id) VALUES (?)", (room_id,))

    def _bind(self, op: Bind) -> None:
        """First binding wins: a later, different binding of the room is refused, and a
        group already bound to another room keeps that room."""
        self._ensure_room(op.room_id)
        sender = op.sender or None
        other = self.room_for_group(op.group_id)
        if other is not None and other.room_id != op.room_id:
            self._reject(Rejected(op.event_id or op.room_id,
                                  "the group is already bound to another room",
                                  "binding-conflict", "binding", sender))
            return
        room = self.room(op.room_id)
        if room is not None and room.group_id not in (None, op.group_id):
            self._reject(Rejected(op.event_id or op.room_id,
                                  "the room is already bound to group "
                                  f"{(room.group_id or b'').hex()}",
                                  "binding-conflict", "binding", sender))
            return
        self._db.execute("UPDATE rooms SET group_id = ? WHERE room_id = ? AND group_id IS "
                         "NULL", (op.group_id, op.room_id))

    def _group_event(self, op: GroupEvent) -> None:
        room = self.room(op.room_id)
        if room is None or room.group_id != op.group_id:
            self._reject(Rejected(op.event_id, "the message's group_id is not the room's "
                                  "group", "wrong-group", "room-event", op.sender_identity))
            return
        if self.event(op.event_id) is not None:
            return  # seen before (overlapping backfill)
        position = self._db.execute("SELECT next_position FROM rooms WHERE room_id = ?",
                                    (op.room_id,)).fetchone()[0]
        cur = self._db.execute(
            "INSERT INTO events (room_id, event_id, group_id, position, epoch, is_commit, "
            "sender, sender_identity, payload, relay_seq, relayed_for, message_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (op.room_id, op.event_id, op.group_id, position, op.epoch, int(op.is_commit),
             op.sender, op.sender_identity, op.payload, op.relay_seq, op.relayed_for,
             op.message_id))
        self._db.execute("UPDATE rooms SET next_position = next_position + 1 "
                         "WHERE room_id = ?", (op.room_id,))
        if room.anchor == op.event_id:
            self._db.execute("UPDATE rooms SET anchor = NULL WHERE room_id = ?",
                             (op.room_id,))
        elif room.subscribed and room.anchor is None:
            self._db.execute("INSERT INTO mailbox (kind, event_row, group_id) "
                             "VALUES ('group', ?, ?)", (cur.lastrowid, op.group_id))

    def _welcome(self, op: Welcome) -> None:
        """Deliver the Welcome, subscribe, and deliver after it the room events that
        follow the Commit that added us (``after_event``); if that Commit is not in the
        journal yet, it becomes the room's anchor: delivery starts after it."""
        self._db.execute("INSERT INTO mailbox (kind, group_id, payload, sender) "
                         "VALUES ('welcome', ?, ?, ?)", (op.group_id, op.payload, op.sender))
        self._bind(Bind(op.room_id, op.group_id, f"matrix:{op.sender}"))
        room = self.room(op.room_id)
        if room is None or room.group_id != op.group_id or room.subscribed:
            return
        self._db.execute("UPDATE rooms SET subscribed = 1 WHERE room_id = ?", (op.room_id,))
        if op.after_event is None:
            return
        anchor = self.event(op.after_event)
        if anchor is None:
            self._db.execute("UPDATE rooms SET anchor = ? WHERE room_id = ?",
                             (op.after_event, op.room_id))
            return
        self._db.execute("INSERT INTO mailbox (kind, event_row, group_id) SELECT 'group', "
                         "id, group_id FROM events WHERE room_id = ? AND position > ? "
                         "ORDER BY position", (op.room_id, anchor.position))

    def _invite(self, op: Invite) -> None:
        if op.group_id is None:
            self._db.execute("DELETE FROM invites WHERE room_id = ?", (op.room_id,))
            return
        self._db.execute("INSERT INTO invites (room_id, group_id, inviter) VALUES (?, ?, ?) "
                         "ON CONFLICT (room_id) DO UPDATE SET group_id = excluded.group_id, "
                         "inviter = excluded.inviter", (op.room_id, op.group_id, op.inviter))

    def _membership(self, op: Membership) -> None:
        self._ensure_room(op.room_id)
        self._db.execute("INSERT INTO members (room_id, user_id, membership) VALUES (?, ?, ?) "
                         "ON CONFLICT (room_id, user_id) DO UPDATE SET "
                         "membership = excluded.membership", (op.room_id, op.user_id,
                                                              op.membership))
        self._db.execute("INSERT OR IGNORE INTO member_log (event_id, room_id, user_id, "
                         "membership, sender) VALUES (?, ?, ?, ?, ?)",
                         (op.event_id, op.room_id, op.user_id, op.membership, op.sender))

    def unsubscribe(self, group_id: bytes) -> None:
        with self._tx():
            self._db.execute("UPDATE rooms SET subscribed = 0 WHERE group_id = ?",
                             (group_id,))

    def pending_anchor_rooms(self) -> Sequence[str]:
        return [str(r[0]) for r in self._db.execute(
            "SELECT room_id FROM rooms WHERE anchor IS NOT NULL")]


def _incoming(row: tuple[object, ...]) -> IncomingMessage:
    mid, kind, payload, gid, sender, pos, ident, seq, relayed_for, message_id = row
    return IncomingMessage(
        kind=MessageKind(str(kind)), payload=bytes(payload),  # type: ignore[call-overload]
        cursor=str(mid), group_id=None if gid is None else bytes(gid),  # type: ignore[call-overload]
        sender=None if sender is None else str(sender),
        position=None if pos is None else int(pos),  # type: ignore[call-overload]
        sender_identity=None if ident is None else str(ident),
        relay_seq=None if seq is None else int(seq),  # type: ignore[call-overload]
        relayed_for=None if relayed_for is None else str(relayed_for),
        message_id=None if message_id is None else str(message_id))


def _room(row: tuple[object, ...]) -> RoomRecord:
    room_id, group_id, subscribed, last_event, anchor = row
    return RoomRecord(str(room_id), None if group_id is None else bytes(group_id),  # type: ignore[call-overload]
                      bool(subscribed), None if last_event is None else str(last_event),
                      None if anchor is None else str(anchor))


def _event(row: tuple[object, ...]) -> EventRecord:
    event_id, group_id, position, epoch, is_commit = row
    return EventRecord(str(event_id), bytes(group_id), int(position),  # type: ignore[call-overload]
                       int(epoch), bool(is_commit))  # type: ignore[call-overload]


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``/``ROLLBACK``; database errors → StorageError."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot start a journal transaction: {exc}") from None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self._db.execute("ROLLBACK")
                raise StorageError(f"cannot commit the journal: {err}") from None
        self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"journal error: {exc}") from exc
