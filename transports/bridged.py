"""A member's transport in bridged groups: one MLS group over rooms of several networks
(docs/bridge.md).

The bridge service (``bridge/``) sits in the group's room on every network, reads the
MLSMessages members post there (*offers*), gives each one a place in the group's single
order (its hub, :mod:`bridge.hub`) and republishes it into every room as a *hub item*.
:class:`BridgedTransport` wraps a member's :class:`~transports.base.RelayTransport` so
that the member's client sees exactly the hub order:

* a group message counts only if the network itself says the configured bridge account
  posted it and it carries relay fields; its ``sender_identity`` becomes the identity
  the bridge relays it for, which the client then checks against the MLS credential as
  always (``SenderMismatchError``). Offers are skipped; relay fields posted by anyone
  else are dropped (a WARNING naming the sender, counted in :attr:`BridgedTransport.drops`):
  the order is the hub's, never a room's;
* ``submit`` posts the offer and answers ``ORDERED``: the client processes the hub
  order up to its own message, and the first *valid* Commit of each epoch wins at every
  member on every network (:class:`bridge.hub.Rule`);
* KeyPackage claims, Welcomes and GroupInfo that concern another network go to the
  bridge as CONTROL messages (:class:`ControlBody`, format version 2), and claim answers
  come back the same way; only the bridge's answers to our own pending requests count,
  anything else is dropped like a forged relay. A claim names the group it is for, and a
  new group's ``bridge`` request carries the creator's GroupInfo: the bridge acts only
  for members of its verified view of the group (bridge/views.py). Foreign client ids
  carry their network: ``matrix:@bob:example.org/DEVICE``.

The bridge relays what it cannot read or forge: MLS signatures and trust on first use of
signature keys (mls_client/pinning.py) catch a bridge that swaps a KeyPackage.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mls_core.errors import MLSError
from mls_core.framing import MLSMessage
from mls_core.messages import Welcome

from .base import (
    ClaimedKeyPackage,
    IncomingMessage,
    InvalidRequestError,
    KeyPackageEntry,
    MessageKind,
    NoKeyPackageError,
    RelayTransport,
    SubmitResult,
    SubmitStatus,
    TransportError,
)
from .defence import Drops

#: the version of the control-message format (docs/bridge.md, "Control messages"):
#: 2 added ``claim.group``, ``bridge.group_info``/``tree``, and made a Welcome relay
#: name no clients (the bridge takes them from its own claim record) but require
#: ``after``; a body of another version is refused as a whole
CONTROL_VERSION: Literal[2] = 2
#: largest control body accepted (a Welcome of a very large group, base64 in JSON)
MAX_CONTROL_BYTES = 24 * 1024 * 1024

#: remembered runs of filtered-out items (see BridgedTransport.fetch)
_MAX_SKIPS = 256
#: remembered judged items, taken answers and claimed foreign KeyPackageRefs
_MAX_REMEMBERED = 4096

K = TypeVar("K")
V = TypeVar("V")
log = logging.getLogger("mls_bridge.bridged")

_NETWORK = re.compile(r"^([a-z][a-z0-9-]{0,31}):")


def network_of(identity_or_client: str) -> str | None:
    """The network an identity or a foreign client id names (``xmpp:...`` → ``xmpp``);
    None for a network's own raw client id (``alice@x/dev``, ``@bob:x/DEV``: a JID's
    localpart and a Matrix id cannot start like a scheme)."""
    match = _NETWORK.match(identity_or_client)
    return None if match is None else match.group(1)


def split_client(client_id: str) -> tuple[str | None, str]:
    """``matrix:@bob:x/DEV`` → (``matrix``, ``@bob:x/DEV``); a raw id → (None, id)."""
    network = network_of(client_id)
    return (None, client_id) if network is None else (network, client_id[len(network) + 1:])


# ---------------------------------------------------------------------- control bodies


#: a group id in hex
GroupHex = Annotated[str, Field(min_length=2, max_length=512, pattern=r"^[0-9a-f]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[2] = CONTROL_VERSION


class _Request(_Body):
    op: str
    #: the requester's id for the answer
    id: str = Field(min_length=8, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")


class ClaimRequest(_Request):
    """Claim one KeyPackage per device of ``user`` (or of the device ``client``) on the
    user's network, to add them to ``group`` (hex; the requester must be a member)."""

    op: Literal["claim"] = "claim"
    group: GroupHex
    user: str = Field(min_length=3, max_length=512)
    client: str | None = Field(default=None, max_length=512)


