"""The embedded Delivery Service (transports.local) on real SQLite files (RFC 9750)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mls_core.ciphersuite import get_suite
from mls_core.codec import encode_varint
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.framing import ContentType, MLSMessage, PrivateMessage, WireFormat
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add
from transports.base import (
    DeliveryTransport,
    KeyPackageEntry,
    MessageKind,
    NoKeyPackageError,
    SubmitStatus,
    TransportError,
)
from transports.local import (
    MIGRATIONS,
    InvalidRequestError,
    LocalDeliveryService,
    StorageError,
    TransportClosedError,
    UnknownGroupError,
    ordering_status,
)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
GID = b"group-1"
ACCEPTED = SubmitStatus.ACCEPTED
TAKEN = SubmitStatus.REJECTED_EPOCH_TAKEN
WRONG = SubmitStatus.REJECTED_WRONG_EPOCH


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run one scenario on a fresh event loop; a hang fails instead of blocking pytest."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def message(group_id: bytes, epoch: int, content_type: int, tag: bytes = b"") -> bytes:
    """An MLSMessage(PrivateMessage) whose ciphertext is ``tag`` (the DS reads only the
    header, so the body need not decrypt)."""
    return MLSMessage.of(PrivateMessage(group_id, epoch, content_type, b"", b"sd",
                                        tag or b"-")).encode()


def public_header(group_id: bytes, epoch: int, content_type: int, sender: bytes,
                  aad: bytes = b"") -> bytes:
    """The clear prefix of an MLSMessage(PublicMessage) (§6.2) followed by filler."""
    out = bytearray(b"\x00\x01\x00\x01")
    encode_varint(len(group_id), out)
    out += group_id + epoch.to_bytes(8, "big") + sender
    encode_varint(len(aad), out)
    out += aad + bytes([content_type]) + b"filler"
    return bytes(out)


def commit(epoch: int, tag: bytes = b"", group_id: bytes = GID) -> bytes:
    return message(group_id, epoch, ContentType.COMMIT, tag)


def app(epoch: int, tag: bytes = b"", group_id: bytes = GID) -> bytes:
    return message(group_id, epoch, ContentType.APPLICATION, tag)


def proposal(epoch: int, tag: bytes = b"", group_id: bytes = GID) -> bytes:
    return message(group_id, epoch, ContentType.PROPOSAL, tag)


def kp(name: str, last_resort: bool = False) -> KeyPackageEntry:
    return KeyPackageEntry(ref=b"ref-" + name.encode(), key_package=b"kp-" + name.encode(),
                           last_resort=last_resort)


async def submit_commit(ds: LocalDeliveryService, epoch: int, tag: bytes = b"",
                        sender: str = "alice") -> SubmitStatus:
    return (await ds.submit(GID, epoch, commit(epoch, tag), is_commit=True,
                            sender=sender)).status


async def submit_app(ds: LocalDeliveryService, epoch: int, tag: bytes = b"",
                     sender: str = "alice") -> SubmitStatus:
    return (await ds.submit(GID, epoch, app(epoch, tag), is_commit=False,
                            sender=sender)).status


async def payloads(ds: LocalDeliveryService, client_id: str) -> list[bytes]:
    return [m.payload for m in await ds.fetch(client_id)]


def test_is_a_delivery_transport(tmp_path: Path) -> None:
    assert isinstance(LocalDeliveryService(tmp_path / "ds.db"), DeliveryTransport)


def test_a_write_cancelled_while_it_begins_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A task cancelled while the connection's thread runs BEGIN (the bridge stopping
    mid-publish in tests/bridge) must not leave the shared connection in a transaction:
    the next writer would fail with "cannot start a transaction within a transaction"."""
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            await ds.publish_key_packages("bob/1", "bob", [kp("a")])  # connected
            task = asyncio.create_task(ds.publish_key_packages("bob/1", "bob", [kp("b")]))
            await asyncio.sleep(0)  # it now waits for BEGIN IMMEDIATE
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await ds.publish_key_packages("bob/1", "bob", [kp("c")])
            assert await ds.key_package_count("bob/1") == 2

    run(scenario())


# ------------------------------------------------------------------------ KeyPackages


