"""transports.bridged: control bodies, foreign ids, and the members' view of a stream."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import pytest

from mls_client.settings import Settings
from mls_client.transport_factory import _bridge_identity
from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add
from transports.base import InvalidRequestError, MessageKind, SubmitStatus, TransportError
from transports.bridged import (
    BridgedTransport,
    ClaimAnswer,
    ClaimRequest,
    Failure,
    UnsupportedControlVersion,
    WelcomeRelay,
    decode_control,
    encode_control,
    network_of,
    split_client,
)
from transports.local import LocalDeliveryService

NOW = 1_800_000_000


def test_network_of_and_split_client() -> None:
    assert network_of("xmpp:alice@x") == "xmpp"
    assert network_of("matrix:@bob:m") == "matrix"
    assert network_of("alice@x/dev") is None and network_of("@bob:m/DEV") is None
    assert split_client("matrix:@bob:m/DEV") == ("matrix", "@bob:m/DEV")
    assert split_client("alice@x/dev") == (None, "alice@x/dev")


def test_control_bodies_round_trip_and_reject_garbage() -> None:
    claim = ClaimRequest(id="abcdefgh12", group="0a1b", user="matrix:@bob:m")
    assert decode_control(encode_control(claim)) == claim
    answer = ClaimAnswer(id="abcdefgh12", packages=[])
    assert decode_control(encode_control(answer)) == answer
    for bad in (b"{not json", b'{"op": "claim"}', b'{"v": 3, "op": "claim", "id": "abcdefgh",'
                b' "group": "0a", "user": "x:y"}', b'{"v": 2, "op": "shout", "id": "abcdefgh"}',
                b'{"v": 2, "op": "welcome", "group": "zz", "welcome": "", "after": 1}',
                b'{"v": 2, "op": "welcome", "group": "0a", "welcome": ""}',
                b'{"v": 2, "op": "claim", "id": "abcdefgh", "user": "matrix:@b:m"}',
                b'{"v": 2, "op": "bridge", "id": "abcdefgh", "group": "0a"}',
                b"x" * (25 * 1024 * 1024)):
        with pytest.raises(InvalidRequestError):
            decode_control(bad)
    # version 1 (before authorization) is refused as such, whatever its shape
    with pytest.raises(UnsupportedControlVersion, match="version 1"):
        decode_control(b'{"v": 1, "op": "claim", "id": "abcdefgh", "user": "matrix:@b:m"}')


def test_bridge_identity_from_settings(tmp_path: Path) -> None:
    local = Settings(state_dir=tmp_path)
    assert _bridge_identity(local) is None
    xmpp = Settings.model_validate({"state_dir": tmp_path, "transport": {"kind": "xmpp"},
                                    "xmpp": {"jid": "a@x/d", "password": "p",
                                             "bridge": "bridge@x"}})
    assert _bridge_identity(xmpp) == "xmpp:bridge@x"


def _group(identity: bytes) -> Group:
    suite = get_suite(1)
    return Group.create(1, Credential.basic(identity), suite.generate_signature_key_pair()[0],
                        now=NOW)


def test_members_see_only_hub_items_from_the_bridge(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalDeliveryService(tmp_path / "net.sqlite", ordering="room") as ds:
            alice = await ds.account("alice@x/d", "xmpp:alice@x", network="xmpp")
            bridge = await ds.account("bridge@x/r", "xmpp:bridge@x", network="xmpp")
            mallory = await ds.account("mallory@x/d", "xmpp:mallory@x", network="xmpp")
            view = BridgedTransport(alice, "xmpp:bridge@x", request_timeout=0.3,
                                    poll_interval=0.05)
            group = _group(b"xmpp:alice@x")
            gid = group.group_id
            await alice.subscribe("alice@x/d", gid)
            offer = group.encrypt(b"one")
            result = await view.submit(gid, 0, offer, is_commit=False, sender="alice@x/d")
            assert result.status is SubmitStatus.ACCEPTED
            forged = group.encrypt(b"two")
            await mallory.relay_group(gid, forged, seq=0, sender_identity="xmpp:alice@x")
            # only offers and a forged relay so far: nothing visible, and the skip
            # remembers where that run ended
            assert await view.fetch("alice@x/d", limit=1) == []
            await bridge.relay_group(gid, offer, seq=0, sender_identity="matrix:@c:m",
                                     sender="@c:m/D")
            [item] = await view.fetch("alice@x/d")
            assert item.kind is MessageKind.GROUP and item.payload == offer
            assert item.sender_identity == "matrix:@c:m" and item.relay_seq == 0
            assert item.sender == "@c:m/D"
            # a request nobody answers times out with a typed error
            with pytest.raises(TransportError, match="did not answer"):
                await view.claim_user_key_packages("matrix:@bob:m", group_id=gid)
            # a claim through the bridge names its group
            with pytest.raises(InvalidRequestError, match="names the group"):
                await view.claim_user_key_packages("matrix:@bob:m")
            # an answer from anyone but the bridge is ignored; the bridge's is taken
            with pytest.raises(TransportError, match="refused"):
                task = asyncio.create_task(view.claim_user_key_packages("matrix:@bob:m",
                                                                        group_id=gid))
                await asyncio.sleep(0.1)
                rows = await bridge.fetch("bridge@x/r")
                request = decode_control(rows[-1].payload)
                assert isinstance(request, ClaimRequest)
                await mallory.send_control("xmpp:alice@x", encode_control(
                    ClaimAnswer(id=request.id, packages=[])))
                await bridge.send_control("xmpp:alice@x", encode_control(
                    Failure(id=request.id, error="no such user")))
                await task
    asyncio.run(main())


def test_unsolicited_malformed_and_forged_items_are_dropped_once_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    async def main() -> None:
        async with LocalDeliveryService(tmp_path / "net.sqlite", ordering="room") as ds:
            alice = await ds.account("alice@x/d", "xmpp:alice@x", network="xmpp")
            bridge = await ds.account("bridge@x/r", "xmpp:bridge@x", network="xmpp")
            mallory = await ds.account("mallory@x/d", "xmpp:mallory@x", network="xmpp")
            alice.trusted_relayers = {"xmpp:other@x"}  # type: ignore[attr-defined]
            view = BridgedTransport(alice, "xmpp:bridge@x", request_timeout=0.3,
                                    poll_interval=0.05)
            # the XMPP/Matrix readers accept GroupInfo the bridge mirrors
            assert alice.trusted_relayers == {"xmpp:other@x", "xmpp:bridge@x"}  # type: ignore[attr-defined]
            group = _group(b"xmpp:alice@x")
            gid = group.group_id
            await alice.subscribe("alice@x/d", gid)
            await mallory.send_control("xmpp:alice@x", encode_control(
                ClaimAnswer(id="abcdefgh12", packages=[])))
            await bridge.send_control("xmpp:alice@x", b"{not json")
            await bridge.send_control("xmpp:alice@x", b'{"v": 1, "op": "error", "id": "x", '
                                                      b'"error": "old"}')
            await bridge.send_control("xmpp:alice@x", encode_control(
                ClaimRequest(id="abcdefgh12", group="0a", user="xmpp:alice@x")))
            await bridge.send_control("xmpp:alice@x", encode_control(
                Failure(id="nobody-asked", error="unsolicited")))
            await mallory.relay_group(gid, group.encrypt(b"forged"), seq=0,
                                      sender_identity="xmpp:alice@x")
            await bridge.submit(gid, 0, group.encrypt(b"no relay fields"), is_commit=False,
                                sender="bridge@x/r")
            # a request scans the stream for its answer, then the client reads it too:
            # each item is judged once
            with pytest.raises(TransportError, match="did not answer"):
                await view.external_sender(1)
            assert await view.fetch("alice@x/d") == []
            assert view.drops.snapshot() == {
                "control-not-from-bridge": 1, "malformed": 1, "unsupported-version": 1,
                "unexpected-op": 1, "unsolicited-answer": 1, "relay-not-from-bridge": 1,
                "hub-item-without-relay": 1}
    asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "mls_bridge.defence"]
    assert "xmpp: dropped group from xmpp:mallory@x: relay-not-from-bridge" in lines
    assert any(line.startswith("xmpp: dropped control from xmpp:mallory@x: "
                               "control-not-from-bridge") for line in lines)
    assert len(lines) == 7


def test_a_welcome_relay_carries_only_the_secrets_claimed_through_the_bridge(
        tmp_path: Path) -> None:
    """Each joiner needs only its own EncryptedGroupSecrets (RFC 9420 §12.4.3.1): the
    bridge is sent only those of the KeyPackages it claimed."""
    async def main() -> None:
        async with LocalDeliveryService(tmp_path / "net.sqlite", ordering="room") as ds:
            alice = await ds.account("alice@x/d", "xmpp:alice@x", network="xmpp")
            bridge = await ds.account("bridge@x/r", "xmpp:bridge@x", network="xmpp")
            view = BridgedTransport(alice, "xmpp:bridge@x")
            suite = get_suite(1)
            group = _group(b"xmpp:alice@x")
            kps = []
            for name in (b"xmpp:bob@x", b"matrix:@carol:m"):
                key = suite.generate_signature_key_pair()[0]
                kps.append(create_key_package(suite, Credential.basic(name), key, now=NOW)[0])
            refs = [suite.make_key_package_ref(kp.encode()) for kp in kps]
            view._foreign[refs[1]] = ("matrix", "@carol:m/D")
            result = group.commit([Add(kp) for kp in kps], now=NOW)
            assert result.welcome is not None
            await view.send_welcome(["matrix:@carol:m/D"], result.welcome, group.group_id,
                                    after_position=3)
            [item] = await bridge.fetch("bridge@x/r")
            body = decode_control(item.payload)
            assert isinstance(body, WelcomeRelay) and body.after == 3
            relayed = MLSMessage.decode(base64.b64decode(body.welcome)).welcome
            assert relayed is not None
            assert [s.new_member for s in relayed.secrets] == [refs[1]]
    asyncio.run(main())
