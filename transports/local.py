"""The embedded default Delivery Service: one SQLite file (RFC 9750 "Delivery Service").

:class:`LocalDeliveryService` implements :class:`~transports.base.DeliveryTransport` on
aiosqlite. Many clients can share one instance inside a process, and several processes can
share one database file: the file is in WAL mode, every write (publish, claim, submit,
subscribe...) is one ``BEGIN IMMEDIATE`` transaction, and a busy timeout makes concurrent
writers queue instead of failing.

What it provides, after RFC 9750:

* "Key Storage and Retrieval": one row per KeyPackage. A claim atomically deletes and
  returns the oldest one-use KeyPackage of the client; only when none is left does it
  return the client's last-resort KeyPackage, which it never deletes. Publishing a new
  last-resort KeyPackage replaces the previous one.
* "Delivery of Messages" / "Strongly Consistent": each group has one total order (its
  ``position`` counter). A Commit for epoch ``e`` is accepted only while the group is at
  epoch ``e``; the group then moves to ``e + 1``, so exactly one Commit wins per epoch and
  a late one gets :attr:`SubmitStatus.REJECTED_EPOCH_TAKEN`. Proposals must be for the
  current epoch; application messages for the current or the previous epoch (senders that
  had not yet seen the last Commit; receivers keep the previous epoch's keys). The first
  submit for an unknown group creates the group at that epoch.
* Fan-out: an accepted message gets one mailbox row per subscriber, written in the same
  transaction, so every subscriber sees the group's messages in the same order. The
  sender is subscribed by its own accepted submit (it uses the echo to confirm that its
  Commit won); the recipients of a Welcome are subscribed when the Welcome is sent, so
  nothing sent after it is lost while they process it.
* "Asynchronous Usage": the mailbox ids are a global autoincrement sequence; a cursor is
  such an id as a decimal string, durable across restarts.

The service never holds group secrets. To tell a proposal from an application message it
reads the clear header of the ``MLSMessage`` (version, wire format, group_id, epoch,
sender, authenticated_data length and content_type, RFC 9420 §6.2, §6.3), which RFC 9750
allows ("the DS can rely on the epoch and content_type fields of an MLSMessage"), and
checks that it agrees with the caller's ``group_id``, ``epoch`` and ``is_commit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from mls_core.framing import ContentType

from .base import (
    ClaimedKeyPackage,
    IncomingMessage,
    InvalidRequestError,
    KeyPackageEntry,
    MessageKind,
    NoKeyPackageError,
    StorageError,
    SubmitResult,
    SubmitStatus,
    TransportClosedError,
    UnknownGroupError,
)
from .header import GroupMessageHeader, check_header, ordering_status, read_header
from .sqlite_log import no_sql_parameters_in_logs
from .validation import (
    parse_cursor,
    require_bytes,
    require_client_ids,
    require_entries,
    require_epoch,
    require_id,
    require_limit,
    require_message_id,
)

no_sql_parameters_in_logs()

__all__ = [
    "MIGRATIONS",
    "InvalidRequestError",
    "LocalAccount",
    "LocalDeliveryService",
    "StorageError",
    "TransportClosedError",
    "UnknownGroupError",
    "ordering_status",
]


#: Schema migrations, applied in order in one transaction; the database's
#: ``schema_version`` is the number of migrations applied. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE clients (
            client_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX clients_by_user ON clients (user_id, client_id)",
        """CREATE TABLE key_packages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            client_id TEXT NOT NULL REFERENCES clients (client_id),
            ref BLOB NOT NULL UNIQUE,
            key_package BLOB NOT NULL,
            last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1))
        )""",
        "CREATE INDEX key_packages_by_client ON key_packages (client_id, last_resort, id)",
        """CREATE UNIQUE INDEX one_last_resort_per_client
            ON key_packages (client_id) WHERE last_resort = 1""",
        """CREATE TABLE groups (
            group_id BLOB PRIMARY KEY,
            epoch INTEGER NOT NULL,
            next_position INTEGER NOT NULL
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('group', 'welcome')),
            group_id BLOB NOT NULL,
            epoch INTEGER,
            position INTEGER,
            is_commit INTEGER NOT NULL DEFAULT 0,
            sender TEXT,
            payload BLOB NOT NULL
        )""",
        """CREATE UNIQUE INDEX group_order
            ON messages (group_id, position) WHERE kind = 'group'""",
        """CREATE UNIQUE INDEX one_commit_per_epoch
            ON messages (group_id, epoch) WHERE is_commit = 1""",
        """CREATE TABLE subscriptions (
            client_id TEXT NOT NULL,
            group_id BLOB NOT NULL,
            PRIMARY KEY (client_id, group_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX subscribers ON subscriptions (group_id, client_id)",
        """CREATE TABLE mailbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            client_id TEXT NOT NULL,
            message_id INTEGER NOT NULL REFERENCES messages (id)
        )""",
        "CREATE INDEX mailbox_by_client ON mailbox (client_id, id)",
        """CREATE TABLE group_info (
            group_id BLOB PRIMARY KEY,
            epoch INTEGER NOT NULL,
            group_info BLOB NOT NULL,
            ratchet_tree BLOB
        )""",
    ),
    # 2: bridge support (docs/bridge.md): CONTROL messages, hub items' relay fields and
    # the network-authenticated sender identity of messages sent through an account
    (
        """CREATE TABLE messages_v2 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('group', 'welcome', 'control')),
            group_id BLOB NOT NULL,
            epoch INTEGER,
            position INTEGER,
            is_commit INTEGER NOT NULL DEFAULT 0,
            sender TEXT,
            payload BLOB NOT NULL,
            sender_identity TEXT,
            relay_seq INTEGER,
            relayed_for TEXT
        )""",
        """INSERT INTO messages_v2 (id, kind, group_id, epoch, position, is_commit, sender,
            payload) SELECT id, kind, group_id, epoch, position, is_commit, sender, payload
            FROM messages""",
        "DROP TABLE messages",
        "ALTER TABLE messages_v2 RENAME TO messages",
        """CREATE UNIQUE INDEX group_order
            ON messages (group_id, position) WHERE kind = 'group'""",
        """CREATE UNIQUE INDEX one_commit_per_epoch
            ON messages (group_id, epoch) WHERE is_commit = 1""",
    ),
    # 3: idempotent submissions: the sender's message id (DeliveryTransport.submit)
    (
        "ALTER TABLE messages ADD COLUMN message_id TEXT",
        """CREATE UNIQUE INDEX one_message_per_id
            ON messages (group_id, sender, message_id) WHERE message_id IS NOT NULL""",
    ),
)

