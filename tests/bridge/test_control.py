"""Bridge control requests, authenticated and authorized (bridge/control.py,
bridge/views.py; docs/bridge.md "Who may ask"), on two embedded networks."""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from mls_client.events import RemovedFromGroup
from mls_core.config import InputLimits
from mls_core.framing import MLSMessage
from mls_core.proposals import Add
from mls_core.room_policy import RoomPolicy
from tests.bridge.helpers import (
    BridgedNet,
    answers,
    bridged_net,
    identity,
    own_group,
    reepoched,
    until,
)
from tests.client.helpers import async_test
from transports.base import IncomingMessage, MessageKind, RelayTransport, TransportError
from transports.bridged import Bridged as BridgedAnswer
from transports.bridged import (
    BridgeRequest,
    ClaimAnswer,
    ClaimRequest,
    Failure,
    GroupInfoRelay,
    SignerRequest,
    WelcomeRelay,
    b64,
    encode_control,
)
from transports.defence import RateLimiter

BRIDGE_X = identity("xmpp", "bridge")
EVE = identity("xmpp", "eve")


def _now() -> int:
    return int(time.time())


async def _send(account: RelayTransport, body: bytes | BaseModel) -> None:
    """``body`` to the bridge's account on ``account``'s network."""
    await account.send_control(identity(account.network, "bridge"),
                               body if isinstance(body, bytes) else encode_control(body))


async def _failure(account: RelayTransport, request_id: str) -> Failure:
    """The bridge's Failure answer to ``request_id``."""
    bridge = identity(account.network, "bridge")

    async def answered() -> bool:
        return any(getattr(a, "id", None) == request_id for a in await answers(account, bridge))
    await until(answered, f"an answer to {request_id}")
    [answer] = [a for a in await answers(account, bridge) if getattr(a, "id", None) == request_id]
    assert isinstance(answer, Failure), answer
    return answer


def _warnings(caplog: pytest.LogCaptureFixture, who: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
            and r.name == "mls_bridge.defence" and who in r.getMessage()]


async def _setup(net: BridgedNet, policy: bool = False) -> bytes:
    await net.add("xmpp", "alice", "bob")
    await net.add("matrix", "carol", "dave")
    ids = {n: identity(net.network[n], n) for n in net.clients}
    return await net.group("alice", ["bob", "carol", "dave"],
                           RoomPolicy.standard([ids["alice"].encode()]) if policy else None)


async def _matrix_group_info(net: BridgedNet, gid: bytes) -> bytes:
    return (await net.services["matrix"].fetch_group_info(gid))[0]


# ---------------------------------------------------------------------- happy paths


@async_test
async def test_the_first_view_is_the_creators_and_follows_every_commit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice", "bob", "erin")
        await net.add("matrix", "carol", "dave")
        c, hub = net.clients, net.hub
        assert hub is not None
        ids = {n: identity(net.network[n], n) for n in c}
        gid = await c["alice"].create_group()
        view = await hub.view(gid)
        assert view is not None and view.epoch == 0 and view.signer == ids["alice"]
        assert view.members == {ids["alice"]} and await hub.anchor(gid) == ids["alice"]
        assert await _matrix_group_info(net, gid) == view.group_info  # mirrored
        # an XMPP member adds across the bridge (a claim + a Welcome relay) and at home
        await c["alice"].add_members(gid, [ids["carol"], ids["bob"]])
        await net.settle()
        view = await hub.view(gid)
        assert view is not None and view.epoch == 1
        assert view.members == {ids["alice"], ids["bob"], ids["carol"]}
        # a Matrix member adds a Matrix user and an XMPP user (claimed through the bridge)
        await c["carol"].add_members(gid, [ids["dave"], ids["erin"]])
        await net.settle()
        await net.agree(gid, list(c))
        view = await hub.view(gid)
        assert view is not None and (view.epoch, view.signer) == (2, ids["carol"])
        for network in ("xmpp", "matrix"):  # carol's own room, and mirrored
            assert (await net.services[network].fetch_group_info(gid))[0] == view.group_info
        await c["alice"].remove_members(gid, [ids["bob"]])
        await net.settle()
        view = await hub.view(gid)
        assert view is not None and view.epoch == 3 and ids["bob"] not in view.members
        # the claims through the bridge were recorded, each relayed once
        claimed = await hub._query("SELECT requester, network, relayed FROM claims "
                                   "WHERE group_id = ? ORDER BY requester", (gid,))
        assert [tuple(r) for r in claimed] == [(ids["carol"], "xmpp", 1),
                                               (ids["alice"], "matrix", 1)]
        assert net.bridge is not None and net.bridge.stats["dropped"] == {}
        assert all(net.transport(n).drops.total == 0 for n in c)
    assert [r.getMessage() for r in caplog.records if r.name == "mls_bridge.defence"] == []


