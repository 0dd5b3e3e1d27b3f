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

The same file keeps what the bridge authorizes members' requests with (bridge/views.py,
bridge/control.py): each group's verified view (a GroupInfo, RFC 9420 §12.4.3) and the
account that anchored it, and the KeyPackages the bridge claimed for members. Its
schema version is ``PRAGMA user_version`` (:data:`SCHEMA_VERSION`); an older file is
migrated when opened, a newer one refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiosqlite

from mls_core.config import InputLimits
from mls_core.framing import ContentType
from transports.base import InvalidRequestError, StorageError, SubmitStatus
from transports.group_info import GroupInfoRejected, check_group_info
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
    # the bridge's verified view of each group (docs/bridge.md, "Who may ask"): the
    # newest GroupInfo that passed check_group_info and the continuity rules (public:
    # it is published for joiners); members: JSON list of the leaves' identities
    """CREATE TABLE IF NOT EXISTS views (
        group_id BLOB PRIMARY KEY,
        epoch INTEGER NOT NULL,
        signer TEXT NOT NULL,
        members TEXT NOT NULL,
        group_info BLOB NOT NULL,
        ratchet_tree BLOB)""",
    # the account that asked to bridge the group (or the creator bridge.toml names):
    # the only one whose GroupInfo may become the first view
    """CREATE TABLE IF NOT EXISTS anchors (
        group_id BLOB PRIMARY KEY,
        requester TEXT NOT NULL)""",
    # KeyPackages the bridge claimed on a member's request: a Welcome relay may name
    # only these (ref: MakeKeyPackageRef of the KeyPackage, RFC 9420 §5.2)
    """CREATE TABLE IF NOT EXISTS claims (
        group_id BLOB NOT NULL,
        ref BLOB NOT NULL,
        network TEXT NOT NULL,
        client TEXT NOT NULL,
        requester TEXT NOT NULL,
        last_resort INTEGER NOT NULL,
        relayed INTEGER NOT NULL DEFAULT 0,
        claimed_at REAL NOT NULL,
        PRIMARY KEY (group_id, ref))""",
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

#: seconds a KeyPackage claim stays relayable (older ones are pruned)
CLAIM_TTL = 7 * 24 * 3600.0
#: PRAGMA user_version of the schema above (0: before verified views and claims)
SCHEMA_VERSION = 1

no_sql_parameters_in_logs()

log = logging.getLogger("mls_bridge.hub")


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
class View:
    """The bridge's verified view of a bridged group: a GroupInfo (RFC 9420 §12.4.3)
    that passed :func:`transports.group_info.check_group_info` and the continuity rules
    of :mod:`bridge.views`."""

    group_id: bytes
    epoch: int
    #: the credential identity of the GroupInfo's signer
    signer: str
    #: credential identities of every leaf of its tree
    members: frozenset[str]
    group_info: bytes
    ratchet_tree: bytes | None


