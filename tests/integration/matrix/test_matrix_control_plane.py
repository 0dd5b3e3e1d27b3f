"""The Matrix control plane under attack, on a real Synapse (docs/matrix.md "Hostile
input"): an ordinary account — a room occupant who is not an MLS member, or a stranger —
attacks GroupInfo state, the room binding, the KeyPackage directory, Welcomes and
control messages. Each attack is refused or dropped with a counted WARNING naming the
attacker, and real traffic keeps flowing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from mls_client.events import GroupJoined
from mls_client.matrix_rights import POWER_LEVELS
from mls_client.settings import Settings
from mls_client.transport_factory import open_transport
from tests.client.helpers import async_test_within
from transports.base import MessageKind, UnknownGroupError
from transports.matrix import events as ev
from transports.matrix.api import CLIENT, MatrixApiError, quote
from transports.matrix.transport import MatrixDeliveryTransport

from .conftest import PASSWORD, Homeserver
from .helpers import MatrixNet, epoch_of, fake_group_info

DEFENCE = "mls_bridge.defence"


async def _group(net: MatrixNet, *members: str) -> bytes:
    gid = await net["alice"].create_group()
    await net["alice"].add_members(gid, [net.identity(m) for m in members])
    await net.sync()
    return gid


async def _occupant(net: MatrixNet, gid: bytes, name: str = "mallory") -> str:
    """Alice invites ``name`` into the group's room the native way; it joins. Returns
    the room id."""
    room = net.transports["alice"].room_id(gid)
    assert room is not None
    m = net.transports[name]
    await net.transports["alice"].api.request(
        "POST", f"{CLIENT}/rooms/{quote(room)}/invite", {"user_id": m.matrix_user_id})
    await m.api.request("POST", f"{CLIENT}/join/{quote(room)}", {})
    return room


async def _put_state(t: MatrixDeliveryTransport, room: str, etype: str, key: str,
                     content: dict[str, Any]) -> str:
    out = await t.api.request(
        "PUT", f"{CLIENT}/rooms/{quote(room)}/state/{etype}/{quote(key)}", content)
    event_id: str = out["event_id"]
    return event_id


def _info_content(epoch: int, info: bytes) -> dict[str, Any]:
    return ev.group_info_content(epoch, ev.Carried(inline=info), None)


async def _flows(net: MatrixNet, gid: bytes, text: bytes) -> None:
    """Real traffic still flows both ways between alice and bob."""
    await net["alice"].send(gid, text + b" from alice")
    await net["bob"].send(gid, text + b" from bob")
    await net.sync("alice", "bob")
    assert net.received("bob", gid)[-1] == text + b" from alice"
    assert net.received("alice", gid)[-1] == text + b" from bob"


def _warnings(caplog: pytest.LogCaptureFixture, who: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and who in r.getMessage()]


@async_test_within(180)
async def test_an_occupant_cannot_spoil_the_group_info(
        tmp_path: Path, homeserver: Homeserver, caplog: pytest.LogCaptureFixture) -> None:
    """(a) Garbage at epoch 1,000,000 under the legacy "" key and under mallory's own
    key, a member's GroupInfo re-posted by mallory, and a self-signed fake group with
    the real group id at epoch 1,000,000: readers get the real GroupInfo, every forgery
    is a counted WARNING naming mallory; after a real Commit readers get the new one;
    recovery after state loss (and a reader with no journal at all) still works."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        await net.add("alice")
        await net.add("bob")
        await net.add("mallory", publish=False)
        gid = await _group(net, "bob")
        room = await _occupant(net, gid)
        m = net.transports["mallory"]
        mallory = f"matrix:{m.matrix_user_id}"
        real = await net["alice"].epoch(gid)
        garbage = _info_content(1_000_000, b"\x00\x01\x00\x04" + b"garbage" * 10)
        await _put_state(m, room, ev.GROUP_INFO_STATE, "", garbage)
        await _put_state(m, room, ev.GROUP_INFO_STATE, m.matrix_user_id, garbage)
        alice_info = (await net["alice"].group(gid)).group_info()
        await _put_state(m, room, ev.GROUP_INFO_STATE, "", _info_content(real, alice_info))
        await _put_state(m, room, ev.GROUP_INFO_STATE, m.matrix_user_id, _info_content(
            1_000_000, fake_group_info(mallory, gid, 1_000_000)))

        with caplog.at_level(logging.WARNING, DEFENCE):
            for name in ("alice", "bob"):
                t = net.transports[name]
                info, _ = await t.fetch_group_info(gid)
                assert epoch_of(info) == real
                assert t.drops.counts["group-info-invalid"] == 2  # the two garbage ones
                assert t.drops.counts["group-info-wrong-signer"] == 1  # alice's, re-posted
                assert t.drops.counts["group-info-unlinked"] == 1  # the fake group
        lines = _warnings(caplog, mallory)
        assert {line.split(": ")[2].split(" ")[0] for line in lines} == {
            "group-info-invalid", "group-info-wrong-signer", "group-info-unlinked"}
        await _flows(net, gid, b"after the forgeries")

        # a real Commit: readers follow it, the forgeries stay out
        await net["alice"].update(gid)
        await net.sync("bob")
        real = await net["alice"].epoch(gid)
        for name in ("alice", "bob"):
            info, _ = await net.transports[name].fetch_group_info(gid)
            assert epoch_of(info) == real

        # bob loses the group's state and rejoins from the published GroupInfo
        async with net["bob"].store.transaction() as tx:
            await tx.delete_group(gid)
        bob = await net.reopen("bob")
        await net["alice"].send(gid, b"lost to bob")
        assert await bob.recover_group(gid) == real + 1
        await net.sync("alice")
        await _flows(net, gid, b"after the recovery")
        await net.agree(gid, ["alice", "bob"])

        # a reader with no journal at all (bob's new device) rebuilds the room's
        # GroupInfo history from its creation and is not fooled either
        fresh = await MatrixDeliveryTransport.connect(
            homeserver.url, net.users["bob"], password=PASSWORD, device_id="BOBNEW",
            journal_path=tmp_path / "bob-new.journal")
        try:
            await fresh.fetch(fresh.client_id)  # the first sync binds the room
            info, _ = await fresh.fetch_group_info(gid)
            assert epoch_of(info) == real + 1 == await net["alice"].epoch(gid)
            assert fresh.drops.counts["group-info-unlinked"] == 1
        finally:
            await fresh.close()
    finally:
        await net.close()


