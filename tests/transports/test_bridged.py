"""transports.bridged: control bodies, foreign ids, and the members' view of a stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mls_client.settings import Settings
from mls_client.transport_factory import _bridge_identity
from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.group import Group
from transports.base import InvalidRequestError, MessageKind, SubmitStatus, TransportError
from transports.bridged import (
    BridgedTransport,
    ClaimAnswer,
    ClaimRequest,
    Failure,
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
    claim = ClaimRequest(id="abcdefgh12", user="matrix:@bob:m")
    assert decode_control(encode_control(claim)) == claim
    answer = ClaimAnswer(id="abcdefgh12", packages=[])
    assert decode_control(encode_control(answer)) == answer
    for bad in (b"{not json", b'{"op": "claim"}', b'{"v": 2, "op": "claim", "id": "abcdefgh",'
                b' "user": "x:y"}', b'{"v": 1, "op": "shout", "id": "abcdefgh"}',
                b'{"v": 1, "op": "welcome", "group": "zz", "network": "x", "clients": ["a"],'
                b' "welcome": ""}', b"x" * (25 * 1024 * 1024)):
        with pytest.raises(InvalidRequestError):
            decode_control(bad)


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
                await view.claim_user_key_packages("matrix:@bob:m")
            # an answer from anyone but the bridge is ignored; the bridge's is taken
            with pytest.raises(TransportError, match="refused"):
                task = asyncio.create_task(view.claim_user_key_packages("matrix:@bob:m"))
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
