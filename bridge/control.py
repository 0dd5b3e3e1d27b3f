"""Control requests to the bridge, authenticated and authorized (docs/bridge.md, "Who may
ask").

The network authenticates the account that sent each control message (an XMPP direct
message's bare JID, a Matrix to-device sender). :class:`ControlDesk` then authorizes it
against the bridge's verified view of the group (:mod:`bridge.views`):

* ``bridge``: the requester's own GroupInfo becomes the first view (it must anchor the
  group); a member of the view may ask again;
* ``claim``: members of the view only, rate-limited per requester; each KeyPackage
  claimed is recorded (group, KeyPackageRef, client, requester);
* ``welcome``: members only; every ``new_member`` ref of the Welcome (RFC 9420
  §12.4.3.1) must be one the bridge claimed for this group at this requester's request
  and not yet relayed (last-resort ones may be), and ``after`` must be the hub item of
  a sequenced Commit; it goes to exactly the claimed clients;
* ``group_info``: members only; it must continue the view (:func:`bridge.views.next_view`)
  and only then is it mirrored to the other networks;
* ``signer``: anyone (the key is public), rate-limited.

Every refusal is a WARNING and a count through the bridge's ``Drops("bridge")``
(reason slugs), and a request that expects an answer gets a ``Failure`` naming the
reason, unless the requester is over its overall rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from mls_core.ciphersuite import get_suite
from mls_core.errors import MLSError
from mls_core.framing import MLSMessage
from mls_core.messages import Welcome
from transports.base import (
    ClaimedKeyPackage,
    IncomingMessage,
    InvalidRequestError,
    TransportError,
)
from transports.bridged import Bridged as BridgedAnswer
from transports.bridged import (
    BridgeRequest,
    ClaimAnswer,
    ClaimedPackage,
    ClaimRequest,
    ControlBody,
    Failure,
    GroupInfoRelay,
    Signer,
    SignerRequest,
    UnsupportedControlVersion,
    WelcomeRelay,
    b64,
    decode_control,
    encode_control,
    group_hex,
    network_of,
    unb64,
)
from transports.defence import RateLimiter
from transports.group_info import CheckedGroupInfo

from .hub import Claim, View
from .views import Refused, checked, first_view, member, next_view

if TYPE_CHECKING:
    from .service import Bridge

log = logging.getLogger("mls_bridge.bridge")

#: control messages per second (and burst) each account may send, of any kind
CONTROL_RATE, CONTROL_BURST = 20.0, 200.0
#: KeyPackage claims per second (and burst) each member may make through the bridge
CLAIM_RATE, CLAIM_BURST = 2.0, 64.0
#: signer requests per second (and burst) per account: the key is public
SIGNER_RATE, SIGNER_BURST = 0.5, 10.0
#: ``bridge`` requests (each may open rooms on every network) per second and burst
BRIDGE_RATE, BRIDGE_BURST = 1 / 60, 10.0
#: how long a Welcome relay may wait for the bridge to note where a room carries the
#: hub item of its Commit (a member may see the item before the publisher noted it)
POSITION_WAIT = 10.0
#: seconds between looks while waiting
_POLL = 0.05

#: what a request that has an answer gets
Answer = ClaimAnswer | BridgedAnswer | Signer | Failure


class ControlDesk:
    """Authorizes and carries out the control requests that reach ``bridge``."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.hub = bridge.hub
        self.control = RateLimiter(CONTROL_RATE, CONTROL_BURST)
        self.claims = RateLimiter(CLAIM_RATE, CLAIM_BURST)
        self.signers = RateLimiter(SIGNER_RATE, SIGNER_BURST)
        self.bridges = RateLimiter(BRIDGE_RATE, BRIDGE_BURST)
        #: one view change at a time (each network's reader runs concurrently)
        self.view_lock = asyncio.Lock()

    # ------------------------------------------------------------------ dispatch

    async def handle(self, network: str, item: IncomingMessage) -> None:
        """One CONTROL item of ``network``'s account stream; raises :class:`Refused`."""
        requester = item.sender_identity
        if requester is None or network_of(requester) != network:
            raise Refused("unauthenticated", "the network did not vouch for the sender")
        if requester == self.bridge.identity(network):
            return  # our own answers, should a network show them to us
        if not self.control.allow(requester):
            raise Refused("rate-limited", "too many control messages")
        try:
            body = decode_control(item.payload)
        except UnsupportedControlVersion as exc:
            raise Refused("unsupported-version", str(exc)) from None
        except TransportError as exc:
            raise Refused("malformed", str(exc)) from None
        self.bridge.count("requests")
        try:
            await self._dispatch(network, requester, body)
        except InvalidRequestError as exc:
            refusal = exc if isinstance(exc, Refused) else Refused("malformed", str(exc))
            refusal.kind = body.op
            raise refusal from None

    async def _dispatch(self, network: str, requester: str, body: ControlBody) -> None:
        if isinstance(body, WelcomeRelay):
            await self.welcome(network, requester, body)
        elif isinstance(body, GroupInfoRelay):
            await self.group_info(network, requester, body)
        elif isinstance(body, ClaimRequest | BridgeRequest | SignerRequest):
            await self._answer(network, requester, body)
        else:
            raise Refused("unexpected-op", f"{body.op!r} is not a request")

    async def _answer(self, network: str, requester: str,
                      body: ClaimRequest | BridgeRequest | SignerRequest) -> None:
        """Carry out a request that has an answer; a refusal is answered with a
        Failure naming the reason, then raised."""
        refusal: Refused | None = None
        try:
            answer = await self._carry_out(network, requester, body)
        except InvalidRequestError as exc:  # Refused, or a malformed field
            refusal = exc if isinstance(exc, Refused) else Refused("malformed", str(exc))
            answer = Failure(id=body.id, error=str(refusal)[:1000])
        except (TransportError, MLSError) as exc:  # allowed, but doing it failed
            log.info("%s request of %s failed: %s", body.op, requester, exc)
            answer = Failure(id=body.id, error=str(exc)[:1000])
        await self.bridge.networks[network].send_control(requester, encode_control(answer))
        if refusal is not None:
            raise refusal

    def _carry_out(self, network: str, requester: str,
                   body: ClaimRequest | BridgeRequest | SignerRequest) -> Awaitable[Answer]:
        if isinstance(body, ClaimRequest):
            return self.claim(network, requester, body)
        if isinstance(body, BridgeRequest):
            return self.open(network, requester, body)
        return self.signer(requester, body)

    # ------------------------------------------------------------------ signer, bridge

    async def signer(self, requester: str, body: SignerRequest) -> Signer:
        """Our ExternalSender (§12.1.8.1) for a suite: public, so anyone may ask."""
        if not self.signers.allow(requester):
            raise Refused("rate-limited", "too many signer requests")
        return await self.bridge.signer_answer(body)

    async def open(self, network: str, requester: str, body: BridgeRequest) -> BridgedAnswer:
        """``bridge``: open the group's rooms. The requester's GroupInfo (§12.4.3) must
        verify with the requester as signer; it becomes the first view, or, when the
        group has one, the requester must hold a leaf in it."""
        group_id = group_hex(body.group)
        if not self.bridges.allow(requester):
            raise Refused("rate-limited", "too many bridge requests")
        async with self.view_lock:
            view = await self.hub.view(group_id)
            if view is not None:
                member(view, requester)  # before any costly check
            info = self._checked(group_id, body, requester)
            if view is None:
                await self._first(network, requester, group_id, info)
            else:
                await self._advance(network, view, info, repeat_ok=True)
                await self.bridge.open_group(group_id)
        log.info("bridged group %s (asked by %s on %s)", body.group, requester, network)
        return BridgedAnswer(id=body.id, group=body.group)

    async def _first(self, network: str, requester: str, group_id: bytes,
                     info: CheckedGroupInfo) -> None:
        """The group's first view: the anchor's GroupInfo (the anchor being the first
        account that asked, or bridge.toml's ``creator``)."""
        anchor = await self.hub.anchor(group_id)
        if anchor is None and await self.hub.rooms(group_id):
            raise Refused("not-a-member", "the group is bridged without a verified view; "
                                          "bridge.toml pairs.creator names who may anchor it")
        view = first_view(group_id, info, requester=requester, anchor=anchor,
                          current=await self.hub.commit_epoch(group_id))
        if anchor is None:  # before opening: a retry after a failed opening is ours
            await self.hub.set_anchor(group_id, requester)
        await self.bridge.open_group(group_id)
        if await self.hub.set_first_view(view, requester):
            await self.bridge.view_changed(view, network)

    async def _advance(self, network: str, view: View, info: CheckedGroupInfo, *,
                       repeat_ok: bool = False) -> None:
        """Make ``info`` the view if it continues ``view``; then mirror it. With
        ``repeat_ok`` an older GroupInfo (a retried ``bridge``) is no refusal."""
        bound = await self.hub.commit_epoch(view.group_id, view.epoch)
        assert bound is not None  # given ``since``
        try:
            new = next_view(view, info, bound=bound)
        except Refused as exc:
            if repeat_ok and exc.reason == "group-info-stale":
                return
            raise
        if new is not None and await self.hub.set_view(new):
            log.info("group %s: view at epoch %d (signed by %s)", view.group_id.hex(),
                     new.epoch, new.signer)
            await self.bridge.view_changed(new, network)

    # ------------------------------------------------------------------ group_info

    def _checked(self, group_id: bytes, body: BridgeRequest | GroupInfoRelay,
                 requester: str) -> CheckedGroupInfo:
        """The GroupInfo (and tree) of ``body`` checked as a joiner would (RFC 9420
        §12.4.3.1) within the hub's bounds, signed by ``requester``
        (:func:`~bridge.views.checked`)."""
        return checked(group_id, unb64(body.group_info, "group_info"),
                       None if body.tree is None else unb64(body.tree, "tree"),
                       requester, limits=self.hub.limits)

    async def group_info(self, network: str, requester: str, body: GroupInfoRelay) -> None:
        """A member's new GroupInfo: it becomes the view if it continues it
        (:func:`~bridge.views.next_view`), and only then goes to the other rooms."""
        group_id = group_hex(body.group)
        async with self.view_lock:
            view = member(await self.hub.view(group_id), requester)
            info = self._checked(group_id, body, requester)
            if info.epoch != body.epoch:
                raise Refused("group-info-epoch-mismatch",
                              f"the body says {body.epoch}, the GroupInfo {info.epoch}")
            await self._advance(network, view, info)

    # ------------------------------------------------------------------ claim

    async def claim(self, network: str, requester: str, body: ClaimRequest) -> ClaimAnswer:
        """A member claims a user's KeyPackages on another network for its group; each
        one claimed is recorded for the Welcome relay that may follow."""
        group_id = group_hex(body.group)
        member(await self.hub.view(group_id), requester)
        if not self.claims.allow(requester):
            raise Refused("rate-limited", "too many claims")
        target = network_of(body.user)
        if target is None or target not in self.bridge.networks:
            raise Refused("claim-unknown-network", f"{body.user!r} is on no bridged network")
        if target == network:
            raise Refused("claim-own-network", "claim it on your own network")
        if body.client is not None and f"{target}:{body.client.split('/', 1)[0]}" != body.user:
            raise Refused("malformed", "the client is not a device of the user")
        transport = self.bridge.networks[target]
        claimed = ([await transport.claim_key_package(body.client, group_id=group_id)]
                   if body.client is not None else
                   await transport.claim_user_key_packages(body.user, group_id=group_id))
        records = [r for r in (_record(target, c) for c in claimed) if r is not None]
        await self.hub.record_claims(group_id, requester, records)
        log.info("%s claimed %d KeyPackage(s) of %s for group %s", requester, len(records),
                 body.user, body.group)
        return ClaimAnswer(id=body.id, packages=[
            ClaimedPackage(client=c.client_id, ref=b64(c.ref), key_package=b64(c.key_package),
                           last_resort=c.last_resort) for c in claimed])

    # ------------------------------------------------------------------ welcome

    async def welcome(self, network: str, requester: str, body: WelcomeRelay) -> None:
        """Deliver a Welcome to exactly the clients whose KeyPackages it names, all of
        them claimed here for this group by this member, after its sequenced Commit."""
        group_id = group_hex(body.group)
        member(await self.hub.view(group_id), requester)
        data = unb64(body.welcome, "welcome")
        refs = _new_members(data)
        claims = await self.hub.claims(group_id, refs)
        for ref in refs:
            claim = claims.get(ref)
            if claim is None or claim.requester != requester:
                raise Refused("welcome-unclaimed-ref", f"KeyPackageRef {ref.hex()[:16]}… was "
                                                       "not claimed here by the sender")
            if claim.relayed and not claim.last_resort:
                raise Refused("welcome-replayed-ref",
                              f"KeyPackageRef {ref.hex()[:16]}… was welcomed before")
        seq = await self._settled(partial(self.hub.commit_at, group_id, network, body.after),
                                  group_id, network)
        if seq is None:
            raise Refused("welcome-unsequenced-commit",
                          f"position {body.after} of {network} is no Commit the hub sequenced")
        targets: dict[str, list[str]] = {}
        for ref in refs:
            targets.setdefault(claims[ref].network, []).append(claims[ref].client)
        for target, clients in targets.items():
            after = await self._settled(partial(self.hub.position, group_id, seq, target),
                                        group_id, target)
            await self.bridge.networks[target].send_welcome(
                list(dict.fromkeys(clients)), data, group_id, after)
        await self.hub.mark_relayed(group_id, refs)
        log.info("relayed a Welcome of %s to %d client(s) of group %s", requester, len(refs),
                 body.group)

    async def _settled(self, look: Callable[[], Awaitable[int | None]], group_id: bytes,
                       network: str) -> int | None:
        """``look()`` once it finds something, or once nothing of the group waits for
        ``network``'s room any more (the answer can no longer change), or after
        :data:`POSITION_WAIT`."""
        deadline = time.monotonic() + POSITION_WAIT
        while True:
            idle = await self.hub.unpublished(group_id, network) == 0  # first: see above
            found = await look()
            if found is not None or idle or time.monotonic() > deadline:
                return found
            await asyncio.sleep(_POLL)