@async_test_within(180)
async def test_the_client_limits_bound_the_group_infos_read(tmp_path: Path,
                                                            homeserver: Homeserver) -> None:
    """Issue 16: a device opened from client settings (mls_client.transport_factory)
    checks the room's GroupInfo within the settings' ``[limits]``: one over them is
    dropped as ``group-info-invalid`` and the group stays unknown to it."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        await net.add("alice")
        await net.add("bob")
        gid = await _group(net, "bob")
        settings = Settings.model_validate({
            "state_dir": tmp_path / "small", "transport": {"kind": "matrix"},
            "limits": {"max_tree_bytes": 64, "max_message_bytes": 64},
            "matrix": {"homeserver": homeserver.url, "user_id": net.users["bob"],
                       "password": PASSWORD, "device_id": "BOBSMALL"}})
        small = await open_transport(settings)
        try:
            assert isinstance(small, MatrixDeliveryTransport)
            assert small.limits == settings.group_config().limits
            await small.fetch(small.client_id)  # the first sync binds the room
            with pytest.raises(UnknownGroupError):
                await small.fetch_group_info(gid)
            assert small.drops.counts["group-info-invalid"] >= 1
        finally:
            await small.close()
        info, _ = await net.transports["bob"].fetch_group_info(gid)  # the defaults
        assert epoch_of(info) == await net["alice"].epoch(gid)
    finally:
        await net.close()

@async_test_within(120)
async def test_the_server_refuses_foreign_group_info_keys_and_binding_rewrites(
        tmp_path: Path, homeserver: Homeserver) -> None:
    """(b) The room auth rules refuse mallory's write under alice's state key; power
    level 100 for the binding refuses mallory's (level 0) rewrite of it."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        await net.add("alice")
        await net.add("bob")
        await net.add("mallory", publish=False)
        gid = await _group(net, "bob")
        room = await _occupant(net, gid)
        ta, m = net.transports["alice"], net.transports["mallory"]
        levels = await ta.api.request(
            "GET", f"{CLIENT}/rooms/{quote(room)}/state/{POWER_LEVELS}/")
        events = levels["events"]
        assert (events[ev.GROUP_STATE], events[ev.GROUP_INFO_STATE],
                events[ev.MESSAGE_EVENT]) == (100, 0, 0)
        # the homeserver's defaults for its own types were kept
        assert events[POWER_LEVELS] == events["m.room.history_visibility"] == 100
        alice_key = f"{CLIENT}/rooms/{quote(room)}/state/{ev.GROUP_INFO_STATE}/" \
                    f"{quote(ta.matrix_user_id)}"
        before = await ta.api.request("GET", alice_key)

        forged = _info_content(1_000_000, fake_group_info(ta.identity, gid, 1_000_000))
        with pytest.raises(MatrixApiError) as foreign:
            await _put_state(m, room, ev.GROUP_INFO_STATE, ta.matrix_user_id, forged)
        assert foreign.value.status == 403 and "others state" in str(foreign.value)
        assert await ta.api.request("GET", alice_key) == before
        with pytest.raises(MatrixApiError) as binding:
            await _put_state(m, room, ev.GROUP_STATE, "", ev.group_state_content(b"x" * 32))
        assert binding.value.status == 403 and "send_level (100)" in str(binding.value)
        await _flows(net, gid, b"after the refusals")
    finally:
        await net.close()