class ClaimedPackage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    client: str = Field(min_length=1, max_length=512)
    ref: str
    key_package: str
    last_resort: bool


class ClaimAnswer(_Body):
    op: Literal["claimed"] = "claimed"
    id: str = Field(max_length=64)
    packages: list[ClaimedPackage] = Field(max_length=1024)


class BridgeRequest(_Request):
    """Bridge the group whose room the requester's network has: join it, open its room
    on every other network, and relay from now on."""

    op: Literal["bridge"] = "bridge"
    group: GroupHex
    #: the requester's GroupInfo (RFC 9420 §12.4.3; base64 MLSMessage), signed by its
    #: own leaf: epoch 0 of a new group, or the group's current epoch
    group_info: str
    tree: str | None = None


class Bridged(_Body):
    op: Literal["bridged"] = "bridged"
    id: str = Field(max_length=64)
    group: str = Field(max_length=512)


class SignerRequest(_Request):
    """The bridge's ``ExternalSender`` (§12.1.8.1) for ``suite``: a group lists it in
    its ``external_senders`` so the bridge can propose removals after room bans."""

    op: Literal["signer"] = "signer"
    suite: int = Field(ge=1, le=0xFFFF)


class Signer(_Body):
    op: Literal["signer_is"] = "signer_is"
    id: str = Field(max_length=64)
    external_sender: str


class Failure(_Body):
    op: Literal["error"] = "error"
    id: str = Field(max_length=64)
    error: str = Field(max_length=1000)


class WelcomeRelay(_Body):
    """Deliver ``welcome`` to the clients whose KeyPackages its
    ``EncryptedGroupSecrets.new_member`` refs name (RFC 9420 §12.4.3.1): each one the
    bridge claimed for this group at the sender's request. ``after``: the position, in
    the sender's room, of the hub item of the Commit that added them."""

    op: Literal["welcome"] = "welcome"
    group: GroupHex
    welcome: str
    after: int = Field(ge=0)


class GroupInfoRelay(_Body):
    """Publish this GroupInfo (and tree) in the group's rooms on the other networks."""

    op: Literal["group_info"] = "group_info"
    group: GroupHex
    epoch: int = Field(ge=0)
    group_info: str
    tree: str | None = None


ControlBody = Annotated[ClaimRequest | ClaimAnswer | BridgeRequest | Bridged | Failure
                        | WelcomeRelay | GroupInfoRelay | SignerRequest | Signer,
                        Field(discriminator="op")]
_CONTROL: TypeAdapter[ControlBody] = TypeAdapter(ControlBody)


def encode_control(body: BaseModel) -> bytes:
    return body.model_dump_json().encode()


class UnsupportedControlVersion(InvalidRequestError):
    """A control body of another format version than :data:`CONTROL_VERSION`."""


def decode_control(data: bytes) -> ControlBody:
    """Parse a control body; a malformed one raises InvalidRequestError
    (:class:`UnsupportedControlVersion` for another version)."""
    if len(data) > MAX_CONTROL_BYTES:
        raise InvalidRequestError("control message too large")
    try:
        return _CONTROL.validate_json(data)
    except ValidationError as exc:
        version = _version(data)
        if version is not None and version != CONTROL_VERSION:
            raise UnsupportedControlVersion(f"control format version {version!r}, this "
                                            f"side speaks {CONTROL_VERSION}") from None
        raise InvalidRequestError(f"malformed control message: {exc.errors()[0]['msg']}"
                                  ) from None


