"""The ordering hub of a bridged group: one total order over several chat rooms.

Members of one MLS group sit in rooms on different networks (an XMPP MUC, a Matrix
room). Each room has its own order, so relaying each room's messages into the other
would let members on the two sides see concurrent Commits in different orders and fork
the group. The bridge therefore is the group's single ordering point (RFC 9750
"Strongly Consistent" delivery): every MLSMessage a member posts in any bridged room is
*offered* to the hub, which

* accepts it or rejects it by the same rule as the embedded Delivery Service
  (:func:`transports.local.ordering_status`: exactly one Commit per epoch, the first
  offered from either side; proposals for the current epoch; application messages for
  the current or the previous epoch),
* gives each accepted message the next sequence number of the group, and
* keeps it in an outbox until it has been republished to every room of the group;

members apply only hub-sequenced handshake messages, in sequence order. The hub reads
only the clear MLSMessage header (group_id, epoch, content_type), as RFC 9750 allows;
it holds no group secret and cannot read or forge messages.

Everything is in one SQLite file and each offer is one transaction, so a hub killed at
any point and restarted neither loses nor duplicates: a message offered twice (the
bridge re-reads a room from an older cursor) is recognised by its SHA-256, and an
accepted message whose republication was interrupted is still in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiosqlite

from mls_core.framing import ContentType
from transports.base import InvalidRequestError, StorageError, SubmitStatus
from transports.header import ordering_status, read_header
from transports.sqlite_log import no_sql_parameters_in_logs

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS groups (
        group_id BLOB PRIMARY KEY,
        epoch INTEGER NOT NULL,
        next_seq INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS sequenced (
        group_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        is_commit INTEGER NOT NULL,
        msg_hash BLOB NOT NULL UNIQUE,
        origin TEXT NOT NULL,
        sender TEXT NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (group_id, seq))""",
    """CREATE TABLE IF NOT EXISTS outbox (
        group_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        network TEXT NOT NULL,
        PRIMARY KEY (group_id, seq, network))""",
    # where each network's room carries hub item seq (to translate Welcome positions)
    """CREATE TABLE IF NOT EXISTS positions (
        group_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        network TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (group_id, network, seq))""",
    """CREATE INDEX IF NOT EXISTS seq_by_position ON positions (group_id, network,
        position)""",
    # the bridged groups: their room on each network
    """CREATE TABLE IF NOT EXISTS rooms (
        group_id BLOB NOT NULL,
        network TEXT NOT NULL,
        room TEXT NOT NULL,
        PRIMARY KEY (group_id, network))""",
    # the bridge's own signature keys (one per cipher suite): it signs the Remove
    # proposals it sends as an external sender (RFC 9420 §12.1.8) after a room ban
    """CREATE TABLE IF NOT EXISTS signers (
        suite INTEGER PRIMARY KEY,
        signature_priv BLOB NOT NULL,
        signature_pub BLOB NOT NULL)""",
    # the newest GroupInfo members published (public: it is published for joiners)
    """CREATE TABLE IF NOT EXISTS group_infos (
        group_id BLOB PRIMARY KEY,
        epoch INTEGER NOT NULL,
        group_info BLOB NOT NULL)""",
    # users banned from a room whose removal from the group is still due
    """CREATE TABLE IF NOT EXISTS bans (
        group_id BLOB NOT NULL,
        identity TEXT NOT NULL,
        network TEXT NOT NULL,
        proposed_epoch INTEGER,
        PRIMARY KEY (group_id, identity))""",
    """CREATE TABLE IF NOT EXISTS cursors (
        network TEXT NOT NULL,
        room TEXT NOT NULL,
        cursor TEXT NOT NULL,
        PRIMARY KEY (network, room))""",
)

no_sql_parameters_in_logs()


