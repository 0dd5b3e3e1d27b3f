"""Crash-safe client storage on SQLite (aiosqlite, WAL, ``synchronous=FULL``).

One database per client holds its identity, signature keys, the private halves of its
published KeyPackages, one row per group with the whole current state
(:meth:`mls_core.group.Group.to_bytes`), the transport cursor, a log of processed
messages, the inbox of delivered application messages and an outbox of messages that
must reach the Delivery Service.

Every change goes through :meth:`Store.transaction`. The client processes one incoming
message and persists all of its effects (new group state, cursor, inbox row, processed
log) in a single transaction, so a process killed at any instant restarts either before
or after the message, never in between; because the stored state is always the
post-processing one, a message whose keys were deleted is never decrypted again
(RFC 9420 §9.2, RFC 9750 "Ordering"). A group's row is replaced, not appended to, and
``secure_delete`` makes SQLite overwrite freed pages, so old epochs' secrets do not
linger in the database file.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from transports.sqlite_log import no_sql_parameters_in_logs

from .errors import StorageError

no_sql_parameters_in_logs()

#: Each entry migrates the schema from version ``i`` to ``i + 1``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE identity (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            user_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            created_at INTEGER NOT NULL)""",
        """CREATE TABLE signature_keys (
            suite INTEGER PRIMARY KEY,
            private_key BLOB NOT NULL,
            public_key BLOB NOT NULL)""",
        """CREATE TABLE key_packages (
            ref BLOB PRIMARY KEY,
            suite INTEGER NOT NULL,
            key_package BLOB NOT NULL,
            init_priv BLOB NOT NULL,
            encryption_priv BLOB NOT NULL,
            last_resort INTEGER NOT NULL,
            published INTEGER NOT NULL DEFAULT 0,
            used INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            not_after INTEGER NOT NULL)""",
        """CREATE TABLE groups (
            group_id BLOB PRIMARY KEY,
            name TEXT UNIQUE,
            state BLOB,
            epoch INTEGER NOT NULL,
            active INTEGER NOT NULL,
            leaving INTEGER NOT NULL DEFAULT 0,
            needs_update INTEGER NOT NULL DEFAULT 0,
            updated_at INTEGER NOT NULL)""",
        """CREATE TABLE cursor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            value TEXT)""",
        """CREATE TABLE processed (
            msg_hash BLOB PRIMARY KEY,
            cursor TEXT,
            group_id BLOB,
            outcome TEXT NOT NULL,
            processed_at INTEGER NOT NULL)""",
        """CREATE TABLE inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            group_id BLOB NOT NULL,
            sender TEXT NOT NULL,
            sender_leaf INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            data BLOB NOT NULL,
            outgoing INTEGER NOT NULL,
            msg_hash BLOB UNIQUE,
            received_at INTEGER NOT NULL,
            read INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            group_id BLOB NOT NULL,
            epoch INTEGER NOT NULL,
            kind TEXT NOT NULL,
            payload BLOB NOT NULL,
            welcome BLOB,
            welcome_to TEXT NOT NULL DEFAULT '[]',
            state TEXT NOT NULL,
            position INTEGER,
            created_at INTEGER NOT NULL)""",
        """CREATE TABLE buffered (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            group_id BLOB NOT NULL,
            payload BLOB NOT NULL,
            sender TEXT,
            msg_hash BLOB UNIQUE NOT NULL,
            received_at INTEGER NOT NULL)""",
        "CREATE INDEX inbox_group ON inbox (group_id, id)",
        "CREATE INDEX buffered_group ON buffered (group_id, id)",
    ),
    (
        # the network-authenticated sender (IncomingMessage.sender_identity)
        "ALTER TABLE buffered ADD COLUMN sender_identity TEXT",
    ),
    (
        # signature keys seen for each identity: trust on first use (docs/security.md)
        """CREATE TABLE pinned_keys (
            identity BLOB NOT NULL,
            signature_key BLOB NOT NULL,
            first_seen INTEGER NOT NULL,
            PRIMARY KEY (identity, signature_key)) WITHOUT ROWID""",
    ),
    (
        # when a one-use KeyPackage was used (kept for a grace period where claims are
        # not atomic: KeyPackagePool.reuse_grace)
        "ALTER TABLE key_packages ADD COLUMN used_at INTEGER",
        "ALTER TABLE key_packages ADD COLUMN used_in BLOB",
    ),
    (
        # the epoch we created or joined the group at (Welcome or external Commit):
        # messages of earlier epochs were never ours to read (mls_client.inbound);
        # NULL for groups stored before this version (unknown)
        "ALTER TABLE groups ADD COLUMN joined_epoch INTEGER",
    ),
    (
        # one message id per outbox entry, kept for every retry and after a crash; the
        # sender's message id of delivered messages, to deliver each once
        # (DeliveryTransport.submit, docs/resilience.md)
        "ALTER TABLE outbox ADD COLUMN message_id TEXT",
        "ALTER TABLE inbox ADD COLUMN message_id TEXT",
        "CREATE INDEX inbox_message_id ON inbox (group_id, sender, message_id)",
    ),
    (
        # MIMI content (docs/content.md "In the client"): the MIMI message id, what the
        # message is (message, edit, delete, reaction, unreaction), the message id it
        # refers to (replaces, or inReplyTo of a reply or reaction), its absolute
        # expiry, a relative expiry counted from its first read, and whether an edit
        # replaced its content. Rows stored before this version are plain messages.
        "ALTER TABLE inbox ADD COLUMN content_id BLOB",
        "ALTER TABLE inbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'message'",
        "ALTER TABLE inbox ADD COLUMN ref BLOB",
        "ALTER TABLE inbox ADD COLUMN expires_at INTEGER",
        "ALTER TABLE inbox ADD COLUMN expires_after INTEGER",
        "ALTER TABLE inbox ADD COLUMN edited INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX inbox_content_id ON inbox (group_id, content_id)",
        "CREATE INDEX inbox_ref ON inbox (group_id, ref)",
        "CREATE INDEX inbox_expires_at ON inbox (expires_at) WHERE expires_at IS NOT NULL",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
#: processed-log rows kept; older ones are pruned (the cursor already excludes them)
PROCESSED_LOG_SIZE = 10_000


@dataclass(frozen=True)
class Identity:
    user_id: str
    client_id: str
    created_at: int


@dataclass(frozen=True, repr=False)
class StoredKeyPackage:
    """A published KeyPackage (MLSMessage bytes) with its private keys (RFC 9420 §10)."""

    ref: bytes
    suite: int
    key_package: bytes
    init_priv: bytes
    encryption_priv: bytes
    last_resort: bool
    published: bool
    used: bool
    created_at: int
    not_after: int
    used_at: int | None = None
    #: the group whose Welcome used it first
    used_in: bytes | None = None

    def __repr__(self) -> str:
        return f"StoredKeyPackage(ref={self.ref.hex()[:16]}, last_resort={self.last_resort})"


@dataclass(frozen=True, repr=False)
class GroupRecord:
    """One group: its current serialized state (None once we left or were removed)."""

    group_id: bytes
    name: str | None
    state: bytes | None
    epoch: int
    active: bool
    leaving: bool
    needs_update: bool
    #: the epoch we created or last joined the group at (None: stored before schema 5)
    joined_epoch: int | None = None

    def __repr__(self) -> str:
        return f"GroupRecord({self.group_id.hex()}, epoch={self.epoch}, active={self.active})"


@dataclass(frozen=True)
class InboxMessage:
    """A delivered (or, if ``outgoing``, sent) application message."""

    id: int
    group_id: bytes
    sender: str
    sender_leaf: int
    epoch: int
    data: bytes
    outgoing: bool
    received_at: int
    read: bool
    #: the MIMI message id (draft-ietf-mimi-content "Message ID"); None: not MIMI content
    content_id: bytes | None = None
    #: ``message``, ``edit``, ``delete``, ``reaction`` or ``unreaction``
    kind: str = "message"
    #: the message id it refers to: ``replaces`` of an edit, delete or unreaction,
    #: ``inReplyTo`` of a reply or reaction
    ref: bytes | None = None
    #: when it expires (seconds since the epoch), if it does
    expires_at: int | None = None
    #: an edit by its sender replaced the content (``data`` holds the edit)
    edited: bool = False


@dataclass(frozen=True)
class OutboxEntry:
    """A message persisted before it was submitted. ``state`` is ``pending`` (not known
    to be accepted) or ``accepted`` (a Commit whose Welcome/GroupInfo still go out)."""

    id: int
    group_id: bytes
    epoch: int
    kind: str
    payload: bytes
    welcome: bytes | None
    welcome_to: tuple[str, ...]
    state: str
    #: the accepted Commit's place in the group's order, if known
    position: int | None = None
    #: the id every submission of this entry carries (DeliveryTransport.submit)
    message_id: str | None = None


@dataclass(frozen=True)
class BufferedMessage:
    """A group message that arrived before the Welcome into that group."""

    id: int
    group_id: bytes
    payload: bytes
    sender: str | None
    msg_hash: bytes
    sender_identity: str | None = None


class Store:
    """The client database. Reads are plain methods; writes need a :class:`Transaction`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        """Open (creating if needed) and migrate the database at ``path``."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, aiosqlite.Error) as exc:
            raise StorageError(f"cannot open client database {path}: {exc}") from None
        store = cls(conn, path)
        try:
            await store._configure()
            await store._migrate()
        except BaseException:
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        """Checkpoint and truncate the WAL (it may hold replaced pages), then close."""
        try:
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await self._conn.close()

    async def _configure(self) -> None:
        try:
            for pragma in ("journal_mode = WAL", "synchronous = FULL", "secure_delete = ON",
                           "foreign_keys = ON", "busy_timeout = 10000"):
                await self._conn.execute(f"PRAGMA {pragma}")
        except aiosqlite.Error as exc:
            raise StorageError(f"{self.path}: not a usable SQLite database ({exc})") from None

    async def _migrate(self) -> None:
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
            await self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await self._one("SELECT version FROM schema_version")
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise StorageError(f"{self.path}: schema version {version} is newer than "
                                   f"this program's ({SCHEMA_VERSION})")
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    await self._conn.execute(sql)
            if row is None:
                await self._conn.execute("INSERT INTO schema_version VALUES (?)",
                                         (SCHEMA_VERSION,))
            else:
                await self._conn.execute("UPDATE schema_version SET version = ?",
                                         (SCHEMA_VERSION,))
            await self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
            if isinstance(exc, aiosqlite.Error):
                raise StorageError(f"{self.path}: cannot migrate ({exc})") from None
            raise

    async def schema_version(self) -> int:
        row = await self._one("SELECT version FROM schema_version")
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ transactions

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """BEGIN IMMEDIATE ... COMMIT; any exception rolls everything back."""
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
        except aiosqlite.Error as exc:
            raise StorageError(f"{self.path}: cannot start a transaction ({exc})") from None
        try:
            yield Transaction(self._conn)
            await self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
            if isinstance(exc, aiosqlite.Error):
                raise StorageError(f"{self.path}: write failed ({exc})") from None
            raise

    # ------------------------------------------------------------------ reads

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except aiosqlite.Error as exc:
            raise StorageError(f"{self.path}: read failed ({exc})") from None

    async def identity(self) -> Identity | None:
        row = await self._one("SELECT user_id, client_id, created_at FROM identity")
        return None if row is None else Identity(row[0], row[1], row[2])

    async def signature_key(self, suite: int) -> tuple[bytes, bytes] | None:
        """(private, public) signature key for ``suite``."""
        row = await self._one(
            "SELECT private_key, public_key FROM signature_keys WHERE suite = ?", (suite,))
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    async def pinned_keys(self, identities: Iterable[bytes]) -> dict[bytes, set[bytes]]:
        """The signature keys seen so far for each of ``identities`` that has any (trust
        on first use)."""
        out: dict[bytes, set[bytes]] = {}
        wanted = list(dict.fromkeys(identities))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for identity, key in await self._all(
                    f"SELECT identity, signature_key FROM pinned_keys "
                    f"WHERE identity IN ({marks})", chunk):
                out.setdefault(bytes(identity), set()).add(bytes(key))
        return out

    async def key_package(self, ref: bytes) -> StoredKeyPackage | None:
        row = await self._one(f"SELECT {_KP_SELECT} FROM key_packages WHERE ref = ?", (ref,))
        return None if row is None else _key_package(row)

    async def key_packages(self) -> list[StoredKeyPackage]:
        rows = await self._all(f"SELECT {_KP_SELECT} FROM key_packages ORDER BY created_at")
        return [_key_package(r) for r in rows]

    async def group(self, group_id: bytes) -> GroupRecord | None:
        row = await self._one(f"SELECT {_GROUP_COLUMNS} FROM groups WHERE group_id = ?",
                              (group_id,))
        return None if row is None else _group(row)

    async def groups(self) -> list[GroupRecord]:
        rows = await self._all(f"SELECT {_GROUP_COLUMNS} FROM groups ORDER BY rowid")
        return [_group(r) for r in rows]

    async def cursor(self) -> str | None:
        row = await self._one("SELECT value FROM cursor")
        return None if row is None else row[0]

    async def is_processed(self, msg_hash: bytes) -> bool:
        return await self._one("SELECT 1 FROM processed WHERE msg_hash = ?",
                               (msg_hash,)) is not None

    async def processed_count(self, outcome: str | None = None) -> int:
        if outcome is None:
            row = await self._one("SELECT COUNT(*) FROM processed")
        else:
            row = await self._one("SELECT COUNT(*) FROM processed WHERE outcome = ?",
                                  (outcome,))
        return int(row[0])

    async def inbox(self, group_id: bytes | None = None, *, unread_only: bool = False,
                    include_outgoing: bool = True, kinds: Sequence[str] | None = None,
                    now: int | None = None, ref: bytes | None = None
                    ) -> list[InboxMessage]:
        """Inbox rows, oldest first: of ``kinds`` (all if None), referring to ``ref``,
        not expired at ``now`` (if given)."""
        where: list[str] = ["1"]
        params: list[Any] = []
        if kinds is not None:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        if ref is not None:
            where.append("ref = ?")
            params.append(ref)
        if now is not None:
            where.append("(expires_at IS NULL OR expires_at > ?)")
            params.append(now)
        if group_id is not None:
            where.append("group_id = ?")
            params.append(group_id)
        if unread_only:
            where.append("read = 0")
        if not include_outgoing:
            where.append("outgoing = 0")
        rows = await self._all(f"SELECT {_INBOX_COLUMNS} FROM inbox "
                               f"WHERE {' AND '.join(where)} ORDER BY id", params)
        return [_inbox(r) for r in rows]

    async def inbox_entry(self, msg_hash: bytes) -> InboxMessage | None:
        """The inbox row of the message with that ciphertext hash."""
        row = await self._one(f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE msg_hash = ?",
                              (msg_hash,))
        return None if row is None else _inbox(row)

    async def by_content_id(self, group_id: bytes, content_id: bytes) -> InboxMessage | None:
        """The inbox row of the MIMI message ``content_id`` in the group."""
        row = await self._one(f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE group_id = ? AND "
                              "content_id = ? ORDER BY id LIMIT 1", (group_id, content_id))
        return None if row is None else _inbox(row)

    async def outbox(self) -> list[OutboxEntry]:
        rows = await self._all("SELECT id, group_id, epoch, kind, payload, welcome, "
                               "welcome_to, state, position, message_id FROM outbox "
                               "ORDER BY id")
        return [OutboxEntry(r[0], bytes(r[1]), r[2], r[3], bytes(r[4]),
                            None if r[5] is None else bytes(r[5]),
                            tuple(json.loads(r[6])), r[7], r[8], r[9]) for r in rows]

    async def outbox_depth(self) -> int:
        """How many messages the outbox holds (not yet known to be stored)."""
        row = await self._one("SELECT count(*) FROM outbox")
        return int(row[0])

    async def delivered(self, group_id: bytes, sender: str, message_id: str) -> bool:
        """Whether an application message of ``sender`` with that message id is already
        in the inbox (a copy its sender had to encrypt again)."""
        return await self._one("SELECT 1 FROM inbox WHERE group_id = ? AND sender = ? AND "
                               "message_id = ?", (group_id, sender, message_id)) is not None

    async def buffered(self, group_id: bytes) -> list[BufferedMessage]:
        rows = await self._all("SELECT id, group_id, payload, sender, msg_hash, "
                               "sender_identity FROM buffered WHERE group_id = ? ORDER BY id",
                               (group_id,))
        return [BufferedMessage(r[0], bytes(r[1]), bytes(r[2]), r[3], bytes(r[4]), r[5])
                for r in rows]


class Transaction:
    """The write half of :class:`Store`, valid inside ``async with store.transaction()``."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._conn.execute(sql, params) as cur:
            return cur.lastrowid or 0

    async def set_identity(self, user_id: str, client_id: str) -> None:
        await self._exec("INSERT INTO identity VALUES (1, ?, ?, ?)",
                         (user_id, client_id, _now()))

    async def add_signature_key(self, suite: int, private_key: bytes, public_key: bytes) -> None:
        await self._exec("INSERT INTO signature_keys VALUES (?, ?, ?)",
                         (suite, private_key, public_key))

    async def add_key_packages(self, kps: Iterable[StoredKeyPackage]) -> None:
        for kp in kps:
            await self._exec(
                f"INSERT INTO key_packages ({_KP_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kp.ref, kp.suite, kp.key_package, kp.init_priv, kp.encryption_priv,
                 int(kp.last_resort), int(kp.published), int(kp.used), kp.created_at,
                 kp.not_after))

    async def mark_published(self, refs: Iterable[bytes]) -> None:
        for ref in refs:
            await self._exec("UPDATE key_packages SET published = 1 WHERE ref = ?", (ref,))

    async def pin_keys(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Remember (identity, signature key) pairs; known ones are left as they are."""
        await self._conn.executemany(
            "INSERT OR IGNORE INTO pinned_keys (identity, signature_key, first_seen) "
            "VALUES (?, ?, ?)", [(i, k, _now()) for i, k in pairs])

    async def unpin_keys(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        await self._conn.executemany(
            "DELETE FROM pinned_keys WHERE identity = ? AND signature_key = ?", list(pairs))

    async def mark_used(self, ref: bytes, when: int | None = None,
                        group_id: bytes | None = None) -> None:
        """A KeyPackage was used (first by ``group_id``): a last-resort one is rotated
        soon (RFC 9750), a one-use one is deleted after the reuse grace period."""
        await self._exec("UPDATE key_packages SET used = 1, used_at = COALESCE(used_at, ?), "
                         "used_in = COALESCE(used_in, ?) WHERE ref = ?",
                         (_now() if when is None else when, group_id, ref))

    async def delete_key_packages(self, refs: Iterable[bytes]) -> None:
        """Forget KeyPackage private keys (used, expired or rotated; RFC 9750)."""
        for ref in refs:
            await self._exec("DELETE FROM key_packages WHERE ref = ?", (ref,))

    async def put_group(self, group_id: bytes, state: bytes | None, epoch: int, *,
                        active: bool = True, name: str | None = None,
                        joined: bool = False) -> None:
        """Insert or replace a group's state (the old state is overwritten). A new row
        records ``epoch`` as the epoch we joined at; ``joined`` records it again (we
        joined anew: a Welcome after a removal, an external Commit)."""
        await self._exec(
            "INSERT INTO groups (group_id, name, state, epoch, active, updated_at, "
            "joined_epoch) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (group_id) DO UPDATE SET "
            "state = excluded.state, epoch = excluded.epoch, active = excluded.active, "
            "name = COALESCE(excluded.name, groups.name), updated_at = excluded.updated_at, "
            "joined_epoch = CASE WHEN ? THEN excluded.joined_epoch "
            "ELSE groups.joined_epoch END",
            (group_id, name, state, epoch, int(active), _now(), epoch, int(joined)))

    async def delete_group(self, group_id: bytes) -> None:
        await self._exec("DELETE FROM groups WHERE group_id = ?", (group_id,))

    async def set_group_flags(self, group_id: bytes, *, leaving: bool | None = None,
                              needs_update: bool | None = None) -> None:
        if leaving is not None:
            await self._exec("UPDATE groups SET leaving = ? WHERE group_id = ?",
                             (int(leaving), group_id))
        if needs_update is not None:
            await self._exec("UPDATE groups SET needs_update = ? WHERE group_id = ?",
                             (int(needs_update), group_id))

    async def set_cursor(self, cursor: str) -> None:
        await self._exec("INSERT INTO cursor VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET "
                         "value = excluded.value", (cursor,))

    async def mark_processed(self, msg_hash: bytes, cursor: str | None,
                             group_id: bytes | None, outcome: str) -> None:
        await self._exec("INSERT OR REPLACE INTO processed VALUES (?, ?, ?, ?, ?)",
                         (msg_hash, cursor, group_id, outcome, _now()))

    async def prune_processed(self, keep: int = PROCESSED_LOG_SIZE) -> None:
        await self._exec("DELETE FROM processed WHERE rowid <= "
                         "(SELECT MAX(rowid) - ? FROM processed)", (keep,))

    async def deliver(self, group_id: bytes, sender: str, sender_leaf: int, epoch: int,
                      data: bytes, *, outgoing: bool = False,
                      msg_hash: bytes | None = None, message_id: str | None = None,
                      content_id: bytes | None = None, kind: str = "message",
                      ref: bytes | None = None, expires_at: int | None = None,
                      expires_after: int | None = None) -> int:
        """Add an application message to the inbox (at most once per ``msg_hash``). Our
        own copy (``outgoing``, read) of a message visible for ``expires_after`` seconds
        after reading expires that long after sending."""
        if outgoing and expires_after is not None and expires_at is None:
            expires_at = _now() + expires_after
        return await self._exec(
            "INSERT INTO inbox (group_id, sender, sender_leaf, epoch, data, outgoing, msg_hash,"
            " received_at, read, message_id, content_id, kind, ref, expires_at, "
            "expires_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (group_id, sender, sender_leaf, epoch, data, int(outgoing), msg_hash, _now(),
             int(outgoing), message_id, content_id, kind, ref, expires_at, expires_after))

    async def replace_content(self, inbox_id: int, data: bytes) -> None:
        """An authorized edit: the message's content becomes ``data`` (the edit)."""
        await self._exec("UPDATE inbox SET data = ?, edited = 1 WHERE id = ?",
                         (data, inbox_id))

    async def delete_referring(self, group_id: bytes, ref: bytes, kinds: Sequence[str]) -> None:
        """Delete the rows of ``kinds`` that refer to the message ``ref``."""
        await self._exec(f"DELETE FROM inbox WHERE group_id = ? AND ref = ? AND kind IN "
                         f"({','.join('?' * len(kinds))})", (group_id, ref, *kinds))

    async def purge_expired(self, now: int) -> int:
        """Delete the messages whose expiry passed (draft-ietf-mimi-content "Expiring
        messages"); returns how many."""
        async with self._conn.execute("DELETE FROM inbox WHERE expires_at IS NOT NULL AND "
                                      "expires_at <= ?", (now,)) as cur:
            return int(cur.rowcount or 0)

    async def delete_inbox(self, inbox_id: int) -> None:
        await self._exec("DELETE FROM inbox WHERE id = ?", (inbox_id,))

    async def mark_read(self, ids: Iterable[int], now: int | None = None) -> None:
        """Mark read; a relative expiry starts counting at the first read."""
        when = _now() if now is None else now
        for i in ids:
            await self._exec("UPDATE inbox SET read = 1, expires_at = CASE WHEN "
                             "expires_after IS NOT NULL AND read = 0 THEN MIN(COALESCE("
                             "expires_at, ? + expires_after), ? + expires_after) ELSE "
                             "expires_at END WHERE id = ?", (when, when, i))

    async def add_outbox(self, group_id: bytes, epoch: int, kind: str, payload: bytes, *,
                         welcome: bytes | None = None, welcome_to: Sequence[str] = (),
                         message_id: str | None = None) -> int:
        return await self._exec(
            "INSERT INTO outbox (group_id, epoch, kind, payload, welcome, welcome_to, state, "
            "created_at, message_id) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (group_id, epoch, kind, payload, welcome, json.dumps(list(welcome_to)), _now(),
             message_id))

    async def set_outbox_state(self, entry_id: int, state: str,
                               position: int | None = None) -> None:
        await self._exec("UPDATE outbox SET state = ?, position = ? WHERE id = ?",
                         (state, position, entry_id))

    async def delete_outbox(self, entry_id: int) -> None:
        await self._exec("DELETE FROM outbox WHERE id = ?", (entry_id,))

    async def drop_outbox(self, group_id: bytes) -> None:
        await self._exec("DELETE FROM outbox WHERE group_id = ?", (group_id,))

    async def buffer(self, group_id: bytes, payload: bytes, sender: str | None,
                     msg_hash: bytes, sender_identity: str | None = None) -> None:
        await self._exec("INSERT OR IGNORE INTO buffered (group_id, payload, sender, msg_hash,"
                         " received_at, sender_identity) VALUES (?, ?, ?, ?, ?, ?)",
                         (group_id, payload, sender, msg_hash, _now(), sender_identity))

    async def prune_buffered(self, older_than: int) -> None:
        """Drop messages of groups we never joined, buffered before ``older_than``."""
        await self._exec("DELETE FROM buffered WHERE received_at < ?", (older_than,))

    async def delete_buffered(self, entry_id: int) -> None:
        await self._exec("DELETE FROM buffered WHERE id = ?", (entry_id,))

    async def drop_buffered(self, group_id: bytes) -> None:
        await self._exec("DELETE FROM buffered WHERE group_id = ?", (group_id,))


