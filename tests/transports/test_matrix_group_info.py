"""MatrixDeliveryTransport.fetch_group_info against a stub room (no homeserver): every
GroupInfo state event is checked and must continue the room's history; garbage and a
stranger's fake group are dropped visibly, never returned and never a DecodeError."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from mls_client.settings import Settings
from mls_core.ciphersuite import get_suite
from mls_core.config import InputLimits
from mls_core.credentials import Credential
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add
from mls_core.welcome import sign_group_info
from tests.client.helpers import async_test
from transports.base import UnknownGroupError
from transports.matrix import events as ev
from transports.matrix.journal import Subscribe
from transports.matrix.transport import MatrixDeliveryTransport

ROOM = "!r:hs"
ALICE, BOB, CAROL, MALLORY = "@alice:hs", "@bob:hs", "@carol:hs", "@mallory:hs"
GID = b"G" * 16


class _Room:
    """A stub homeserver holding one room: its current state and its history, and
    ``/messages`` forwards through the GroupInfo events with integer tokens."""

    def __init__(self, user_id: str, creator: str = ALICE) -> None:
        self.user_id = user_id
        self.device_id = "DEV"
        self.history: list[dict[str, Any]] = []
        self.state: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        self.send(creator, "m.room.create", "", {"room_version": "12"})

    def send(self, sender: str, etype: str, state_key: str, content: dict[str, Any]) -> str:
        event = {"event_id": f"$e{len(self.history)}", "sender": sender, "type": etype,
                 "state_key": state_key, "content": content}
        self.history.append(event)
        self.state[(etype, state_key)] = event
        return str(event["event_id"])

    def publish(self, sender: str, info: bytes, *, key: str | None = None,
                epoch: int | None = None) -> str:
        epoch = _epoch(info) if epoch is None else epoch
        return self.send(sender, ev.GROUP_INFO_STATE, sender if key is None else key,
                         ev.group_info_content(epoch, ev.Carried(inline=info), None))

    async def raw(self, method: str, path: str, *args: Any, **kwargs: Any) -> bytes:
        assert path.endswith(f"/rooms/{ROOM.replace('!', '%21').replace(':', '%3A')}/state")
        return json.dumps(list(self.state.values())).encode()

    async def request(self, method: str, path: str, body: Any = None, *,
                      query: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(path)
        if path.endswith("/messages"):
            assert query is not None and query["dir"] == "f"
            start = int(query.get("from", "0"))
            types = json.loads(query["filter"])["types"]
            found = [(i, e) for i, e in enumerate(self.history)
                     if i >= start and e["type"] in types][:int(query["limit"])]
            if not found:
                return {"chunk": []}
            return {"chunk": [e for _, e in found], "end": str(found[-1][0] + 1)}
        if "/event/" in path:
            event_id = path.rsplit("/", 1)[1].replace("%24", "$")
            return next(e for e in self.history if e["event_id"] == event_id)
        raise AssertionError(f"unexpected request {method} {path}")

    async def close(self) -> None:
        pass


def _transport(tmp_path: Path, room: _Room, name: str = "j",
               limits: InputLimits | None = None) -> MatrixDeliveryTransport:
    from transports.matrix.journal import Journal

    journal = Journal(tmp_path / f"{name}.sqlite")
    journal.apply([Subscribe(ROOM, GID)])
    return MatrixDeliveryTransport(room, journal, limits=limits)  # type: ignore[arg-type]


_NOW = int(time.time())
_SUITE = get_suite(1)


def _member(user: str) -> tuple[Credential, bytes]:
    priv, _ = _SUITE.generate_signature_key_pair()
    return Credential.basic(f"matrix:{user}".encode()), priv


def _add(group: Group, user: str) -> Group:
    cred, priv = _member(user)
    kp, kp_priv = create_key_package(_SUITE, cred, priv, now=_NOW)
    result = group.commit([Add(kp)])
    group.merge_pending_commit()
    assert result.welcome is not None
    return Group.join(result.welcome, kp, kp_priv, now=_NOW)


def _fake(user: str, epoch: int) -> bytes:
    """A self-consistent GroupInfo of a fake group with the real group's id."""
    cred, priv = _member(user)
    info = MLSMessage.decode(Group.create(1, cred, priv, group_id=GID, now=_NOW)
                             .group_info()).group_info
    assert info is not None
    tbs = info.to_be_signed()
    tbs = dataclasses.replace(tbs, group_context=dataclasses.replace(tbs.group_context,
                                                                     epoch=epoch))
    return MLSMessage.of(sign_group_info(_SUITE, priv, tbs)).encode()


def _epoch(info: bytes) -> int:
    gi = MLSMessage.decode(info).group_info
    assert gi is not None
    return gi.group_context.epoch