DEFAULT_POLL_INTERVAL = 0.05
DEFAULT_BUSY_TIMEOUT = 30.0
_RECEIVE_BATCH = 256


# ------------------------------------------------------------------------------ service


def _incoming(row: sqlite3.Row) -> IncomingMessage:
    mailbox_id, kind, payload, group_id, sender, position, identity, seq, relayed, mid = row
    return IncomingMessage(kind=MessageKind(kind), payload=bytes(payload),
                           cursor=str(mailbox_id),
                           group_id=None if kind == "control" else bytes(group_id),
                           sender=None if sender is None else str(sender),
                           position=None if position is None else int(position),
                           sender_identity=None if identity is None else str(identity),
                           relay_seq=None if seq is None else int(seq),
                           relayed_for=None if relayed is None else str(relayed),
                           message_id=None if mid is None else str(mid))


async def _rows(db: aiosqlite.Connection, sql: str,
                params: Iterable[Any] = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, tuple(params)))


async def _one(db: aiosqlite.Connection, sql: str,
               params: Iterable[Any] = ()) -> sqlite3.Row | None:
    rows = await _rows(db, sql, params)
    return rows[0] if rows else None


class LocalDeliveryService:
    """A :class:`~transports.base.DeliveryTransport` on one SQLite file (see module doc).

    ``sender`` and every ``client_id`` name clients; a client belongs to the user it first
    published KeyPackages under. The connection opens on first use; always :meth:`close`
    it (or use ``async with``): that releases the connection's worker thread and ends
    every :meth:`receive` iterator. Writes by other processes, or by other instances on
    the same file, are noticed by polling every ``poll_interval`` seconds."""

    #: a message id this sender stored is never refused: a refusal means never stored
    idempotent_submit = True

    def __init__(self, path: str | os.PathLike[str], *,
                 poll_interval: float = DEFAULT_POLL_INTERVAL,
                 busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
                 ordering: Literal["server", "room"] = "server") -> None:
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise InvalidRequestError("path must be a non-empty str or PathLike")
        for name, value in (("poll_interval", poll_interval), ("busy_timeout", busy_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidRequestError(f"{name} must be a positive number")
        if ordering not in ("server", "room"):
            raise InvalidRequestError("ordering must be 'server' or 'room'")
        self.path = Path(path)
        #: "room": behave like a chat room with no ordering server (every well-formed
        #: message is appended; the clients' stream processing decides which Commit
        #: wins, SubmitStatus.ORDERED), as the XMPP and Matrix transports do
        self.ordering = ordering
        self._poll_interval = float(poll_interval)
        self._busy_timeout = float(busy_timeout)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._closed = False

    async def __aenter__(self) -> LocalDeliveryService:
        async with self._lock:
            await self._connection()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ connection

    async def _connection(self) -> aiosqlite.Connection:
        """The open connection (opening and migrating it on first use); hold the lock."""
        if self._closed:
            raise TransportClosedError("the delivery service is closed")
        if self._db is None:
            try:
                db = await aiosqlite.connect(self.path, isolation_level=None,
                                             timeout=self._busy_timeout)
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open {self.path}: {exc}") from exc
            try:
                await self._prepare(db)
            except BaseException:
                await db.close()
                raise
            self._db = db
        return self._db

    async def _prepare(self, db: aiosqlite.Connection) -> None:
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            await db.execute("PRAGMA journal_mode = WAL")
            await _migrate(db)  # before foreign keys: migration 2 rebuilds a table
            await db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot prepare {self.path}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = await self._connection()
            try:
                yield db
            except sqlite3.Error as exc:
                raise StorageError(f"database error: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: writers in other processes wait (busy
        timeout) instead of interleaving, so check-then-write sequences are atomic."""
        async with self._lock:
            db = await self._connection()
            async with _transaction(db):
                yield db

    def _notify(self) -> None:
        """Wake this instance's waiting :meth:`receive` iterators."""
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    async def close(self) -> None:
        """Close the database and end every :meth:`receive` iterator; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()

    # ------------------------------------------------------------------ KeyPackages

    async def publish_key_packages(self, client_id: str, user_id: str,
                                   entries: Sequence[KeyPackageEntry]) -> None:
        client_id = require_id("client_id", client_id)
        user_id = require_id("user_id", user_id)
        items = require_entries(entries)
        async with self._write() as db:
            await _register_client(db, client_id, user_id)
            if any(e.last_resort for e in items):
                await db.execute("DELETE FROM key_packages WHERE client_id = ? "
                                 "AND last_resort = 1", (client_id,))
            try:
                await db.executemany(
                    "INSERT INTO key_packages (client_id, ref, key_package, last_resort) "
                    "VALUES (?, ?, ?, ?)",
                    [(client_id, e.ref, e.key_package, int(e.last_resort)) for e in items])
            except sqlite3.IntegrityError:
                raise InvalidRequestError("a KeyPackageRef is already published") from None

    async def retract_key_packages(self, client_id: str) -> int:
        """Withdraw every KeyPackage of ``client_id`` (DeliveryTransport, optional)."""
        client_id = require_id("client_id", client_id)
        async with self._write() as db:
            cur = await db.execute("DELETE FROM key_packages WHERE client_id = ?",
                                   (client_id,))
        return max(0, cur.rowcount)

    async def key_package_count(self, client_id: str) -> int:
        client_id = require_id("client_id", client_id)
        async with self._read() as db:
            row = await _one(db, "SELECT count(*) FROM key_packages "
                                 "WHERE client_id = ? AND last_resort = 0", (client_id,))
        return 0 if row is None else int(row[0])

    async def claim_key_package(self, client_id: str, *,
                                group_id: bytes | None = None) -> ClaimedKeyPackage:
        """``group_id`` is not needed here (one service, no bridge): ignored."""
        client_id = require_id("client_id", client_id)
        async with self._write() as db:
            claimed = await _claim(db, client_id)
        if claimed is None:
            raise NoKeyPackageError(f"no KeyPackage available for client {client_id!r}")
        return claimed

    async def claim_user_key_packages(self, user_id: str, *, group_id: bytes | None = None
                                      ) -> list[ClaimedKeyPackage]:
        """One KeyPackage per client of ``user_id``, claimed in one transaction; a client
        with nothing left (not even a last-resort KeyPackage) is left out. ``group_id``
        is ignored."""
        user_id = require_id("user_id", user_id)
        claimed: list[ClaimedKeyPackage] = []
        async with self._write() as db:
            rows = await _rows(db, "SELECT client_id FROM clients WHERE user_id = ? "
                                   "ORDER BY client_id", (user_id,))
            for row in rows:
                one = await _claim(db, str(row[0]))
                if one is not None:
                    claimed.append(one)
        return claimed

    # ------------------------------------------------------------------ group messages

    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        """Append to the group's total order if :func:`ordering_status` allows; an accepted
        message is delivered to every subscriber, the sender included (and subscribed).
        A ``message_id`` this sender already stored in the group returns the first
        result again, whatever the group's epoch now is (idempotent resubmission)."""
        return await self._submit(group_id, epoch, payload, is_commit=is_commit,
                                  sender=sender, message_id=message_id)

    async def _submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                      is_commit: bool, sender: str, identity: str | None = None,
                      relay: tuple[int, str, str | None] | None = None,
                      message_id: str | None = None) -> SubmitResult:
        """:meth:`submit`, with the sender's vouched ``identity`` (a :class:`LocalAccount`
        sends) and a hub item's ``relay`` (seq, origin identity, origin client)."""
        group_id = require_bytes("group_id", group_id)
        epoch = require_epoch(epoch)
        payload = require_bytes("payload", payload)
        sender = require_id("sender", sender)
        if not isinstance(is_commit, bool):
            raise InvalidRequestError("is_commit must be a bool")
        if message_id is not None:
            message_id = require_message_id(message_id)
        header = check_header(payload, group_id, epoch, is_commit)
        async with self._write() as db:
            result = await _append(db, header, payload, sender,
                                   room=self.ordering == "room" or relay is not None,
                                   identity=identity, relay=relay, message_id=message_id)
        if result.accepted or result.ordered:
            self._notify()
        return result

    async def send_welcome(self, client_ids: Sequence[str], welcome: bytes,
                           group_id: bytes, after_position: int | None = None) -> None:
        """Put the Welcome in each client's mailbox and subscribe them to ``group_id`` at
        that point, so they get every group message sent after the Welcome. With
        ``after_position`` (the position of the Commit that added them), group messages
        accepted after that Commit but before this call follow the Welcome too."""
        recipients = require_client_ids(client_ids)
        welcome = require_bytes("welcome", welcome)
        group_id = require_bytes("group_id", group_id)
        async with self._write() as db:
            cur = await db.execute("INSERT INTO messages (kind, group_id, payload) "
                                   "VALUES ('welcome', ?, ?)", (group_id, welcome))
            message_id = cur.lastrowid
            await db.executemany("INSERT INTO mailbox (client_id, message_id) VALUES (?, ?)",
                                 [(c, message_id) for c in recipients])
            if after_position is not None:
                for c in recipients:
                    await db.execute(
                        "INSERT INTO mailbox (client_id, message_id) SELECT ?, m.id "
                        "FROM messages m WHERE m.kind = 'group' AND m.group_id = ? "
                        "AND m.position > ? AND NOT EXISTS (SELECT 1 FROM subscriptions s "
                        "WHERE s.client_id = ? AND s.group_id = ?) ORDER BY m.position",
                        (c, group_id, after_position, c, group_id))
            await db.executemany("INSERT OR IGNORE INTO subscriptions (client_id, group_id) "
                                 "VALUES (?, ?)", [(c, group_id) for c in recipients])
        self._notify()

    async def subscribe(self, client_id: str, group_id: bytes) -> None:
        client_id = require_id("client_id", client_id)
        group_id = require_bytes("group_id", group_id)
        async with self._write() as db:
            await db.execute("INSERT OR IGNORE INTO subscriptions (client_id, group_id) "
                             "VALUES (?, ?)", (client_id, group_id))

    async def unsubscribe(self, client_id: str, group_id: bytes) -> None:
        client_id = require_id("client_id", client_id)
        group_id = require_bytes("group_id", group_id)
        async with self._write() as db:
            await db.execute("DELETE FROM subscriptions WHERE client_id = ? AND group_id = ?",
                             (client_id, group_id))

    async def _control(self, sender: str, identity: str, user_id: str, body: bytes) -> None:
        """A CONTROL message from ``sender`` (vouched as ``identity``) to every client
        of ``user_id``."""
        user_id = require_id("user_id", user_id)
        body = require_bytes("body", body)
        async with self._write() as db:
            rows = await _rows(db, "SELECT client_id FROM clients WHERE user_id = ? "
                                   "ORDER BY client_id", (user_id,))
            if not rows:
                raise InvalidRequestError(f"no client of user {user_id!r} is known")
            cur = await db.execute(
                "INSERT INTO messages (kind, group_id, sender, payload, sender_identity) "
                "VALUES ('control', x'', ?, ?, ?)", (sender, body, identity))
            await db.executemany("INSERT INTO mailbox (client_id, message_id) VALUES (?, ?)",
                                 [(str(r[0]), cur.lastrowid) for r in rows])
        self._notify()

    async def account(self, client_id: str, user_id: str, *,
                      network: str = "local") -> LocalAccount:
        """A view of this service bound to one client of ``user_id``, which vouches for
        the identity of what it sends (like a logged-in network account) and
        implements :class:`~transports.base.RelayTransport`: an in-process stand-in for
        one network of a bridged group (``mls-bridge demo``, tests)."""
        client_id = require_id("client_id", client_id)
        user_id = require_id("user_id", user_id)
        async with self._write() as db:
            await _register_client(db, client_id, user_id)
        return LocalAccount(self, client_id, user_id, network)

    # ------------------------------------------------------------------ GroupInfo

    async def publish_group_info(self, group_id: bytes, epoch: int, group_info: bytes,
                                 ratchet_tree: bytes | None = None) -> None:
        """Store the GroupInfo of ``epoch`` unless one of a newer epoch is stored (the same
        epoch replaces, e.g. to add the tree)."""
        group_id = require_bytes("group_id", group_id)
        epoch = require_epoch(epoch)
        group_info = require_bytes("group_info", group_info)
        if ratchet_tree is not None:
            ratchet_tree = require_bytes("ratchet_tree", ratchet_tree)
        async with self._write() as db:
            await db.execute(
                "INSERT INTO group_info (group_id, epoch, group_info, ratchet_tree) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (group_id) DO UPDATE SET "
                "epoch = excluded.epoch, group_info = excluded.group_info, "
                "ratchet_tree = excluded.ratchet_tree WHERE excluded.epoch >= epoch",
                (group_id, epoch, group_info, ratchet_tree))

    async def fetch_group_info(self, group_id: bytes) -> tuple[bytes, bytes | None]:
        group_id = require_bytes("group_id", group_id)
        async with self._read() as db:
            row = await _one(db, "SELECT group_info, ratchet_tree FROM group_info "
                                 "WHERE group_id = ?", (group_id,))
        if row is None:
            raise UnknownGroupError(f"no GroupInfo published for group {group_id.hex()}")
        return bytes(row[0]), None if row[1] is None else bytes(row[1])

    # ------------------------------------------------------------------ delivery

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        client_id = require_id("client_id", client_id)
        start = parse_cursor(after)
        limit = require_limit(limit)
        return await self._fetch(client_id, start, limit)

    async def _fetch(self, client_id: str, start: int, limit: int) -> list[IncomingMessage]:
        async with self._read() as db:
            rows = await _rows(
                db, "SELECT mb.id, m.kind, m.payload, m.group_id, m.sender, m.position, "
                    "m.sender_identity, m.relay_seq, m.relayed_for, m.message_id "
                    "FROM mailbox AS mb JOIN messages AS m ON m.id = mb.message_id "
                    "WHERE mb.client_id = ? AND mb.id > ? ORDER BY mb.id LIMIT ?",
                (client_id, start, limit))
        return [_incoming(row) for row in rows]

    def receive(self, client_id: str, after: str | None = None
                ) -> AsyncIterator[IncomingMessage]:
        """Yield everything after ``after``, then wait for more: woken at once by writes
        through this instance, by polling for writes by other processes or instances.
        Ends when the service is closed."""
        client_id = require_id("client_id", client_id)
        start = parse_cursor(after)
        if self._closed:
            raise TransportClosedError("the delivery service is closed")
        return self._stream(client_id, start)

    async def _stream(self, client_id: str, start: int) -> AsyncIterator[IncomingMessage]:
        cursor = start
        while not self._closed:
            wakeup = self._wakeup  # taken before reading, so no write can slip between
            try:
                batch = await self._fetch(client_id, cursor, _RECEIVE_BATCH)
            except TransportClosedError:
                return
            for item in batch:
                yield item
                cursor = int(item.cursor)
                if self._closed:
                    return
            if not batch:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_interval):
                        await wakeup.wait()