def test_claims_are_one_use_oldest_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            await ds.publish_key_packages("bob/1", "bob", [kp("a"), kp("b")])
            await ds.publish_key_packages("bob/1", "bob", [kp("c")])
            assert await ds.key_package_count("bob/1") == 3
            got = [await ds.claim_key_package("bob/1") for _ in range(3)]
            assert [c.ref for c in got] == [b"ref-a", b"ref-b", b"ref-c"]
            assert all(c.client_id == "bob/1" and not c.last_resort for c in got)
            assert got[0].key_package == b"kp-a"
            assert await ds.key_package_count("bob/1") == 0
            with pytest.raises(NoKeyPackageError, match="bob/1"):
                await ds.claim_key_package("bob/1")

    run(scenario())


def test_concurrent_claims_never_return_the_same_key_package(tmp_path: Path) -> None:
    """20 tasks over 4 connections to one file (so SQLite locking, not just the
    in-process lock, is exercised) claim 20 KeyPackages, then 5 more hit last-resort."""
    path = tmp_path / "ds.db"

    async def scenario() -> None:
        services = [LocalDeliveryService(path) for _ in range(4)]
        try:
            await services[0].publish_key_packages(
                "bob/1", "bob", [kp(str(i)) for i in range(20)] + [kp("lr", True)])
            claims = await asyncio.gather(
                *(services[i % 4].claim_key_package("bob/1") for i in range(25)))
        finally:
            for ds in services:
                await ds.close()
        one_use = [c.ref for c in claims if not c.last_resort]
        assert sorted(one_use) == sorted(kp(str(i)).ref for i in range(20))
        assert len(set(one_use)) == 20
        assert [c.ref for c in claims if c.last_resort] == [b"ref-lr"] * 5

    run(scenario())


