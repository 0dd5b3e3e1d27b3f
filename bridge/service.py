"""The bridge service: one MLS group over rooms of several networks (docs/bridge.md).

:class:`Bridge` holds one logged-in account per network (a
:class:`~transports.base.RelayTransport`: XMPP, Matrix, or the embedded service's
:class:`~transports.local.LocalAccount` in the demo) and the durable
:class:`~bridge.hub.OrderingHub`. For every bridged group it

* reads each room (the account's stream, from a durable cursor) and offers every
  member's MLSMessage to the hub, which gives it the group's next sequence number;
* republishes each sequenced message, in order, into the group's room on every network
  as a hub item (seq, origin identity), which is all members apply;
* answers members' CONTROL requests: KeyPackage claims on another network, Welcomes
  for devices of another network, GroupInfo for the other rooms, and opening the rooms
  of a new group.

It is not a group member and holds no group secret: it sees MLSMessages, KeyPackages,
Welcomes and GroupInfo, all public or encrypted to members. A restart resumes from the
hub's cursors and outbox: an offer read twice is recognised by its hash, a hub item
published twice is dropped by clients (they keep the hash of what they processed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from mls_core.ciphersuite import get_suite
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.errors import MLSError
from mls_core.external import external_proposal
from mls_core.join_flow import verified_group_info
from mls_core.messages import ExternalSender, external_senders
from mls_core.proposals import Proposal, Remove
from mls_core.room_policy import removal_label
from transports.base import (
    IncomingMessage,
    InvalidRequestError,
    MessageKind,
    RelayTransport,
    StorageError,
    TransportError,
)
from transports.bridged import Bridged as BridgedAnswer
from transports.bridged import (
    BridgeRequest,
    ClaimAnswer,
    ClaimedPackage,
    ClaimRequest,
    Failure,
    GroupInfoRelay,
    Signer,
    SignerRequest,
    WelcomeRelay,
    b64,
    decode_control,
    encode_control,
    group_hex,
    network_of,
    unb64,
)

from .bans import room_bans
from .hub import OrderingHub, Verdict

log = logging.getLogger("mls_bridge.bridge")

#: the hub's cursor key for an account's whole stream (all its rooms)
STREAM = "*"
#: the hub's cursor key for the room bans a network reported (bridge/bans.py)
BANS = "bans"
#: seconds before reading or publishing again after a network failure
RETRY_DELAY = 1.0


class Bridge:
    """The relay and ordering hub of bridged groups (see the module docstring).
    ``networks`` maps each network's name to the bridge's account on it."""

    def __init__(self, hub: OrderingHub, networks: Mapping[str, RelayTransport]) -> None:
        if set(networks) != set(hub.networks):
            raise InvalidRequestError("the hub and the bridge must name the same networks")
        self.hub = hub
        self.networks = dict(networks)
        self._wake = {name: asyncio.Event() for name in networks}
        self.stats = {"offers": 0, "relayed": 0, "rejected": 0, "requests": 0}

    def identity(self, network: str) -> str:
        return self.networks[network].user_id

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until ``stop`` is set (or forever)."""
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._read(name), name=f"read-{name}") for name in self.networks]
        tasks += [asyncio.create_task(self._publish_loop(name), name=f"publish-{name}")
                  for name in self.networks]
        tasks += [asyncio.create_task(self._watch_bans(name), name=f"bans-{name}")
                  for name in self.networks]
        try:
            if stop is None:
                await asyncio.gather(*tasks)
            else:
                waiter: asyncio.Task[Any] = asyncio.create_task(stop.wait())
                tasks.append(waiter)
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not waiter:
                        task.result()  # a reader, publisher or watcher failed: raise it
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _read(self, network: str) -> None:
        """Read ``network``'s account stream from the hub's cursor; a network failure
        is retried (from the cursor: nothing is skipped), a database failure is not."""
        transport = self.networks[network]
        while True:
            try:
                after = await self.hub.cursor(network, STREAM)
                async for item in transport.receive(transport.client_id, after):
                    await self.handle(network, item)
                return  # the transport was closed
            except StorageError:
                raise
            except TransportError as exc:
                log.warning("reading %s failed (%s); again in %g s", network, exc,
                            RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)

    async def handle(self, network: str, item: IncomingMessage) -> None:
        """One item of ``network``'s account stream; the cursor moves after it."""
        try:
            if item.kind is MessageKind.GROUP:
                await self._offer(network, item)
            elif item.kind is MessageKind.CONTROL:
                await self._control(network, item)
        except StorageError:
            raise  # the cursor stays: the item is handled again after a restart
        except (TransportError, MLSError) as exc:
            self.stats["rejected"] += 1
            log.warning("dropped a %s item from %s on %s: %s", item.kind.value,
                        item.sender_identity, network, exc)
        except Exception:  # a bug: one bad item must not stop the bridge for good
            self.stats["rejected"] += 1
            log.exception("failed on a %s item from %s on %s", item.kind.value,
                          item.sender_identity, network)
        await self.hub.set_cursor(network, STREAM, item.cursor)

    # ------------------------------------------------------------------ ordering

    async def _offer(self, network: str, item: IncomingMessage) -> None:
        if item.sender_identity == self.identity(network) or item.group_id is None:
            return  # our own hub items coming back
        if item.relay_seq is not None:
            raise InvalidRequestError("relay fields from an account that is not the bridge")
        if not await self.hub.rooms(item.group_id):
            return  # a room we are in whose group is not bridged (yet)
        if item.sender_identity is None or network_of(item.sender_identity) != network:
            raise InvalidRequestError("the network did not vouch for the sender")
        decision = await self.hub.offer(item.payload, origin=network,
                                        sender=item.sender_identity)
        self.stats["offers"] += 1
        if decision.verdict is Verdict.ACCEPTED:
            for name in self.networks:
                self._wake[name].set()
        elif decision.verdict is not Verdict.DUPLICATE:
            self.stats["rejected"] += 1
            log.info("hub rejected an offer on %s: %s", network, decision.verdict.value)

    async def _publish_loop(self, network: str) -> None:
        while True:
            try:
                await self.publish(network)
            except StorageError:
                raise
            except TransportError as exc:  # the outbox keeps it: try again later
                log.warning("publishing to %s failed (%s); again in %g s", network, exc,
                            RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake[network].wait()
            self._wake[network].clear()

    async def publish(self, network: str) -> None:
        """Republish, in hub order, everything not yet in ``network``'s rooms."""
        transport = self.networks[network]
        for message in await self.hub.pending(network):
            position = await transport.relay_group(message.group_id, message.payload,
                                                   seq=message.seq,
                                                   sender_identity=message.sender)
            await self.hub.published(network, message.group_id, message.seq, position)
            self.stats["relayed"] += 1

    # ------------------------------------------------------------------ requests

    async def _control(self, network: str, item: IncomingMessage) -> None:
        requester = item.sender_identity
        if requester is None or network_of(requester) != network \
                or requester == self.identity(network):
            raise InvalidRequestError("a control message the network did not vouch for")
        body = decode_control(item.payload)
        self.stats["requests"] += 1
        if isinstance(body, ClaimRequest | BridgeRequest | SignerRequest):
            answer: ClaimAnswer | BridgedAnswer | Signer | Failure
            try:
                answer = await (self._claim(body) if isinstance(body, ClaimRequest)
                                else self._signer(body) if isinstance(body, SignerRequest)
                                else self._bridge(network, body))
            except (TransportError, MLSError) as exc:
                answer = Failure(id=body.id, error=str(exc)[:1000])
            await self.networks[network].send_control(requester, encode_control(answer))
        elif isinstance(body, WelcomeRelay):
            await self._welcome(network, body)
        elif isinstance(body, GroupInfoRelay):
            await self._group_info(network, body)

    def _target(self, identity: str) -> RelayTransport:
        network = network_of(identity)
        if network is None or network not in self.networks:
            raise InvalidRequestError(f"{identity!r} is on no bridged network")
        return self.networks[network]

    async def _claim(self, body: ClaimRequest) -> ClaimAnswer:
        target = self._target(body.user)
        if body.client is not None:
            claimed = [await target.claim_key_package(body.client)]
        else:
            claimed = await target.claim_user_key_packages(body.user)
        return ClaimAnswer(id=body.id, packages=[
            ClaimedPackage(client=c.client_id, ref=b64(c.ref), key_package=b64(c.key_package),
                           last_resort=c.last_resort) for c in claimed])

    async def _bridge(self, origin: str, body: BridgeRequest) -> BridgedAnswer:
        """A member of ``origin`` asks: it let us into the group's room there."""
        await self.open_group(group_hex(body.group))
        log.info("bridging group %s (requested on %s)", body.group, origin)
        return BridgedAnswer(id=body.id, group=body.group)

    async def open_group(self, group_id: bytes) -> dict[str, str]:
        """Bridge ``group_id``: join its room on every network (opening the rooms that
        do not exist yet) and remember them; idempotent. Returns the rooms."""
        for network, transport in self.networks.items():
            await transport.subscribe(transport.client_id, group_id)
            await self.hub.bind(group_id, network, _room_name(transport, group_id))
        return await self.hub.rooms(group_id)

    async def _welcome(self, origin: str, body: WelcomeRelay) -> None:
        group_id = group_hex(body.group)
        if body.network not in self.networks or body.network == origin:
            raise InvalidRequestError(f"no bridged network {body.network!r}")
        if not await self.hub.rooms(group_id):
            raise InvalidRequestError("a Welcome for a group that is not bridged")
        after = None if body.after is None else await self.hub.translate(
            group_id, body.after, origin, body.network)
        await self.networks[body.network].send_welcome(
            body.clients, unb64(body.welcome, "welcome"), group_id, after)

    async def _group_info(self, origin: str, body: GroupInfoRelay) -> None:
        group_id = group_hex(body.group)
        if not await self.hub.rooms(group_id):
            return  # published before the group was bridged; the next one follows
        info = unb64(body.group_info, "group_info")
        tree = None if body.tree is None else unb64(body.tree, "tree")
        for network, transport in self.networks.items():
            if network != origin:
                await transport.publish_group_info(group_id, body.epoch, info, tree)
        if tree is None:
            await self.hub.set_group_info(group_id, body.epoch, info)
            await self.remove_banned(group_id)

    # ------------------------------------------------------------------ room bans

    async def _signer(self, body: SignerRequest) -> Signer:
        """Our ExternalSender for a suite (the key is made once and kept in the hub)."""
        suite = get_suite(body.suite)
        _, pub = await self.hub.signer(body.suite, suite.generate_signature_key_pair)
        sender = ExternalSender(pub, Credential.basic(self.credential_identity.encode()))
        return Signer(id=body.id, external_sender=b64(sender.encode()))

    @property
    def credential_identity(self) -> str:
        """The identity in our ExternalSender credential: our first network's account."""
        return self.identity(next(iter(self.networks)))

    async def ban(self, network: str, group_id: bytes, identity: str) -> None:
        """``identity`` was banned (or kicked) from the group's room on ``network``:
        propose its removal as the group's external sender (RFC 9420 §12.1.8) until a
        GroupInfo shows it gone. A member commits the proposal (any member may, and
        every client checks the room policy's external-sender rights)."""
        if not await self.hub.rooms(group_id) or identity in (
                self.identity(n) for n in self.networks):
            return
        await self.hub.add_ban(group_id, identity, network)
        log.info("%s left the room of group %s on %s: its removal is due", identity,
                 group_id.hex(), network)
        await self.remove_banned(group_id)

    async def _watch_bans(self, network: str) -> None:
        mark = int(await self.hub.cursor(network, BANS) or 0)
        async for position, group_id, identity in room_bans(self.networks[network],
                                                            after=mark):
            try:
                await self.ban(network, group_id, identity)
            except (TransportError, MLSError) as exc:
                log.warning("could not act on a room ban on %s: %s", network, exc)
            if position:
                await self.hub.set_cursor(network, BANS, str(position))

    async def remove_banned(self, group_id: bytes) -> None:
        """Propose Remove for each due ban's leaves in the newest verified GroupInfo's
        epoch (once per epoch); forget bans whose user is no longer in the tree."""
        bans = await self.hub.bans(group_id)
        data = await self.hub.group_info(group_id) if bans else None
        if data is None:
            return
        try:
            info, tree = verified_group_info(data, None, GroupConfig(), None)
        except MLSError as exc:
            log.warning("cannot use the GroupInfo of group %s: %s", group_id.hex(), exc)
            return
        gc = info.group_context
        priv, pub = await self.hub.signer(gc.cipher_suite,
                                          get_suite(gc.cipher_suite).generate_signature_key_pair)
        index = next((i for i, s in enumerate(external_senders(gc.extensions))
                      if s.signature_key == pub), None)
        if index is None:
            log.warning("group %s does not list the bridge as an external sender: room "
                        "bans there are left to its members", group_id.hex())
            return
        for identity, network, proposed in bans:
            leaves = [i for i, leaf in tree.leaves()
                      if leaf.credential.identity == identity.encode()]
            if not leaves:
                await self.hub.ban_done(group_id, identity)
            elif proposed is None or proposed < gc.epoch:
                for leaf in leaves:
                    proposal = external_proposal(gc.cipher_suite, group_id, gc.epoch, index,
                                                 priv, Proposal.of(Remove(leaf)),
                                                 removal_label(identity.encode()))
                    await self.hub.offer(proposal, origin=network,
                                         sender=self.identity(network))
                await self.hub.ban_proposed(group_id, identity, gc.epoch)
                for name in self.networks:
                    self._wake[name].set()


def _room_name(transport: RelayTransport, group_id: bytes) -> str:
    """The group's room on ``transport``'s network, as the network names it."""
    for attribute in ("room_jid", "room_id"):
        method = getattr(transport, attribute, None)
        if method is not None:
            room = method(group_id)
            if room is not None:
                return str(room)
    return group_id.hex()
