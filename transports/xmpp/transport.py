"""``XmppDeliveryTransport``: the DeliveryTransport contract over XMPP (``docs/xmpp.md``).

One instance per device account. Its ``client_id`` is the device's full JID
(``user@domain/resource``), its ``user_id`` the credential identity ``xmpp:<bare JID>``.

* Groups live in persistent, members-only, non-anonymous MUC rooms (XEP-0045) named
  ``mls-<hex group_id>`` on the MUC service. The room's reflection order, which is also
  its MAM archive order (XEP-0313), is the group's total order (RFC 9750 "Ordering").
* Every item reaches the client through MAM: a live ``<mls/>`` stanza only triggers a
  MAM query of its source (the room, or our account's archive for Welcomes), so live
  delivery, catch-up after being offline and resumption after a server restart are one
  code path, and every item has an archive id.
* The durable cursor encodes, for each source, the archive id a resume starts after
  and how many entries after it were already consumed (a half-received chunked message
  makes a resume restart before its first chunk).
* KeyPackages are PEP items (XEP-0163) of a per-device node, ``access_model=open``;
  a device list node names the devices of a user. Claiming fetches an item and tells
  the owner (a direct ``claim`` notice) to retract it. The owner retracts only a
  one-use item currently on its node, within per-claimant and per-device token buckets;
  a last-resort item stays.
* Welcomes are direct ``chat`` messages to the device's full JID. One reaches the
  client only if it decodes and names a KeyPackageRef this device published; its room
  is followed only once the client joined (``subscribe``).
* GroupInfo items are ``group-info`` messages in the room (only members can post or
  read them); a fetch returns the newest one that verifies as a joiner would, was
  posted by its signer's account (or a trusted relayer such as the bridge) and continues
  the room's GroupInfo history from an anchor (:mod:`transports.group_info_chain`).
* Every hostile or malformed inbound item is dropped through :attr:`drops`
  (:class:`~transports.defence.Drops`: counted per reason, logged at WARNING).
* Bridge support (:class:`~transports.base.RelayTransport`, docs/bridge.md): a bridge
  account relays hub items as group messages with ``relay-*`` attributes and exchanges
  ``control`` bodies with members' accounts as direct ``chat`` messages; it holds the
  ``admin`` affiliation in bridged rooms (XEP-0045 §9.3).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hashlib
import io
import json
import logging
import random
import re
import secrets
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import slixmpp
from slixmpp import JID, Message
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0363.http_upload import FileTooBig, HTTPError, UploadServiceNotFound

from mls_core.errors import MLSError
from mls_core.framing import ContentType, MLSMessage
from transports.base import (
    ClaimedKeyPackage,
    CredentialsRejectedError,
    FatalTransportError,
    IncomingMessage,
    InvalidRequestError,
    KeyPackageEntry,
    LoginError,
    MessageKind,
    NoKeyPackageError,
    RoomChange,
    RoomEvent,
    SessionConflictError,
    SubmitResult,
    SubmitStatus,
    TransportClosedError,
    TransportError,
    UnknownGroupError,
    UnreachableError,
)
from transports.defence import Drops, RateLimiter
from transports.group_info import GroupInfoRejected, check_group_info
from transports.group_info_chain import Chain, Link
from transports.header import check_header, read_header
from transports.media import BLOB_TYPE, MediaTooLargeError
from transports.tls import certificate_failure, client_context, untrusted_error
from transports.validation import (
    require_bytes,
    require_client_ids,
    require_entries,
    require_message_id,
)

from .plugin import MUC_USER_NS, ArchivedMessage, MLSBridgePlugin, RoomExit, XmppError
from .settings import XmppSettings
from .stanza import (
    NS,
    SID_NS,
    TAG,
    Envelope,
    Kind,
    Reassembler,
    Relay,
    StanzaError,
    b64url,
    decode_group_info,
    encode_group_info,
    group_of_room,
    parse_element,
    room_localpart,
    unb64url,
)

log = logging.getLogger(__name__)

OWN = ""  # source key of our account's archive
#: cursor key prefix of a Welcome's room not followed yet (then the b64url group id):
#: where to start reading it if the client joins after a resume; never followed by it
PENDING = "?"
#: pending rooms a cursor names at most (the newest; others are read from their start)
MAX_PENDING_IN_CURSOR = 16
DEVICES_NODE = f"{NS}:devices"
ROOMS_NODE_PREFIX = f"{NS}:rooms:"
#: the device's room list is private (XEP-0223): only the account reads it
PRIVATE_OPTIONS = {"pubsub#access_model": "whitelist", "pubsub#max_items": "256",
                   "pubsub#persist_items": "true"}
KP_NODE_PREFIX = f"{NS}:key-packages:"
#: the KeyPackageRefs a device published (private, one item per publication), so that
#: a Welcome can be matched against them after a restart (docs/xmpp.md "Welcomes")
PUBLISHED_NODE_PREFIX = f"{NS}:published:"
#: PEP nodes: open access (others fetch KeyPackages), Prosody's max_items cap (servers.md)
PEP_OPTIONS = {"pubsub#access_model": "open", "pubsub#max_items": "256",
               "pubsub#persist_items": "true"}
MAX_KEY_PACKAGES = 256
MAM_PAGE = 100
#: payloads of a room's trusted and pending GroupInfo kept in memory, in units of
#: ``max_payload`` (the oldest pending ones are given up beyond it)
GROUP_INFO_HELD = 4
_CURSOR_PREFIX = "x1."
#: claim notices read but not yet judged (more are dropped as rate-limited)
MAX_PENDING_CLAIMS = 1024
#: groups whose Welcome we delivered but the client did not join yet
MAX_WELCOMED = 256
#: archive ids of claim notices already judged (a re-read never judges one twice)
MAX_SEEN_CLAIMS = 4096
#: backoff of the transport's own reconnection (seconds): full jitter below a ceiling
#: that doubles from RECONNECT_INITIAL up to RECONNECT_CAP
RECONNECT_INITIAL = 0.2
RECONNECT_CAP = 5.0


def _position(room: str, archive_id: str) -> int:
    """A stable 56-bit name for a place in a room's order, derived from its archive id
    (Prosody's archive ids are not ordinals): the same at every member and instance."""
    return int.from_bytes(hashlib.sha256(f"{room}\0{archive_id}".encode()).digest()[:7],
                          "big")


def encode_cursor(vector: dict[str, tuple[str | None, int]]) -> str:
    raw = json.dumps({k: [v[0], v[1]] for k, v in sorted(vector.items())},
                     separators=(",", ":")).encode()
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, tuple[str | None, int]]:
    """Parse a cursor made by :func:`encode_cursor`; InvalidRequestError otherwise."""
    bad = InvalidRequestError("cursor must be None or a cursor returned by this transport")
    if not isinstance(cursor, str) or not cursor.startswith(_CURSOR_PREFIX):
        raise bad
    body = cursor[len(_CURSOR_PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(data, dict):
        raise bad
    out: dict[str, tuple[str | None, int]] = {}
    for key, value in data.items():
        if not (isinstance(value, list) and len(value) == 2
                and (value[0] is None or isinstance(value[0], str))
                and isinstance(value[1], int) and not isinstance(value[1], bool)
                and value[1] >= 0):
            raise bad
        out[str(key)] = (value[0], value[1])
    return out


class _Rejected(Exception):
    """An inbound item to drop: who sent it (``xmpp:<bare JID>`` or what the network
    named), its kind, a stable reason slug and a detail for the log line."""

    def __init__(self, sender: str | None, kind: str, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.sender = sender
        self.kind = kind
        self.reason = reason
        self.detail = detail


@dataclass
class _Welcomed:
    """A group a Welcome for this device named: where to start reading its room (None:
    from the start, e.g. when two Welcomes disagree) and which of our KeyPackageRefs
    they name (retracted once the client joined)."""

    after: str | None
    refs: set[str]


def _kind_of(el: ET.Element) -> str:
    """The ``kind`` attribute for a log line (anything unknown is an ``item``)."""
    kind = el.get("kind", "")
    return kind if kind in {k.value for k in Kind} else "item"


@dataclass
class _GroupInfoRoom:
    """What :meth:`XmppDeliveryTransport.fetch_group_info` learnt of one room's archive
    (in memory; docs/xmpp.md "GroupInfo"): the continuity chain (its ``token`` is the
    last archive id read), chunks of items not complete yet, and the bytes of the head
    and of the pending links."""

    assembler: Reassembler
    #: the trusted relayers this state was read with (other ones: read it again)
    relayers: frozenset[str]
    chain: Chain = field(default_factory=Chain)
    index: int = 0  # archive entries read
    first_seen: bool = False  # the archive's first group-info item was judged
    #: the chain starts at the first epoch-0 writer, who was no other anchor: an owner's
    #: GroupInfo it does not list starts it again
    weak_root: bool = False
    payloads: dict[str, tuple[bytes, bytes | None]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Source:
    """An archive we read in order: our account's (Welcomes, claims) or a room."""

    key: str  # OWN or the room's bare JID
    group_id: bytes | None
    base: str | None  # the log starts after this archive id (None: archive start)
    skip: int = 0  # entries after base already consumed before a resume
    ids: list[str] = field(default_factory=list)
    assembler: Reassembler = field(default_factory=Reassembler)
    origins: dict[str, int] = field(default_factory=dict)  # origin id -> entry index
    #: entry index -> (epoch, is_commit) of complete group messages, in order
    order: dict[int, tuple[int, bool]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    dirty: bool = False
    #: the last archive read was complete: the next reflection is the next entry
    live: bool = False
    id_set: set[str] = field(default_factory=set)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def safe_point(self) -> tuple[str | None, int]:
        """Where a resume restarts (archive id, entries after it already consumed):
        before the oldest half-received chunked message, if any."""
        oldest = self.assembler.oldest_pending()
        if oldest is None:
            return (self.ids[-1], 0) if self.ids else (self.base, self.skip)
        return (self.ids[oldest - 1] if oldest > 0 else self.base), len(self.ids) - oldest

    def last_id(self) -> str | None:
        return self.ids[-1] if self.ids else self.base


#: join refusals that mean we are no longer allowed in the room (XEP-0045 §7.2.6-§7.2.7)
REFUSED = frozenset({"forbidden", "registration-required"})


class _LoginWatch:
    """While a first login runs, turns slixmpp's events into one typed error
    (:attr:`failed`, set once) saying what to check."""

    def __init__(self, transport: XmppDeliveryTransport) -> None:
        self._t = transport
        self.failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        #: slixmpp tries several ways in turn (direct TLS, then STARTTLS on the same
        #: address): one that fails is only the answer once every way failed
        self.reasons: list[object] = []
        # ssl_invalid_chain: STARTTLS with a certificate that does not verify (handled
        # here, slixmpp leaves the stream to us: close() ends it)
        self._handlers: tuple[tuple[str, Callable[[Any], None]], ...] = (
            ("failed_all_auth", self._auth_failed), ("connection_failed", self.reasons.append),
            ("ssl_invalid_chain", self._fail), ("stream_negotiated", self._negotiated))

    def __enter__(self) -> _LoginWatch:
        for name, handler in self._handlers:
            self._t.xmpp.add_event_handler(name, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, handler in self._handlers:
            self._t.xmpp.del_event_handler(name, handler)

    def _fail(self, reason: object) -> None:
        if not self.failed.done():
            self.failed.set_result(self._t._login_error(reason))

    def _auth_failed(self, _: object) -> None:
        # nothing attempted: no mechanism was acceptable on this stream (slixmpp offers
        # SCRAM without TLS only with allow_plaintext)
        tried = self._t.xmpp.plugin["feature_mechanisms"].attempted_mechs
        self._fail(None if tried else "no TLS")

    def _negotiated(self, _: object) -> None:
        # features negotiated without a login: the server only offered STARTTLS, which
        # allow_plaintext turns off
        if not self._t.xmpp.authenticated:
            self._fail("STARTTLS required" if self._t.settings.allow_plaintext else "no TLS")

    def tries_ended(self, _: object) -> None:
        """slixmpp's connection attempt ended: if no way got a stream, the failure."""
        if self.reasons and not self._t.xmpp.is_connected():
            self._fail(_telling(self.reasons))


def _telling(reasons: list[object]) -> object:
    """The failure to report of a connection that no way got through: a certificate
    that did not verify (the fix is a setting), else the last one."""
    for reason in reasons:
        if isinstance(reason, BaseException) and certificate_failure(reason) is not None:
            return reason
    return reasons[-1]


class XmppDeliveryTransport:
    """A :class:`~transports.base.DeliveryTransport` for one XMPP device account.

    Create with :meth:`connect` (or wrap an existing slixmpp client with
    :meth:`attach`), always :meth:`close`."""

    #: items of the stream kept in memory (older cursors are served from the archive)
    keep_items = 4096
    #: a PEP item can be fetched by two adders before its owner retracts it: clients
    #: keep a used KeyPackage joinable for a while (KeyPackageSettings.reuse_grace_seconds)
    atomic_claims = False
    #: the network name of :class:`~transports.base.RelayTransport`
    network = "xmpp"

    def __init__(self, xmpp: slixmpp.ClientXMPP, settings: XmppSettings, *,
                 owns_connection: bool = True) -> None:
        self.settings = settings
        self.xmpp = xmpp
        self._owns = owns_connection
        self.jid = JID(settings.full_jid)
        self.bare = str(self.jid.bare)
        self.device = str(self.jid.resource)
        self.muc_service = settings.muc_service or f"conference.{self.jid.domain}"
        self._sources: dict[str, _Source] = {}
        self._joined: set[str] = set()  # rooms we follow
        self._present: set[str] = set()  # rooms we are an occupant of in this session
        self._stream: list[IncomingMessage] = []
        #: cursor -> absolute index just after its item; items before ``_dropped`` were
        #: trimmed from memory (a cursor among them is served again from the archive)
        self._cursor_at: dict[str, int] = {}
        self._dropped = 0
        self._base_cursor: str | None = None
        self._generation = 0
        self._changed = asyncio.Event()  # replaced (after being set) on every change
        self._positions: dict[int, tuple[str, str]] = {}
        self._claimed: set[str] = set()
        self._retract: set[str] = set()
        #: dropped hostile/malformed inbound items, per reason (docs/xmpp.md)
        self.drops = Drops("xmpp")
        #: +1 for each one-use KeyPackage of ours retracted (once it is gone) because it
        #: was used: an accepted claim notice, our own claim, or a Welcome the client
        #: joined with (``DeliveryTransport``: the client refills its pool when it changes)
        self.key_package_claims = 0
        #: accounts (``xmpp:<bare JID>``) whose GroupInfo items may be signed by someone
        #: else (they relay members' GroupInfo); the configured bridge always is one
        self.trusted_relayers: set[str] = set()
        #: room bare JID -> what fetch_group_info read of its archive so far
        self._group_info: dict[str, _GroupInfoRoom] = {}
        self._claims_per = RateLimiter(settings.claims_per_hour / 3600, settings.claim_burst)
        self._claims_all = RateLimiter(settings.claims_global_per_hour / 3600,
                                       settings.claim_global_burst)
        #: (claimant bare JID, ref hex) read from our archive, judged after the read
        self._pending_claims: list[tuple[str, str, bool]] = []
        #: whether the first read of our archive (what it held when we connected, read
        #: from its start) is over: claim notices of that read are mostly re-reads of
        #: notices an earlier run judged
        self._own_read = False
        self._claims_seen: OrderedDict[str, None] = OrderedDict()
        self._claim_lock = asyncio.Lock()
        #: KeyPackageRefs (hex) this device published (PUBLISHED_NODE_PREFIX + its node)
        self._published: set[str] = set()
        self._welcomed: OrderedDict[bytes, _Welcomed] = OrderedDict()
        self._errors: dict[str, str] = {}
        self._published_device = False
        self._closed = False
        self._online = asyncio.Event()
        self._reconnecting: asyncio.Task[None] | None = None
        #: why the session ended for good (another session took our full JID, or the
        #: server refused our password when reconnecting): every later call raises
        #: this error class with this text, nothing reconnects
        self._fatal: tuple[type[FatalTransportError], str] | None = None
        self._stopped = asyncio.Event()
        #: sessions started (the first connection included) and reconnections tried
        self.sessions = 0
        self.reconnect_attempts = 0
        self._rebase_lock = asyncio.Lock()
        #: room membership changes not yet taken by :meth:`room_events`
        self._room_events: list[RoomEvent] = []
        xmpp.add_event_handler("mls_payload", self._on_payload)
        xmpp.add_event_handler("mls_error", self._on_error)
        xmpp.add_event_handler("mls_room_exit", self._on_room_exit)
        xmpp.add_event_handler("session_start", self._on_session_start)
        xmpp.add_event_handler("disconnected", self._on_disconnected)
        xmpp.add_event_handler("stream_error", self._on_stream_error)
        xmpp.add_event_handler("failed_all_auth", self._on_failed_auth)
        if "mls_bridge" in xmpp.plugin:
            if settings.bridge:
                self.plugin.bridge = str(JID(settings.bridge).bare)
            self.plugin.muc_service = self.muc_service
            self.plugin.drops = self.drops

    # ------------------------------------------------------------------ lifecycle

    @property
    def client_id(self) -> str:
        return str(self.jid)

    @property
    def user_id(self) -> str:
        return f"xmpp:{self.bare}"

    @property
    def rejected(self) -> int:
        """How many inbound items were dropped so far (all reasons of :attr:`drops`)."""
        return self.drops.total

    @property
    def plugin(self) -> MLSBridgePlugin:
        plugin: MLSBridgePlugin = self.xmpp.plugin["mls_bridge"]  # type: ignore[typeddict-item]
        return plugin

    @staticmethod
    def make_client(settings: XmppSettings) -> slixmpp.ClientXMPP:
        """A slixmpp client with the plugins the transport needs."""
        from . import register

        register()
        xmpp = slixmpp.ClientXMPP(settings.full_jid, settings.password.get_secret_value())
        # verifying, with the system's CAs or only those of ca_file (STARTTLS, direct TLS)
        xmpp.ssl_context = client_context(settings.ca_file)
        if settings.allow_plaintext:
            xmpp.enable_starttls = False
            xmpp.enable_direct_tls = False
            xmpp.enable_plaintext = True
            xmpp.plugin["feature_mechanisms"].unencrypted_scram = True
        for name in ("xep_0030", "xep_0045", "xep_0199", "xep_0363", "mls_bridge"):
            xmpp.register_plugin(name)
        return xmpp

    @classmethod
    async def connect(cls, settings: XmppSettings) -> XmppDeliveryTransport:
        """Connect and authenticate."""
        transport = cls(cls.make_client(settings), settings)
        try:
            await transport._connect()
        except BaseException:
            await transport.close()
            raise
        return transport

    @classmethod
    async def attach(cls, xmpp: slixmpp.ClientXMPP,
                     settings: XmppSettings) -> XmppDeliveryTransport:
        """Run on an application's own slixmpp client (with ``mls_bridge`` registered);
        the application connects it and reconnects it. ``settings.jid`` must be the
        client's full JID."""
        if "mls_bridge" not in xmpp.plugin:
            raise TransportError("register the mls_bridge plugin on the client first")
        transport = cls(xmpp, settings, owns_connection=False)
        if xmpp.is_connected() and xmpp.sessionstarted:
            await transport._on_session_start(None)
        await transport._wait_online()
        await transport._start_sources()
        return transport

    async def _connect(self) -> None:
        with _LoginWatch(self) as watch:
            self.xmpp.connect(self.settings.host, self.settings.port).add_done_callback(
                watch.tries_ended)
            online: asyncio.Future[object] = asyncio.ensure_future(self._online.wait())
            waiters: set[asyncio.Future[object]] = {online, watch.failed}  # type: ignore[arg-type]
            done, _ = await asyncio.wait(waiters,
                                         timeout=self.settings.connect_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            online.cancel()
            await asyncio.wait({online})
            if online not in done:
                if watch.failed.done():
                    raise watch.failed.result()
                raise UnreachableError(
                    f"no XMPP login at {self._address} within "
                    f"{self.settings.connect_timeout:g} s: is that the server's client "
                    "port (usually 5222)? Check [xmpp] host and port")
        await self._start_sources()

    @property
    def _address(self) -> str:
        """The address a connection is tried at, as the user wrote it."""
        return f"{self.settings.host or self.jid.domain}:{self.settings.port}"

    def _login_error(self, reason: object) -> TransportError:
        """The typed error, saying what to check, for a failed login (``reason`` None:
        the server refused every authentication mechanism we offered)."""
        text = str(reason or "")
        failure = certificate_failure(reason if isinstance(reason, BaseException) else None)
        if failure is not None:
            return untrusted_error(f"the XMPP server at {self._address}", "xmpp", failure,
                                   self.settings.ca_file)
        if "SSL" in text or "TLS" in text:
            hint = ("the server does not offer TLS there; for a local test server without "
                    "TLS set allow_plaintext = true in [xmpp] (never on a real network)"
                    if not self.settings.allow_plaintext else
                    "the server requires TLS: remove allow_plaintext from [xmpp]")
            why = getattr(reason, "reason", None) or text  # ssl.SSLError: its short name
            return LoginError(f"no secure XMPP login at {self._address} ({why}): {hint}")
        if reason is None:
            return LoginError(f"the XMPP server refused the login of {self.bare}: wrong "
                              "password, or no such account; check [xmpp] jid and password")
        why = getattr(reason, "strerror", None) or text
        return UnreachableError(f"cannot reach the XMPP server at {self._address} ({why}): "
                                "is it running? Check [xmpp] host and port")

    async def _start_sources(self) -> None:
        if OWN not in self._sources:
            await self._load_published()
            # without a cursor, our account's archive is read from its start: a Welcome
            # may have been archived before this process connected
            self._sources[OWN] = _Source(OWN, None, None)
            self._kick(self._sources[OWN])
            await self._load_rooms()

    async def _load_rooms(self) -> None:
        """Join the rooms this device subscribed to in earlier runs (its private PEP
        room list); they are read from the archive start unless a cursor says more."""
        for item in await self.plugin.pep_items(None, self._rooms_node):
            room = item.find(f"{{{NS}}}room")
            try:
                gid = unb64url(room.get("group", "")) if room is not None else b""
            except StanzaError:
                continue
            if gid:
                try:
                    await self._ensure_joined(gid, remember=False)
                except XmppError as exc:  # e.g. our membership was revoked
                    if not self._refused(gid, exc):
                        log.warning("%s cannot rejoin %s: %s", self.client_id,
                                    self.room_jid(gid), exc)

    @property
    def _rooms_node(self) -> str:
        return f"{ROOMS_NODE_PREFIX}{self.device}"

    @property
    def _published_node(self) -> str:
        return f"{PUBLISHED_NODE_PREFIX}{self.device}"

    async def _load_published(self) -> None:
        """The KeyPackageRefs this device published: its private record (written before
        each publication) and whatever its KeyPackage node holds."""
        for item in await self.plugin.pep_items(None, self._published_node):
            record = item.find(f"{{{NS}}}published")
            if record is not None:
                self._published.update(ref for ref in (record.text or "").split()
                                       if _is_ref(ref))
        self._published.update(await self._items(None, self.device))

    async def _on_session_start(self, _event: object) -> None:
        self.sessions += 1
        if not self._owns:  # the application connected its client again: its choice
            self._fatal = None
            self._stopped.clear()
        self.xmpp.send_presence()
        for room in list(self._joined):
            try:
                await self.plugin.join_room(JID(room), self._nick)
                self._present.add(room)
            except XmppError as exc:
                gid = group_of_room(str(JID(room).user))
                if gid is None or not self._refused(gid, exc):
                    log.warning("rejoining %s failed: %s", room, exc)
        self._online.set()
        for source in self._sources.values():
            self._kick(source)

    def _on_stream_error(self, error: object) -> None:
        """A ``conflict`` stream error (RFC 6120 §4.9.3.3): the server closed our stream
        because another connection bound the same full JID (Prosody's default
        ``conflict_resolve = "kick_old"``). Reconnecting would kick that session out,
        which would reconnect in turn, for ever: this transport stops instead, and
        every later call raises :class:`~transports.base.SessionConflictError`."""
        condition = str(error["condition"]) if isinstance(error, slixmpp.ElementBase) else ""
        if condition != "conflict":
            return
        self._stop_for_good(SessionConflictError,
                            f"another session is using {self.client_id}: this one was "
                            f"disconnected and does not reconnect (stream conflict, "
                            f"RFC 6120 §4.9.3.3); give each process its own resource")

    def _on_failed_auth(self, _event: object) -> None:
        """The server refused our credentials after the first session (the password was
        changed or the account removed): reconnecting again and again cannot succeed.
        (A refusal at the first login is :meth:`_connect`'s error.)"""
        if self.sessions and self._owns:
            self._stop_for_good(CredentialsRejectedError,
                                f"the server no longer accepts the password of {self.jid}: "
                                f"this transport stopped reconnecting; log in again with "
                                f"the current password")

    def _stop_for_good(self, kind: type[FatalTransportError], why: str) -> None:
        self._fatal = (kind, why)
        log.error("%s", why)
        self._online.clear()
        self._stopped.set()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        self._notify()
        for source in self._sources.values():
            source.progress.set()

    def _on_disconnected(self, _event: object) -> None:
        self._online.clear()
        self._present.clear()
        for source in self._sources.values():
            source.live = False
        if (not self._closed and self._fatal is None and self._owns
                and self._reconnecting is None):
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        """Reconnect with capped exponential backoff and full jitter (so devices
        dropped together by a server restart do not come back in lockstep) until
        online again; rooms are rejoined and every source re-read from its last
        archive id on session start. A session conflict or refused credentials stop it."""
        ceiling = RECONNECT_INITIAL
        try:
            while not self._closed and not self._online.is_set() and self._fatal is None:
                await asyncio.sleep(random.uniform(ceiling / 2, ceiling))
                if self._closed or self._fatal is not None:
                    return
                self.reconnect_attempts += 1
                await self._attempt(max(ceiling * 4, 1.0))
                ceiling = min(ceiling * 2, RECONNECT_CAP)
        finally:
            self._reconnecting = None

    async def _attempt(self, patience: float) -> None:
        """One connection attempt. While nothing answers, give up after ``patience``; a
        stream that got a socket and is still negotiating (a slow or loaded server) gets
        up to ``connect_timeout``."""
        await self._end_earlier_attempts()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect_timeout
        self.xmpp.connect(self.settings.host, self.settings.port)
        while not self._online.is_set() and self._fatal is None and not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(patience):
                    await self._online.wait()
            if not self.xmpp.is_connected() or loop.time() >= deadline:
                return

    async def _end_earlier_attempts(self) -> None:
        """End every earlier attempt before a new one: slixmpp's own background retry,
        and a socket that connected just as its attempt was cancelled or timed out.
        slixmpp serves one socket at a time; a second one would open a second stream
        for our full JID, which the server ends with a ``conflict`` (seen under load:
        the transport then stopped for good in the middle of an outage)."""
        # slixmpp keeps no public handle on its pending attempt (slixmpp >= 1.8.5)
        pending = getattr(self.xmpp, "_current_connection_attempt", None)
        self.xmpp.cancel_connection_attempt()
        if isinstance(pending, asyncio.Future) and not pending.done():
            await asyncio.wait([pending], timeout=5.0)
        if self.xmpp.is_connected() and not self._online.is_set():
            gone = self.xmpp.disconnected
            self.xmpp.abort()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await gone

    async def upload_media(self, data: bytes) -> str:
        """Store an (encrypted) blob with XEP-0363 HTTP File Upload on our server
        (``transports.media.MediaStore``); returns its GET URL. The slot's file name is
        random: the server learns neither the name nor the content."""
        self._check_open()
        if "xep_0363" not in self.xmpp.plugin:
            self.xmpp.register_plugin("xep_0363")
        upload = self.xmpp.plugin["xep_0363"]
        try:
            url = await upload.upload_file(
                f"{secrets.token_hex(12)}.bin", size=len(data), content_type=BLOB_TYPE,
                input_file=io.BytesIO(data), timeout=self.settings.submit_timeout)
        except FileTooBig as exc:
            raise MediaTooLargeError(f"the upload service refused the file: {exc}") from None
        except UploadServiceNotFound:
            domain = self.settings.bare_jid.partition("@")[2]
            raise InvalidRequestError(f"{domain} offers no XEP-0363 HTTP File Upload "
                                      "service") from None
        except (HTTPError, IqError, IqTimeout, aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"XEP-0363 upload failed: {exc!r}") from None
        return str(url)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._notify()
        tasks = {s.task for s in self._sources.values() if s.task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._owns and self.xmpp.is_connected():
            # the stream close flushes what is queued (e.g. Welcomes just sent)
            with contextlib.suppress(Exception):
                gone = self.xmpp.disconnected
                self.xmpp.disconnect(wait=1.0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await gone
        if self._owns:
            self.xmpp.cancel_connection_attempt()
            self.xmpp.abort()
        for name, handler in (("mls_payload", self._on_payload), ("mls_error", self._on_error),
                              ("mls_room_exit", self._on_room_exit),
                              ("session_start", self._on_session_start),
                              ("disconnected", self._on_disconnected),
                              ("stream_error", self._on_stream_error),
                              ("failed_all_auth", self._on_failed_auth)):
            self.xmpp.del_event_handler(name, handler)

    async def __aenter__(self) -> XmppDeliveryTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosedError("the XMPP transport is closed")
        if self._fatal is not None:
            kind, why = self._fatal
            raise kind(why)

    async def _wait_online(self) -> None:
        self._check_open()
        if not self._online.is_set():
            online = asyncio.ensure_future(self._online.wait())
            stopped = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({online, stopped}, timeout=self.settings.submit_timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                online.cancel()
                stopped.cancel()
                await asyncio.gather(online, stopped, return_exceptions=True)
            self._check_open()
            if not self._online.is_set():
                raise TransportError("not connected to the XMPP server")
        self._check_open()

    def _own(self, name: str, client_id: object) -> str:
        if not isinstance(client_id, str) or not client_id:
            raise InvalidRequestError(f"{name} must be a non-empty str")
        if client_id != self.client_id:
            raise InvalidRequestError(f"this transport serves {self.client_id}, "
                                      f"not {client_id!r}")
        return client_id

    @property
    def _nick(self) -> str:
        return self.client_id

    def room_jid(self, group_id: bytes) -> str:
        return f"{room_localpart(group_id)}@{self.muc_service}"

    # ------------------------------------------------------------------ room membership

    def _on_room_exit(self, exit_: RoomExit) -> None:
        """An occupant of one of our groups' rooms was kicked (307), banned (301) or lost
        its membership (321) (XEP-0045 §9.1, §9.4, §9.5): reported as a
        :class:`RoomEvent` (the plugin already dropped presence not from our MUC
        service)."""
        room = JID(exit_.room)
        group_id = group_of_room(str(room.user)) if room.domain == self.muc_service else None
        if group_id is None or self.room_jid(group_id) != str(room.bare):
            return
        change = RoomChange.BANNED if "301" in exit_.codes else RoomChange.KICKED
        own = "110" in exit_.codes or exit_.nick == self._nick
        if own:  # no longer an occupant: no rejoining, no reading until subscribed again
            self._present.discard(str(room.bare))
        self._room_events.append(RoomEvent(group_id, f"xmpp:{exit_.user}", change, self=own))
        self._notify()

    def _refused(self, group_id: bytes, exc: XmppError) -> bool:
        """The group's room refused to let us in because we are an outcast
        (``forbidden``, XEP-0045 §7.2.7) or no longer a member of the members-only room
        (``registration-required``, §7.2.6): we were banned or removed while away.
        Only asked for rooms we were in before (earlier runs, a reconnection), never
        for a first join after a Welcome (which may race the invitation that makes us
        a member). Reported once as our own exit; the room is no longer read or rejoined (its
        archive would refuse us too). Other failures: False."""
        if exc.condition not in REFUSED:
            return False
        key = self.room_jid(group_id)
        source = self._sources.pop(key, None)
        if source is not None and source.task is not None:
            source.task.cancel()
        self._joined.discard(key)
        self._present.discard(key)
        change = RoomChange.BANNED if exc.condition == "forbidden" else RoomChange.KICKED
        self._room_events.append(RoomEvent(group_id, self.user_id, change, self=True))
        self._notify()
        log.info("%s: %s refuses us (%s)", self.client_id, key, exc.condition)
        return True

    def room_events(self) -> list[RoomEvent]:
        """Room membership changes since the previous call (``DeliveryTransport``)."""
        events, self._room_events = self._room_events, []
        return events

    # ------------------------------------------------------------------ live input

    def _on_payload(self, msg: Message) -> None:
        sender = msg["from"]
        if msg["type"] == "groupchat":
            source = self._sources.get(str(sender.bare))
        else:
            source = self._sources.get(OWN)
        if source is None:
            return
        if source.live and not (source.task and not source.task.done()) and \
                self._take_live(source, msg):
            return
        self._kick(source)

    def _take_live(self, source: _Source, msg: Message) -> bool:
        """Ingest a room reflection without a MAM query when it is certainly the next
        archive entry: the last read of the archive was complete, we were an occupant
        throughout and nothing arrived since (MUC delivers in archive order on one
        stream), the room stamped its
        archive id (XEP-0359 ``stanza-id by=room``) and the occupant's real JID is
        known from its presence. Otherwise the caller reads the archive."""
        sid = next((e.get("id") for e in msg.xml.findall(f"{{{SID_NS}}}stanza-id")
                    if e.get("by") == source.key and e.get("id")), None)
        real = self.plugin.occupants.get(source.key, {}).get(str(msg["from"].resource))
        if sid is None or real is None or sid in source.id_set:
            return False
        xml = copy.deepcopy(msg.xml)
        x = ET.SubElement(xml, f"{{{MUC_USER_NS}}}x")
        ET.SubElement(x, f"{{{MUC_USER_NS}}}item", {"jid": real})
        self._ingest(source, ArchivedMessage(sid, xml))
        self._notify()
        source.progress.set()
        return True

    def _on_error(self, msg: Message) -> None:
        msg_id = str(msg["id"] or "")
        if msg_id:
            cond = str(msg["error"]["condition"] or "error")
            self._errors[msg_id.rsplit("-", 1)[0]] = cond
            for source in self._sources.values():
                source.progress.set()

    def _kick(self, source: _Source) -> None:
        """Read the source's archive after its last id, now or after the running read."""
        if self._closed:
            return
        if source.task is not None and not source.task.done():
            source.dirty = True
            return
        source.task = asyncio.ensure_future(self._sync_loop(source))

    async def _sync_loop(self, source: _Source) -> None:
        while not self._closed:
            source.dirty = False
            try:
                await self._sync(source)
            except (XmppError, TransportError) as exc:
                # a room that refuses us: its join reports it (``_refused``), once
                quiet = isinstance(exc, XmppError) and (exc.condition == "disconnected" or (
                    exc.condition in REFUSED and source.key != OWN))
                log.log(logging.INFO if quiet else logging.WARNING,
                        "reading %s failed: %s", source.key or "our archive", exc)
                return
            if not source.dirty:
                return

    async def _sync(self, source: _Source) -> None:
        """Read every new archive entry of ``source`` into the stream."""
        async with source.lock:
            archive = None if source.key == OWN else JID(source.key)
            source.live = False
            # live reflections continue the archive only if we were an occupant all along
            present = source.key in self._present
            while True:
                try:
                    page = await self.plugin.mam_page(archive, after=source.last_id(),
                                                      max_items=MAM_PAGE)
                except XmppError as exc:
                    if exc.condition != "item-not-found" or source.ids or source.base is None:
                        raise
                    # a start the archive does not hold (expired, or a Welcome's wrong
                    # ``after``): read it from its start (the client drops old epochs)
                    log.warning("%s: %s has no entry %s; reading it from its start",
                                self.client_id, source.key or "our archive", source.base)
                    source.base, source.skip = None, 0
                    continue
                for entry in page.messages:
                    if entry.archive_id not in source.id_set:
                        self._ingest(source, entry)
                if page.messages:
                    self._notify()
                    source.progress.set()
                if page.complete or not page.messages:
                    break
            source.live = present and source.key in self._present
            source.progress.set()
            if source.key == OWN:
                self._own_read = True
        if source.key == OWN and (self._pending_claims or self._retract):
            await self._process_claims()

    async def _settle(self) -> None:
        """Wait for reads in progress (so a fetch sees what already reached us)."""
        tasks = {s.task for s in self._sources.values() if s.task and not s.task.done()}
        if tasks:  # asyncio.wait: never raises their errors, never eats our cancellation
            await asyncio.wait(tasks, timeout=self.settings.submit_timeout)

    # ------------------------------------------------------------------ ingestion

    def _ingest(self, source: _Source, entry: ArchivedMessage) -> None:
        index = len(source.ids)
        source.ids.append(entry.archive_id)
        source.id_set.add(entry.archive_id)
        replay = index < source.skip  # consumed before a resume: rebuild, never yield
        origin = entry.message.find(f"{{{SID_NS}}}origin-id")
        if origin is not None and origin.get("id") and self._sent_by_us(source, entry):
            source.origins.setdefault(origin.get("id", ""), index)
        el = entry.message.find(TAG)
        if el is None:
            return
        try:
            item = (self._own_entry(source, entry, el, index, replay) if source.key == OWN
                    else self._room_entry(source, entry, el, index))
        except _Rejected as exc:
            if not replay:  # judged before the resume already
                self._drop(exc, source.key or "our archive")
            return
        except Exception as exc:  # a parser bug on hostile input never stops a reader
            if not replay:
                self._drop(_Rejected(entry.message.get("from"), _kind_of(el), "malformed-item",
                                     f"{type(exc).__name__}: {exc}"),
                           source.key or "our archive")
            return
        if item is not None and not replay:
            self._append(item)

    def _drop(self, exc: _Rejected, where: str) -> None:
        self.drops.drop(sender=exc.sender, kind=exc.kind, reason=exc.reason,
                        detail=f"{exc.detail}; {self.client_id}, {where}")

    def _sent_by_us(self, source: _Source, entry: ArchivedMessage) -> bool:
        if source.key == OWN:
            return str(JID(entry.message.get("from", "")).bare) == self.bare
        item = entry.message.find(f"{{{MUC_USER_NS}}}x/{{{MUC_USER_NS}}}item")
        return item is not None and str(JID(item.get("jid", "")).bare) == self.bare

    def _complete(self, assembler: Reassembler, key: str, who: str | None, el: ET.Element,
                  index: int) -> Envelope | None:
        """Parse one ``<mls/>`` element and add it to ``assembler`` under ``key`` (the
        authenticated sender); the whole item once complete. ``who`` names the sender
        when it is dropped."""
        try:
            chunk = parse_element(el, max(self.settings.chunk_size * 2, 2 * 96 * 1024))
        except StanzaError as exc:
            raise _Rejected(who, _kind_of(el), "malformed-element", str(exc)) from None
        assembler.max_payload = self.settings.max_payload
        try:
            return assembler.add(key, chunk, index)
        except StanzaError as exc:
            raise _Rejected(who, _kind_of(el), "chunking-error", str(exc)) from None

    @staticmethod
    def _real_jid(entry: ArchivedMessage, el: ET.Element) -> str:
        """The bare real JID a non-anonymous room recorded for a room entry's sender
        (``<x xmlns=muc#user><item jid=/>``)."""
        item = entry.message.find(f"{{{MUC_USER_NS}}}x/{{{MUC_USER_NS}}}item")
        real = item.get("jid") if item is not None else None
        if not real or not JID(real).bare:
            raise _Rejected(entry.message.get("from"), _kind_of(el), "room-no-real-jid",
                            "room entry without the sender's real JID (is the room "
                            "non-anonymous?)")
        return str(JID(real).bare)

    def _room_entry(self, source: _Source, entry: ArchivedMessage, el: ET.Element,
                    index: int) -> IncomingMessage | None:
        """A room entry: the sender's bare JID is the one the non-anonymous room recorded
        (``<x xmlns=muc#user><item jid=/>`` in the archived stanza)."""
        bare = self._real_jid(entry, el)
        who = f"xmpp:{bare}"
        env = self._complete(source.assembler, bare, who, el, index)
        if env is None or env.kind is Kind.GROUP_INFO:
            return None  # a chunk, or a GroupInfo item (read by fetch_group_info)
        if env.kind is not Kind.GROUP:
            raise _Rejected(who, env.kind.value, "room-wrong-kind",
                            f"a {env.kind.value!r} item belongs in a direct message")
        if env.group_id != source.group_id:
            raise _Rejected(who, "group", "room-wrong-group",
                            "<mls/> names another group than the room's")
        try:
            header = read_header(env.payload)
        except InvalidRequestError as exc:
            raise _Rejected(who, "group", "room-bad-header", str(exc)) from None
        if header.group_id != source.group_id or header.epoch != env.epoch:
            raise _Rejected(who, "group", "room-header-mismatch",
                            "the MLSMessage header disagrees with its <mls/> element")
        source.order[index] = (header.epoch, header.content_type == ContentType.COMMIT)
        position = _position(source.key, entry.archive_id)
        self._positions[position] = (source.key, entry.archive_id)
        relay = env.relay
        # a relayed item names its origin client; the poster is still the account the
        # room authenticated (the bridged wrapper decides whether to trust it)
        return IncomingMessage(MessageKind.GROUP, env.payload, "", group_id=env.group_id,
                               sender=f"{bare}/{env.device}" if relay is None
                               else relay.sender,
                               position=position, sender_identity=f"xmpp:{bare}",
                               relay_seq=None if relay is None else relay.seq,
                               relayed_for=None if relay is None else relay.relayed_for,
                               message_id=env.msg_id or None)

    def _own_entry(self, source: _Source, entry: ArchivedMessage, el: ET.Element,
                   index: int, replay: bool = False) -> IncomingMessage | None:
        """An entry of our archive: Welcomes and claim notices for this device, control
        bodies for our account. ``replay``: consumed before a resume (no side effects)."""
        to, frm = JID(entry.message.get("to", "")), JID(entry.message.get("from", ""))
        if str(to.bare) != self.bare:
            return None  # sent by us
        if el.get("kind") == Kind.CONTROL.value:
            return self._control_entry(source, frm, el, index)
        if el.get("device") != self.device:
            return None  # for another device of ours
        who = f"xmpp:{frm.bare}" if frm.bare else None
        env = self._complete(source.assembler, str(frm), who, el, index)
        if env is None:
            return None
        if env.kind is Kind.CLAIM:
            if not replay:
                self._claim_notice(entry.archive_id, frm, env)
            return None
        if env.kind is Kind.WELCOME:
            return self._welcome_entry(frm, env, replay)
        raise _Rejected(who, env.kind.value, "direct-wrong-kind",
                        f"a {env.kind.value!r} item belongs in the group's room")

    def _claim_notice(self, archive_id: str, frm: JID, env: Envelope) -> None:
        """A KeyPackage claim notice (docs/xmpp.md "KeyPackages"): well-formed ones wait
        to be judged against our node after the read (:meth:`_process_claims`)."""
        if archive_id in self._claims_seen:
            return  # judged before a rebase
        self._claims_seen[archive_id] = None
        while len(self._claims_seen) > MAX_SEEN_CLAIMS:
            self._claims_seen.popitem(last=False)
        who = f"xmpp:{frm.bare}" if frm.bare else None
        if not frm.bare or env.payload or env.group_id is not None or env.epoch is not None \
                or env.after is not None or not _is_ref(env.ref or ""):
            raise _Rejected(who, "claim", "claim-malformed",
                            "a claim names one KeyPackageRef and carries nothing else")
        if len(self._pending_claims) >= MAX_PENDING_CLAIMS:
            raise _Rejected(who, "claim", "claim-rate-limited", "too many notices waiting")
        self._pending_claims.append((str(frm.bare), env.ref or "", not self._own_read))

    def _welcome_entry(self, frm: JID, env: Envelope, replay: bool) -> IncomingMessage:
        """A Welcome for this device: delivered only if it is an MLSMessage(Welcome)
        naming a KeyPackageRef we published (RFC 9420 §12.4.3.1: ``new_member``). Its
        room is not followed here: :meth:`subscribe` does, once the client joined."""
        who = f"xmpp:{frm.bare}" if frm.bare else None
        if env.group_id is None:
            raise _Rejected(who, "welcome", "welcome-malformed", "it names no group")
        try:
            welcome = MLSMessage.decode(env.payload).welcome
        except MLSError as exc:
            raise _Rejected(who, "welcome", "welcome-undecodable",
                            f"{type(exc).__name__}: {exc}") from None
        if welcome is None:
            raise _Rejected(who, "welcome", "welcome-undecodable",
                            "not an MLSMessage(Welcome)")
        refs = {secrets_.new_member.hex() for secrets_ in welcome.secrets}
        ours = refs & self._published
        if not ours:
            raise _Rejected(who, "welcome", "welcome-not-for-us",
                            f"it names {len(refs)} KeyPackageRef(s), none this device "
                            "published")
        if not replay:
            self._remember_welcome(env.group_id, env.after, ours)
        return IncomingMessage(MessageKind.WELCOME, env.payload, "", group_id=env.group_id,
                               sender=str(frm), sender_identity=who)

    def _remember_welcome(self, group_id: bytes, after: str | None, refs: set[str]) -> None:
        known = self._welcomed.get(group_id)
        if known is None:
            self._welcomed[group_id] = _Welcomed(after, set(refs))
            while len(self._welcomed) > MAX_WELCOMED:
                self._welcomed.popitem(last=False)
            return
        if known.after != after:
            known.after = None  # Welcomes disagree: read the room from its start
        known.refs |= refs

    def _control_entry(self, source: _Source, frm: JID, el: ET.Element,
                       index: int) -> IncomingMessage | None:
        """A control body sent to our account (every device of it takes it); the
        sender is the full JID the server stamped on the direct message."""
        if str(frm) == self.client_id or not frm.bare:
            return None  # our own, sent to another device of ours
        who = f"xmpp:{frm.bare}"
        env = self._complete(source.assembler, str(frm), who, el, index)
        if env is None:
            return None
        if env.kind is not Kind.CONTROL or env.group_id is not None or env.epoch is not None:
            raise _Rejected(who, "control", "control-malformed",
                            "a control item names no group or epoch")
        return IncomingMessage(MessageKind.CONTROL, env.payload, "", group_id=None,
                               sender=str(frm), sender_identity=f"xmpp:{frm.bare}")

    def _append(self, item: IncomingMessage) -> None:
        vector = {k: s.safe_point() for k, s in self._sources.items()}
        pending = [(gid, w) for gid, w in self._welcomed.items()
                   if w.after is not None and self.room_jid(gid) not in self._sources]
        for gid, welcomed in pending[-MAX_PENDING_IN_CURSOR:]:
            vector[PENDING + b64url(gid)] = (welcomed.after, 0)
        cursor = encode_cursor(vector)
        n = 1
        unique = cursor
        while unique in self._cursor_at:  # same safe points: make the cursor unique
            vector = decode_cursor(cursor)
            vector["#"] = (None, n)
            unique, n = encode_cursor(vector), n + 1
        item = replace(item, cursor=unique)
        self._stream.append(item)
        self._cursor_at[unique] = self._dropped + len(self._stream)
        if len(self._stream) > self.keep_items:
            self._trim()
        self._notify()

    def _trim(self) -> None:
        """Keep the newest half of the in-memory stream."""
        cut = len(self._stream) - self.keep_items // 2
        for old in self._stream[:cut]:
            self._cursor_at.pop(old.cursor, None)
        self._base_cursor = self._stream[cut - 1].cursor
        self._stream = self._stream[cut:]
        self._dropped += cut

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _add_room(self, group_id: bytes, base: str | None = None) -> _Source:
        """The group's room as a source (read from after ``base`` if it is new)."""
        key = self.room_jid(group_id)
        source = self._sources.get(key)
        if source is None:
            source = self._sources[key] = _Source(key, group_id, base)
            self._kick(source)
        return source

    # ------------------------------------------------------------------ cursors

    async def _locate(self, after: str | None) -> int:
        """The absolute stream index just after cursor ``after``; a cursor of another
        instance (e.g. before a restart) or one trimmed from memory re-reads every
        source from the cursor's archive ids."""
        if after is None or after == self._base_cursor:
            return self._dropped
        index = self._cursor_at.get(after)
        if index is not None:
            return index
        vector = decode_cursor(after)
        async with self._rebase_lock:
            if after not in self._cursor_at and after != self._base_cursor:
                await self._rebase(after, vector)
        return self._cursor_at.get(after, self._dropped)

    def _slice(self, index: int, limit: int | None = None) -> list[IncomingMessage]:
        start = max(index - self._dropped, 0)
        return self._stream[start:None if limit is None else start + limit]

    async def _rebase(self, cursor: str, vector: dict[str, tuple[str | None, int]]) -> None:
        tasks = {s.task for s in self._sources.values() if s.task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        old = self._sources
        self._sources = {}
        vector.pop("#", None)
        pending = {k: vector.pop(k) for k in list(vector) if k.startswith(PENDING)}
        for key, (base, skip) in vector.items():
            gid = old[key].group_id if key in old else group_of_room(JID(key).user)
            if key != OWN and gid is None:
                continue
            self._sources[key] = _Source(key, gid, base, skip)
        for key, (base, _) in pending.items():
            # a Welcome's room: from its ``after`` if we follow it since, else only
            # remembered for a later subscribe (a Welcome alone never makes us read a room)
            with contextlib.suppress(StanzaError, ValueError):
                gid = unb64url(key[len(PENDING):])
                room = self.room_jid(gid)
                if room in old and room not in self._sources:
                    self._sources[room] = _Source(room, gid, base)
                elif room not in old:
                    self._welcomed.setdefault(gid, _Welcomed(base, set()))
        for key, source in old.items():  # subscribed since: from the archive start
            if key not in self._sources:
                self._sources[key] = _Source(key, source.group_id,
                                             source.base if key == OWN else None)
        self._stream = []
        self._cursor_at = {}
        self._dropped = 0
        self._base_cursor = cursor
        self._generation += 1
        for source in self._sources.values():
            try:
                await self._sync(source)
            except XmppError as exc:  # e.g. no longer a member: the others still count
                log.warning("reading %s failed: %s", source.key or "our archive", exc)

    # ------------------------------------------------------------------ delivery

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        self._own("client_id", client_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidRequestError("limit must be a positive int")
        if after is not None:
            decode_cursor(after)
        await self._wait_online()
        index = await self._locate(after)
        await self._settle()
        return self._slice(index, limit)

    def receive(self, client_id: str, after: str | None = None
                ) -> AsyncIterator[IncomingMessage]:
        self._own("client_id", client_id)
        if after is not None:
            decode_cursor(after)
        self._check_open()
        return self._stream_from(after)

    async def _stream_from(self, after: str | None) -> AsyncIterator[IncomingMessage]:
        try:
            await self._wait_online()
            index = await self._locate(after)
        except TransportClosedError:
            return
        generation = self._generation
        while not self._closed:
            self._check_open()  # a session conflict ends the stream with its error
            changed = self._changed
            if generation != self._generation or index < self._dropped:
                index, generation = await self._locate(after), self._generation
            batch = self._slice(index)
            for item in batch:
                yield item
                after, index = item.cursor, index + 1
                if self._closed:
                    return
            if not batch:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await changed.wait()

    # ------------------------------------------------------------------ groups

    async def _ensure_joined(self, group_id: bytes, *, remember: bool = True,
                             base: str | None = None) -> _Source:
        """Join the group's room (once) and, unless it came from there, add it to the
        device's private room list so later runs rejoin it. ``base``: a new source
        starts reading the room after this archive id."""
        await self._wait_online()
        source = self._add_room(group_id, base)
        if source.key not in self._joined:
            await self.plugin.join_room(JID(source.key), self._nick)
            self._joined.add(source.key)
            self._present.add(source.key)
            self._kick(source)  # what was posted before we became an occupant
            if remember:
                payload = ET.Element(f"{{{NS}}}room", {"group": b64url(group_id)})
                await self.plugin.pep_publish(self._rooms_node, room_localpart(group_id),
                                              payload, PRIVATE_OPTIONS)
        return source

    async def subscribe(self, client_id: str, group_id: bytes) -> None:
        """Follow the group's room. After a join from a Welcome (the only way a
        Welcome's room is ever followed), the room is read from the Commit that added
        us and the one-use KeyPackages the Welcome named are retracted."""
        self._own("client_id", client_id)
        group_id = require_bytes("group_id", group_id)
        welcomed = self._welcomed.pop(group_id, None)
        await self._ensure_joined(group_id, base=None if welcomed is None else welcomed.after)
        if welcomed is not None:
            await self._consume(welcomed.refs)

    async def unsubscribe(self, client_id: str, group_id: bytes) -> None:
        self._own("client_id", client_id)
        key = self.room_jid(require_bytes("group_id", group_id))
        source = self._sources.pop(key, None)
        if source is not None and source.task is not None:
            source.task.cancel()
        self._present.discard(key)
        if key in self._joined:
            self._joined.discard(key)
            with contextlib.suppress(Exception):
                self.plugin.leave_room(JID(key), self._nick)
        await self.plugin.pep_retract(self._rooms_node, [room_localpart(group_id)])

    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        """Send to the room and wait until the archive holds our message (so
        :meth:`fetch` returns it). A Commit is ACCEPTED when no Commit for its epoch
        precedes it in the room's order, else ORDERED (the stream decides).
        ``message_id`` is the envelope's msg id (its chunks' origin-ids): a message the
        room already holds under that id is not sent again."""
        group_id = require_bytes("group_id", group_id)
        payload = require_bytes("payload", payload)
        self._own("sender", sender)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise InvalidRequestError("epoch must be a non-negative int")
        if not isinstance(is_commit, bool):
            raise InvalidRequestError("is_commit must be a bool")
        if message_id is not None:
            message_id = require_message_id(message_id)
        check_header(payload, group_id, epoch, is_commit)
        source = await self._ensure_joined(group_id)
        env = (Envelope(Kind.GROUP, payload, self.device, group_id, epoch) if message_id is None
               else Envelope(Kind.GROUP, payload, self.device, group_id, epoch,
                             msg_id=message_id))
        index = await self._send_and_wait(source, env)
        position = _position(source.key, source.ids[index])
        self._positions[position] = (source.key, source.ids[index])
        if is_commit and any(i < index and e == epoch and c
                             for i, (e, c) in source.order.items()):
            return SubmitResult(SubmitStatus.ORDERED, position)
        return SubmitResult(SubmitStatus.ACCEPTED, position)

    async def _send_and_wait(self, source: _Source, env: Envelope,
                             to: JID | None = None) -> int:
        """Send ``env`` to the room (or as a direct message ``to`` an account, watching
        our own archive, where the server keeps a copy of what we send) again after a
        reconnect if it was lost, until the archive holds its last chunk; returns that
        entry's index."""
        deadline = asyncio.get_running_loop().time() + self.settings.submit_timeout
        parts = len(env.chunks(self.settings.chunk_size, self.settings.max_payload))
        last = f"{env.msg_id}-{parts - 1}"
        while True:
            await self._wait_online()
            if last in source.origins:  # stored before (a resubmission): not again
                return source.origins[last]
            origins = self.plugin.send_envelope(
                JID(source.key) if to is None else to, "groupchat" if to is None else "chat",
                env, chunk_size=self.settings.chunk_size,
                max_payload=self.settings.max_payload)
            stalled = False
            while True:
                if origins[-1] in source.origins:
                    return source.origins[origins[-1]]
                error = self._errors.pop(env.msg_id, None)
                if error is not None:
                    raise XmppError(f"{to or 'the room'} refused our message: {error}",
                                    error)
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise TransportError("timed out waiting for the room to reflect our "
                                         "message")
                if not self._online.is_set():
                    await self._wait_online()
                    await self._sync(source)
                    if origins[-1] not in source.origins:
                        break  # lost in the disconnect: send again (same ids)
                    continue
                source.progress.clear()
                if not source.live or stalled:  # else the live reflection brings it
                    self._kick(source)
                stalled = True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, 0.5)):
                        await source.progress.wait()
                        stalled = False

    async def send_welcome(self, client_ids: Sequence[str], welcome: bytes,
                           group_id: bytes, after_position: int | None = None) -> None:
        """Grant room membership to each recipient's account, then send the Welcome to
        each device (a direct ``chat`` message with a storage hint) naming the archive id
        of the Commit that added them, where the recipient starts reading the room."""
        recipients = require_client_ids(client_ids)
        welcome = require_bytes("welcome", welcome)
        group_id = require_bytes("group_id", group_id)
        source = await self._ensure_joined(group_id)
        after = None
        if after_position is not None and after_position in self._positions:
            room, archive_id = self._positions[after_position]
            if room == source.key:
                after = archive_id
        await asyncio.gather(*(self._grant(JID(source.key), bare) for bare in
                               dict.fromkeys(str(JID(c).bare) for c in recipients)))
        for client in recipients:
            jid = JID(client)
            if not jid.resource:
                raise InvalidRequestError(f"client id {client!r} is not a full JID")
            env = Envelope(Kind.WELCOME, welcome, str(jid.resource), group_id, after=after)
            self.plugin.send_envelope(jid, "chat", env, chunk_size=self.settings.chunk_size,
                                      max_payload=self.settings.max_payload)

    # ------------------------------------------------------------------ bridge support

    async def relay_group(self, group_id: bytes, payload: bytes, *, seq: int,
                          sender_identity: str, sender: str | None = None) -> int | None:
        """Post ``payload`` into the group's room as hub item ``seq`` offered by
        ``sender_identity`` (client ``sender``): a ``group`` item carrying ``relay-seq``,
        ``relay-for`` and ``relay-sender`` (docs/xmpp.md, "Bridge support"), chunked like
        any item. Waits for the room's reflection; returns its position."""
        group_id = require_bytes("group_id", group_id)
        payload = require_bytes("payload", payload)
        relay = Relay(seq, sender_identity, sender)  # InvalidRequestError when malformed
        header = read_header(payload)
        if header.group_id != group_id:
            raise InvalidRequestError("the payload belongs to another group")
        source = await self._ensure_joined(group_id)
        env = Envelope(Kind.GROUP, payload, self.device, group_id, header.epoch, relay=relay)
        index = await self._send_and_wait(source, env)
        position = _position(source.key, source.ids[index])
        self._positions[position] = (source.key, source.ids[index])
        return position

    async def send_control(self, user_id: str, body: bytes) -> None:
        """Send ``body`` to the account ``user_id`` (``xmpp:<bare JID>``) as a direct
        ``chat`` message of kind ``control`` (chunked when large, with a storage hint:
        every device reads it from its account's archive, also after being offline).
        Returns once our own archive holds it, i.e. the server accepted it."""
        bare = _bare_of_user(user_id)
        body = require_bytes("body", body)
        await self._wait_online()
        own = self._sources.get(OWN)
        if own is None:
            raise TransportError("the transport is not started")
        env = Envelope(Kind.CONTROL, body, self.device)
        await self._send_and_wait(own, env, to=JID(bare))

    async def admit(self, group_id: bytes, user_id: str) -> None:
        """Make ``user_id`` (the bridge's account) an ``admin`` of the group's room
        (XEP-0045 §9.3: it may then grant membership, kick and ban). Needs the room's
        owner; an account that already owns the room keeps ownership."""
        bare = _bare_of_user(user_id)
        source = await self._ensure_joined(require_bytes("group_id", group_id))
        room = JID(source.key)
        if bare in await self.plugin.affiliations(room, "owner"):
            return
        await self.plugin.set_affiliation(room, bare, "admin")

    async def _grant(self, room: JID, bare: str) -> None:
        """Membership of ``bare``: as owner/admin by the admin list, else by a mediated
        invitation (rooms allow member invitations)."""
        if bare == self.bare:
            return
        try:
            await self.plugin.set_affiliation(room, bare, "member")
        except XmppError as exc:
            if exc.condition not in ("forbidden", "not-allowed"):
                raise
            self.plugin.invite(room, bare)

    async def revoke(self, group_id: bytes, user_ids: Sequence[str]) -> None:
        """Take room membership away from users no longer in the MLS group (needs the
        room's owner or an admin; others get XmppError ``forbidden``)."""
        room = JID(self.room_jid(require_bytes("group_id", group_id)))
        for user in user_ids:
            await self.plugin.set_affiliation(room, _bare_of_user(user), "none")

    # ------------------------------------------------------------------ GroupInfo

    async def publish_group_info(self, group_id: bytes, epoch: int, group_info: bytes,
                                 ratchet_tree: bytes | None = None) -> None:
        group_id = require_bytes("group_id", group_id)
        group_info = require_bytes("group_info", group_info)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise InvalidRequestError("epoch must be a non-negative int")
        if ratchet_tree is not None:
            ratchet_tree = require_bytes("ratchet_tree", ratchet_tree)
        source = await self._ensure_joined(group_id)
        env = Envelope(Kind.GROUP_INFO, encode_group_info(group_info, ratchet_tree),
                       self.device, group_id, epoch)
        await self._send_and_wait(source, env)

    async def fetch_group_info(self, group_id: bytes) -> tuple[bytes, bytes | None]:
        """The newest GroupInfo of the group a joiner can trust (docs/xmpp.md
        "GroupInfo"). The room's archive is read in order, from its start the first time
        and then after the last entry read (RSM paging): each ``group-info`` item is
        checked as a joiner would with ``writer = xmpp:<real bare JID>`` of its poster
        (:func:`~transports.group_info.check_group_info`, RFC 9420 §12.4.3.1; the
        configured bridge and :attr:`trusted_relayers` may post others' GroupInfo) and
        must continue the room's GroupInfo history (:mod:`transports.group_info_chain`):
        the chain starts at our own account, a relayer, a room owner, or the writer of
        the archive's first GroupInfo if it is at epoch 0. Every candidate that fails is
        dropped through :attr:`drops` with its writer as sender (``group-info-unlinked``
        for a valid one that never linked). UnknownGroupError only when nothing is
        trusted. The archive is read again from its start when :attr:`trusted_relayers`
        changed since the last read."""
        group_id = require_bytes("group_id", group_id)
        await self._wait_online()
        room = JID(self.room_jid(group_id))
        relayers = frozenset(self._relayers())
        state = self._group_info.get(str(room))
        if state is None or state.relayers != relayers:
            # first read, or other relayers: what they posted reads differently now
            state = self._group_info[str(room)] = _GroupInfoRoom(
                Reassembler(self.settings.max_payload), relayers)
        async with state.lock:
            try:
                await self._read_group_info(room, group_id, state)
            except XmppError as exc:
                raise UnknownGroupError(f"no GroupInfo for group {group_id.hex()}: "
                                        f"{exc}") from None
            finally:
                self._report_unlinked(state, room)
            head = state.chain.head
            if head is None:
                raise UnknownGroupError(f"no valid GroupInfo published for group "
                                        f"{group_id.hex()}")
            return state.payloads[head.event_id]

    def _relayers(self) -> set[str]:
        """Accounts trusted to post GroupInfo signed by others: the configured bridge
        and :attr:`trusted_relayers`."""
        bridge = self.settings.bridge
        return self.trusted_relayers | ({f"xmpp:{JID(bridge).bare}"} if bridge else set())

    async def _group_info_anchors(self, room: JID, state: _GroupInfoRoom) -> set[str]:
        """Who may start the room's chain: our account, the trusted relayers and, while
        nothing is trusted yet, the room's owners (the group's creator, then the policy's
        admins; members may read the list, XEP-0045 §9.5), also while the chain starts
        at a first epoch-0 writer who is none of these."""
        anchors = {self.user_id, *state.relayers}
        if state.chain.head is None or state.weak_root:
            anchors |= {f"xmpp:{o}" for o in await self.plugin.affiliations(room, "owner")}
        return anchors

    async def _read_group_info(self, room: JID, group_id: bytes,
                               state: _GroupInfoRoom) -> None:
        """Offer every archive entry after the chain's token to the chain, in order."""
        anchors = await self._group_info_anchors(room, state)
        while True:
            try:
                page = await self.plugin.mam_page(room, after=state.chain.token,
                                                  max_items=MAM_PAGE)
            except XmppError as exc:
                if exc.condition != "item-not-found" or state.chain.token is None:
                    raise
                # the last entry read expired: what is left is newer; the chain stays
                log.warning("%s: %s has no entry %s any more; reading its GroupInfo from "
                            "its start", self.client_id, room, state.chain.token)
                state.chain.token = None
                continue
            for entry in page.messages:
                self._offer_group_info(room, group_id, state, entry, anchors)
                state.chain.token = entry.archive_id
            if page.complete or not page.messages:
                return

    def _offer_group_info(self, room: JID, group_id: bytes, state: _GroupInfoRoom,
                          entry: ArchivedMessage, anchors: set[str]) -> None:
        """Judge one archive entry: a complete ``group-info`` item that passes the
        joiner's checks is offered to the chain; anything else is dropped."""
        index = state.index
        state.index += 1
        el = entry.message.find(TAG)
        if el is None or el.get("kind") != Kind.GROUP_INFO.value:
            return
        relayers = state.relayers
        try:
            bare = self._real_jid(entry, el)
            writer = f"xmpp:{bare}"
            env = self._complete(state.assembler, bare, writer, el, index)
            if env is None:
                return  # a chunk of an item not complete yet
            first, state.first_seen = not state.first_seen, True
            if env.group_id != group_id:
                raise _Rejected(writer, "group-info", "room-wrong-group",
                                "<mls/> names another group than the room's")
            try:
                info, tree = decode_group_info(env.payload)
            except StanzaError as exc:
                raise _Rejected(writer, "group-info", "group-info-malformed",
                                str(exc)) from None
            try:
                checked = check_group_info(group_id, info, tree, writer=writer,
                                           relayers=relayers, limits=self.settings.limits)
            except GroupInfoRejected as exc:
                raise _Rejected(writer, "group-info", exc.reason, exc.detail) from None
        except _Rejected as exc:
            self._drop(exc, f"{room} {entry.archive_id}")
            return
        except Exception as exc:  # a parser bug on hostile input never stops a reader
            self._drop(_Rejected(entry.message.get("from"), "group-info", "malformed-item",
                                 f"{type(exc).__name__}: {exc}"), str(room))
            return
        link = Link(entry.archive_id, writer, checked.epoch, checked.signer, checked.members)
        chain = state.chain
        if state.weak_root and chain.head is not None and writer in anchors \
                and link.signer not in chain.head.members:
            self._reanchor(state, room, link)
        weak = first and checked.epoch == 0 and writer not in anchors
        if first and checked.epoch == 0:
            # the creator publishes epoch 0 before adding anyone to a members-only room
            anchors = {*anchors, writer}
        rooted = chain.head is None
        state.payloads[link.event_id] = (info, tree)
        if chain.offer(link, anchors=anchors, relayers=relayers) and rooted:
            state.weak_root = weak
        self._keep_group_info(state)

    def _reanchor(self, state: _GroupInfoRoom, room: JID, link: Link) -> None:
        """An owner's (or our, or a relayer's) GroupInfo that the chain, started at the
        first epoch-0 writer who was no such anchor, does not list: that start was a fake
        (e.g. everything before it expired from the archive); start again at ``link``."""
        old = state.chain.head
        assert old is not None
        self.drops.drop(sender=old.writer, kind="group-info", reason="group-info-unlinked",
                        detail=f"{room} {old.event_id}: epoch {old.epoch} signed by "
                               f"{old.signer}, whom {link.writer}'s GroupInfo does not "
                               f"list; {self.client_id}")
        state.chain.head = None
        state.weak_root = False

    def _keep_group_info(self, state: _GroupInfoRoom) -> None:
        """Keep the bytes of the head and of the pending links only, within
        ``GROUP_INFO_HELD * max_payload`` (the oldest pending links are given up)."""
        chain = state.chain
        keep = {p.event_id for p in chain.pending}
        if chain.head is not None:
            keep.add(chain.head.event_id)
        for event_id in [k for k in state.payloads if k not in keep]:
            del state.payloads[event_id]

        def held() -> int:
            return sum(len(i) + len(t or b"") for i, t in state.payloads.values())

        while chain.pending and held() > GROUP_INFO_HELD * self.settings.max_payload:
            oldest = chain.pending[0].event_id
            chain.give_up(oldest)
            state.payloads.pop(oldest, None)

    def _report_unlinked(self, state: _GroupInfoRoom, room: JID) -> None:
        for link in state.chain.unreported():
            self.drops.drop(sender=link.writer, kind="group-info",
                            reason="group-info-unlinked",
                            detail=f"{room} {link.event_id}: epoch {link.epoch} signed by "
                                   f"{link.signer}, whom no trusted GroupInfo lists; "
                                   f"{self.client_id}")

    # ------------------------------------------------------------------ KeyPackages

    def _kp_node(self, device: str) -> str:
        return f"{KP_NODE_PREFIX}{device}"

    async def publish_key_packages(self, client_id: str, user_id: str,
                                   entries: Sequence[KeyPackageEntry]) -> None:
        """One PEP item per KeyPackage (item id = KeyPackageRef hex); a new last-resort
        item replaces the previous one."""
        self._own("client_id", client_id)
        if user_id != self.user_id:
            raise InvalidRequestError(f"this account's user is {self.user_id}, "
                                      f"not {user_id!r}")
        items = require_entries(entries)
        await self._wait_online()
        current = await self._own_items()
        if any(e.ref.hex() in current for e in items):
            raise InvalidRequestError("a KeyPackageRef is already published")
        old_last = [ref for ref, (_, last) in current.items() if last]
        new_last = any(e.last_resort for e in items)
        if len(current) + len(items) - (len(old_last) if new_last else 0) > MAX_KEY_PACKAGES:
            raise InvalidRequestError(f"a device holds at most {MAX_KEY_PACKAGES} "
                                      "KeyPackages (PEP max_items)")
        # first our private record, so a Welcome to any of them is recognised as ours
        refs = [entry.ref.hex() for entry in items]
        self._published.update(refs)
        record = ET.Element(f"{{{NS}}}published")
        record.text = " ".join(refs)
        await self.plugin.pep_publish(self._published_node, refs[0], record, PRIVATE_OPTIONS)
        node = self._kp_node(self.device)
        for entry in items:
            payload = ET.Element(f"{{{NS}}}key-package",
                                 {"last-resort": "true" if entry.last_resort else "false"})
            payload.text = base64.b64encode(entry.key_package).decode()
            await self.plugin.pep_publish(node, entry.ref.hex(), payload, PEP_OPTIONS)
        if new_last and old_last:
            await self.plugin.pep_retract(node, old_last)
        # listed as a device only once its node holds KeyPackages: a claimer who finds
        # the device must find its (open) node too
        await self._publish_device()

    async def _publish_device(self) -> None:
        if self._published_device:
            return
        payload = ET.Element(f"{{{NS}}}device", {"id": self.device})
        await self.plugin.pep_publish(DEVICES_NODE, self.device, payload, PEP_OPTIONS)
        self._published_device = True

    async def _items(self, owner: str | None, device: str) -> dict[str, tuple[bytes, bool]]:
        """ref hex -> (KeyPackage, last_resort) of a device's node (``owner`` None: ours);
        malformed items are dropped."""
        out: dict[str, tuple[bytes, bool]] = {}
        who = f"xmpp:{owner or self.bare}"
        for item in await self.plugin.pep_items(owner, self._kp_node(device)):
            kp = item.find(f"{{{NS}}}key-package")
            ref = item.get("id", "")
            try:
                if kp is None or not _HEX_ID.fullmatch(ref):
                    raise ValueError("an item needs a hex KeyPackageRef id and a "
                                     "<key-package/>")
                data = base64.b64decode((kp.text or "").strip(), validate=True)
                if not data:
                    raise ValueError("an empty KeyPackage")
            except (binascii.Error, ValueError) as exc:
                self.drops.drop(sender=who, kind="key-package", reason="key-package-malformed",
                                detail=f"{exc}; {self._kp_node(device)}")
                continue
            out[ref] = (data, kp.get("last-resort") == "true")
        return out

    async def _own_items(self) -> dict[str, tuple[bytes, bool]]:
        own = self._sources.get(OWN)
        if own is not None:
            await self._sync(own)  # claim notices first
        await self._process_claims()
        return await self._items(None, self.device)

    async def _process_claims(self) -> None:
        """Judge the claim notices read so far and retract what they consumed."""
        async with self._claim_lock:
            await self._process_claims_locked()

    async def _process_claims_locked(self) -> None:
        claims, self._pending_claims = self._pending_claims, []
        retract = set(self._retract)
        self._retract = set()
        if claims:
            try:
                items = await self._items(None, self.device)
            except XmppError:
                self._pending_claims[:0] = claims
                self._retract |= retract
                raise
            for claimant, ref, early in claims:
                reason = self._judge_claim(claimant, ref, items)
                if reason is None:
                    del items[ref]
                    retract.add(ref)
                else:
                    # a stale ref (ours, already gone) in the first read of our archive
                    # is what every restart re-reads: counted, not a warning
                    self.drops.drop(sender=f"xmpp:{claimant}", kind="claim", reason=reason,
                                    detail=f"KeyPackageRef {ref[:16]}…; {self.client_id}",
                                    benign=early and reason == "claim-stale-ref")
        await self._retract_items(retract)

    def _judge_claim(self, claimant: str, ref: str,
                     items: dict[str, tuple[bytes, bool]]) -> str | None:
        """None if a claim notice from ``claimant`` (bare JID) may retract ``ref``, else
        the reason to drop it: only a one-use item now on our node, within the
        claimant's and the device's token buckets. Our own account is not limited; a
        trusted relayer (the bridge claims for every user of the other network) only by
        the device's bucket."""
        item = items.get(ref)
        if item is None:
            # ours but gone (another claimer was first, or a re-read): nothing to do
            return "claim-stale-ref" if ref in self._published else "claim-unknown-ref"
        if item[1]:
            return "claim-last-resort"  # only its owner replaces it
        if claimant == self.bare:
            return None
        relayer = f"xmpp:{claimant}" in self._relayers()
        if not (relayer or self._claims_per.allow(claimant)) \
                or not self._claims_all.allow(self.device):
            return "claim-rate-limited"
        return None

    async def _retract_items(self, refs: set[str]) -> None:
        """Retract used one-use items of our node, counting each in
        :attr:`key_package_claims` once it is gone; what fails is retried after the
        next read of our archive."""
        ordered = sorted(refs)
        for n, ref in enumerate(ordered):
            try:
                await self.plugin.pep_retract(self._kp_node(self.device), [ref])
            except XmppError as exc:
                log.warning("retracting used KeyPackages failed: %s", exc)
                self._retract.update(ordered[n:])
                return
            self.key_package_claims += 1

    async def _consume(self, refs: set[str]) -> None:
        """The client joined from a Welcome naming ``refs``: retract those still on our
        node as one-use items (their claim notice may have been dropped or lost)."""
        try:
            async with self._claim_lock:
                await self._process_claims_locked()  # an accepted claim counts once
                items = await self._items(None, self.device)
                await self._retract_items({ref for ref in refs
                                           if ref in items and not items[ref][1]})
        except XmppError as exc:
            log.warning("retracting the KeyPackage a Welcome used failed: %s", exc)

    async def retract_key_packages(self, client_id: str) -> int:
        """Retract every item of this device's KeyPackage node and forget the refs it
        published (its private record too), so that a Welcome naming one of them is
        refused as not for us: the keys behind them are gone (DeliveryTransport,
        optional). Returns how many items were retracted."""
        self._own("client_id", client_id)
        await self._wait_online()
        async with self._claim_lock:
            await self._process_claims_locked()
            self._retract = set()
            refs = sorted(await self._items(None, self.device))
            await self.plugin.pep_retract(self._kp_node(self.device), refs)
            records = [item.get("id", "") for item in
                       await self.plugin.pep_items(None, self._published_node)]
            await self.plugin.pep_retract(self._published_node, [r for r in records if r])
            self._published.clear()
        return len(refs)

    async def key_package_count(self, client_id: str) -> int:
        self._own("client_id", client_id)
        await self._wait_online()
        return sum(not last for _, last in (await self._own_items()).values())

    async def claim_key_package(self, client_id: str, *,
                                group_id: bytes | None = None) -> ClaimedKeyPackage:
        """A random unclaimed one-use KeyPackage of the device (its owner is told to
        retract it), else its last-resort one."""
        if not isinstance(client_id, str) or not client_id:
            raise InvalidRequestError("client_id must be a non-empty str")
        jid = JID(client_id)
        if not jid.user or not jid.resource:
            raise InvalidRequestError(f"client id {client_id!r} is not a full JID")
        await self._wait_online()
        return await self._claim(str(jid.bare), str(jid.resource))

    async def _claim(self, bare: str, device: str) -> ClaimedKeyPackage:
        items = await self._items(bare, device)
        client_id = f"{bare}/{device}"
        fresh = [r for r, (_, last) in items.items() if not last and r not in self._claimed]
        if fresh:
            ref = secrets.choice(fresh)
            self._claimed.add(ref)
            if bare == self.bare and device == self.device:
                await self.plugin.pep_retract(self._kp_node(device), [ref])
                self.key_package_claims += 1
            else:
                env = Envelope(Kind.CLAIM, b"", device, ref=ref)
                self.plugin.send_envelope(JID(bare), "chat", env, chunk_size=1024,
                                          max_payload=1024)
            return ClaimedKeyPackage(client_id, bytes.fromhex(ref), items[ref][0], False)
        for ref, (data, last) in items.items():
            if last:
                return ClaimedKeyPackage(client_id, bytes.fromhex(ref), data, True)
        raise NoKeyPackageError(f"no KeyPackage available for client {client_id!r}")

    async def claim_user_key_packages(self, user_id: str, *, group_id: bytes | None = None
                                      ) -> list[ClaimedKeyPackage]:
        bare = _bare_of_user(user_id)
        await self._wait_online()
        out: list[ClaimedKeyPackage] = []
        try:
            devices = await self.plugin.pep_items(bare, DEVICES_NODE)
        except XmppError as exc:
            if exc.condition not in ("item-not-found", "forbidden"):
                raise
            # no device list (yet): Prosody answers ``forbidden`` for a PEP node that
            # does not exist; the user has nothing to claim
            log.info("no device list for %s: %s", bare, exc)
            return out
        for item in devices:
            device = item.get("id", "")
            if not device or "/" in device:
                self.drops.drop(sender=user_id, kind="device", reason="device-malformed",
                                detail=f"device item {device[:64]!r}; {self.client_id}")
                continue
            try:
                out.append(await self._claim(bare, device))
            except NoKeyPackageError:
                continue
            except XmppError as exc:
                if exc.condition not in ("item-not-found", "forbidden"):
                    raise
                # a device listed before its node exists (published by an older
                # version) or whose node is gone: it has nothing to claim
                log.info("no KeyPackage node for %s/%s: %s", bare, device, exc)
        return sorted(out, key=lambda c: c.client_id)


# ---------------------------------------------------------------------- validation

#: a PEP item id naming a KeyPackageRef (lower-case hex, as published)
_HEX_ID = re.compile(r"(?:[0-9a-f]{2}){1,128}")


def _is_ref(text: str) -> bool:
    """Whether ``text`` looks like a KeyPackageRef as published: lower-case hex of 1 to
    128 bytes (RFC 9420 §5.2: the suite's hash output; the contract allows any bytes)."""
    return _HEX_ID.fullmatch(text) is not None


def _bare_of_user(user_id: object) -> str:
    if not isinstance(user_id, str) or not user_id.startswith("xmpp:"):
        raise InvalidRequestError("an XMPP user id looks like xmpp:user@domain")
    jid = JID(user_id[5:])
    if not jid.user or jid.resource:
        raise InvalidRequestError(f"{user_id!r} does not name a bare JID")
    return str(jid.bare)


__all__ = ["XmppDeliveryTransport", "b64url", "decode_cursor", "encode_cursor",
           "room_localpart"]
