"""The Delivery Service contract every transport implements (RFC 9750 "Delivery Service").

A :class:`DeliveryTransport` moves opaque MLS bytes; it never sees group secrets. It
carries exactly what RFC 9750's functional requirements list:

* KeyPackage distribution: publish (normal and last-resort), claim one for a client or a
  user with one-use semantics; a last-resort KeyPackage is handed out only when none is
  left, and never deleted by a claim;
* strongly consistent ordering of handshake messages: each group has one total order,
  and for each epoch the first valid Commit wins (:class:`SubmitResult`);
* Welcome delivery to specific clients;
* GroupInfo publication for external joins;
* asynchronous delivery: an incoming stream with a durable, client-owned cursor, so a
  client that was offline catches up on everything it missed, in order.

Identifiers: a *user* (e.g. ``alice@example.org``) has one or more *clients* (devices),
each with a ``client_id`` unique within the transport. Groups are named by their MLS
``group_id`` bytes. Payloads are serialized ``MLSMessage`` bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class TransportError(Exception):
    """Base of transport failures (network, server refusal, unknown group...).

    A plain TransportError is *transient* (the network or the server may come back: a
    caller may retry the same request); its subclasses are definitive unless they set
    ``transient`` (e.g. an HTTP 5xx from a homeserver). See :func:`is_transient`."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the request that raised ``exc`` may succeed: a TransportError
    that says so with a ``transient`` attribute, else exactly a plain TransportError."""
    if not isinstance(exc, TransportError):
        return False
    flag = getattr(exc, "transient", None)
    return bool(flag) if flag is not None else type(exc) is TransportError


class NoKeyPackageError(TransportError):
    """No KeyPackage (not even a last-resort one) is available for that client/user."""


class InvalidRequestError(TransportError):
    """The caller passed an invalid argument (wrong type, empty id, bad cursor, a payload
    that is not a group message or disagrees with the given group_id/epoch/is_commit)."""


class UnknownGroupError(TransportError):
    """No GroupInfo was published for that group."""


class TransportClosedError(TransportError):
    """The transport was used after :meth:`DeliveryTransport.close`."""


class FatalTransportError(TransportError):
    """A failure that retrying cannot fix: the transport stopped for good (it is closed
    and will not reconnect). :meth:`mls_client.MLSClient.run` ends with it instead of
    retrying."""


class SessionConflictError(FatalTransportError):
    """Another session took over this device's network session (XMPP: a stream
    ``conflict`` error, RFC 6120 §4.9.3.3, when a second connection binds the same full
    JID). Both reconnecting would kick each other out for ever, so the transport that
    was replaced stops instead."""


class LoginError(FatalTransportError):
    """The server refused to let us in, and retrying the same settings cannot help: a
    wrong password or account, a TLS/plaintext mismatch, an address that is not such a
    server. The message says which setting to check."""


class CredentialsRejectedError(LoginError):
    """The server no longer accepts this device's credentials: a Matrix access token
    that was revoked or whose device was logged out (HTTP 401 ``M_UNKNOWN_TOKEN``), or an
    XMPP password refused when the transport reconnects. Retrying cannot fix it: the
    device must log in again with valid credentials."""


class UnreachableError(TransportError):
    """The server could not be reached at the address tried (named in the message):
    it may be down, or the address may be wrong. Transient: a retry may succeed."""

    transient = True


class StorageError(TransportError):
    """The database failed (locked for too long, unreadable, schema newer than this code)."""


class MessageKind(StrEnum):
    """What an incoming item is, so a client can route it without parsing."""

    GROUP = "group"  # a PublicMessage/PrivateMessage in a group's total order
    WELCOME = "welcome"  # an MLSMessage(Welcome) addressed to this client
    #: a bridge control message (KeyPackage claim, Welcome or GroupInfo relay, ...):
    #: a JSON body between a member's account and a bridge (transports/bridged.py)
    CONTROL = "control"


@dataclass(frozen=True)
class KeyPackageEntry:
    """A KeyPackage to publish: its serialized MLSMessage(KeyPackage), its
    KeyPackageRef (hex-able bytes, used as the item id) and whether it is last-resort."""

    ref: bytes
    key_package: bytes
    last_resort: bool = False


@dataclass(frozen=True)
class ClaimedKeyPackage:
    """A claimed KeyPackage and the client that published it."""

    client_id: str
    ref: bytes
    key_package: bytes
    last_resort: bool


class SubmitStatus(StrEnum):
    ACCEPTED = "accepted"
    #: a Commit for that epoch was already accepted: process it, then retry (RFC 9750)
    REJECTED_EPOCH_TAKEN = "rejected_epoch_taken"
    #: the message's epoch is not the group's current epoch (stale or from the future)
    REJECTED_WRONG_EPOCH = "rejected_wrong_epoch"
    #: appended to the group's total order at ``position`` (and :meth:`fetch` already
    #: returns it), but the transport cannot judge whether an earlier Commit in that
    #: order wins the epoch (a room without an ordering server: only MLS processing can
    #: tell a valid Commit from an invalid one). The client decides by processing the
    #: stream in order up to its own message: the first *valid* Commit for an epoch wins,
    #: the same rule at every member (RFC 9750 "Ordering").
    ORDERED = "ordered"


@dataclass(frozen=True)
class SubmitResult:
    """Outcome of :meth:`DeliveryTransport.submit`. ``position`` is the message's place in
    the group's total order when accepted."""

    status: SubmitStatus
    position: int | None = None

    @property
    def accepted(self) -> bool:
        """Accepted outright; for ORDERED the stream decides (see SubmitStatus)."""
        return self.status is SubmitStatus.ACCEPTED

    @property
    def ordered(self) -> bool:
        return self.status is SubmitStatus.ORDERED