# ---------------------------------------------------------------------- SQL helpers


@contextlib.asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    try:
        await db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot start a transaction: {exc}") from exc
    except BaseException:
        # cancelled while the connection's thread runs BEGIN: it still opens the
        # transaction, which the next writer on this connection would find open
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"database error: {exc}") from exc
        raise
    try:
        await db.execute("COMMIT")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise StorageError(f"cannot commit: {exc}") from exc


async def _migrate(db: aiosqlite.Connection) -> None:
    """Apply the missing :data:`MIGRATIONS` in one transaction (concurrent openers of a
    new file serialize on ``BEGIN IMMEDIATE``; the second one finds nothing to do)."""
    async with _transaction(db):
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = await _one(db, "SELECT version FROM schema_version")
        version = 0 if row is None else int(row[0])
        if version > len(MIGRATIONS):
            raise StorageError(f"database schema version {version} is newer than this code "
                               f"supports ({len(MIGRATIONS)})")
        for migration in MIGRATIONS[version:]:
            for statement in migration:
                await db.execute(statement)
        if row is None:
            await db.execute("INSERT INTO schema_version (version) VALUES (?)",
                             (len(MIGRATIONS),))
        else:
            await db.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))


async def _register_client(db: aiosqlite.Connection, client_id: str, user_id: str) -> None:
    row = await _one(db, "SELECT user_id FROM clients WHERE client_id = ?", (client_id,))
    if row is None:
        await db.execute("INSERT INTO clients (client_id, user_id) VALUES (?, ?)",
                         (client_id, user_id))
    elif row[0] != user_id:
        raise InvalidRequestError(f"client {client_id!r} belongs to another user")


