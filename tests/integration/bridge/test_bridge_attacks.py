"""The reported attack on real servers: an ordinary XMPP account that is in no room (and
its Matrix account) against a bridged group, with the bridge as its own process
(docs/bridge.md, "Who may ask"). Nothing it sends is published, invites anyone, opens
rooms or claims KeyPackages; a Matrix kick is still enforced and traffic still flows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from devservers.prosody import ProsodyServer
from devservers.synapse import SynapseServer
from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.framing import MLSMessage
from mls_core.key_package import create_key_package
from mls_core.proposals import Add
from mls_core.room_policy import Action, Role, RoomPolicy
from tests.bridge.helpers import own_group, reepoched
from transports.base import MessageKind, RelayTransport, TransportError
from transports.bridged import (
    BridgeRequest,
    ClaimRequest,
    ControlBody,
    Failure,
    GroupInfoRelay,
    WelcomeRelay,
    b64,
    decode_control,
    encode_control,
)
from transports.matrix.api import CLIENT, MatrixApi, MatrixApiError
from transports.matrix.events import GROUP_INFO_STATE
from transports.matrix.transport import MatrixDeliveryTransport

from .helpers import PASSWORD, RealNet, bridge_test, running

Servers = tuple[ProsodyServer, SynapseServer]


async def _answers(account: RelayTransport, bridge: str) -> dict[str, ControlBody]:
    """The bridge's answers in ``account``'s stream, by request id."""
    items = await account.fetch(account.client_id)
    out: dict[str, ControlBody] = {}
    for item in items:
        if item.kind is MessageKind.CONTROL and item.sender_identity == bridge:
            body = decode_control(item.payload)
            out[str(getattr(body, "id", ""))] = body
    return out


def _log(net: RealNet) -> str:
    return net.bridge.log.read_text(errors="replace") if net.bridge.log.exists() else ""


async def _logged(net: RealNet, *patterns: str, timeout: float = 30.0) -> None:
    """Wait until the bridge's log has a line matching each of ``patterns``."""
    deadline = time.monotonic() + timeout
    while True:
        text = _log(net)
        missing = [p for p in patterns if re.search(p, text) is None]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not in the bridge's log: {missing}\n{text[-4000:]}")
        await asyncio.sleep(0.2)


def _hub_rooms(net: RealNet, group_id: bytes) -> int:
    with sqlite3.connect(f"file:{net.bridge.state / 'hub.sqlite'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM rooms WHERE group_id = ?",
                              (group_id,)).fetchone()[0])


def _view_epoch(net: RealNet, group_id: bytes) -> int:
    """The epoch of the bridge's verified view of the group (-1: none)."""
    with sqlite3.connect(f"file:{net.bridge.state / 'hub.sqlite'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT epoch FROM views WHERE group_id = ?", (group_id,)).fetchone()
    return -1 if row is None else int(row[0])


async def _bridge_matrix_rooms(net: RealNet) -> set[str]:
    """The rooms the bridge's Matrix account is in (asked as that account)."""
    api = await MatrixApi.login(net.synapse.url, net.bridge.matrix_user, password=PASSWORD,
                                device_name="test-probe")
    try:
        return set((await api.request("GET", f"{CLIENT}/joined_rooms"))["joined_rooms"])
    finally:
        with contextlib.suppress(TransportError):  # the probe's device goes again
            await api.request("POST", f"{CLIENT}/logout", {})
        await api.close()