@dataclass(frozen=True)
class IncomingMessage:
    """One delivered item. ``cursor`` is opaque and durable: pass the last processed
    one to :meth:`DeliveryTransport.receive` to resume after it."""

    kind: MessageKind
    payload: bytes
    cursor: str
    group_id: bytes | None = None
    sender: str | None = None
    #: the message's position in its group's total order (group messages only)
    position: int | None = None
    #: the user identity the network itself authenticated for the sender, in the form
    #: credentials use (``xmpp:<bare JID>``, ``matrix:<user id>``), or None when the
    #: transport cannot vouch for it. Clients reject a group message whose MLS sender's
    #: credential names anyone else (:class:`SenderMismatchError` in mls_client).
    sender_identity: str | None = None
    #: a *hub item* of a bridged group (docs/bridge.md): the hub's sequence number and
    #: the network identity of the member who offered it, as the relaying account wrote
    #: them. Only meaningful when ``sender_identity`` is the group's configured bridge;
    #: anyone else's relay fields are ignored (transports/bridged.py).
    relay_seq: int | None = None
    relayed_for: str | None = None
    #: the sender's own id for this submission (``submit(message_id=...)``), when the
    #: transport carries it: the same for every retry of one message, so receivers can
    #: deliver an application message once per (sender, message id) even if its sender
    #: had to encrypt it again (docs/resilience.md)
    message_id: str | None = None


class RoomChange(StrEnum):
    """How a user's membership of a group's room changed, as the network reports it."""

    JOINED = "joined"
    #: the user left on its own
    LEFT = "left"
    #: someone else took the user out (XMPP status 307 or 321; Matrix ``leave`` sent by
    #: another user)
    KICKED = "kicked"
    #: the user was banned (XMPP status 301, affiliation ``outcast``; Matrix ``ban``)
    BANNED = "banned"