class Rule(StrEnum):
    """Which Commit of an epoch the hub lets through."""

    #: sequence every Commit; members apply the first *valid* one of each epoch in hub
    #: order (SubmitStatus.ORDERED). The hub cannot tell a valid Commit from an invalid
    #: one (a PrivateMessage, or a Commit the room policy forbids), so this is the rule
    #: under which one bad Commit cannot stall the group. The default.
    FIRST_VALID = "first_valid"
    #: sequence only the first Commit offered for the group's current epoch (the
    #: embedded service's rule, :func:`transports.header.ordering_status`); a later or
    #: stale one is rejected at the hub
    FIRST_OFFERED = "first_offered"


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    #: already sequenced (the same bytes were offered before): nothing new to relay
    DUPLICATE = "duplicate"
    REJECTED_EPOCH_TAKEN = "rejected_epoch_taken"
    REJECTED_WRONG_EPOCH = "rejected_wrong_epoch"


@dataclass(frozen=True)
class Sequenced:
    """An accepted message and its place in the group's hub order."""

    group_id: bytes
    seq: int
    epoch: int
    is_commit: bool
    origin: str
    sender: str
    payload: bytes


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    #: the sequenced message (ACCEPTED, DUPLICATE)
    message: Sequenced | None = None


_STATUS_VERDICT = {
    SubmitStatus.REJECTED_EPOCH_TAKEN: Verdict.REJECTED_EPOCH_TAKEN,
    SubmitStatus.REJECTED_WRONG_EPOCH: Verdict.REJECTED_WRONG_EPOCH,
}