@dataclass(frozen=True)
class Claim:
    """A KeyPackage the bridge claimed for a group at a member's request."""

    #: MakeKeyPackageRef of the KeyPackage (RFC 9420 §5.2), as the bridge computed it
    ref: bytes
    network: str
    #: the client (device) of ``network`` that published it, as that network names it
    client: str
    requester: str = ""
    last_resort: bool = False
    relayed: bool = False


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
                 rule: Rule = Rule.FIRST_VALID, limits: InputLimits | None = None) -> None:
        if not networks or len(set(networks)) != len(networks):
            raise InvalidRequestError("the hub needs distinct network names")
        self._db = db
        self.networks = tuple(networks)
        self.rule = Rule(rule)
        #: bounds on every GroupInfo the bridge checks for a view (bridge.toml
        #: ``[limits]``; RFC 9420 §12.4.3.2, docs/security.md "Bounds")
        self.limits = limits or InputLimits()
        self._lock = asyncio.Lock()
        #: wall clock of claim records (tests set it)
        self._clock: Callable[[], float] = time.time

    @classmethod
    async def open(cls, path: str | os.PathLike[str], networks: Sequence[str], *,
                   rule: Rule = Rule.FIRST_VALID,
                   limits: InputLimits | None = None) -> OrderingHub:
        hub = cls(None, networks, rule=rule,  # type: ignore[arg-type]  # checked first
                  limits=limits)
        try:
            hub._db = await aiosqlite.connect(Path(path), isolation_level=None)
        except Exception as exc:  # sqlite3.Error or OSError: one typed failure
            raise StorageError(f"cannot open the hub database {path}: {exc}") from exc
        try:
            await hub._db.execute("PRAGMA journal_mode=WAL")
            await hub._db.execute("PRAGMA synchronous=FULL")
            await hub._migrate()
        except StorageError:
            await hub._db.close()
            raise
        except Exception as exc:
            await hub._db.close()
            raise StorageError(f"cannot use the hub database {path}: {exc}") from exc
        return hub

    async def _migrate(self) -> None:
        """Create the schema, or bring an older one to :data:`SCHEMA_VERSION` (in one
        transaction). Version 0 kept the newest GroupInfo *any* member sent, unchecked;
        version 1 keeps only verified views: an old row becomes the view only if it
        still verifies (:func:`legacy_view`), else the group waits for its creator."""
        async with self._transaction() as db:
            row = await (await db.execute("PRAGMA user_version")).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StorageError(f"the hub database has schema {version}, newer than "
                                   f"this code ({SCHEMA_VERSION})")
            for statement in SCHEMA:
                await db.execute(statement)
            if version < 1:
                await _views_from_group_infos(db, self.limits)
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    async def close(self) -> None:
        await self._db.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction; the lock keeps the bridge's concurrent tasks (a reader and
        a publisher per network) from interleaving statements on the one connection."""
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except asyncio.CancelledError:  # BEGIN still runs in the connection's thread
                with contextlib.suppress(Exception):
                    await self._db.execute("ROLLBACK")
                raise
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

    # ------------------------------------------------------------------ verified views

    async def view(self, group_id: bytes) -> View | None:
        """The bridge's verified view of ``group_id`` (None before the first one)."""
        rows = await self._query("SELECT epoch, signer, members, group_info, ratchet_tree "
                                 "FROM views WHERE group_id = ?", (group_id,))
        return None if not rows else _view(group_id, rows[0])

    async def set_view(self, view: View) -> bool:
        """Store ``view`` if it is newer than the stored one; False if it is not."""
        async with self._transaction() as db:
            return await _put_view(db, view)

    async def set_first_view(self, view: View, anchor: str) -> bool:
        """Store the group's first view (and its anchor, if none is set); False if the
        group already has a view."""
        async with self._transaction() as db:
            await db.execute("INSERT OR IGNORE INTO anchors (group_id, requester) "
                             "VALUES (?, ?)", (view.group_id, anchor))
            return await _put_view(db, view, first=True)

    async def anchor(self, group_id: bytes) -> str | None:
        """The account whose GroupInfo may become the group's first view."""
        rows = await self._query("SELECT requester FROM anchors WHERE group_id = ?",
                                 (group_id,))
        return str(rows[0][0]) if rows else None

    async def set_anchor(self, group_id: bytes, requester: str) -> None:
        """``requester`` asked to bridge ``group_id`` (or bridge.toml names it)."""
        await self._query("INSERT INTO anchors (group_id, requester) VALUES (?, ?) "
                          "ON CONFLICT (group_id) DO UPDATE SET requester = "
                          "excluded.requester", (group_id, requester))

    async def commit_epoch(self, group_id: bytes, since: int | None = None) -> int | None:
        """The epoch after the newest sequenced Commit of the unbroken run of sequenced
        Commits (one or more per epoch) that starts at epoch ``since`` (default: the
        oldest sequenced Commit's epoch); ``since`` itself if there is none at
        ``since``, None if ``since`` is None and the hub sequenced no Commit of the group.

        A group reaches epoch *n* only through a Commit of epoch *n - 1* (RFC 9420
        §12.4), and members apply only hub items, so no genuine GroupInfo is newer than
        this. Unlike :meth:`epoch` (the ordering state), it does not move with the clear
        epoch of an application message or proposal, nor jump with one Commit that
        claims a far epoch."""
        low = -1 if since is None else since
        rows = await self._query("SELECT DISTINCT epoch FROM sequenced WHERE group_id = ? "
                                 "AND is_commit = 1 AND epoch >= ? ORDER BY epoch",
                                 (group_id, low))
        epochs = [int(r[0]) for r in rows]
        if since is None and not epochs:
            return None
        epoch = epochs[0] if since is None else since
        for committed in epochs:
            if committed != epoch:
                break
            epoch += 1
        return epoch

    # ------------------------------------------------------------------ claims

    async def record_claims(self, group_id: bytes, requester: str,
                            claims: Sequence[Claim]) -> None:
        """The bridge claimed ``claims`` for ``group_id`` at ``requester``'s request (a
        last-resort KeyPackage claimed again becomes relayable again)."""
        now = self._clock()
        async with self._transaction() as db:
            # a Welcome follows its claim within seconds: an old claim is only a record
            # (a Welcome naming its ref is then refused as unclaimed, as a replay must be)
            await db.execute("DELETE FROM claims WHERE claimed_at < ?", (now - CLAIM_TTL,))
            await db.executemany(
                "INSERT INTO claims (group_id, ref, network, client, requester, "
                "last_resort, relayed, claimed_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?) "
                "ON CONFLICT (group_id, ref) DO UPDATE SET network = excluded.network, "
                "client = excluded.client, requester = excluded.requester, "
                "last_resort = excluded.last_resort, relayed = 0, "
                "claimed_at = excluded.claimed_at",
                [(group_id, c.ref, c.network, c.client, requester, int(c.last_resort), now)
                 for c in claims])

    async def claims(self, group_id: bytes, refs: Sequence[bytes]) -> dict[bytes, Claim]:
        """The recorded claims among ``refs`` for ``group_id``."""
        out: dict[bytes, Claim] = {}
        for start in range(0, len(refs), 500):
            chunk = tuple(refs[start:start + 500])
            marks = ", ".join("?" * len(chunk))
            rows = await self._query(
                "SELECT ref, network, client, requester, last_resort, relayed FROM claims "
                f"WHERE group_id = ? AND ref IN ({marks})", (group_id, *chunk))
            for r in rows:
                out[bytes(r[0])] = Claim(bytes(r[0]), str(r[1]), str(r[2]), str(r[3]),
                                         bool(r[4]), bool(r[5]))
        return out

    async def mark_relayed(self, group_id: bytes, refs: Sequence[bytes]) -> None:
        """A Welcome to these claimed KeyPackages was delivered."""
        async with self._transaction() as db:
            await db.executemany("UPDATE claims SET relayed = 1 WHERE group_id = ? AND "
                                 "ref = ?", [(group_id, r) for r in refs])

    # ------------------------------------------------------------------ positions

    async def commit_at(self, group_id: bytes, network: str, position: int) -> int | None:
        """The hub sequence number of the Commit that ``network``'s room carries at
        ``position`` (None if that position holds no hub item, or not a Commit)."""
        rows = await self._query(
            "SELECT p.seq FROM positions p JOIN sequenced s ON s.group_id = p.group_id AND "
            "s.seq = p.seq WHERE p.group_id = ? AND p.network = ? AND p.position = ? AND "
            "s.is_commit = 1", (group_id, network, position))
        return int(rows[0][0]) if rows else None

    async def position(self, group_id: bytes, seq: int, network: str) -> int | None:
        """Where ``network``'s room carries hub item ``seq`` of ``group_id``, if known."""
        rows = await self._query("SELECT position FROM positions WHERE group_id = ? AND "
                                 "seq = ? AND network = ?", (group_id, seq, network))
        return int(rows[0][0]) if rows else None

    async def unpublished(self, group_id: bytes, network: str) -> int:
        """How many hub items of ``group_id`` still wait for ``network``'s room."""
        rows = await self._query("SELECT count(*) FROM outbox WHERE group_id = ? AND "
                                 "network = ?", (group_id, network))
        return int(rows[0][0])

    async def lag(self) -> dict[str, int]:
        """Per network, hub items sequenced but not yet published into its rooms (all
        groups): the republication backlog."""
        rows = await self._query("SELECT network, count(*) FROM outbox GROUP BY network")
        counts = {str(r[0]): int(r[1]) for r in rows}
        return {network: counts.get(network, 0) for network in self.networks}

    async def ping(self) -> None:
        """One trivial transaction: raises unless the database is usable."""
        await self._query("SELECT 1")

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