@dataclass(frozen=True)
class RoomEvent:
    """A membership change in a group's room (RFC 9750 "Delivery Service": the room is
    the DS's view of who may receive the group's messages). Transports only *report*
    these: what a kick means for the MLS group is decided in mls_client.

    ``user`` is the network identity in the form credentials use (``xmpp:<bare JID>``,
    ``matrix:<user id>``); ``self`` is True when the change is about this account (we
    were kicked or banned). Only changes in the group's own room that the network
    itself authenticated are reported."""

    group_id: bytes
    user: str
    change: RoomChange
    self: bool = False

    @property
    def removed(self) -> bool:
        """Whether someone else took the user out of the room (kick or ban)."""
        return self.change in (RoomChange.KICKED, RoomChange.BANNED)


@runtime_checkable
class DeliveryTransport(Protocol):
    """The async Delivery Service interface (see module docstring).

    Optional attributes (read with ``getattr``; a transport without them behaves as the
    defaults say):

    * ``atomic_claims: bool`` (default True): False when two claimers may get the same
      one-use KeyPackage (clients then keep a used one joinable for a grace period).
    * ``key_package_claims: int``: a counter that only grows, by one for each one-use
      KeyPackage of this client the transport saw consumed (XMPP: an accepted claim
      notice, our own claim, or a Welcome the client joined with, after which the item
      is retracted; RFC 9750 "KeyPackage reuse"). A client that sees it change refills
      its pool at once instead of waiting for its next pool check.
    * ``idempotent_submit: bool`` (default False): True when :meth:`submit` with a
      ``message_id`` this sender already stored in the group always returns the first
      result, so a refusal proves the message was never stored (clients then may encrypt
      the plaintext again in a later epoch, under the same message id).
    * ``room_events() -> list[RoomEvent]``: the room membership changes seen since the
      previous call, oldest first (each is returned once; a transport that cannot see
      room membership has no such method). :class:`~mls_client.MLSClient` calls it on
      every sync and acts on them (docs/xmpp.md "Rooms and the group binding",
      docs/matrix.md "Native moderation → MLS removal").
    * ``async retract_key_packages(client_id) -> int``: withdraw every KeyPackage
      published for ``client_id``, last-resort included, and return how many there
      were. A device whose state was lost keeps its client id but not the private keys
      of what it published: those KeyPackages would lead adders to Welcomes nobody can
      open, so the client withdraws them before it publishes new ones (RFC 9750
      "Recovery After State Loss"; MLSClient on a new identity).
    * ``async locate_group(group_id) -> bool``: find the group's room again when the
      transport's own state about it was lost with the device's (Matrix: the account
      is still in the room, the journal forgot the binding); whether it is known now.
      :meth:`MLSClient.recover_group` calls it before :meth:`fetch_group_info`.
    """

    async def publish_key_packages(self, client_id: str, user_id: str,
                                   entries: Sequence[KeyPackageEntry]) -> None:
        """Publish KeyPackages of ``client_id`` (a device of ``user_id``). A new
        last-resort entry replaces the client's previous last-resort KeyPackage."""
        ...

    async def key_package_count(self, client_id: str) -> int:
        """How many one-use (not last-resort) KeyPackages of ``client_id`` remain."""
        ...

    async def claim_key_package(self, client_id: str, *,
                                group_id: bytes | None = None) -> ClaimedKeyPackage:
        """Claim one KeyPackage of ``client_id`` (one-use; last-resort only when none is
        left). Raises NoKeyPackageError if there is nothing. ``group_id``: the group
        the KeyPackage is claimed for, when the caller knows it (a bridge authorizes
        and records claims per group, docs/bridge.md); transports that do not need it
        ignore it."""
        ...

    # A transport whose claims are not atomic (two claimers may get the same KeyPackage)
    # says so with a class attribute ``atomic_claims = False``; clients then keep a used
    # KeyPackage joinable for a grace period (mls_client KeyPackageSettings).

    async def claim_user_key_packages(self, user_id: str, *, group_id: bytes | None = None
                                      ) -> list[ClaimedKeyPackage]:
        """Claim one KeyPackage for each client of ``user_id`` (empty if none);
        ``group_id`` as for :meth:`claim_key_package`."""
        ...

    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        """Append a group message to the group's total order. A Commit of ``epoch`` is
        accepted only if the group is at ``epoch`` and no Commit for it was accepted
        (strongly consistent ordering; the group then moves to ``epoch + 1``). Proposals
        must be for the current epoch; application messages for the current or the
        previous one (late senders). The DS may read the MLSMessage's clear header
        (group_id, epoch, content_type) to check this, as RFC 9750 allows.

        ``message_id``: the sender's id for this submission (at most 64 characters of
        ``[A-Za-z0-9._-]``), the same for every retry, also after a crash. A transport
        makes a resubmission with an id it already stored idempotent where the network
        allows (local: the first result again; Matrix: the transaction id; XMPP: the
        origin-id, not sent again once the room holds it) and reports it to receivers
        as :attr:`IncomingMessage.message_id` where it can. None: no such guarantee.
        A failure that may be retried (network down, server unavailable) is a plain
        :class:`TransportError`; its subclasses are definitive refusals."""
        ...

    async def send_welcome(self, client_ids: Sequence[str], welcome: bytes,
                           group_id: bytes, after_position: int | None = None) -> None:
        """Deliver an MLSMessage(Welcome) to each of ``client_ids`` and subscribe them to
        the group. ``after_position``: the position of the Commit that added them; group
        messages ordered after it are delivered after the Welcome, so none is lost."""
        ...

    async def subscribe(self, client_id: str, group_id: bytes) -> None:
        """Start delivering ``group_id``'s messages to ``client_id`` (on join)."""
        ...

    async def unsubscribe(self, client_id: str, group_id: bytes) -> None:
        ...

    async def publish_group_info(self, group_id: bytes, epoch: int, group_info: bytes,
                                 ratchet_tree: bytes | None = None) -> None:
        """Publish the GroupInfo (and optionally the tree) of ``epoch`` for external
        joins; an older epoch never replaces a newer one."""
        ...

    async def fetch_group_info(self, group_id: bytes) -> tuple[bytes, bytes | None]:
        """The latest (GroupInfo, ratchet tree or None) of ``group_id``."""
        ...

    def receive(self, client_id: str, after: str | None = None
                ) -> AsyncIterator[IncomingMessage]:
        """Everything for ``client_id`` after cursor ``after`` (from the start if None),
        in order, then further items as they arrive. Group messages come in the group's
        total order; the stream ends only when the transport is closed."""
        ...

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        """What :meth:`receive` would yield now, without waiting (for catch-up)."""
        ...

    async def close(self) -> None:
        ...


