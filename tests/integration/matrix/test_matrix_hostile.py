"""Hostile input over a real Synapse: typed rejections, group state unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from mls_client.events import MessageRejected
from mls_core.codec import encode_varint
from tests.client.helpers import async_test
from transports.matrix import events as ev
from transports.matrix.api import CLIENT, quote
from transports.matrix.transport import MatrixDeliveryTransport

from .conftest import Homeserver
from .helpers import MatrixNet


def _fake_group_message(group_id: bytes, epoch: int) -> bytes:
    """A PrivateMessage header for the group (§6.3) followed by junk."""
    out = bytearray(b"\x00\x01\x00\x02")
    encode_varint(len(group_id), out)
    out += group_id + epoch.to_bytes(8, "big") + b"\x01" + b"\x07" * 120
    return bytes(out)


async def _post(t: MatrixDeliveryTransport, room: str, content: dict[str, Any],
                txn: str) -> str:
    out = await t.api.request(
        "PUT", f"{CLIENT}/rooms/{quote(room)}/send/{ev.MESSAGE_EVENT}/{txn}", content)
    event_id: str = out["event_id"]
    return event_id


def _message(payload: bytes, device: str = "MALLORY") -> dict[str, Any]:
    return ev.message_content(ev.Carried(inline=payload), device)


@async_test
async def test_hostile_events_are_rejected_and_change_nothing(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        for name in ("alice", "bob", "carol"):
            await net.add(name)
        mallory = await net.add("mallory", publish=False)  # in the room, not in the group
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.identity("bob"), net.identity("carol")])
        await net.sync()
        room = net.transports["alice"].room_id(gid)
        assert room is not None
        m = net.transports["mallory"]
        await net.transports["alice"].api.request(
            "POST", f"{CLIENT}/rooms/{quote(room)}/invite", {"user_id": m.matrix_user_id})
        await m.api.request("POST", f"{CLIENT}/join/{quote(room)}", {})
        before = await net.agree(gid, ["alice", "bob", "carol"])
        epoch = await net["alice"].epoch(gid)
        commit_at_0 = next(i.payload for i in await net.transports["alice"].fetch(
            net.transports["alice"].client_id) if i.kind == "group")

        # a non-member's group message, a replayed Commit, a message whose MLS sender
        # (bob's leaf) is not its Matrix sender (mallory)
        await _post(m, room, _message(_fake_group_message(gid, epoch)), "junk")
        await _post(m, room, _message(commit_at_0), "replay")
        forged = (await net["bob"].group(gid)).encrypt(b"forged by mallory")
        forged_id = await _post(m, room, _message(forged), "forged")
        no_device = (await net["bob"].group(gid)).encrypt(b"from a device mallory lacks")
        await _post(m, room, _message(no_device, "NOSUCHDEVICE"), "nodev")
        # malformed and oversized contents: refused by the transport itself
        bad = {
            "b64": await _post(m, room, {**_message(b"x"), "ciphertext": "@@@"}, "b64"),
            "device": await _post(m, room, {"algorithm": ev.ALGORITHM, "ciphertext": "AAAA"},
                                  "dev"),
            "not-group": await _post(m, room, _message(b"\x00\x01\x00\x05kp"), "kp"),
            "huge": await _post(m, room, {**_message(b"x"), "ciphertext_file": ev.MediaRef(
                "mxc://localhost/abc", 1 << 40, b"\x00" * 32).to_json()} | {}, "huge"),
        }
        bad["remote"] = await _post(m, room, {**_message(b"x"), "ciphertext_file": ev.MediaRef(
            "mxc://evil.example/abc", 10, b"\x00" * 32).to_json()}, "remote")
        uri = await m.api.upload(b"not what the hash says")
        bad["hash"] = await _post(m, room, {
            "algorithm": ev.ALGORITHM, "device_id": "MALLORY", "body": ev.FALLBACK_BODY,
            "ciphertext_file": ev.MediaRef(uri, 22, hashlib.sha256(b"other").digest())
            .to_json()}, "hash")

        await net.sync("alice", "bob", "carol")
        assert await net.agree(gid, ["alice", "bob", "carol"]) == before
        assert await net["alice"].epoch(gid) == epoch
        for name in ("alice", "carol"):
            assert b"forged by mallory" not in net.received(name)
            assert sum(isinstance(e, MessageRejected) for e in net.events[name]) >= 2
        items = {i.payload: i for i in await net.transports["alice"].fetch(
            net.transports["alice"].client_id)}
        assert items[forged].sender_identity == f"matrix:{m.matrix_user_id}"
        assert items[forged].sender == m.client_id  # a device mallory really has
        assert items[no_device].sender is None  # checked against mallory's devices
        assert items[no_device].sender_identity == f"matrix:{m.matrix_user_id}"
        assert forged_id not in dict(net.transports["alice"].rejections())
        reasons = dict(net.transports["alice"].rejections())
        assert "base64" in reasons[bad["b64"]]
        assert "device_id" in reasons[bad["device"]]
        assert "not a PublicMessage" in reasons[bad["not-group"]]
        assert "exceeds" in reasons[bad["huge"]]
        assert "SHA-256" in reasons[bad["hash"]]
        assert "M_FORBIDDEN" in reasons[bad["remote"]]  # no federation: refused for good

        # the group still works
        await net["bob"].send(gid, b"still fine")
        await net.sync("alice", "carol")
        assert net.received("carol", gid)[-1] == b"still fine"
        assert mallory is not None
    finally:
        await net.close()


@async_test
async def test_oversized_event_is_a_typed_error(tmp_path: Path,
                                                homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        alice = await net.add("alice")
        gid = await alice.create_group()
        t = net.transports["alice"]
        room = t.room_id(gid)
        assert room is not None
        with pytest.raises(ev.PayloadTooLargeError):
            await _post(t, room, _message(b"\x00" * 70_000, t.device_id), "big")
    finally:
        await net.close()


@async_test
async def test_invalid_earlier_commit_makes_ours_ordered_and_ours_wins(
        tmp_path: Path, homeserver: Homeserver) -> None:
    """A junk Commit for the epoch precedes ours in the timeline: the transport says
    ORDERED, every client skips the invalid one, and ours wins everywhere."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        for name in ("alice", "bob"):
            await net.add(name)
        await net.add("mallory", publish=False)
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.identity("bob")])
        await net.sync()
        room = net.transports["alice"].room_id(gid)
        assert room is not None
        m = net.transports["mallory"]
        await net.transports["alice"].api.request(
            "POST", f"{CLIENT}/rooms/{quote(room)}/invite", {"user_id": m.matrix_user_id})
        await m.api.request("POST", f"{CLIENT}/join/{quote(room)}", {})
        epoch = await net["alice"].epoch(gid)
        junk = bytearray(_fake_group_message(gid, epoch))
        junk[4 + 1 + len(gid) + 8] = 3  # content_type = commit
        await _post(m, room, _message(bytes(junk)), "junk-commit")

        t = net.transports["alice"]
        orig_submit = t.submit
        outcomes = []

        async def spy(*args: Any, **kwargs: Any) -> Any:
            out = await orig_submit(*args, **kwargs)
            outcomes.append(out.status)
            return out

        t.submit = spy  # type: ignore[method-assign]
        await net["alice"].update(gid)
        assert outcomes == ["ordered"]
        assert await net["alice"].epoch(gid) == epoch + 1
        await net.sync("bob")
        assert await net["bob"].epoch(gid) == epoch + 1
        await net.agree(gid, ["alice", "bob"])
    finally:
        await net.close()