@async_test
async def test_the_real_group_info_wins_over_garbage_and_a_fake_group(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    room = _Room(BOB)
    alice = Group.create(1, *_member(ALICE), group_id=GID, now=_NOW)
    room.publish(ALICE, alice.group_info())
    bob = _add(alice, BOB)
    room.publish(ALICE, alice.group_info())
    garbage = ev.group_info_content(1_000_000, ev.Carried(inline=b"garbage"), None)
    room.send(MALLORY, ev.GROUP_INFO_STATE, "", garbage)
    room.send(MALLORY, ev.GROUP_INFO_STATE, MALLORY, garbage)
    room.send(MALLORY, ev.GROUP_INFO_STATE, "x", {"algorithm": "nope"})
    room.publish(MALLORY, _fake(MALLORY, 1_000_000))
    room.publish(MALLORY, alice.group_info(), key="")  # a member's, re-posted
    t = _transport(tmp_path, room)
    with caplog.at_level(logging.WARNING):
        info, tree = await t.fetch_group_info(GID)
    assert _epoch(info) == 1 and tree is None
    assert t.drops.snapshot() == {"group-info-invalid": 2, "group-info-malformed": 1,
                                  "group-info-wrong-signer": 1, "group-info-unlinked": 1}
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # one line per (sender, reason) and minute: the second garbage is only counted
    assert len(lines) == 4 and all(f"matrix:{MALLORY}" in line for line in lines)

    # read again: nothing new is read twice, the stored head answers
    assert (await t.fetch_group_info(GID))[0] == info
    assert t.drops.total == 5
    # the group moves on: bob commits and publishes under his own key
    result = bob.commit([])
    bob.merge_pending_commit()
    alice.process(result.commit)
    room.publish(BOB, bob.group_info())
    assert _epoch((await t.fetch_group_info(GID))[0]) == 2
    await t.close()


@async_test
async def test_a_reader_without_state_rebuilds_the_chain_and_links_late_publications(
        tmp_path: Path) -> None:
    """A fresh journal (a reader after total state loss, here dave) reads the room's
    GroupInfo history from the creator's epoch 0 on; carol's GroupInfo, published before
    the one that lists her, is linked once that one comes."""
    room = _Room("@dave:hs")
    alice = Group.create(1, *_member(ALICE), group_id=GID, now=_NOW)
    room.publish(ALICE, alice.group_info())
    carol = _add(alice, CAROL)
    epoch_one = alice.group_info()
    result = carol.commit([])
    carol.merge_pending_commit()
    alice.process(result.commit)
    room.publish(MALLORY, _fake(MALLORY, 7))
    room.publish(CAROL, carol.group_info())  # epoch 2, before alice's epoch 1
    room.publish(ALICE, epoch_one)
    t = _transport(tmp_path, room)
    assert _epoch((await t.fetch_group_info(GID))[0]) == 2
    assert any("/event/" in path for path in room.requests)  # carol's, read again
    assert t.drops.snapshot() == {"group-info-unlinked": 1}
    await t.close()


@async_test
async def test_only_garbage_is_unknown_and_never_a_decode_error(tmp_path: Path) -> None:
    room = _Room(BOB, creator=MALLORY)
    room.send(MALLORY, ev.GROUP_INFO_STATE, "",
              ev.group_info_content(1_000_000, ev.Carried(inline=b"\x00\x01\x00\x04"), None))
    room.send(MALLORY, ev.GROUP_INFO_STATE, MALLORY, {"algorithm": ev.ALGORITHM,
                                                      "epoch": True})
    t = _transport(tmp_path, room)
    with pytest.raises(UnknownGroupError):
        await t.fetch_group_info(GID)
    assert t.drops.snapshot() == {"group-info-invalid": 1, "group-info-malformed": 1}
    await t.close()


@async_test
async def test_the_limits_of_the_client_settings_bound_the_group_infos_read(
        tmp_path: Path) -> None:
    """Issue 16: the client's ``[limits]`` reach the ``[matrix]`` table and, through it,
    the transport's GroupInfo checks: a GroupInfo over them is dropped as
    ``group-info-invalid`` (a LimitError), and the defaults accept it."""
    room = _Room(BOB)
    alice = Group.create(1, *_member(ALICE), group_id=GID, now=_NOW)
    info = alice.group_info()
    room.publish(ALICE, info)
    settings = Settings.model_validate({
        "limits": {"max_tree_bytes": 64, "max_message_bytes": len(info) - 1},
        "matrix": {"homeserver": "http://hs", "user_id": BOB, "password": "pw"}})
    assert settings.matrix is not None
    bounded = _transport(tmp_path, room, "small", settings.matrix.limits)
    assert bounded.limits.max_message_bytes == len(info) - 1
    with pytest.raises(UnknownGroupError):
        await bounded.fetch_group_info(GID)
    assert bounded.drops.snapshot() == {"group-info-invalid": 1}
    await bounded.close()
    t = _transport(tmp_path, room, "default")
    assert t.limits == InputLimits() and (await t.fetch_group_info(GID))[0] == info
    await t.close()