@async_test
async def test_an_external_commit_recovery_continues_the_view(tmp_path: Path) -> None:
    """A member that lost its state rejoins by external Commit (RFC 9420 §12.4.3.2)
    through the bridge; its new leaf signs the next view (it held its stale leaf in the
    previous one)."""
    async with bridged_net(tmp_path) as net:
        gid = await _setup(net)
        c, hub = net.clients, net.hub
        assert hub is not None
        carol = c["carol"]
        async with carol._ctx.store.transaction() as tx:  # carol loses the group's state
            await tx.delete_group(gid)
        carol._ctx.cache.pop(gid, None)
        assert await carol.recover_group(gid) == 2
        await net.settle()
        view = await hub.view(gid)
        assert view is not None and (view.epoch, view.signer) == (2, identity("matrix",
                                                                              "carol"))
        await net.agree(gid, list(c))
        await carol.send(gid, b"back")
        await net.settle()
        assert b"back" in net.received("bob", gid)
        assert net.bridge is not None and net.bridge.stats["dropped"] == {}


# ---------------------------------------------------------------------- group_info


@async_test
async def test_a_stranger_cannot_touch_the_view_and_a_kick_is_still_enforced(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The reported attack, embedded: a GroupInfo of epoch 10^9 and a self-signed fake
    from an account in no room change nothing; a room kick still removes its user."""
    caplog.set_level(logging.WARNING)
    async with bridged_net(tmp_path) as net:
        gid = await _setup(net, policy=True)
        hub, bridge = net.hub, net.bridge
        assert hub is not None and bridge is not None
        before = await hub.view(gid)
        mirrored = await _matrix_group_info(net, gid)
        eve = await net.account("xmpp", "eve")
        fake, priv = own_group(EVE, gid)
        for info, epoch in ((reepoched(fake.group_info(), priv, 10**9), 10**9),
                            (reepoched(fake.group_info(), priv, 2), 2)):
            await _send(eve, GroupInfoRelay(group=gid.hex(), epoch=epoch,
                                            group_info=b64(info)))
        await net.until_dropped("not-a-member", 2)
        assert await hub.view(gid) == before
        assert await _matrix_group_info(net, gid) == mirrored
        assert _warnings(caplog, EVE) == [
            f"bridge: dropped group_info from {EVE}: not-a-member (no leaf at epoch 1)"]
        # dave is kicked from the Matrix room: the bridge proposes his removal from
        # its verified view, and a member commits it
        await bridge.ban("matrix", gid, identity("matrix", "dave"))
        events = await net.settle()
        assert any(isinstance(e, RemovedFromGroup) for e in events["dave"])
        members = [m.credential.identity for m in await net.clients["carol"].members(gid)]
        assert identity("matrix", "dave").encode() not in members
        view = await hub.view(gid)
        assert view is not None and identity("matrix", "dave") not in view.members


@async_test
async def test_a_members_group_info_must_continue_the_view(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        gid = await _setup(net)
        hub, c = net.hub, net.clients
        assert hub is not None
        before = await hub.view(gid)
        mirrored = await _matrix_group_info(net, gid)
        alice = net.transport("alice").inner
        priv, _ = await c["alice"]._ctx.signature_key(1)
        own = (await c["alice"].group(gid)).group_info()
        bobs = (await c["bob"].group(gid)).group_info()
        other, _ = own_group(identity("xmpp", "alice"))
        cases = {
            "group-info-future": (reepoched(own, priv, 10**9), 10**9),
            "group-info-stale": (reepoched(own, priv, 0), 0),
            "group-info-wrong-signer": (bobs, 1),
            "group-info-epoch-mismatch": (own, 7),
            "group-info-invalid": (b"\x00\x01\x00\x04garbage", 1),
            "group-info-wrong-group": (other.group_info(), 0),
        }
        for reason, (info, epoch) in cases.items():
            await _send(alice, GroupInfoRelay(group=gid.hex(), epoch=epoch,
                                              group_info=b64(info)))
            await net.until_dropped(reason)
        assert await hub.view(gid) == before
        assert await _matrix_group_info(net, gid) == mirrored
        # a repeat of the view's own GroupInfo is no refusal
        await _send(alice, GroupInfoRelay(group=gid.hex(), epoch=1, group_info=b64(own)))
        await net.settle()
        assert net.bridge is not None and sum(net.bridge.stats["dropped"].values()) == 6


# ---------------------------------------------------------------------- bridge


@async_test
async def test_only_the_creator_opens_rooms(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        gid = await _setup(net)
        hub = net.hub
        assert hub is not None
        eve = await net.account("xmpp", "eve")
        random_gid = secrets.token_bytes(16)
        fake, _ = own_group(EVE, gid)
        alices = (await net.clients["alice"].group(gid)).group_info()
        cases = [
            (random_gid, b"\x00\x01\x00\x04garbage", "group-info-invalid"),
            (random_gid, fake.group_info(), "group-info-wrong-group"),
            (random_gid, alices, "group-info-wrong-group"),
            (gid, alices, "not-a-member"),  # replaying a member's GroupInfo
            (gid, fake.group_info(), "not-a-member"),  # a real group it is not in
        ]
        for n, (group, info, reason) in enumerate(cases):
            request = BridgeRequest(id=f"eve-bridge-{n}", group=group.hex(),
                                    group_info=b64(info))
            await _send(eve, request)
            failure = await _failure(eve, request.id)
            assert failure.error.startswith(reason), failure
        assert net.dropped("group-info-invalid") == 1 and net.dropped("not-a-member") == 2
        assert await hub.rooms(random_gid) == {} and await hub.view(random_gid) is None
        assert await hub.anchor(gid) == identity("xmpp", "alice")
        # a group bridged by bridge.toml alone (no creator named): nobody may anchor it
        assert net.bridge is not None
        pair = secrets.token_bytes(16)
        await net.bridge.open_group(pair)
        squat, _ = own_group(EVE, pair)
        await _send(eve, BridgeRequest(id="eve-squat-1", group=pair.hex(),
                                       group_info=b64(squat.group_info())))
        assert (await _failure(eve, "eve-squat-1")).error.startswith("not-a-member")
        # with its creator named, the creator's own GroupInfo becomes the first view
        await hub.set_anchor(pair, EVE)
        await _send(eve, BridgeRequest(id="eve-squat-2", group=pair.hex(),
                                       group_info=b64(squat.group_info())))
        await until(lambda: _has_view(net, pair), "the configured creator's view")


async def _has_view(net: BridgedNet, gid: bytes) -> bool:
    assert net.hub is not None
    return await net.hub.view(gid) is not None


@async_test
async def test_a_stranger_bridging_through_its_client_is_refused(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        gid = await _setup(net)
        await net.add("xmpp", "eve")
        fake, _ = own_group(EVE, gid)
        with pytest.raises(TransportError, match=r"refused.*not-a-member"):
            await net.transport("eve").group_created(gid, fake.group_info())


@async_test
async def test_a_group_info_over_the_bridges_limits_is_refused(tmp_path: Path) -> None:
    """Issue 16: the hub's limits (bridge.toml ``[limits]``) bound the GroupInfo of a
    ``bridge`` request before it is decoded (RFC 9420 §12.4.3.2)."""
    alice = identity("xmpp", "alice")
    group, _ = own_group(alice)
    info = group.group_info()
    small = InputLimits(max_tree_bytes=64, max_message_bytes=len(info) - 1)
    async with bridged_net(tmp_path, limits=small) as net:
        assert net.hub is not None and net.hub.limits == small
        await net.add("xmpp", "alice")
        with pytest.raises(TransportError, match=r"refused.*group-info-invalid.*LimitError"):
            await net.transport("alice").group_created(group.group_id, info)
        assert await net.hub.view(group.group_id) is None


# ---------------------------------------------------------------------- claim


@async_test
async def test_claims_only_by_members_for_their_group_rate_limited(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        gid = await _setup(net)
        await net.add("matrix", "frank")
        hub = net.hub
        assert hub is not None and net.bridge is not None
        frank = identity("matrix", "frank")
        count = await net.services["matrix"].key_package_count("@frank:m.test/DEV")
        eve = await net.account("xmpp", "eve")
        await _send(eve, ClaimRequest(id="eve-claim-1", group=gid.hex(), user=frank))
        assert (await _failure(eve, "eve-claim-1")).error.startswith("not-a-member")
        assert await net.services["matrix"].key_package_count("@frank:m.test/DEV") == count
        alice = net.transport("alice")
        with pytest.raises(TransportError, match="claim-own-network"):
            await alice._claim(identity("xmpp", "bob"), None, gid)
        with pytest.raises(TransportError, match="not-a-member"):  # another group
            await alice.claim_user_key_packages(frank, group_id=secrets.token_bytes(16))
        net.bridge.desk.claims = RateLimiter(0, 1)
        [claimed] = await alice.claim_user_key_packages(frank, group_id=gid)
        with pytest.raises(TransportError, match="rate-limited"):
            await alice.claim_user_key_packages(frank, group_id=gid)
        rows = await hub._query("SELECT client, requester, relayed FROM claims WHERE "
                                "group_id = ? AND ref = ?", (gid, claimed.ref))
        assert [tuple(r) for r in rows] == [("@frank:m.test/DEV", identity("xmpp", "alice"),
                                             0)]
        assert net.dropped("rate-limited") == 1 and net.dropped("claim-own-network") == 1


# ---------------------------------------------------------------------- welcome


async def _welcome_items(account: RelayTransport) -> int:
    return sum(i.kind is MessageKind.WELCOME for i in await account.fetch(account.client_id))


@async_test
async def test_a_welcome_relay_needs_claimed_refs_and_a_sequenced_commit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with bridged_net(tmp_path) as net:
        gid = await _setup(net)
        await net.add("matrix", "evem")  # eve's Matrix account
        hub, c = net.hub, net.clients
        assert hub is not None
        evem = net.transport("evem").inner
        welcomes = await _welcome_items(evem)

        async def welcome_for(group_info_group: object, *, via_bridge: bool) -> bytes:
            if via_bridge:
                [claimed] = await net.transport("alice").claim_user_key_packages(
                    identity("matrix", "evem"), group_id=gid)
            else:
                [claimed] = await net.services["matrix"].claim_user_key_packages(
                    identity("matrix", "evem"))
            kp = MLSMessage.decode(claimed.key_package).key_package
            assert kp is not None
            group = group_info_group
            result = group.commit([Add(kp)], now=_now())  # type: ignore[attr-defined]
            assert result.welcome is not None
            return bytes(result.welcome)

        # (b) a stranger relays a Welcome into its own copy of the group, naming its
        # own Matrix account
        eve = await net.account("xmpp", "eve")
        fake, _ = own_group(EVE, gid)
        await _send(eve, WelcomeRelay(group=gid.hex(), after=0, welcome=b64(
            await welcome_for(fake, via_bridge=False))))
        await net.until_dropped("not-a-member")
        # a member, with a KeyPackage it did not claim through the bridge
        alice = net.transport("alice").inner
        unclaimed = await welcome_for(await c["alice"].group(gid), via_bridge=False)
        await _send(alice, WelcomeRelay(group=gid.hex(), after=0, welcome=b64(unclaimed)))
        await net.until_dropped("welcome-unclaimed-ref")
        # claimed through the bridge, but its Commit was never sequenced: ``after`` is
        # an application message's hub item, or nothing at all
        claimed = await welcome_for(await c["alice"].group(gid), via_bridge=True)
        await c["alice"].send(gid, b"not a commit")
        await net.settle()
        [[seq]] = await hub._query("SELECT max(seq) FROM sequenced WHERE group_id = ?",
                                   (gid,))
        position = await hub.position(gid, seq, "xmpp")
        assert position is not None
        for after in (position, 10**6):
            await _send(alice, WelcomeRelay(group=gid.hex(), after=after,
                                            welcome=b64(claimed)))
        await net.until_dropped("welcome-unsequenced-commit", 2)
        # another member relays what alice claimed
        bob = net.transport("bob").inner
        await _send(bob, WelcomeRelay(group=gid.hex(), after=position, welcome=b64(claimed)))
        await net.until_dropped("welcome-unclaimed-ref", 2)
        await net.settle()
        assert await _welcome_items(evem) == welcomes  # no Welcome, no invitation
        assert gid not in [g.group_id for g in await c["evem"].groups()]
        lines = _warnings(caplog, "welcome")
        assert any(f"from {EVE}: not-a-member" in line for line in lines), lines
        assert any("welcome-unsequenced-commit" in line for line in lines), lines


@async_test
async def test_a_welcome_is_relayed_once_to_exactly_the_claimed_clients(
        tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        await net.add("xmpp", "alice")
        await net.add("matrix", "carol", "dave")
        sent: list[bytes] = []
        alice = net.transport("alice").inner
        real = alice.send_control

        async def record(user_id: str, body: bytes) -> None:
            sent.append(body)
            await real(user_id, body)
        alice.send_control = record  # type: ignore[method-assign]
        gid = await net.group("alice", ["carol"])
        carol = net.transport("carol").inner
        dave = net.transport("dave").inner
        assert await _welcome_items(carol) == 1 and await _welcome_items(dave) == 0
        [relay] = [b for b in sent if b'"op":"welcome"' in b]
        await alice.send_control(BRIDGE_X, relay)  # the same relay again
        await net.until_dropped("welcome-replayed-ref")
        await net.settle()
        assert await _welcome_items(carol) == 1 and await _welcome_items(dave) == 0
        await net.agree(gid, ["alice", "carol"])


# ---------------------------------------------------------------------- the rest


@async_test
async def test_malformed_unexpected_and_flooding_control_messages(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with bridged_net(tmp_path) as net:
        assert net.bridge is not None
        eve = await net.account("xmpp", "eve")
        await _send(eve, b"{not json")
        await _send(eve, b'{"v": 1, "op": "claim", "id": "abcdefgh", "user": "matrix:@c:m"}')
        await _send(eve, ClaimAnswer(id="abcdefgh", packages=[]))
        for reason in ("malformed", "unsupported-version", "unexpected-op"):
            await net.until_dropped(reason)
        net.bridge.desk.signers = RateLimiter(0, 2)
        for n in range(3):
            await _send(eve, SignerRequest(id=f"eve-signer-{n}", suite=1))
        assert (await _failure(eve, "eve-signer-2")).error.startswith("rate-limited")
        # over its overall rate: refused without an answer
        net.bridge.desk.control = RateLimiter(0, 1)
        await _send(eve, SignerRequest(id="eve-signer-3", suite=1))
        await _send(eve, SignerRequest(id="eve-signer-4", suite=1))
        await net.until_dropped("rate-limited", 3)
        assert (await _failure(eve, "eve-signer-3")).error.startswith("rate-limited")
        assert not [a for a in await answers(eve, BRIDGE_X)
                    if getattr(a, "id", None) == "eve-signer-4"]
        assert net.bridge.stats["rejected"] == 6
        lines = _warnings(caplog, EVE)
        assert any("unsupported-version" in line for line in lines), lines
        # one WARNING line per (sender, reason) and minute
        assert len([line for line in lines if "rate-limited" in line]) == 1, lines


@async_test
async def test_the_remaining_refusals(tmp_path: Path) -> None:
    async with bridged_net(tmp_path) as net:
        gid = await _setup(net)
        bridge = net.bridge
        assert bridge is not None
        # a control item the network does not vouch for, or from another network
        for sender in (None, identity("matrix", "carol")):
            await bridge.handle("xmpp", IncomingMessage(
                MessageKind.CONTROL, encode_control(SignerRequest(id="abcdefgh", suite=1)),
                "0", sender_identity=sender))
        assert net.dropped("unauthenticated") == 2
        alice = net.transport("alice").inner
        await _send(alice, ClaimRequest(id="alice-claim-1", group=gid.hex(),
                                        user=identity("matrix", "dave"),
                                        client="@carol:m.test/DEV"))
        assert (await _failure(alice, "alice-claim-1")).error.startswith("malformed")
        await _send(alice, ClaimRequest(id="alice-claim-2", group=gid.hex(), user="irc:dave"))
        assert (await _failure(alice, "alice-claim-2")).error.startswith(
            "claim-unknown-network")
        await _send(alice, WelcomeRelay(group=gid.hex(), after=0, welcome=b64(b"\x00\x01")))
        await net.until_dropped("welcome-malformed")
        await _send(alice, WelcomeRelay(group=gid.hex(), after=0, welcome="not base64!"))
        await net.until_dropped("malformed", 2)
        bridge.desk.bridges = RateLimiter(0, 1)
        own = (await net.clients["alice"].group(gid)).group_info()
        for n in range(2):
            await _send(alice, BridgeRequest(id=f"alice-bridge-{n}", group=gid.hex(),
                                             group_info=b64(own)))
        assert (await _failure(alice, "alice-bridge-1")).error.startswith("rate-limited")
        assert [type(a) for a in await answers(alice, BRIDGE_X)
                if getattr(a, "id", None) == "alice-bridge-0"] == [BridgedAnswer]
        assert bridge.stats["dropped"] == {
            "unauthenticated": 2, "malformed": 2, "claim-unknown-network": 1,
            "welcome-malformed": 1, "rate-limited": 1}