class OrderingHub:
    """The hub's durable state (see the module docstring). ``networks`` are the names
    of the rooms' networks every accepted message is republished to."""

    def __init__(self, db: aiosqlite.Connection, networks: Sequence[str], *,
                 rule: Rule = Rule.FIRST_VALID) -> None:
        if not networks or len(set(networks)) != len(networks):
            raise InvalidRequestError("the hub needs distinct network names")
        self._db = db
        self.networks = tuple(networks)
        self.rule = Rule(rule)
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str], networks: Sequence[str], *,
                   rule: Rule = Rule.FIRST_VALID) -> OrderingHub:
        hub = cls(None, networks, rule=rule)  # type: ignore[arg-type]  # checked first
        try:
            hub._db = await aiosqlite.connect(Path(path), isolation_level=None)
        except Exception as exc:  # sqlite3.Error or OSError: one typed failure
            raise StorageError(f"cannot open the hub database {path}: {exc}") from exc
        try:
            await hub._db.execute("PRAGMA journal_mode=WAL")
            await hub._db.execute("PRAGMA synchronous=FULL")
            for statement in SCHEMA:
                await hub._db.execute(statement)
        except Exception as exc:
            await hub._db.close()
            raise StorageError(f"cannot use the hub database {path}: {exc}") from exc
        return hub

    async def close(self) -> None:
        await self._db.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction; the lock keeps the bridge's concurrent tasks (a reader and
        a publisher per network) from interleaving statements on the one connection."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """One statement in its own transaction (see :meth:`_transaction`)."""
        async with self._transaction() as db:
            return list(await (await db.execute(sql, params)).fetchall())

    async def offer(self, payload: bytes, *, origin: str, sender: str) -> Decision:
        """Sequence one MLSMessage (PublicMessage/PrivateMessage) offered in a room of
        network ``origin`` by the network account ``sender``. Malformed payloads raise
        InvalidRequestError."""
        if origin not in self.networks:
            raise InvalidRequestError(f"unknown network {origin!r}")
        header = read_header(payload)
        msg_hash = hashlib.sha256(payload).digest()
        async with self._transaction() as db:
            row = await (await db.execute(
                "SELECT group_id, seq, epoch, is_commit, origin, sender FROM sequenced "
                "WHERE msg_hash = ?", (msg_hash,))).fetchone()
            if row is not None:
                return Decision(Verdict.DUPLICATE, Sequenced(
                    bytes(row[0]), row[1], row[2], bool(row[3]), row[4], row[5], payload))
            return await self._sequence(db, header.group_id, header.epoch,
                                        header.content_type, msg_hash, origin, sender,
                                        payload)

    async def _sequence(self, db: aiosqlite.Connection, group_id: bytes, epoch: int,
                        content_type: int, msg_hash: bytes, origin: str, sender: str,
                        payload: bytes) -> Decision:
        row = await (await db.execute("SELECT epoch, next_seq FROM groups WHERE group_id = ?",
                                      (group_id,))).fetchone()
        current, seq = (epoch, 0) if row is None else (int(row[0]), int(row[1]))
        is_commit = content_type == ContentType.COMMIT
        if self.rule is Rule.FIRST_OFFERED:
            taken = is_commit and epoch < current and await (await db.execute(
                "SELECT 1 FROM sequenced WHERE group_id = ? AND epoch = ? AND is_commit = 1",
                (group_id, epoch))).fetchone() is not None
            status = ordering_status(current, epoch, content_type, taken)
            if status is not SubmitStatus.ACCEPTED:
                return Decision(_STATUS_VERDICT[status])
            new_epoch = current + 1 if is_commit else current
        else:
            new_epoch = max(current, epoch + 1 if is_commit else epoch)
        await db.execute(
            "INSERT INTO groups (group_id, epoch, next_seq) VALUES (?, ?, ?) "
            "ON CONFLICT (group_id) DO UPDATE SET epoch = excluded.epoch, "
            "next_seq = excluded.next_seq",
            (group_id, new_epoch, seq + 1))
        await db.execute(
            "INSERT INTO sequenced (group_id, seq, epoch, is_commit, msg_hash, origin, "
            "sender, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (group_id, seq, epoch, int(is_commit), msg_hash, origin, sender, payload))
        await db.executemany("INSERT INTO outbox (group_id, seq, network) VALUES (?, ?, ?)",
                             [(group_id, seq, n) for n in self.networks])
        return Decision(Verdict.ACCEPTED,
                        Sequenced(group_id, seq, epoch, is_commit, origin, sender, payload))

    async def pending(self, network: str) -> list[Sequenced]:
        """Accepted messages not yet republished to ``network``, in hub order."""
        rows = await self._query(
            "SELECT s.group_id, s.seq, s.epoch, s.is_commit, s.origin, s.sender, s.payload "
            "FROM outbox o JOIN sequenced s ON s.group_id = o.group_id AND s.seq = o.seq "
            "WHERE o.network = ? ORDER BY s.group_id, s.seq", (network,))
        return [Sequenced(bytes(r[0]), r[1], r[2], bool(r[3]), r[4], r[5], bytes(r[6]))
                for r in rows]

    async def published(self, network: str, group_id: bytes, seq: int,
                        position: int | None = None) -> None:
        """``network``'s room now carries message ``seq`` of ``group_id`` (at
        ``position`` of the room's order, if the network tells)."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM outbox WHERE network = ? AND group_id = ? AND "
                             "seq = ?", (network, group_id, seq))
            if position is not None:
                await db.execute(
                    "INSERT OR REPLACE INTO positions (group_id, seq, network, position) "
                    "VALUES (?, ?, ?, ?)", (group_id, seq, network, position))

    async def translate(self, group_id: bytes, position: int, source: str,
                        target: str) -> int | None:
        """The position in ``target``'s room of the hub item that ``source``'s room
        carries at ``position`` (a Welcome's ``after_position``), if known."""
        rows = await self._query(
            "SELECT t.position FROM positions s JOIN positions t ON t.group_id = s.group_id "
            "AND t.seq = s.seq AND t.network = ? WHERE s.group_id = ? AND s.network = ? "
            "AND s.position = ?", (target, group_id, source, position))
        return int(rows[0][0]) if rows else None

    async def bind(self, group_id: bytes, network: str, room: str) -> None:
        """``group_id`` is bridged; its room on ``network`` is ``room``."""
        await self._query(
            "INSERT INTO rooms (group_id, network, room) VALUES (?, ?, ?) "
            "ON CONFLICT (group_id, network) DO UPDATE SET room = excluded.room",
            (group_id, network, room))

    async def rooms(self, group_id: bytes) -> dict[str, str]:
        """The bridged group's room per network (empty if it is not bridged)."""
        rows = await self._query("SELECT network, room FROM rooms WHERE group_id = ?",
                                 (group_id,))
        return {str(r[0]): str(r[1]) for r in rows}

    async def groups(self) -> list[bytes]:
        """Every bridged group."""
        rows = await self._query("SELECT DISTINCT group_id FROM rooms ORDER BY group_id")
        return [bytes(r[0]) for r in rows]

    async def signer(self, suite: int, create: Callable[[], tuple[bytes, bytes]]
                     ) -> tuple[bytes, bytes]:
        """The bridge's (private, public) signature key for ``suite``, made by
        ``create`` the first time."""
        rows = await self._query("SELECT signature_priv, signature_pub FROM signers "
                                 "WHERE suite = ?", (suite,))
        if rows:
            return bytes(rows[0][0]), bytes(rows[0][1])
        priv, pub = create()
        await self._query("INSERT OR IGNORE INTO signers (suite, signature_priv, "
                          "signature_pub) VALUES (?, ?, ?)", (suite, priv, pub))
        return await self.signer(suite, create)

    async def set_group_info(self, group_id: bytes, epoch: int, group_info: bytes) -> None:
        """Keep the newest GroupInfo of ``group_id`` (an older epoch never replaces)."""
        await self._query(
            "INSERT INTO group_infos (group_id, epoch, group_info) VALUES (?, ?, ?) "
            "ON CONFLICT (group_id) DO UPDATE SET epoch = excluded.epoch, "
            "group_info = excluded.group_info WHERE excluded.epoch >= epoch",
            (group_id, epoch, group_info))

    async def group_info(self, group_id: bytes) -> bytes | None:
        rows = await self._query("SELECT group_info FROM group_infos WHERE group_id = ?",
                                 (group_id,))
        return bytes(rows[0][0]) if rows else None

    async def add_ban(self, group_id: bytes, identity: str, network: str) -> None:
        await self._query("INSERT OR IGNORE INTO bans (group_id, identity, network) "
                          "VALUES (?, ?, ?)", (group_id, identity, network))

    async def bans(self, group_id: bytes) -> list[tuple[str, str, int | None]]:
        """(identity, network, epoch a Remove was last proposed for) of due bans."""
        rows = await self._query("SELECT identity, network, proposed_epoch FROM bans "
                                 "WHERE group_id = ? ORDER BY identity", (group_id,))
        return [(str(r[0]), str(r[1]), None if r[2] is None else int(r[2])) for r in rows]

    async def ban_proposed(self, group_id: bytes, identity: str, epoch: int) -> None:
        await self._query("UPDATE bans SET proposed_epoch = ? WHERE group_id = ? AND "
                          "identity = ?", (epoch, group_id, identity))

    async def ban_done(self, group_id: bytes, identity: str) -> None:
        await self._query("DELETE FROM bans WHERE group_id = ? AND identity = ?",
                          (group_id, identity))

    async def epoch(self, group_id: bytes) -> int | None:
        rows = await self._query("SELECT epoch FROM groups WHERE group_id = ?", (group_id,))
        return int(rows[0][0]) if rows else None

    async def cursor(self, network: str, room: str) -> str | None:
        """Where reading ``room`` of ``network`` resumes (the adapter's opaque cursor)."""
        rows = await self._query("SELECT cursor FROM cursors WHERE network = ? AND room = ?",
                                 (network, room))
        return str(rows[0][0]) if rows else None

    async def set_cursor(self, network: str, room: str, cursor: str) -> None:
        await self._query(
            "INSERT INTO cursors (network, room, cursor) VALUES (?, ?, ?) "
            "ON CONFLICT (network, room) DO UPDATE SET cursor = excluded.cursor",
            (network, room, cursor))