def _new_members(welcome: bytes) -> list[bytes]:
    """The distinct ``EncryptedGroupSecrets.new_member`` refs of an MLSMessage(Welcome)
    (RFC 9420 §12.4.3.1)."""
    try:
        message = MLSMessage.decode(welcome).welcome
        if not isinstance(message, Welcome):
            raise Refused("welcome-malformed", "not an MLSMessage(Welcome)")
        refs = list(dict.fromkeys(bytes(s.new_member) for s in message.secrets))
    except MLSError as exc:
        raise Refused("welcome-malformed", str(exc)) from None
    if not refs:
        raise Refused("welcome-malformed", "it welcomes nobody")
    return refs


def _record(network: str, claimed: ClaimedKeyPackage) -> Claim | None:
    """What to remember of a claimed KeyPackage: its ref as we compute it (§5.2), not
    the label the network gave it; None if it is no KeyPackage (the member rejects it)."""
    try:
        kp = MLSMessage.decode(claimed.key_package).key_package
        if kp is None:
            return None
        ref = get_suite(kp.cipher_suite).make_key_package_ref(kp.encode())
    except MLSError:
        return None
    return Claim(ref, network, claimed.client_id, last_resort=claimed.last_resort)


__all__: Sequence[str] = ("ControlDesk",)
