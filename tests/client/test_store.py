"""The client database: migrations, transactions, replacement of old states."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mls_client.errors import StorageError
from mls_client.store import MIGRATIONS, SCHEMA_VERSION, Store

from .helpers import async_test


@async_test
async def test_fresh_database_is_migrated_and_reopens(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.sqlite")
    assert await store.schema_version() == SCHEMA_VERSION
    assert await store.identity() is None and await store.cursor() is None
    async with store.transaction() as tx:
        await tx.set_identity("alice", "alice-1")
        await tx.set_cursor("7")
    await store.close()
    store = await Store.open(tmp_path / "c.sqlite")
    identity = await store.identity()
    assert identity is not None and identity.client_id == "alice-1"
    assert await store.cursor() == "7"
    await store.close()


@async_test
async def test_pragmas_wal_full_sync_secure_delete(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.sqlite")
    assert (await store._one("PRAGMA journal_mode"))[0] == "wal"
    assert (await store._one("PRAGMA synchronous"))[0] == 2
    assert (await store._one("PRAGMA secure_delete"))[0] == 1
    await store.close()


@async_test
async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    await (await Store.open(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StorageError, match="newer"):
        await Store.open(path)


@async_test
async def test_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        await Store.open(path)


@async_test
async def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.sqlite")
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.put_group(b"g", b"state-1", 1)
            await tx.set_cursor("5")
            await tx.deliver(b"g", "bob", 1, 1, b"hello", msg_hash=b"h")
            raise RuntimeError("killed halfway")
    assert await store.group(b"g") is None
    assert await store.cursor() is None
    assert await store.inbox() == []
    await store.close()


@async_test
async def test_group_state_is_replaced_not_accumulated(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    store = await Store.open(path)
    old_secret = b"OLD-EPOCH-SECRET-" * 1500  # spills to overflow pages
    async with store.transaction() as tx:
        await tx.put_group(b"g", old_secret, 1, name="team")
    async with store.transaction() as tx:
        await tx.put_group(b"g", b"new state", 2)
    rec = await store.group(b"g")
    assert rec is not None and rec.state == b"new state" and rec.epoch == 2
    assert rec.name == "team"  # kept when not given
    assert len(await store.groups()) == 1
    await store.close()  # checkpoints and truncates the WAL
    # secure_delete: the replaced state is not left in the file's free pages
    piece = old_secret[:340]  # overflow pages split the value: look for a piece of it
    assert piece not in path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or piece not in wal.read_bytes()


@async_test
async def test_duplicate_inbox_hash_is_refused(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.sqlite")
    async with store.transaction() as tx:
        await tx.deliver(b"g", "bob", 1, 1, b"hello", msg_hash=b"h")
    with pytest.raises(StorageError):
        async with store.transaction() as tx:
            await tx.deliver(b"g", "bob", 1, 1, b"hello", msg_hash=b"h")
    assert [m.data for m in await store.inbox()] == [b"hello"]
    await store.close()


@async_test
async def test_joined_epoch_is_recorded_and_migrated(tmp_path: Path) -> None:
    """Schema 5 adds ``groups.joined_epoch``: rows stored before it read as unknown
    (None); a new row records its epoch; later saves keep it, a new join replaces it."""
    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:  # a database of schema 4 with one group
        for statements in MIGRATIONS[:4]:
            for sql in statements:
                db.execute(sql)
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (4)")
        db.execute("INSERT INTO groups (group_id, state, epoch, active, updated_at) "
                   "VALUES (?, ?, 3, 1, 0)", (b"old", b"s"))
    store = await Store.open(path)
    assert await store.schema_version() == SCHEMA_VERSION >= 5
    old = await store.group(b"old")
    assert old is not None and old.epoch == 3 and old.joined_epoch is None
    async with store.transaction() as tx:
        await tx.put_group(b"g", b"s1", 4)
    async with store.transaction() as tx:
        await tx.put_group(b"g", b"s2", 6)
    rec = await store.group(b"g")
    assert rec is not None and rec.epoch == 6 and rec.joined_epoch == 4
    async with store.transaction() as tx:  # removed, then added again at epoch 9
        await tx.put_group(b"g", None, 7, active=False)
        await tx.put_group(b"g", b"s3", 9, joined=True)
    rec = await store.group(b"g")
    assert rec is not None and rec.active and rec.joined_epoch == 9
    await store.close()


@async_test
async def test_outbox_and_inbox_message_ids_are_migrated(tmp_path: Path) -> None:
    """Schema 6 adds the message id of outbox entries and inbox rows: older rows read
    as None (they are resubmitted, never encrypted again: docs/resilience.md)."""
    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:  # a database of schema 5 with one queued message
        for statements in MIGRATIONS[:5]:
            for sql in statements:
                db.execute(sql)
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (5)")
        db.execute("INSERT INTO outbox (group_id, epoch, kind, payload, state, created_at) "
                   "VALUES (?, 1, 'application', ?, 'pending', 0)", (b"g", b"ct"))
    store = await Store.open(path)
    assert await store.schema_version() == SCHEMA_VERSION >= 6
    (old,) = await store.outbox()
    assert old.message_id is None
    async with store.transaction() as tx:
        await tx.add_outbox(b"g", 2, "application", b"ct2", message_id="m-1")
        await tx.deliver(b"g", "bob", 1, 2, b"hi", msg_hash=b"h", message_id="m-2")
    assert [e.message_id for e in await store.outbox()] == [None, "m-1"]
    assert await store.delivered(b"g", "bob", "m-2")
    assert not await store.delivered(b"g", "carol", "m-2")
    await store.close()