@runtime_checkable
class RelayTransport(DeliveryTransport, Protocol):
    """What a network transport adds so one MLS group can span networks through a
    bridge (docs/bridge.md). ``network`` names the network (``"xmpp"``, ``"matrix"``);
    ``user_id`` is this account's network-qualified identity (``xmpp:<bare JID>``,
    ``matrix:<user id>``) and ``client_id`` this device."""

    network: str

    @property
    def user_id(self) -> str: ...

    @property
    def client_id(self) -> str: ...

    async def relay_group(self, group_id: bytes, payload: bytes, *, seq: int,
                          sender_identity: str, sender: str | None = None) -> int | None:
        """Post ``payload`` into the group's room as hub item ``seq`` offered by
        ``sender_identity`` (client ``sender``). Receivers get it as a GROUP message
        whose ``sender_identity`` is this account and whose ``relay_seq`` /
        ``relayed_for`` / ``sender`` are the given values. Returns its position in the
        room's order, when the network tells."""
        ...

    async def send_control(self, user_id: str, body: bytes) -> None:
        """Send ``body`` to every device of ``user_id`` (an identity of this network);
        each receives it as a CONTROL message with the network-authenticated
        ``sender_identity`` of this account. Durable like a Welcome."""
        ...

    async def admit(self, group_id: bytes, user_id: str) -> None:
        """Let ``user_id`` (the bridge account) into the group's room with the right to
        admit and remove others (XMPP: affiliation admin; Matrix: invite and power
        level 100); policy-derived rights never demote it."""
        ...