def test_last_resort_only_when_none_left_and_replaced(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            await ds.publish_key_packages("bob/1", "bob", [kp("lr1", True)])
            await ds.publish_key_packages("bob/1", "bob", [kp("a")])
            assert await ds.key_package_count("bob/1") == 1  # last-resort not counted
            first = await ds.claim_key_package("bob/1")
            assert (first.ref, first.last_resort) == (b"ref-a", False)
            for _ in range(2):  # handed out again and again, never deleted
                again = await ds.claim_key_package("bob/1")
                assert (again.ref, again.last_resort) == (b"ref-lr1", True)
            await ds.publish_key_packages("bob/1", "bob", [kp("lr2", True)])
            assert (await ds.claim_key_package("bob/1")).ref == b"ref-lr2"
            # re-publishing the current last-resort KeyPackage is a harmless replace
            await ds.publish_key_packages("bob/1", "bob", [kp("lr2", True)])
            assert (await ds.claim_key_package("bob/1")).ref == b"ref-lr2"
            assert await ds.key_package_count("bob/1") == 0

    run(scenario())


def test_claim_for_unknown_client_or_user(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            with pytest.raises(NoKeyPackageError, match="nobody"):
                await ds.claim_key_package("nobody")
            assert await ds.claim_user_key_packages("nobody") == []
            assert await ds.key_package_count("nobody") == 0

    run(scenario())


def test_claim_user_key_packages_one_per_client(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            await ds.publish_key_packages("bob/phone", "bob", [kp("p1"), kp("p2")])
            await ds.publish_key_packages("bob/laptop", "bob", [kp("l-lr", True)])
            await ds.publish_key_packages("bob/old", "bob", [kp("o1")])
            await ds.publish_key_packages("carol/1", "carol", [kp("c1")])
            await ds.claim_key_package("bob/old")  # exhausted: left out below
            claimed = await ds.claim_user_key_packages("bob")
            assert [(c.client_id, c.ref, c.last_resort) for c in claimed] == [
                ("bob/laptop", b"ref-l-lr", True), ("bob/phone", b"ref-p1", False)]
            assert await ds.key_package_count("bob/phone") == 1
            assert await ds.key_package_count("carol/1") == 1

    run(scenario())


def test_publish_rejects_conflicts_atomically(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            await ds.publish_key_packages("bob/1", "bob", [kp("a")])
            with pytest.raises(InvalidRequestError, match="another user"):
                await ds.publish_key_packages("bob/1", "mallory", [kp("b")])
            with pytest.raises(InvalidRequestError, match="already published"):
                await ds.publish_key_packages("bob/1", "bob", [kp("new"), kp("a")])
            with pytest.raises(InvalidRequestError, match="repeat"):
                await ds.publish_key_packages("bob/1", "bob", [kp("x"), kp("x")])
            with pytest.raises(InvalidRequestError, match="at most one last-resort"):
                await ds.publish_key_packages("bob/1", "bob", [kp("y", True), kp("z", True)])
            assert await ds.key_package_count("bob/1") == 1  # "new" was rolled back

    run(scenario())


# --------------------------------------------------------------------------- ordering


@pytest.mark.parametrize(("current", "epoch", "content_type", "taken", "want"), [
    (4, 4, ContentType.COMMIT, False, ACCEPTED),
    (4, 3, ContentType.COMMIT, True, TAKEN),
    (4, 2, ContentType.COMMIT, False, WRONG),
    (4, 5, ContentType.COMMIT, False, WRONG),
    (4, 4, ContentType.PROPOSAL, False, ACCEPTED),
    (4, 3, ContentType.PROPOSAL, False, WRONG),
    (4, 4, ContentType.APPLICATION, False, ACCEPTED),
    (4, 3, ContentType.APPLICATION, False, ACCEPTED),
    (4, 2, ContentType.APPLICATION, False, WRONG),
    (4, 5, ContentType.APPLICATION, False, WRONG),
    (0, 0, ContentType.APPLICATION, False, ACCEPTED),
])
def test_ordering_status(current: int, epoch: int, content_type: int, taken: bool,
                         want: SubmitStatus) -> None:
    assert ordering_status(current, epoch, content_type, taken) is want


def test_epoch_rules_and_positions(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            first = await ds.submit(GID, 5, commit(5), is_commit=True, sender="alice")
            assert (first.status, first.position) == (ACCEPTED, 0)  # created at epoch 5
            assert await submit_commit(ds, 5, b"late") is TAKEN
            assert await submit_commit(ds, 3) is WRONG  # never had a Commit for 3
            assert await submit_commit(ds, 7) is WRONG
            p = await ds.submit(GID, 6, proposal(6), is_commit=False, sender="bob")
            assert (p.status, p.position) == (ACCEPTED, 1)
            wrong_proposal = await ds.submit(GID, 5, proposal(5), is_commit=False,
                                             sender="bob")
            assert wrong_proposal.status is WRONG and wrong_proposal.position is None
            assert await submit_app(ds, 6) is ACCEPTED
            assert await submit_app(ds, 5) is ACCEPTED  # a late sender of the last epoch
            assert await submit_app(ds, 4) is WRONG
            assert await submit_app(ds, 7) is WRONG
            last = await ds.submit(GID, 6, commit(6), is_commit=True, sender="bob")
            assert (last.status, last.position) == (ACCEPTED, 4)
            assert await submit_app(ds, 5) is WRONG  # now two epochs behind
            other = await ds.submit(b"group-2", 0, app(0, group_id=b"group-2"),
                                    is_commit=False, sender="alice")
            assert other.position == 0  # each group has its own order

    run(scenario())


def test_commit_race_exactly_one_wins_per_epoch(tmp_path: Path) -> None:
    path = tmp_path / "ds.db"

    async def scenario() -> None:
        async with LocalDeliveryService(path) as one, LocalDeliveryService(path) as two:
            await one.subscribe("alice", GID)
            await two.subscribe("bob", GID)
            for epoch in range(8):
                statuses = await asyncio.gather(
                    submit_commit(one, epoch, b"one", "alice"),
                    submit_commit(two, epoch, b"two", "bob"))
                assert sorted(statuses) == sorted([ACCEPTED, TAKEN])
            commits = await payloads(one, "alice")
            assert len(commits) == 8  # only the winners were delivered
            assert await payloads(two, "bob") == commits

    run(scenario())


def test_all_subscribers_see_the_same_order(tmp_path: Path) -> None:
    path = tmp_path / "ds.db"
    members = ["alice", "bob", "carol"]

    async def scenario() -> None:
        async with LocalDeliveryService(path) as one, LocalDeliveryService(path) as two:
            for m in members:
                await one.subscribe(m, GID)
            await submit_commit(one, 0)
            results = await asyncio.gather(*(
                (one if i % 2 else two).submit(
                    GID, 1, app(1, f"m{i}".encode()), is_commit=False,
                    sender=members[i % 3])
                for i in range(30)))
            views = [await one.fetch(m) for m in members]
        assert all(r.accepted for r in results)
        seqs = [[(m.payload, m.sender, m.group_id, m.kind) for m in v] for v in views]
        assert seqs[0] == seqs[1] == seqs[2]
        assert len(seqs[0]) == 31
        by_position = [app(1, f"m{i}".encode())
                       for _, i in sorted((r.position, i) for i, r in enumerate(results))]
        assert [p for p, *_ in seqs[0][1:]] == by_position
        sender_of = {app(1, f"m{i}".encode()): members[i % 3] for i in range(30)}
        assert all(sender == sender_of[p] for p, sender, *_ in seqs[0][1:])

    run(scenario())


def test_sender_receives_its_own_messages(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            assert await submit_commit(ds, 0, sender="dave") is ACCEPTED
            echo = await ds.fetch("dave")
            assert [(m.kind, m.payload, m.sender, m.group_id) for m in echo] == [
                (MessageKind.GROUP, commit(0), "dave", GID)]
            assert await submit_commit(ds, 0, b"x", sender="erin") is TAKEN
            assert await ds.fetch("erin") == []  # a rejected sender is not subscribed

    run(scenario())


def test_late_subscriber_and_unsubscribe(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            await ds.subscribe("alice", GID)
            await submit_app(ds, 0, b"1", "x")
            await submit_app(ds, 0, b"2", "x")
            await ds.subscribe("bob", GID)
            await ds.subscribe("bob", GID)  # idempotent
            await submit_app(ds, 0, b"3", "x")
            await ds.unsubscribe("alice", GID)
            await submit_app(ds, 0, b"4", "x")
            assert await submit_app(ds, 9, b"rejected", "x") is WRONG
            assert await payloads(ds, "alice") == [app(0, b"1"), app(0, b"2"), app(0, b"3")]
            assert await payloads(ds, "bob") == [app(0, b"3"), app(0, b"4")]

    run(scenario())


def test_offline_client_catches_up_from_its_cursor(tmp_path: Path) -> None:
    path = tmp_path / "ds.db"

    async def scenario() -> None:
        async with LocalDeliveryService(path) as ds:
            await ds.subscribe("bob", GID)
            for i in range(5):
                await submit_app(ds, 0, f"{i}".encode())
            seen = await ds.fetch("bob", limit=2)
            cursor = seen[-1].cursor
        async with LocalDeliveryService(path) as ds:  # bob offline, others go on
            for i in range(5, 8):
                await submit_app(ds, 0, f"{i}".encode())
        async with LocalDeliveryService(path) as ds:  # bob back, from his cursor
            rest = await ds.fetch("bob", after=cursor)
            assert [m.payload for m in rest] == [app(0, f"{i}".encode()) for i in range(2, 8)]
            streamed = []
            async for item in ds.receive("bob", after=cursor):
                streamed.append(item)
                if len(streamed) == len(rest):
                    break
            assert streamed == rest
            assert await ds.fetch("bob", after=rest[-1].cursor) == []

    run(scenario())


def test_welcome_goes_to_named_clients_who_then_get_the_group(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            await ds.subscribe("alice", GID)
            await submit_commit(ds, 0)
            await ds.send_welcome(["bob", "carol", "bob"], b"welcome-bytes", GID)
            await submit_app(ds, 1, b"hi")
            for client in ("bob", "carol"):
                got = await ds.fetch(client)
                assert [(m.kind, m.payload, m.group_id) for m in got] == [
                    (MessageKind.WELCOME, b"welcome-bytes", GID),
                    (MessageKind.GROUP, app(1, b"hi"), GID)]
            assert [m.kind for m in await ds.fetch("alice")] == [MessageKind.GROUP] * 2

    run(scenario())


def test_welcome_after_position_delivers_what_came_after_the_commit(tmp_path: Path) -> None:
    """Messages accepted between the adding Commit and the Welcome are not lost."""
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            await ds.subscribe("alice", GID)
            accepted = await ds.submit(GID, 0, commit(0), is_commit=True, sender="alice")
            position = accepted.position
            assert position is not None
            await submit_app(ds, 1, b"early")
            await ds.send_welcome(["bob"], b"welcome-bytes", GID, after_position=position)
            await submit_app(ds, 1, b"late")
            got = await ds.fetch("bob")
            assert [(m.kind, m.payload) for m in got] == [
                (MessageKind.WELCOME, b"welcome-bytes"),
                (MessageKind.GROUP, app(1, b"early")),
                (MessageKind.GROUP, app(1, b"late"))]

    run(scenario())


# -------------------------------------------------------------------------- GroupInfo


def test_group_info_never_goes_backwards(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            with pytest.raises(UnknownGroupError):
                await ds.fetch_group_info(GID)
            await ds.publish_group_info(GID, 2, b"gi-2", b"tree-2")
            assert await ds.fetch_group_info(GID) == (b"gi-2", b"tree-2")
            await ds.publish_group_info(GID, 1, b"gi-1")
            assert await ds.fetch_group_info(GID) == (b"gi-2", b"tree-2")
            await ds.publish_group_info(GID, 3, b"gi-3")
            assert await ds.fetch_group_info(GID) == (b"gi-3", None)
            await ds.publish_group_info(GID, 3, b"gi-3b", b"tree-3")
            assert await ds.fetch_group_info(GID) == (b"gi-3b", b"tree-3")

    run(scenario())


# -------------------------------------------------------------------- receive / close


async def _collect(ds: LocalDeliveryService, client_id: str,
                   into: list[bytes], arrived: asyncio.Event) -> None:
    async for item in ds.receive(client_id):
        into.append(item.payload)
        arrived.set()


def test_receive_wakes_at_once_and_close_ends_it(tmp_path: Path) -> None:
    """With a 60 s poll interval only the in-process event can wake the waiter."""

    async def scenario() -> None:
        ds = LocalDeliveryService(tmp_path / "ds.db", poll_interval=60)
        await ds.subscribe("bob", GID)
        got: list[bytes] = []
        arrived = asyncio.Event()
        task = asyncio.create_task(_collect(ds, "bob", got, arrived))
        await asyncio.sleep(0.05)  # the iterator is now waiting
        await submit_app(ds, 0, b"ping")
        await asyncio.wait_for(arrived.wait(), 2)
        assert got == [app(0, b"ping")]
        await ds.close()
        await asyncio.wait_for(task, 2)  # ended cleanly, no exception
        assert task.exception() is None
        await ds.close()  # idempotent

    run(scenario())


def test_receive_sees_other_connections_by_polling(tmp_path: Path) -> None:
    path = tmp_path / "ds.db"

    async def scenario() -> None:
        async with LocalDeliveryService(path, poll_interval=0.01) as reader, \
                LocalDeliveryService(path) as writer:
            await reader.subscribe("bob", GID)
            got: list[bytes] = []
            arrived = asyncio.Event()
            task = asyncio.create_task(_collect(reader, "bob", got, arrived))
            await asyncio.sleep(0.05)
            await submit_app(writer, 0, b"from-elsewhere")
            await asyncio.wait_for(arrived.wait(), 2)
            assert got == [app(0, b"from-elsewhere")]
        await asyncio.wait_for(task, 2)

    run(scenario())


def test_use_after_close_is_a_typed_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        ds = LocalDeliveryService(tmp_path / "ds.db")
        await ds.subscribe("bob", GID)
        await ds.close()
        with pytest.raises(TransportClosedError):
            await ds.fetch("bob")
        with pytest.raises(TransportClosedError):
            await submit_app(ds, 0)
        with pytest.raises(TransportClosedError):
            ds.receive("bob")

    run(scenario())


# ---------------------------------------------------------------------------- schema


def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "ds.db"

    async def open_and_publish() -> None:
        async with LocalDeliveryService(path) as ds:
            await ds.publish_key_packages("bob/1", "bob", [kp("a")])

    run(open_and_publish())
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [
            (len(MIGRATIONS),)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    async def reopen() -> int:
        async with LocalDeliveryService(path) as ds:
            return await ds.key_package_count("bob/1")

    assert run(reopen()) == 1  # reopening migrates nothing and keeps the data
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StorageError, match="newer"):
        run(reopen())


# ---------------------------------------------------------------------- bad input

BadCall = Callable[[LocalDeliveryService], Awaitable[object]]

BAD_CALLS: dict[str, BadCall] = {
    "empty client": lambda ds: ds.claim_key_package(""),
    "client not str": lambda ds: ds.key_package_count(7),  # type: ignore[arg-type]
    "empty user": lambda ds: ds.claim_user_key_packages(""),
    "entries not entries": lambda ds: ds.publish_key_packages(
        "c", "u", [b"x"]),  # type: ignore[list-item]
    "entries a str": lambda ds: ds.publish_key_packages("c", "u", "x"),  # type: ignore[arg-type]
    "empty ref": lambda ds: ds.publish_key_packages("c", "u", [KeyPackageEntry(b"", b"k")]),
    "group_id str": lambda ds: ds.subscribe("c", "g"),  # type: ignore[arg-type]
    "empty group_id": lambda ds: ds.unsubscribe("c", b""),
    "negative epoch": lambda ds: ds.submit(GID, -1, app(0), is_commit=False, sender="c"),
    "bool epoch": lambda ds: ds.submit(GID, True, app(1), is_commit=False, sender="c"),
    "huge epoch": lambda ds: ds.publish_group_info(GID, 1 << 63, b"gi"),
    "empty sender": lambda ds: ds.submit(GID, 0, app(0), is_commit=False, sender=""),
    "is_commit not bool": lambda ds: ds.submit(
        GID, 0, app(0), is_commit=None, sender="c"),  # type: ignore[arg-type]
    "empty payload": lambda ds: ds.submit(GID, 0, b"", is_commit=False, sender="c"),
    "garbage payload": lambda ds: ds.submit(GID, 0, b"\x00\x01\x00", is_commit=False,
                                            sender="c"),
    "not mls10": lambda ds: ds.submit(GID, 0, b"\x00\x02" + app(0)[2:], is_commit=False,
                                      sender="c"),
    "welcome as group message": lambda ds: ds.submit(
        GID, 0, b"\x00\x01\x00\x03" + app(0)[4:], is_commit=False, sender="c"),
    "group_id mismatch": lambda ds: ds.submit(GID, 0, app(0, group_id=b"other"),
                                              is_commit=False, sender="c"),
    "epoch mismatch": lambda ds: ds.submit(GID, 1, app(0), is_commit=False, sender="c"),
    "commit flag lies": lambda ds: ds.submit(GID, 0, app(0), is_commit=True, sender="c"),
    "unflagged commit": lambda ds: ds.submit(GID, 0, commit(0), is_commit=False, sender="c"),
    "bad sender type": lambda ds: ds.submit(
        GID, 0, public_header(GID, 0, ContentType.PROPOSAL, b"\x09"), is_commit=False,
        sender="c"),
    "bad content type": lambda ds: ds.submit(GID, 0, message(GID, 0, 7), is_commit=False,
                                             sender="c"),
    "client_ids a str": lambda ds: ds.send_welcome("bob", b"w", GID),
    "no client_ids": lambda ds: ds.send_welcome([], b"w", GID),
    "empty welcome": lambda ds: ds.send_welcome(["bob"], b"", GID),
    "bad cursor": lambda ds: ds.fetch("c", after="-1"),
    "cursor not str": lambda ds: ds.fetch("c", after=3),  # type: ignore[arg-type]
    "zero limit": lambda ds: ds.fetch("c", limit=0),
    "empty group info": lambda ds: ds.publish_group_info(GID, 1, b""),
    "tree not bytes": lambda ds: ds.publish_group_info(GID, 1, b"gi", "t"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_input_is_a_typed_error(tmp_path: Path, name: str) -> None:
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            with pytest.raises(InvalidRequestError) as info:
                await BAD_CALLS[name](ds)
            assert isinstance(info.value, TransportError)
            assert await ds.fetch("c") == []  # nothing was stored

    run(scenario())


def test_bad_constructor_arguments() -> None:
    with pytest.raises(InvalidRequestError):
        LocalDeliveryService("")
    with pytest.raises(InvalidRequestError):
        LocalDeliveryService("x.db", poll_interval=0)


def test_public_message_headers_are_read(tmp_path: Path) -> None:
    """Member sender with authenticated_data, and an external joiner's Commit (§6.2)."""

    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            member = public_header(GID, 0, ContentType.PROPOSAL, b"\x01\x00\x00\x00\x03",
                                   aad=b"a" * 70)
            r = await ds.submit(GID, 0, member, is_commit=False, sender="c")
            assert r.accepted
            joiner = public_header(GID, 0, ContentType.COMMIT, b"\x04")
            assert (await ds.submit(GID, 0, joiner, is_commit=True, sender="d")).accepted
            late = public_header(GID, 0, ContentType.APPLICATION, b"\x02\x00\x00\x00\x00")
            assert (await ds.submit(GID, 0, late, is_commit=False, sender="e")).accepted

    run(scenario())


# ------------------------------------------------------------------------ real MLS


def test_real_group_add_external_join_and_messages(tmp_path: Path) -> None:
    """mls_core clients run a group through the service: KeyPackage claim, Add, Welcome,
    GroupInfo, external join (a PublicMessage Commit), then application messages."""
    suite = get_suite(1)
    public = GroupConfig(handshake_wire_format=WireFormat.MLS_PUBLIC_MESSAGE)

    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            bob_sk, _ = suite.generate_signature_key_pair()
            bob_kp, bob_priv = create_key_package(suite, Credential.basic(b"bob"), bob_sk,
                                                  now=1)
            await ds.publish_key_packages("bob/1", "bob", [KeyPackageEntry(
                suite.make_key_package_ref(bob_kp.encode()),
                MLSMessage.of(bob_kp).encode())])
            alice_sk, _ = suite.generate_signature_key_pair()
            alice = Group.create(1, Credential.basic(b"alice"), alice_sk, now=1,
                                 config=public)
            gid = alice.group_id
            await ds.subscribe("alice/1", gid)
            claimed = MLSMessage.decode((await ds.claim_key_package("bob/1")).key_package)
            assert claimed.key_package == bob_kp
            res = alice.commit([Add(bob_kp)], now=1)
            assert (await ds.submit(gid, 0, res.commit, is_commit=True,
                                    sender="alice/1")).accepted
            alice.merge_pending_commit()
            assert res.welcome is not None
            await ds.send_welcome(["bob/1"], res.welcome, gid)
            await ds.publish_group_info(gid, alice.epoch, alice.group_info())

            (welcome,) = await ds.fetch("bob/1")
            bob = Group.join(welcome.payload, bob_kp, bob_priv, now=1)

            carol_sk, _ = suite.generate_signature_key_pair()
            group_info, tree = await ds.fetch_group_info(gid)
            carol, ext_commit = Group.join_external(group_info, Credential.basic(b"carol"),
                                                    carol_sk, ratchet_tree=tree, now=1)
            assert (await ds.submit(gid, 1, ext_commit, is_commit=True,
                                    sender="carol/1")).accepted
            for member, client in ((alice, "alice/1"), (bob, "bob/1")):
                for item in await ds.fetch(client):
                    if item.kind is MessageKind.GROUP and item.sender == "carol/1":
                        member.process(item.payload, now=1)
            assert alice.epoch == bob.epoch == carol.epoch == 2
            assert alice.epoch_authenticator == carol.epoch_authenticator

            hello = bob.encrypt(b"hello")
            assert (await ds.submit(gid, 2, hello, is_commit=False, sender="bob/1")).accepted
            for member, client in ((alice, "alice/1"), (carol, "carol/1")):
                last = (await ds.fetch(client))[-1]
                assert member.process(last.payload).data == b"hello"  # type: ignore[union-attr]

    run(scenario())


# ---------------------------------------------------------------------- two processes

WORKER = r"""
import asyncio, json, sys, time
from pathlib import Path
from mls_core.framing import MLSMessage, PrivateMessage
from transports.base import SubmitStatus
from transports.local import LocalDeliveryService

async def main(db: str, me: str, go: str, n: int) -> None:
    gid = b"shared"
    async with LocalDeliveryService(db, poll_interval=0.01) as ds:
        print("ready", flush=True)
        while not Path(go).exists():
            await asyncio.sleep(0.002)
        start = float(Path(go).read_text())
        won = []
        for epoch in range(n):  # both workers submit for an epoch in the same time slot
            await asyncio.sleep(max(0.0, start + epoch * 0.02 - time.time()))
            body = MLSMessage.of(PrivateMessage(gid, epoch, 3, b"", me.encode(), b"c"))
            result = await ds.submit(gid, epoch, body.encode(), is_commit=True, sender=me)
            if result.accepted:
                won.append(epoch)
            elif result.status is not SubmitStatus.REJECTED_EPOCH_TAKEN:
                raise SystemExit(f"unexpected {result.status}")
        seen = [[m.sender, m.payload.hex()] for m in await ds.fetch(me, limit=10000)]
        print(json.dumps({"won": won, "seen": seen}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def test_two_processes_share_one_database(tmp_path: Path) -> None:
    """Two OS processes race a Commit for each of 30 epochs on one file: exactly one wins
    each epoch, and both (and a poller in this process) see the same order."""
    path, go, n = tmp_path / "ds.db", tmp_path / "go", 30
    gid = b"shared"

    async def watch(ds: LocalDeliveryService) -> list[list[str]]:
        seen: list[list[str]] = []
        async for m in ds.receive("watcher"):
            seen.append([m.sender or "", m.payload.hex()])
            if len(seen) == n:
                break
        return seen

    async def scenario() -> None:
        async with LocalDeliveryService(path, poll_interval=0.01) as ds:
            for client in ("A", "B", "watcher"):
                await ds.subscribe(client, gid)
            procs = [await asyncio.create_subprocess_exec(
                sys.executable, "-c", WORKER, str(path), name, str(go), str(n),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE) for name in ("A", "B")]
            for proc in procs:
                assert proc.stdout is not None
                assert (await proc.stdout.readline()).strip() == b"ready"
            watcher = asyncio.create_task(watch(ds))
            staged = tmp_path / "go.tmp"  # renamed into place, so never read half-written
            staged.write_text(repr(time.time() + 0.1))
            staged.rename(go)
            outs = [await proc.communicate() for proc in procs]
            assert [proc.returncode for proc in procs] == [0, 0]
            watched = await asyncio.wait_for(watcher, 10)
        reports = [json.loads(out) for out, _ in outs]
        won_a, won_b = (set(r["won"]) for r in reports)
        assert not won_a & won_b and won_a | won_b == set(range(n))
        assert reports[0]["seen"] == reports[1]["seen"] == watched
        for epoch, (sender, payload_hex) in enumerate(watched):
            winner = "A" if epoch in won_a else "B"
            assert sender == winner
            assert bytes.fromhex(payload_hex) == MLSMessage.of(PrivateMessage(
                gid, epoch, ContentType.COMMIT, b"", winner.encode(), b"c")).encode()

    run(scenario(), timeout=60)


def test_a_message_id_makes_a_resubmission_idempotent(tmp_path: Path) -> None:
    """DeliveryTransport.submit(message_id=): the same sender's id returns the first
    result again, also once the epoch moved on (no wrong-epoch refusal, nothing
    appended); receivers see the id; another sender's equal id is another message."""
    async def scenario() -> None:
        async with LocalDeliveryService(tmp_path / "ds.db") as ds:
            await ds.subscribe("bob", GID)
            first = await ds.submit(GID, 0, app(0, b"x"), is_commit=False, sender="alice",
                                    message_id="m-1")
            assert await submit_commit(ds, 0) is SubmitStatus.ACCEPTED
            assert await submit_commit(ds, 1) is SubmitStatus.ACCEPTED
            again = await ds.submit(GID, 0, app(0, b"x"), is_commit=False, sender="alice",
                                    message_id="m-1")
            assert again == first and first.accepted
            other = await ds.submit(GID, 2, app(2, b"y"), is_commit=False, sender="carol",
                                    message_id="m-1")
            assert other.position != first.position
            ids = [(m.sender, m.message_id) for m in await ds.fetch("bob")]
            assert ids == [("alice", "m-1"), ("alice", None), ("alice", None),
                           ("carol", "m-1")]
            with pytest.raises(InvalidRequestError):
                await ds.submit(GID, 2, app(2), is_commit=False, sender="alice",
                                message_id="no spaces")
            assert ds.idempotent_submit
    asyncio.run(scenario())