@async_test
async def test_stranger_welcome_is_refused_and_no_room_is_joined(
        tmp_path: Path, homeserver: Homeserver) -> None:
    net = MatrixNet(tmp_path, homeserver)
    try:
        alice = await net.add("alice")
        await net.add("mallory", publish=False)
        m, ta = net.transports["mallory"], net.transports["alice"]
        room = (await m.api.request(
            "POST", f"{CLIENT}/createRoom",
            {"preset": "private_chat", "invite": [ta.matrix_user_id]}))["room_id"]
        # an MLSMessage(Welcome) naming a KeyPackageRef alice never published
        fake = (b"\x00\x01\x00\x03\x00\x01" + bytes([37]) + bytes([32]) + b"\x01" * 32
                + b"\x01\x00\x01\x00" + b"\x00")
        content = ev.welcome_content(ev.Carried(inline=fake), b"gid", room, None)
        await m.api.request("PUT", f"{CLIENT}/sendToDevice/{ev.WELCOME_EVENT}/t1",
                            {"messages": {ta.matrix_user_id: {ta.device_id: content}}})
        events = await alice.sync()
        assert events == [] or all(type(e).__name__ != "GroupJoined" for e in events)
        assert not [i for i in await ta.fetch(ta.client_id) if i.kind == "welcome"]
        assert any("KeyPackages" in reason for _, reason in ta.rejections())
        state = await m.api.request(
            "GET", f"{CLIENT}/rooms/{quote(room)}/state/m.room.member/{quote(ta.matrix_user_id)}")
        assert state["membership"] == "invite"  # alice did not join the stranger's room
    finally:
        await net.close()