async def _claim(db: aiosqlite.Connection, client_id: str) -> ClaimedKeyPackage | None:
    """Inside a write transaction: the oldest one-use KeyPackage (deleted), else the
    last-resort one (kept), else None."""
    row = await _one(db, "SELECT id, ref, key_package, last_resort FROM key_packages "
                         "WHERE client_id = ? ORDER BY last_resort, id LIMIT 1", (client_id,))
    if row is None:
        return None
    row_id, ref, key_package, last_resort = row
    if not last_resort:
        await db.execute("DELETE FROM key_packages WHERE id = ?", (row_id,))
    return ClaimedKeyPackage(client_id=client_id, ref=bytes(ref),
                             key_package=bytes(key_package), last_resort=bool(last_resort))


async def _append(db: aiosqlite.Connection, header: GroupMessageHeader, payload: bytes,
                  sender: str, *, room: bool = False, identity: str | None = None,
                  relay: tuple[int, str, str | None] | None = None,
                  message_id: str | None = None) -> SubmitResult:
    """Inside a write transaction: apply the ordering rule, then append and fan out.
    ``room``: append everything; a Commit after another one for its epoch is ORDERED.
    A ``message_id`` the sender already stored returns its first result, appends nothing."""
    group_id, epoch = header.group_id, header.epoch
    seq, relayed_for, shown = relay if relay is not None else (None, None, sender)
    if message_id is not None:
        stored = await _one(db, "SELECT position, is_commit FROM messages WHERE kind = 'group'"
                                " AND group_id = ? AND sender IS ? AND message_id = ?",
                            (group_id, shown, message_id))
        if stored is not None:
            status = SubmitStatus.ORDERED if stored[1] == 2 else SubmitStatus.ACCEPTED
            return SubmitResult(status, int(stored[0]))
    row = await _one(db, "SELECT epoch, next_position FROM groups WHERE group_id = ?",
                     (group_id,))
    if row is None:
        current, position = epoch, 0
        await db.execute("INSERT INTO groups (group_id, epoch, next_position) VALUES (?, ?, 0)",
                         (group_id, epoch))
    else:
        current, position = int(row[0]), int(row[1])
    is_commit = header.content_type == ContentType.COMMIT
    taken = is_commit and epoch < current and await _one(
        db, "SELECT 1 FROM messages WHERE group_id = ? AND epoch = ? AND is_commit = 1",
        (group_id, epoch)) is not None
    if room:
        status = SubmitStatus.ACCEPTED
        if is_commit and await _one(db, "SELECT 1 FROM messages WHERE group_id = ? AND "
                                        "epoch = ? AND is_commit = 1", (group_id, epoch)):
            status = SubmitStatus.ORDERED
        new_epoch = max(current, epoch + 1 if is_commit else epoch)
    else:
        status = ordering_status(current, epoch, header.content_type, taken)
        if status is not SubmitStatus.ACCEPTED:
            return SubmitResult(status)
        new_epoch = current + 1 if is_commit else current
    await db.execute("UPDATE groups SET epoch = ?, next_position = ? WHERE group_id = ?",
                     (new_epoch, position + 1, group_id))
    cur = await db.execute(
        "INSERT INTO messages (kind, group_id, epoch, position, is_commit, sender, payload, "
        "sender_identity, relay_seq, relayed_for, message_id) "
        "VALUES ('group', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        # 2: a later Commit of an epoch that already has one (room ordering only)
        (group_id, epoch, position, 2 if status is SubmitStatus.ORDERED else int(is_commit),
         shown, payload, identity, seq, relayed_for, message_id))
    await db.execute("INSERT OR IGNORE INTO subscriptions (client_id, group_id) VALUES (?, ?)",
                     (sender, group_id))
    await db.execute("INSERT INTO mailbox (client_id, message_id) SELECT client_id, ? "
                     "FROM subscriptions WHERE group_id = ? ORDER BY client_id",
                     (cur.lastrowid, group_id))
    return SubmitResult(status, position)