_KP_COLUMNS = ("ref, suite, key_package, init_priv, encryption_priv, last_resort, published, "
               "used, created_at, not_after")
_KP_SELECT = _KP_COLUMNS + ", used_at, used_in"
_GROUP_COLUMNS = "group_id, name, state, epoch, active, leaving, needs_update, joined_epoch"


_INBOX_COLUMNS = ("id, group_id, sender, sender_leaf, epoch, data, outgoing, received_at, "
                  "read, content_id, kind, ref, expires_at, edited")


def _inbox(r: Any) -> InboxMessage:
    return InboxMessage(r[0], bytes(r[1]), r[2], r[3], r[4], bytes(r[5]), bool(r[6]), r[7],
                        bool(r[8]), None if r[9] is None else bytes(r[9]), r[10],
                        None if r[11] is None else bytes(r[11]), r[12], bool(r[13]))


def _key_package(r: Any) -> StoredKeyPackage:
    return StoredKeyPackage(bytes(r[0]), r[1], bytes(r[2]), bytes(r[3]), bytes(r[4]),
                            bool(r[5]), bool(r[6]), bool(r[7]), r[8], r[9], r[10],
                            None if r[11] is None else bytes(r[11]))


def _group(r: Any) -> GroupRecord:
    return GroupRecord(bytes(r[0]), r[1], None if r[2] is None else bytes(r[2]), r[3],
                       bool(r[4]), bool(r[5]), bool(r[6]), r[7])


def _now() -> int:
    return int(time.time())