@async_test_within(120)
async def test_a_stranger_draining_key_packages_is_seen_and_bob_stays_addable(
        tmp_path: Path, homeserver: Homeserver, caplog: pytest.LogCaptureFixture) -> None:
    """(c) A stranger claims bob's one-time KeyPackages until only the fallback is left
    (``/keys/claim`` is atomic and unthrottled): bob's transport counts the claims and
    warns of depletion; alice still adds bob (last resort) and they talk."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        await net.add("alice")
        await net.add("bob")
        await net.add("mallory", publish=False)
        tb, m = net.transports["bob"], net.transports["mallory"]
        assert tb.one_time_key_count == 4 and tb.key_package_claims == 0
        claims = []
        for _ in range(8):
            out = await m.api.request("POST", f"{CLIENT}/keys/claim", {"one_time_keys": {
                tb.matrix_user_id: {tb.device_id: ev.key_algorithm(1)}}})
            [(_, obj)] = out["one_time_keys"][tb.matrix_user_id][tb.device_id].items()
            claims.append(obj.get("fallback") is True)
        assert claims == [False] * 4 + [True] * 4  # the pool, then the fallback each time

        with caplog.at_level(logging.WARNING):
            await tb.fetch(tb.client_id)  # a sync reports the count
        assert (tb.key_package_claims, tb.one_time_key_count) == (4, 0)
        assert tb.depletion_warnings == 1
        assert tb.drops.counts["possible-key-package-depletion"] == 1
        assert any("possible KeyPackage depletion" in r.getMessage()
                   and r.levelno == logging.WARNING for r in caplog.records)

        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.identity("bob")])
        # bob had no one-time KeyPackage left: alice got the fallback one
        assert await tb.key_package_count(tb.client_id) == 0
        await net.sync()
        assert any(isinstance(e, GroupJoined) for e in net.events["bob"])
        await _flows(net, gid, b"after the drain")
        # bob refilled his pool meanwhile: his own upload is no claim
        assert tb.key_package_claims == 4 and (tb.one_time_key_count or 0) >= 2
    finally:
        await net.close()


@async_test_within(120)
async def test_hostile_welcomes_are_counted_and_join_nothing(
        tmp_path: Path, homeserver: Homeserver, caplog: pytest.LogCaptureFixture) -> None:
    """(d) A garbage to-device Welcome and a well-formed Welcome naming no KeyPackageRef
    of bob's, both pointing at a room of mallory's that bob is invited to."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        await net.add("alice")
        await net.add("bob")
        await net.add("mallory", publish=False)
        tb, m = net.transports["bob"], net.transports["mallory"]
        room = (await m.api.request("POST", f"{CLIENT}/createRoom", {
            "preset": "private_chat", "invite": [tb.matrix_user_id]}))["room_id"]
        welcome = (b"\x00\x01\x00\x03\x00\x01" + bytes([37]) + bytes([32]) + b"\x01" * 32
                   + b"\x01\x00\x01\x00" + b"\x00")  # for a KeyPackageRef bob never had
        contents = [{**ev.welcome_content(ev.Carried(inline=b"x"), b"gid", room, None),
                     "welcome": "not base64!"},
                    ev.welcome_content(ev.Carried(inline=welcome), b"gid", room, None)]
        for i, content in enumerate(contents):
            await m.api.request("PUT", f"{CLIENT}/sendToDevice/{ev.WELCOME_EVENT}/w{i}",
                                {"messages": {tb.matrix_user_id: {tb.device_id: content}}})
        with caplog.at_level(logging.WARNING, DEFENCE):
            await net.sync("bob")
        assert not any(isinstance(e, GroupJoined) for e in net.events["bob"])
        assert tb.drops.counts["malformed"] == 1
        assert tb.drops.counts["welcome-not-for-us"] == 1
        assert len(_warnings(caplog, m.matrix_user_id)) == 2
        member = await m.api.request(
            "GET", f"{CLIENT}/rooms/{quote(room)}/state/m.room.member/"
                   f"{quote(tb.matrix_user_id)}")
        assert member["membership"] == "invite"  # bob did not join mallory's room
        gid = await _group(net, "bob")
        await _flows(net, gid, b"after the fake Welcomes")
    finally:
        await net.close()