class LocalAccount:
    """One client's logged-in view of a :class:`LocalDeliveryService` (see
    :meth:`LocalDeliveryService.account`): the DeliveryTransport calls bound to
    ``client_id``, every message it sends vouched as ``user_id`` (``sender_identity``),
    plus the bridge calls of :class:`~transports.base.RelayTransport`. Closing it leaves
    the shared service open."""

    atomic_claims = True
    idempotent_submit = True

    def __init__(self, service: LocalDeliveryService, client_id: str, user_id: str,
                 network: str) -> None:
        self.service = service
        self.client_id = client_id
        self.user_id = user_id
        self.network = network

    async def publish_key_packages(self, client_id: str, user_id: str,
                                   entries: Sequence[KeyPackageEntry]) -> None:
        await self.service.publish_key_packages(client_id, user_id, entries)

    async def retract_key_packages(self, client_id: str) -> int:
        return await self.service.retract_key_packages(client_id)

    async def key_package_count(self, client_id: str) -> int:
        return await self.service.key_package_count(client_id)

    async def claim_key_package(self, client_id: str, *,
                                group_id: bytes | None = None) -> ClaimedKeyPackage:
        return await self.service.claim_key_package(client_id, group_id=group_id)

    async def claim_user_key_packages(self, user_id: str, *, group_id: bytes | None = None
                                      ) -> list[ClaimedKeyPackage]:
        return await self.service.claim_user_key_packages(user_id, group_id=group_id)

    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        identity = self.user_id if sender == self.client_id else None
        return await self.service._submit(group_id, epoch, payload, is_commit=is_commit,
                                          sender=sender, identity=identity,
                                          message_id=message_id)

    async def send_welcome(self, client_ids: Sequence[str], welcome: bytes,
                           group_id: bytes, after_position: int | None = None) -> None:
        await self.service.send_welcome(client_ids, welcome, group_id, after_position)

    async def subscribe(self, client_id: str, group_id: bytes) -> None:
        await self.service.subscribe(client_id, group_id)

    async def unsubscribe(self, client_id: str, group_id: bytes) -> None:
        await self.service.unsubscribe(client_id, group_id)

    async def publish_group_info(self, group_id: bytes, epoch: int, group_info: bytes,
                                 ratchet_tree: bytes | None = None) -> None:
        await self.service.publish_group_info(group_id, epoch, group_info, ratchet_tree)

    async def fetch_group_info(self, group_id: bytes) -> tuple[bytes, bytes | None]:
        return await self.service.fetch_group_info(group_id)

    def receive(self, client_id: str, after: str | None = None
                ) -> AsyncIterator[IncomingMessage]:
        return self.service.receive(client_id, after)

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        return await self.service.fetch(client_id, after, limit)

    async def close(self) -> None:
        """The service is shared: its owner closes it."""

    # ------------------------------------------------------------------ RelayTransport

    async def relay_group(self, group_id: bytes, payload: bytes, *, seq: int,
                          sender_identity: str, sender: str | None = None) -> int | None:
        header = read_header(require_bytes("payload", payload))
        if header.group_id != group_id:
            raise InvalidRequestError("the payload belongs to another group")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise InvalidRequestError("seq must be a non-negative int")
        result = await self.service._submit(
            group_id, header.epoch, payload,
            is_commit=header.content_type == ContentType.COMMIT, sender=self.client_id,
            identity=self.user_id,
            relay=(seq, require_id("sender_identity", sender_identity), sender))
        return result.position

    async def send_control(self, user_id: str, body: bytes) -> None:
        await self.service._control(self.client_id, self.user_id, user_id, body)

    async def admit(self, group_id: bytes, user_id: str) -> None:
        """The embedded service has no room access control: nothing to grant."""
        require_bytes("group_id", group_id)
        require_id("user_id", user_id)
