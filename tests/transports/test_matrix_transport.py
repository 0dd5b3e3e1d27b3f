"""Error paths of MatrixDeliveryTransport that need no homeserver (a stub API that
fails the test if it is ever called)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.client.helpers import async_test
from transports.base import (
    InvalidRequestError,
    KeyPackageEntry,
    TransportClosedError,
    TransportError,
    UnknownGroupError,
)
from transports.matrix.journal import Journal
from transports.matrix.transport import MatrixDeliveryTransport


class _NoNetwork:
    user_id = "@alice:hs"
    device_id = "DEV"

    async def request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("no request expected")

    async def close(self) -> None:
        pass


def _transport(tmp_path: Path) -> MatrixDeliveryTransport:
    return MatrixDeliveryTransport(_NoNetwork(), Journal(tmp_path / "j.sqlite"))  # type: ignore[arg-type]


def _private_message(group_id: bytes, epoch: int, content_type: int = 1) -> bytes:
    return (b"\x00\x01\x00\x02" + bytes([len(group_id)]) + group_id
            + epoch.to_bytes(8, "big") + bytes([content_type]) + b"rest")


@async_test
async def test_identity_and_wrong_client(tmp_path: Path) -> None:
    t = _transport(tmp_path)
    assert t.client_id == "@alice:hs/DEV" and t.identity == "matrix:@alice:hs"
    # bound to the account like every network transport: user_id is the MLS user id
    assert t.user_id == "matrix:@alice:hs" and t.matrix_user_id == "@alice:hs"
    with pytest.raises(InvalidRequestError, match="serves"):
        await t.fetch("@bob:hs/DEV")
    with pytest.raises(InvalidRequestError):
        await t.publish_key_packages(t.client_id, "matrix:@bob:hs", [])
    with pytest.raises(InvalidRequestError):
        await t.publish_key_packages(t.client_id, t.identity,
                                     [KeyPackageEntry(b"r", b"kp"), KeyPackageEntry(b"r", b"kp")])
    with pytest.raises(InvalidRequestError):
        await t.claim_key_package("bob")
    await t.close()


@async_test
async def test_submit_checks_the_header_and_the_binding(tmp_path: Path) -> None:
    t = _transport(tmp_path)
    gid = b"g" * 8
    with pytest.raises(InvalidRequestError, match="epoch"):
        await t.submit(gid, 2, _private_message(gid, 1), is_commit=False, sender=t.client_id)
    with pytest.raises(InvalidRequestError, match="content_type"):
        await t.submit(gid, 1, _private_message(gid, 1, 3), is_commit=False,
                       sender=t.client_id)
    with pytest.raises(InvalidRequestError):
        await t.submit(gid, 1, b"\x00\x01\x00\x05junk", is_commit=False, sender=t.client_id)
    with pytest.raises(UnknownGroupError):
        await t.submit(gid, 1, _private_message(gid, 1), is_commit=False, sender=t.client_id)
    with pytest.raises(UnknownGroupError):
        await t.fetch_group_info(gid)
    with pytest.raises(InvalidRequestError, match="cursor"):
        t.receive(t.client_id, after="not-a-cursor")
    await t.close()
    with pytest.raises(TransportClosedError):
        await t.fetch(t.client_id)


def test_only_the_events_own_faults_are_permanent() -> None:
    from transports.base import TransportError
    from transports.matrix import events as ev
    from transports.matrix.api import MatrixApiError
    from transports.matrix.transport import _permanent

    assert _permanent(ev.MalformedEventError("bad"))
    assert _permanent(ev.PayloadTooLargeError("big"))
    assert _permanent(ev.MediaIntegrityError("tampered"))
    assert _permanent(MatrixApiError(404, "M_NOT_FOUND", "gone"))
    assert not _permanent(MatrixApiError(502, "M_UNKNOWN", "bad gateway"))
    assert not _permanent(MatrixApiError(429, "M_LIMIT_EXCEEDED", "slow down"))
    assert not _permanent(TransportError("connection reset"))


@async_test
async def test_transient_failures_give_up_after_a_few_attempts(tmp_path: Path) -> None:
    from transports.base import TransportError
    from transports.matrix import events as ev

    t = _transport(tmp_path)
    assert [t._give_up("$e", TransportError("reset")) for _ in range(3)] == [
        False, False, True]
    assert t._give_up("$other", ev.MalformedEventError("bad"))
    await t.close()


@async_test
async def test_bridge_methods_check_their_arguments(tmp_path: Path) -> None:
    from transports.base import RelayTransport

    t = _transport(tmp_path)
    assert isinstance(t, RelayTransport) and t.network == "matrix"
    gid = b"g" * 8
    with pytest.raises(InvalidRequestError, match="matrix:"):
        await t.send_control("xmpp:bob@x", b"body")
    with pytest.raises(InvalidRequestError, match="matrix:"):
        await t.send_control("@bob:hs", b"body")
    with pytest.raises(InvalidRequestError):
        await t.send_control("matrix:@bob:hs", b"")
    with pytest.raises(InvalidRequestError, match="matrix:"):
        await t.admit(gid, "xmpp:bridge@x")
    with pytest.raises(UnknownGroupError):
        await t.admit(gid, "matrix:@bridge:hs")
    for seq, identity in ((-1, "xmpp:c@x"), (True, "xmpp:c@x"), (1, ""), (1, "x" * 600)):
        with pytest.raises(InvalidRequestError, match="relay"):
            await t.relay_group(gid, _private_message(gid, 0), seq=seq,
                                sender_identity=identity)
    with pytest.raises(InvalidRequestError, match="group_id"):
        await t.relay_group(gid, _private_message(b"h" * 8, 0), seq=1,
                            sender_identity="xmpp:c@x")
    with pytest.raises(UnknownGroupError):
        await t.relay_group(gid, _private_message(gid, 0), seq=1, sender_identity="xmpp:c@x")
    await t.close()
    with pytest.raises(TransportClosedError):
        await t.send_control("matrix:@bob:hs", b"body")


def test_bridge_setting_is_a_matrix_user_id(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from transports.matrix.settings import MatrixSettings

    base = {"homeserver": "http://127.0.0.1:8008", "user_id": "@a:hs", "password": "p"}
    assert MatrixSettings.model_validate(base).bridge is None
    for given in ("@bridge:hs", "matrix:@bridge:hs"):
        assert MatrixSettings.model_validate({**base, "bridge": given}).bridge == "@bridge:hs"
    for bad in ("bridge@hs", "xmpp:bridge@hs", "@bridge"):
        with pytest.raises(ValidationError):
            MatrixSettings.model_validate({**base, "bridge": bad})
    journal = Journal(tmp_path / "j.sqlite")
    t = MatrixDeliveryTransport(_NoNetwork(), journal,  # type: ignore[arg-type]
                                bridge="matrix:@bridge:hs")
    assert t.bridge_user == "@bridge:hs"
    journal.close()


def test_claims_are_what_disappears_and_a_drained_pool_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    t = _transport(tmp_path)
    now = [0.0]
    t._clock = lambda: now[0]
    t._observe_count(4, 4)  # the first count is only a baseline
    t._observe_count(3)
    assert (t.key_package_claims, t.one_time_key_count) == (1, 3)
    t._observe_count(5, uploaded=2)  # our own upload is no negative claim
    t._observe_count(7, trusted=False)  # may have raced with an upload: baseline only
    assert t.key_package_claims == 1
    with caplog.at_level(logging.WARNING):
        t._observe_count(4)
        assert t.depletion_warnings == 0  # 4 of a pool of up to 7 within the window
        now[0] = 100.0
        t._observe_count(0)  # 8 >= 7 within 300 s
        t._observe_count(0)
        now[0] = 200.0
        t._observe_count(7, uploaded=7)
        t._observe_count(0)  # still within the window of the last warning
    assert (t.key_package_claims, t.depletion_warnings) == (15, 1)
    assert t.drops.snapshot() == {"possible-key-package-depletion": 1}
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "possible KeyPackage depletion"]
    now[0] = 600.0
    t._observe_count(7, uploaded=7)
    t._observe_count(0)
    assert (t.key_package_claims, t.depletion_warnings) == (22, 2)
    t._journal.close()


def test_every_refused_item_is_a_counted_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from transports.matrix.journal import Bind, GroupEvent, Rejected, Subscribe

    t = _transport(tmp_path)
    gid = b"g" * 8
    with caplog.at_level(logging.WARNING):
        t._apply([Subscribe("!r:hs", gid),
                  Bind("!r:hs", b"other", "matrix:@mallory:hs", "$bind"),
                  GroupEvent("!r:hs", "$e1", b"other", 0, False, None, "matrix:@mallory:hs",
                             b"x"),
                  Rejected("$e2", "bad base64", "malformed", "room-event",
                           "matrix:@mallory:hs")],
                 flags=[Rejected("$e3", "unknown device", "unknown-device", "room-event",
                                 "matrix:@eve:hs")])
    assert t.drops.snapshot() == {"binding-conflict": 1, "wrong-group": 1, "malformed": 1,
                                  "unknown-device": 1}
    assert [e for e, _ in t.rejections()] == ["$bind", "$e1", "$e2"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all(r.levelno == logging.WARNING for r in caplog.records)
    assert sum("@mallory:hs" in line for line in lines) == 3
    t._journal.close()


class _Outage:
    """A homeserver whose ``/sync`` fails ``down`` times, then long-polls empty."""

    user_id = "@alice:hs"
    device_id = "DEV"

    def __init__(self, down: int) -> None:
        self.down = down
        self.syncs = 0

    async def request(self, method: str, path: str, *args: Any,
                      **kwargs: Any) -> dict[str, Any]:
        if path.endswith("/filter"):
            return {"filter_id": "f"}
        assert path.endswith("/sync")
        self.syncs += 1
        if self.syncs <= self.down:
            raise TransportError("GET /sync: connection refused")
        await asyncio.sleep(0.02)  # an empty long-poll
        return {"next_batch": f"t{self.syncs}"}

    async def close(self) -> None:
        pass


def test_stream_retry_delay_is_jittered_and_capped() -> None:
    from transports.matrix import transport as mt

    for failures in (1, 2, 5, 40):
        ceiling = min(mt.STREAM_RETRY_CAP, mt.STREAM_RETRY_INITIAL * 2 ** (failures - 1))
        delays = {mt.stream_retry_delay(failures) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1


@async_test
async def test_a_failing_sync_is_retried_with_one_warning_per_outage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """receive() rides out failed long-polls (homeserver down): backoff, one WARNING
    for the whole outage, an INFO when /sync works again."""
    from transports.matrix import transport as mt

    monkeypatch.setattr(mt, "STREAM_RETRY_INITIAL", 0.01)
    api = _Outage(down=5)
    t = MatrixDeliveryTransport(api, Journal(tmp_path / "j.sqlite"),  # type: ignore[arg-type]
                                long_poll_ms=10)
    stream = t.receive(t.client_id)
    reader = asyncio.ensure_future(anext(stream))  # no item comes: it keeps polling
    with caplog.at_level(logging.DEBUG, logger=mt.__name__):
        async with asyncio.timeout(10):
            while api.syncs < 8:
                await asyncio.sleep(0.01)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await t.close()
    failed = [r for r in caplog.records if "sync failed" in r.getMessage()]
    assert len(failed) == 5
    assert [r.levelno for r in failed] == [logging.WARNING] + [logging.DEBUG] * 4
    assert any("works again after 5" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)