@async_test_within(120)
async def test_garbage_control_messages_are_counted(
        tmp_path: Path, homeserver: Homeserver, caplog: pytest.LogCaptureFixture) -> None:
    """(e) Garbage control messages are dropped with a counted WARNING; a well-formed
    one naming a device mallory does not have is delivered without a client id and
    counted too."""
    net = MatrixNet(tmp_path, homeserver)
    try:
        await net.add("alice")
        await net.add("bob")
        await net.add("mallory", publish=False)
        tb, m = net.transports["bob"], net.transports["mallory"]
        gid = await _group(net, "bob")
        cursor = (await tb.fetch(tb.client_id))[-1].cursor
        contents = [{"algorithm": ev.ALGORITHM, "device_id": "MALLORY", "control": "@@@"},
                    {"algorithm": "org.example.other", "control": "AAAA"},
                    ev.control_content(ev.Carried(inline=b"{}"), "NOSUCHDEVICE")]
        for i, content in enumerate(contents):
            await m.api.request("PUT", f"{CLIENT}/sendToDevice/{ev.CONTROL_EVENT}/c{i}",
                                {"messages": {tb.matrix_user_id: {"*": content}}})
        with caplog.at_level(logging.WARNING, DEFENCE):
            items = await tb.fetch(tb.client_id, cursor)
        assert [(i.kind, i.payload, i.sender, i.sender_identity) for i in items] == [
            (MessageKind.CONTROL, b"{}", None, m.identity)]
        assert tb.drops.counts["malformed"] == 2
        assert tb.drops.counts["unknown-device"] == 1
        assert len(_warnings(caplog, m.matrix_user_id)) == 2  # one line per reason
        await _flows(net, gid, b"after the garbage controls")
    finally:
        await net.close()