@bridge_test
async def test_a_stranger_changes_nothing_and_a_matrix_kick_is_enforced(
        bridge_servers: Servers, tmp_path: Path) -> None:
    async with running(bridge_servers, tmp_path) as net:
        await net.add("xmpp", "x1", "x2")
        await net.add("matrix", "m1", "m2")
        c, ident = net.clients, net.identity
        # created on Matrix (m1 owns the room and may kick); only the XMPP admin may
        # remove in MLS: the kick must become the bridge's Remove proposal
        policy = RoomPolicy.build({ident("x1").encode(): Role.ADMIN},
                                  rules={Action.ADD: Role.MEMBER, Action.REMOVE: Role.ADMIN})
        gid = await net.group("m1", ["m2", "x1", "x2"], policy)
        m1 = net.inner["m1"]
        assert isinstance(m1, MatrixDeliveryTransport)
        room = m1.room_id(gid)
        assert room is not None
        state_path = f"{CLIENT}/rooms/{quote(room)}/state"

        async def group_info_state() -> list[object]:
            """Every GroupInfo state event of the room (one per writer's state key)."""
            events = json.loads(await m1.api.raw("GET", state_path))
            assert isinstance(events, list)
            return sorted((e["state_key"], e["event_id"], e["sender"], e["content"])
                          for e in events if e.get("type") == GROUP_INFO_STATE)

        state_before = await group_info_state()
        assert state_before  # members published theirs
        fetched_before = await m1.fetch_group_info(gid)
        bridge_rooms = await _bridge_matrix_rooms(net)

        # the attacker: an XMPP account in no room, and its Matrix account
        eve = await net.transport("xmpp", "eve")
        evem = await net.transport("matrix", "evem")
        assert isinstance(evem, MatrixDeliveryTransport)
        bridge_x = net.bridge.identity("xmpp")
        eve_id = eve.user_id

        async def send(body: ControlBody | bytes) -> None:
            await eve.send_control(bridge_x, body if isinstance(body, bytes)
                                   else encode_control(body))

        # (a) GroupInfo relays: epoch 10^9, and a self-signed fake of the next epoch
        fake, priv = own_group(eve_id, gid)
        await send(GroupInfoRelay(group=gid.hex(), epoch=10**9,
                                  group_info=b64(reepoched(fake.group_info(), priv, 10**9))))
        await send(GroupInfoRelay(group=gid.hex(), epoch=2,
                                  group_info=b64(reepoched(fake.group_info(), priv, 2))))
        # (b) a Welcome relay naming its own Matrix account: as the old format had it
        # (clients named in the body), and a Welcome for a KeyPackage of that account
        suite = get_suite(1)
        key = suite.generate_signature_key_pair()[0]
        kp, _ = create_key_package(suite, Credential.basic(evem.user_id.encode()), key,
                                   now=int(time.time()))
        welcome = fake.commit([Add(kp)], now=int(time.time())).welcome
        assert welcome is not None
        await send(json.dumps({"v": 1, "op": "welcome", "group": gid.hex(),
                               "network": "matrix", "clients": [evem.client_id],
                               "welcome": b64(welcome), "after": 0}).encode())
        await send(WelcomeRelay(group=gid.hex(), after=0, welcome=b64(welcome)))
        # (c) bridge a random group id, and the real group it is not in
        random_gid = secrets.token_bytes(16)
        await send(json.dumps({"v": 1, "op": "bridge", "id": "eve-bridge-v1",
                               "group": random_gid.hex()}).encode())
        await send(BridgeRequest(id="eve-bridge-random", group=random_gid.hex(),
                                 group_info=b64(fake.group_info())))
        await send(BridgeRequest(id="eve-bridge-real", group=gid.hex(),
                                 group_info=b64(fake.group_info())))
        # (d) claim a member's KeyPackages through the bridge
        m2_count = await net.inner["m2"].key_package_count(net.inner["m2"].client_id)
        await send(ClaimRequest(id="eve-claim-m2", group=gid.hex(), user=ident("m2")))

        def line(op: str, reason: str) -> str:
            return re.escape(f"WARNING mls_bridge.defence bridge: dropped {op} from "
                             f"{eve_id}: {reason}")
        # one WARNING line per (sender, reason) and minute; the counters have them all
        await _logged(net, line("group_info", "not-a-member"),
                      line("control", "unsupported-version"),
                      line("bridge", "group-info-wrong-group"))

        async def answered() -> bool:
            return {"eve-bridge-random", "eve-bridge-real", "eve-claim-m2"} <= set(
                await _answers(eve, bridge_x))
        await net.until(answered, "the bridge's Failure answers", 30.0)
        got = await _answers(eve, bridge_x)
        for request, reason in (("eve-bridge-random", "group-info-wrong-group"),
                                ("eve-bridge-real", "not-a-member"),
                                ("eve-claim-m2", "not-a-member")):
            answer = got[request]
            assert isinstance(answer, Failure) and answer.error.startswith(reason), answer

        # nothing was published in the Matrix room, members fetch what they did before
        assert await group_info_state() == state_before
        assert await m1.fetch_group_info(gid) == fetched_before
        info = MLSMessage.decode(fetched_before[0]).group_info
        assert info is not None and info.group_context.epoch == 1
        # nobody was invited, and eve's Matrix account cannot join
        members = await m1.api.request("GET", f"{CLIENT}/rooms/{quote(room)}/members")
        assert evem.matrix_user_id not in {e.get("state_key") for e in members["chunk"]}
        with pytest.raises(MatrixApiError) as refused:
            await evem.api.request("POST", f"{CLIENT}/rooms/{quote(room)}/join", {})
        assert refused.value.status == 403
        assert f"relayed a Welcome of {eve_id}" not in _log(net)
        # no room was opened: not by the hub, not on Matrix
        assert _hub_rooms(net, random_gid) == 0
        assert await _bridge_matrix_rooms(net) == bridge_rooms
        # and no KeyPackage was claimed
        assert await net.inner["m2"].key_package_count(net.inner["m2"].client_id) == m2_count

        # m1 kicks m2 from the Matrix room: within 30 s m2 is out of the MLS group
        kicked = time.monotonic()
        await m1.api.request("POST", f"{CLIENT}/rooms/{quote(room)}/kick",
                             {"user_id": net.inner["m2"].matrix_user_id,  # type: ignore[attr-defined]
                              "reason": "test"})

        async def removed() -> bool:
            names = [m.credential.identity for m in await c["x1"].members(gid)]
            return ident("m2").encode() not in names
        await net.until(removed, "m2 removed after the Matrix kick", 30.0, "x1", "x2", "m1")
        assert time.monotonic() - kicked < 30.0
        await net.at_epoch(gid, 2, ["x1", "x2", "m1"])
        await c["m1"].send(gid, b"after the kick, from matrix")
        await c["x2"].send(gid, b"after the kick, from xmpp")
        await net.got("x1", gid, b"after the kick, from matrix")
        await net.got("m1", gid, b"after the kick, from xmpp")
        await net.quiet(1.0, "m2")
        assert b"after the kick, from xmpp" not in net.received("m2", gid)

        # (e) the removed member m2 asks as it did while a member: once the bridge's
        # view is past the removal, m2 holds no leaf there and gets nothing
        async def view_past_removal() -> bool:
            return _view_epoch(net, gid) >= 2
        await net.until(view_past_removal, "the bridge's view at the removal's epoch", 30.0)
        m2 = net.inner["m2"]
        bridge_m = net.bridge.identity("matrix")
        x2_count = await net.inner["x2"].key_package_count(net.inner["x2"].client_id)
        await m2.send_control(bridge_m, encode_control(
            ClaimRequest(id="m2-claim-after-removal", group=gid.hex(), user=ident("x2"))))
        old_info, old_tree = fetched_before
        await m2.send_control(bridge_m, encode_control(GroupInfoRelay(
            group=gid.hex(), epoch=1, group_info=b64(old_info),
            tree=None if old_tree is None else b64(old_tree))))

        async def m2_answered() -> bool:
            return "m2-claim-after-removal" in await _answers(m2, bridge_m)
        await net.until(m2_answered, "the bridge's answer to the removed member", 30.0)
        answer = (await _answers(m2, bridge_m))["m2-claim-after-removal"]
        assert isinstance(answer, Failure) and answer.error.startswith("not-a-member"), answer
        await _logged(net, re.escape(f"WARNING mls_bridge.defence bridge: dropped claim from "
                                     f"{ident('m2')}: not-a-member"))
        assert await net.inner["x2"].key_package_count(net.inner["x2"].client_id) == x2_count
        assert _view_epoch(net, gid) >= 2  # the stale GroupInfo did not replace the view

        # the counters, as the bridge reports them when it stops
        await asyncio.to_thread(net.bridge.stop)
        [stats] = re.findall(r"bridge stopped; stats (\{.*\})", _log(net))
        dropped = json.loads(stats)["dropped"]
        # eve: 2 group_info, welcome, bridge, claim; the removed m2: claim, group_info
        assert dropped["not-a-member"] >= 6, dropped
        assert dropped["unsupported-version"] == 2 and dropped["group-info-wrong-group"] == 1
        await eve.close()
        await evem.close()