def _version(data: bytes) -> object:
    """The ``v`` of a control body that failed validation (None if it has none)."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    return body.get("v") if isinstance(body, dict) else None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{what} is not valid base64") from None


def group_hex(group: str) -> bytes:
    try:
        return bytes.fromhex(group)
    except ValueError:
        raise InvalidRequestError("group is not hex") from None


# ---------------------------------------------------------------------- the wrapper


class BridgedTransport:
    """A :class:`~transports.base.DeliveryTransport` for members of bridged groups (see
    the module docstring). ``inner`` is the member's network transport; ``bridge`` is
    the bridge account's identity on that network (e.g. ``xmpp:bridge@example.org``).
    Every group of this client is bridged. Other attributes (``user_id``,
    ``client_id``, ``atomic_claims``...) are the inner transport's."""

    #: the client waits this long for its Commit to come back in hub order
    settle_timeout = 60.0

    def __init__(self, inner: RelayTransport, bridge: str, *,
                 request_timeout: float = 30.0, poll_interval: float = 0.1) -> None:
        if network_of(bridge) != inner.network:
            raise InvalidRequestError(f"the bridge {bridge!r} is not an identity of "
                                      f"the {inner.network} network")
        self.inner = inner
        self.bridge = bridge
        self.network = inner.network
        self._timeout = request_timeout
        self._poll = poll_interval
        #: ids of our requests waiting for an answer, and the answers that came
        self._pending: set[str] = set()
        self._answers: dict[str, ControlBody] = {}
        #: the furthest cursor of the inner stream read (for finding answers)
        self._scan: str | None = None
        #: cursor -> a later cursor, when everything between them was filtered out
        self._skip: dict[str | None, str] = {}
        #: unsolicited, malformed or forged items this member dropped (WARNING lines
        #: naming the sender; counts per reason)
        self.drops = Drops(inner.network)
        #: cursors of items already dropped, ids of answers already taken: a scan for
        #: answers and the client's own reading both see each item
        self._judged: OrderedDict[str, None] = OrderedDict()
        self._taken: OrderedDict[str, None] = OrderedDict()
        #: KeyPackageRef -> (network, raw client id) of KeyPackages claimed through the
        #: bridge: a Welcome relay carries only their EncryptedGroupSecrets
        self._foreign: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        relayers = getattr(inner, "trusted_relayers", None)
        if isinstance(relayers, set):  # GroupInfo the bridge mirrors is accepted
            relayers.add(bridge)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # ------------------------------------------------------------------ the stream

    def _visible(self, item: IncomingMessage) -> IncomingMessage | None:
        """What the client sees of ``item``: hub items only, as their origin sent them."""
        self._scan = item.cursor
        if item.kind is MessageKind.CONTROL:
            self._take_answer(item)
            return None
        if item.kind is not MessageKind.GROUP:
            return item
        relayed = item.relay_seq is not None or item.relayed_for is not None
        if item.sender_identity == self.bridge and item.relay_seq is not None \
                and item.relayed_for is not None:
            return replace(item, sender_identity=item.relayed_for)
        if item.sender_identity != self.bridge and relayed:
            self._drop(item, "relay-not-from-bridge")
        elif item.sender_identity == self.bridge:
            self._drop(item, "hub-item-without-relay")
        return None  # an offer: the hub relays it

    def _take_answer(self, item: IncomingMessage) -> None:
        """Keep the bridge's answer to one of our pending requests; drop the rest."""
        if item.sender_identity != self.bridge:
            self._drop(item, "control-not-from-bridge")
            return
        try:
            body = decode_control(item.payload)
        except UnsupportedControlVersion as exc:
            self._drop(item, "unsupported-version", str(exc))
            return
        except InvalidRequestError as exc:
            self._drop(item, "malformed", str(exc))
            return
        if not isinstance(body, ClaimAnswer | Bridged | Signer | Failure):
            self._drop(item, "unexpected-op", body.op)
        elif body.id in self._pending:
            self._answers[body.id] = body
            _remember(self._taken, body.id, None)
        elif body.id not in self._taken:  # e.g. for an earlier process or another device
            self._drop(item, "unsolicited-answer", body.op)

    def _drop(self, item: IncomingMessage, reason: str, detail: str = "") -> None:
        """Count and log (once per item) a dropped ``item``."""
        if item.cursor in self._judged:
            return
        _remember(self._judged, item.cursor, None)
        self.drops.drop(sender=item.sender_identity, kind=item.kind.value, reason=reason,
                        detail=detail)

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        start = self._skip.get(after, after)
        while True:
            items = await self.inner.fetch(client_id, start, limit)
            visible = [v for v in map(self._visible, items) if v is not None]
            if visible or not items:
                return visible
            if len(self._skip) >= _MAX_SKIPS:
                self._skip.clear()  # only a shortcut: losing it costs a re-read
            start = self._skip[after] = items[-1].cursor

    def receive(self, client_id: str, after: str | None = None
                ) -> AsyncIterator[IncomingMessage]:
        return self._receive(client_id, self._skip.get(after, after))

    async def _receive(self, client_id: str, after: str | None
                       ) -> AsyncIterator[IncomingMessage]:
        async for item in self.inner.receive(client_id, after):
            visible = self._visible(item)
            if visible is not None:
                yield visible

    # ------------------------------------------------------------------ requests

    async def _request(self, body: _Request) -> ControlBody:
        """Send ``body`` to the bridge and wait for its answer in our stream."""
        self._pending.add(body.id)
        try:
            await self.inner.send_control(self.bridge, encode_control(body))
            await self._await_answer(body)
        finally:
            self._pending.discard(body.id)
        answer = self._answers.pop(body.id)
        if isinstance(answer, Failure):
            raise TransportError(f"the bridge refused ({body.op}): {answer.error}")
        return answer

    async def _await_answer(self, body: _Request) -> None:
        deadline = time.monotonic() + self._timeout
        while body.id not in self._answers:
            items = await self.inner.fetch(self.inner.client_id, self._scan, 1000)
            for item in items:
                self._visible(item)
            if not items:
                if time.monotonic() > deadline:
                    raise TransportError(f"the bridge {self.bridge} did not answer "
                                         f"({body.op}) within {self._timeout:g} s: is the "
                                         "bridge service running, and is 'bridge' in the "
                                         "settings its account?")
                await asyncio.sleep(self._poll)

    async def external_sender(self, suite_id: int) -> bytes:
        """The bridge's encoded ``ExternalSender`` for ``suite_id``: MLSClient lists it
        in a new group's ``external_senders``, and the room policy lets it propose
        Remove, so a user banned from a room on any network leaves the group."""
        answer = await self._request(SignerRequest(id=_request_id(), suite=suite_id))
        if not isinstance(answer, Signer):
            raise TransportError(f"unexpected answer {answer.op!r} to a signer request")
        return unb64(answer.external_sender, "external_sender")

    async def group_created(self, group_id: bytes, group_info: bytes,
                            ratchet_tree: bytes | None = None) -> None:
        """A group was created on this network: let the bridge into its room and have
        it open the group's rooms on the other networks (mls_client calls this).
        ``group_info``: the creator's GroupInfo of epoch 0 (RFC 9420 §12.4.3), which
        becomes the bridge's first verified view of the group."""
        await self.inner.admit(group_id, self.bridge)
        await self._request(BridgeRequest(
            id=_request_id(), group=group_id.hex(), group_info=b64(group_info),
            tree=None if ratchet_tree is None else b64(ratchet_tree)))

    # ------------------------------------------------------------------ KeyPackages

    async def publish_key_packages(self, client_id: str, user_id: str,
                                   entries: Sequence[KeyPackageEntry]) -> None:
        await self.inner.publish_key_packages(client_id, user_id, entries)

    async def retract_key_packages(self, client_id: str) -> int:
        """The network transport's (0 if it cannot withdraw KeyPackages)."""
        retract = getattr(self.inner, "retract_key_packages", None)
        return 0 if retract is None else int(await retract(client_id))

    async def locate_group(self, group_id: bytes) -> bool:
        """The network transport's (DeliveryTransport, optional)."""
        locate = getattr(self.inner, "locate_group", None)
        return True if locate is None else bool(await locate(group_id))

    async def key_package_count(self, client_id: str) -> int:
        return await self.inner.key_package_count(client_id)

    async def claim_key_package(self, client_id: str, *,
                                group_id: bytes | None = None) -> ClaimedKeyPackage:
        """A device of our network directly; another network's through the bridge, for
        ``group_id`` (which the bridge requires: only members may claim)."""
        network, raw = split_client(client_id)
        if network is None or network == self.network:
            return await self.inner.claim_key_package(raw, group_id=group_id)
        claimed = await self._claim(f"{network}:{raw.split('/', 1)[0]}", raw, group_id)
        if not claimed:
            raise NoKeyPackageError(f"no KeyPackage available for client {client_id!r}")
        return claimed[0]

    async def claim_user_key_packages(self, user_id: str, *, group_id: bytes | None = None
                                      ) -> list[ClaimedKeyPackage]:
        network = network_of(user_id)
        if network is None or network == self.network:
            return await self.inner.claim_user_key_packages(user_id, group_id=group_id)
        return await self._claim(user_id, None, group_id)

    async def _claim(self, user_id: str, client: str | None,
                     group_id: bytes | None) -> list[ClaimedKeyPackage]:
        network = network_of(user_id)
        if group_id is None or network is None:
            raise InvalidRequestError("a claim through the bridge names the group it is for")
        answer = await self._request(ClaimRequest(id=_request_id(), group=group_id.hex(),
                                                  user=user_id, client=client))
        if not isinstance(answer, ClaimAnswer):
            raise TransportError(f"unexpected answer {answer.op!r} to a claim")
        out = [ClaimedKeyPackage(client_id=f"{network}:{p.client}",
                                 ref=unb64(p.ref, "ref"),
                                 key_package=unb64(p.key_package, "key_package"),
                                 last_resort=p.last_resort)
               for p in answer.packages]
        for package in answer.packages:
            _remember(self._foreign, unb64(package.ref, "ref"), (network, package.client))
        return out

    # ------------------------------------------------------------------ group messages

    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        """Offer the message in our room (``message_id`` passed on: a retry is offered
        once). A Commit is ORDERED: the hub order decides which Commit of the epoch
        wins. Other messages are ACCEPTED: the hub sequences every one (their place is
        only known when the hub item comes back)."""
        await self.inner.submit(group_id, epoch, payload, is_commit=is_commit,
                                sender=sender, message_id=message_id)
        return SubmitResult(SubmitStatus.ORDERED if is_commit else SubmitStatus.ACCEPTED)

    async def send_welcome(self, client_ids: Sequence[str], welcome: bytes,
                           group_id: bytes, after_position: int | None = None) -> None:
        """Our network's recipients directly; the others through the bridge."""
        own: list[str] = []
        foreign: dict[str, list[str]] = {}
        for client_id in client_ids:
            network, raw = split_client(client_id)
            if network is None or network == self.network:
                own.append(raw)
            else:
                foreign.setdefault(network, []).append(raw)
        if own:
            await self.inner.send_welcome(own, welcome, group_id, after_position)
        if not foreign:
            return
        if after_position is None:
            log.warning("a Welcome for group %s not relayed: the bridge relays one only "
                        "after the hub item of its Commit", group_id.hex())
            return
        for network, raws in foreign.items():
            body = WelcomeRelay(group=group_id.hex(), after=after_position,
                                welcome=b64(self._welcome_for(welcome, network, raws)))
            await self.inner.send_control(self.bridge, encode_control(body))

    def _welcome_for(self, welcome: bytes, network: str, raws: Sequence[str]) -> bytes:
        """``welcome`` with only the EncryptedGroupSecrets of the KeyPackages we claimed
        through the bridge for ``raws`` of ``network`` (each joiner needs only its own,
        RFC 9420 §12.4.3.1); unchanged when we do not know them (e.g. after a restart)."""
        wanted = {ref for ref, (net, raw) in self._foreign.items()
                  if net == network and raw in raws}
        try:
            message = MLSMessage.decode(welcome).welcome
        except MLSError:
            return welcome
        if message is None:
            return welcome
        kept = tuple(s for s in message.secrets if s.new_member in wanted)
        if not kept or len(kept) == len(message.secrets):
            return welcome
        return MLSMessage.of(Welcome(message.cipher_suite, kept,
                                     message.encrypted_group_info)).encode()

    async def subscribe(self, client_id: str, group_id: bytes) -> None:
        await self.inner.subscribe(client_id, group_id)

    async def unsubscribe(self, client_id: str, group_id: bytes) -> None:
        await self.inner.unsubscribe(client_id, group_id)

    async def publish_group_info(self, group_id: bytes, epoch: int, group_info: bytes,
                                 ratchet_tree: bytes | None = None) -> None:
        """In our room, and through the bridge in the others."""
        await self.inner.publish_group_info(group_id, epoch, group_info, ratchet_tree)
        body = GroupInfoRelay(group=group_id.hex(), epoch=epoch, group_info=b64(group_info),
                              tree=None if ratchet_tree is None else b64(ratchet_tree))
        await self.inner.send_control(self.bridge, encode_control(body))

    async def fetch_group_info(self, group_id: bytes) -> tuple[bytes, bytes | None]:
        return await self.inner.fetch_group_info(group_id)

    async def close(self) -> None:
        await self.inner.close()


def _request_id() -> str:
    return secrets.token_urlsafe(12)


def _remember(memory: OrderedDict[K, V], key: K, value: V) -> None:
    """Put ``key`` in a bounded memory (the oldest entries go first)."""
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > _MAX_REMEMBERED:
        memory.popitem(last=False)
