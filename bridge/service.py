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
  of a new group, each authenticated by the network and authorized against its verified
  view of the group (bridge/control.py, bridge/views.py); a refused one is a WARNING
  and a count in :attr:`Bridge.stats`.

It is not a group member and holds no group secret: it sees MLSMessages, KeyPackages,
Welcomes and GroupInfo, all public or encrypted to members. A restart resumes from the
hub's cursors and outbox: an offer read twice is recognised by its hash, a hub item
published twice is dropped by clients (they keep the hash of what they processed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any, TypedDict

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
    FatalTransportError,
    IncomingMessage,
    InvalidRequestError,
    MessageKind,
    RelayTransport,
    StorageError,
    TransportError,
)
from transports.bridged import Signer, SignerRequest, b64, network_of
from transports.defence import Drops

from .bans import room_bans
from .control import ControlDesk
from .hub import OrderingHub, Verdict, View
from .views import Refused

log = logging.getLogger("mls_bridge.bridge")

#: the hub's cursor key for an account's whole stream (all its rooms)
STREAM = "*"
#: the hub's cursor key for the room bans a network reported (bridge/bans.py)
BANS = "bans"
#: seconds before reading or publishing again after a network failure
RETRY_DELAY = 1.0


class BridgeStats(TypedDict):
    """What :attr:`Bridge.stats` reports."""

    #: offers the hub sequenced (or recognised as repeats)
    offers: int
    #: hub items published into rooms
    relayed: int
    #: items not acted on: refused (see ``dropped``), rejected by the hub, or failed
    rejected: int
    #: well-formed control requests received
    requests: int
    #: refused items per reason slug (``not-a-member``, ``welcome-unclaimed-ref``...)
    dropped: dict[str, int]