def _view(group_id: bytes, row: Sequence[Any]) -> View:
    return View(group_id, int(row[0]), str(row[1]), frozenset(json.loads(row[2])),
                bytes(row[3]), None if row[4] is None else bytes(row[4]))


async def _put_view(db: aiosqlite.Connection, view: View, *, first: bool = False) -> bool:
    row = await (await db.execute("SELECT epoch FROM views WHERE group_id = ?",
                                  (view.group_id,))).fetchone()
    if row is not None and (first or int(row[0]) >= view.epoch):
        return False
    await db.execute(
        "INSERT OR REPLACE INTO views (group_id, epoch, signer, members, group_info, "
        "ratchet_tree) VALUES (?, ?, ?, ?, ?, ?)",
        (view.group_id, view.epoch, view.signer, json.dumps(sorted(view.members)),
         view.group_info, view.ratchet_tree))
    return True


async def _views_from_group_infos(db: aiosqlite.Connection, limits: InputLimits) -> None:
    """Schema 0 -> 1: each stored GroupInfo becomes the group's view only if it still
    verifies as a joiner would (signature, tree hash, tree, group) and its epoch is not
    beyond the hub's sequenced Commits; the old table goes."""
    if await (await db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'group_infos'")).fetchone() is None:
        return
    rows = list(await (await db.execute("SELECT group_id, group_info FROM group_infos"
                                        )).fetchall())
    for group_id, data in rows:
        view = legacy_view(bytes(group_id), bytes(data), await _commit_epochs(db, group_id),
                           limits=limits)
        if view is None:
            log.warning("group %s: its stored GroupInfo does not verify; it has no view "
                        "until its creator (bridge.toml pairs.creator) asks again",
                        bytes(group_id).hex())
            continue
        await _put_view(db, view)
        log.warning("group %s: adopted its stored GroupInfo (epoch %d, signed by %s) as "
                    "the verified view", view.group_id.hex(), view.epoch, view.signer)
    await db.execute("DROP TABLE group_infos")


async def _commit_epochs(db: aiosqlite.Connection, group_id: bytes) -> list[int]:
    rows = await (await db.execute("SELECT DISTINCT epoch FROM sequenced WHERE group_id = ? "
                                   "AND is_commit = 1 ORDER BY epoch", (group_id,))
                  ).fetchall()
    return [int(r[0]) for r in rows]


def legacy_view(group_id: bytes, group_info: bytes, commit_epochs: Sequence[int], *,
                limits: InputLimits | None = None) -> View | None:
    """A view from a GroupInfo stored before views existed (its writer is not known):
    it must verify (§12.4.3.1) within ``limits`` and be no newer than the unbroken run
    of sequenced Commits (:meth:`OrderingHub.commit_epoch`)."""
    try:
        checked = check_group_info(group_id, group_info, None, writer=None, limits=limits)
    except GroupInfoRejected:
        return None
    bound = commit_epochs[0] if commit_epochs else 0
    for epoch in commit_epochs:
        if epoch != bound:
            break
        bound += 1
    if checked.signer is None or checked.epoch > bound:
        return None
    return View(group_id, checked.epoch, checked.signer, checked.members, group_info, None)