class Bridge:
    """The relay and ordering hub of bridged groups (see the module docstring).
    ``networks`` maps each network's name to the bridge's account on it."""

    def __init__(self, hub: OrderingHub, networks: Mapping[str, RelayTransport]) -> None:
        if set(networks) != set(hub.networks):
            raise InvalidRequestError("the hub and the bridge must name the same networks")
        self.hub = hub
        self.networks = dict(networks)
        self._wake = {name: asyncio.Event() for name in networks}
        self._counts: Counter[str] = Counter()
        #: every refused item: a WARNING per (sender, reason) and a count per reason
        self.drops = Drops("bridge")
        self.desk = ControlDesk(self)
        #: the tasks of the current :meth:`run` (empty before it, done after it)
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def stats(self) -> BridgeStats:
        c = self._counts
        return BridgeStats(offers=c["offers"], relayed=c["relayed"], rejected=c["rejected"],
                           requests=c["requests"], dropped=self.drops.snapshot())

    def tasks_running(self) -> dict[str, bool]:
        """Whether each reader and publisher task of :meth:`run` is running (an empty
        mapping before the first run)."""
        return {task.get_name(): not task.done() for task in self._tasks
                if task.get_name().startswith(("read-", "publish-"))}

    async def health(self, timeout: float = 2.0) -> tuple[bool, dict[str, object]]:
        """(healthy, details): healthy while every reader and publisher task runs and
        the hub database answers a query within ``timeout`` seconds."""
        tasks = self.tasks_running()
        try:
            async with asyncio.timeout(timeout):
                await self.hub.ping()
            hub = "ok"
        except Exception as exc:  # closed, locked, broken: all mean unusable
            hub = f"unusable: {type(exc).__name__}"
        healthy = bool(tasks) and all(tasks.values()) and hub == "ok"
        return healthy, {"status": "ok" if healthy else "failing", "tasks": tasks,
                         "hub": hub}

    def count(self, what: str) -> None:
        self._counts[what] += 1

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
        self._tasks = list(tasks)
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
        is retried (from the cursor: nothing is skipped), a database failure or a fatal
        transport error (``FatalTransportError``: another session of the account) is not:
        :meth:`run` raises it."""
        transport = self.networks[network]
        while True:
            try:
                after = await self.hub.cursor(network, STREAM)
                async for item in transport.receive(transport.client_id, after):
                    await self.handle(network, item)
                return  # the transport was closed
            except (StorageError, FatalTransportError):
                raise  # e.g. another bridge login took this account's session
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
                await self.desk.handle(network, item)
        except StorageError:
            raise  # the cursor stays: the item is handled again after a restart
        except Refused as exc:
            self.refuse(item, exc)
        except (TransportError, MLSError) as exc:
            self.refuse(item, Refused("malformed" if isinstance(exc, InvalidRequestError)
                                      else "failed", f"{type(exc).__name__}: {exc}"))
        except Exception:  # a bug: one bad item must not stop the bridge for good
            self.count("rejected")
            log.exception("failed on a %s item from %s on %s", item.kind.value,
                          item.sender_identity, network)
        await self.hub.set_cursor(network, STREAM, item.cursor)

    def refuse(self, item: IncomingMessage, refusal: Refused) -> None:
        """Count ``item`` as refused and log it (WARNING, rate-limited per sender)."""
        self.count("rejected")
        self.drops.drop(sender=item.sender_identity, kind=refusal.kind or item.kind.value,
                        reason=refusal.reason, detail=refusal.detail)

    # ------------------------------------------------------------------ ordering

    async def _offer(self, network: str, item: IncomingMessage) -> None:
        if item.sender_identity == self.identity(network) or item.group_id is None:
            return  # our own hub items coming back
        if item.relay_seq is not None or item.relayed_for is not None:
            raise Refused("relay-not-from-bridge", "relay fields from another account")
        if not await self.hub.rooms(item.group_id):
            return  # a room we are in whose group is not bridged (yet)
        if item.sender_identity is None or network_of(item.sender_identity) != network:
            raise Refused("unauthenticated", "the network did not vouch for the sender")
        decision = await self.hub.offer(item.payload, origin=network,
                                        sender=item.sender_identity)
        self.count("offers")
        if decision.verdict is Verdict.ACCEPTED:
            for name in self.networks:
                self._wake[name].set()
        elif decision.verdict is not Verdict.DUPLICATE:
            self.count("rejected")
            log.info("hub rejected an offer on %s: %s", network, decision.verdict.value)

    async def _publish_loop(self, network: str) -> None:
        while True:
            try:
                await self.publish(network)
            except (StorageError, FatalTransportError):
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
            self.count("relayed")

    # ------------------------------------------------------------------ requests
    # (authorized in bridge/control.py)

    async def open_group(self, group_id: bytes) -> dict[str, str]:
        """Bridge ``group_id``: join its room on every network (opening the rooms that
        do not exist yet) and remember them; idempotent. Returns the rooms."""
        for network, transport in self.networks.items():
            await transport.subscribe(transport.client_id, group_id)
            await self.hub.bind(group_id, network, _room_name(transport, group_id))
        return await self.hub.rooms(group_id)

    async def view_changed(self, view: View, origin: str) -> None:
        """``view`` is the group's new verified view (it came from ``origin``): mirror its
        GroupInfo into the group's rooms on the other networks, then enforce room bans
        against it."""
        for network, transport in self.networks.items():
            if network == origin:
                continue
            try:
                await transport.publish_group_info(view.group_id, view.epoch,
                                                   view.group_info, view.ratchet_tree)
            except TransportError as exc:  # the next view is mirrored again
                log.warning("could not mirror the GroupInfo of group %s to %s: %s",
                            view.group_id.hex(), network, exc)
        await self.remove_banned(view.group_id)

    # ------------------------------------------------------------------ room bans

    async def signer_answer(self, body: SignerRequest) -> Signer:
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
        """Propose Remove for each due ban's leaves at the epoch of the group's verified
        view (once per epoch); forget bans whose user is no longer in its tree. Only the
        view counts (bridge/views.py): nothing a stranger sends can change it."""
        bans = await self.hub.bans(group_id)
        view = await self.hub.view(group_id) if bans else None
        if view is None:
            if bans:
                log.warning("group %s has no verified view yet: its room bans wait",
                            group_id.hex())
            return
        try:
            info, tree = verified_group_info(view.group_info, view.ratchet_tree,
                                             GroupConfig(limits=self.hub.limits), None)
        except MLSError as exc:  # it verified when stored: only a bug gets here
            log.error("the view of group %s no longer verifies: %s", group_id.hex(), exc)
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
