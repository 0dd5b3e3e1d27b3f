"""``MatrixDeliveryTransport``: the Delivery Service contract on a Matrix homeserver.

One instance per Matrix device (the MLS client ``<user id>/<device id>`` of the user
``matrix:<user id>``). The mapping (``docs/matrix.md``, :mod:`.events`):

* group messages are room events of the room bound to the group; the room timeline as
  the homeserver orders it is the group's total order (RFC 9750 "Ordering"). A submitted
  Commit is ``ACCEPTED`` when no earlier timeline event is a Commit for its epoch, else
  ``ORDERED``: the stream decides (first *valid* Commit wins, at every member);
* KeyPackages are one-time keys of algorithm ``mls.v1.<suite>`` (MSC4256), claimed once
  each through ``/keys/claim``; the fallback key is the last-resort KeyPackage. The owner
  cannot see claimants: it counts the one-time keys that disappear
  (:attr:`MatrixDeliveryTransport.key_package_claims`) and warns of fast depletion;
* Welcomes are to-device messages; each writer's GroupInfo lives in room state under its
  own user id, and readers take the newest one that passes the joiner's checks and
  continues the room's GroupInfo history (:mod:`transports.group_info_chain`); payloads
  over the event size limit go through the media repository (``mxc://`` URI + SHA-256);
* every item the transport refuses is counted and logged at WARNING through
  :attr:`MatrixDeliveryTransport.drops` (rate-limited per sender), as well as listed by
  :meth:`MatrixDeliveryTransport.rejections` when it is an event it refused to deliver;
* the incoming stream is a local :class:`~.journal.Journal` fed by ``/sync``; its ids
  are the durable cursors, and the sync token is stored with what each sync brought.
  Gaps (``limited`` timelines, newly joined rooms) are filled with ``/messages``;
* bridge support (:class:`~transports.base.RelayTransport`, ``docs/matrix.md`` "Bridge
  support"): hub items are group message events with a ``relay`` object, control
  messages are to-device ``org.mlsbridge.control``, and :meth:`admit` invites the bridge
  account with power level 100.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mls_core.config import InputLimits
from mls_core.errors import DecodeError
from mls_core.framing import ContentType, MLSMessage
from transports.base import (
    ClaimedKeyPackage,
    FatalTransportError,
    IncomingMessage,
    InvalidRequestError,
    KeyPackageEntry,
    NoKeyPackageError,
    RoomChange,
    RoomEvent,
    SubmitResult,
    SubmitStatus,
    TransportClosedError,
    TransportError,
    UnknownGroupError,
)
from transports.defence import Drops
from transports.group_info import CheckedGroupInfo, GroupInfoRejected, check_group_info
from transports.group_info_chain import Chain, Link
from transports.header import check_header, read_header
from transports.validation import (
    parse_cursor,
    require_bytes,
    require_client_ids,
    require_entries,
    require_epoch,
    require_limit,
    require_message_id,
)

from . import events as ev
from .api import CLIENT, MatrixApi, MatrixApiError, quote
from .journal import (
    Bind,
    Control,
    EventRecord,
    GroupEvent,
    Invite,
    Journal,
    Membership,
    MembershipChange,
    Op,
    Rejected,
    RoomRecord,
    Seen,
    Subscribe,
    Welcome,
)

log = logging.getLogger(__name__)
#: journal mark: the membership log position :meth:`room_events` reported up to
_ROOM_EVENTS_MARK = "room_events.cursor"

DEFAULT_LONG_POLL_MS = 5_000
#: claims :meth:`MatrixDeliveryTransport.retract_key_packages` makes at most (more
#: than a pool holds: mls_client's pool_size is at most 1000)
MAX_RETRACT = 1_100
DEFAULT_TIMELINE_LIMIT = 500
DEFAULT_SUBMIT_TIMEOUT = 30.0
#: backoff of :meth:`MatrixDeliveryTransport.receive` after a failed ``/sync`` (seconds):
#: full jitter below a ceiling doubling from STREAM_RETRY_INITIAL to STREAM_RETRY_CAP
STREAM_RETRY_INITIAL = 0.5
STREAM_RETRY_CAP = 10.0
_BACKFILL_PAGE = 500
_PARALLEL_INVITES = 8
_TRANSIENT_ATTEMPTS = 3
_TO_DEVICE_BUDGET = 1_000_000
POWER_LEVELS = "m.room.power_levels"
#: the bridge account's power level: it invites, kicks, bans and sends state whatever
#: the room policy's levels are (room versions spec, "Authorization rules")
BRIDGE_LEVEL = 100
#: GroupInfo events read per ``/messages`` page (each may hold ~64 kB)
_GROUP_INFO_PAGE = 50
#: seconds over which claims of our one-time KeyPackages are summed for the warning
DEPLETION_WINDOW = 300.0
#: fewest claims within the window that may warn (one claim is an ordinary add)
_MIN_DEPLETION = 2


class MatrixDeliveryTransport:
    """A :class:`~transports.base.DeliveryTransport` (and
    :class:`~transports.base.RelayTransport`) for one Matrix device. ``bridge``: the
    user id (or ``matrix:`` identity) of the bridge account of bridged groups, whose
    power level room policy sync never lowers (``mls_client.matrix_rights``)."""

    network = "matrix"

    def __init__(self, api: MatrixApi, journal: Journal, *, cipher_suite: int = 1,
                 long_poll_ms: int = DEFAULT_LONG_POLL_MS,
                 timeline_limit: int = DEFAULT_TIMELINE_LIMIT,
                 max_media: int = ev.DEFAULT_MAX_MEDIA,
                 submit_timeout: float = DEFAULT_SUBMIT_TIMEOUT,
                 bridge: str | None = None, limits: InputLimits | None = None) -> None:
        #: the bridge account's Matrix user id, if groups of this device are bridged
        self.bridge_user = None if bridge is None else ev.user_of_identity(bridge)
        #: bounds on the GroupInfos read from rooms (``MatrixSettings.limits``, RFC 9420
        #: §12.4.3.2; docs/security.md "Bounds")
        self.limits = limits or InputLimits()
        self._api = api
        self._journal = journal
        self.cipher_suite = cipher_suite
        self._long_poll_ms = long_poll_ms
        self._timeline_limit = timeline_limit
        self._max_media = max_media
        self._submit_timeout = submit_timeout
        self._filter_id: str | None = None
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[Any] | None = None
        self._closed = False
        #: ``/messages`` pages fetched to fill timeline gaps (observability, tests)
        self.backfill_pages = 0
        self._transient: dict[str, int] = {}
        #: devices of other users that advertise our algorithm (``/keys/query``)
        self._devices: dict[str, frozenset[str]] = {}
        self._queried: set[str] = set()  # users looked up during the current sync
        #: every refused item, counted per reason, WARNING lines rate-limited per sender
        self.drops = Drops(self.network)
        #: accounts (``matrix:<user id>``) that may publish GroupInfo signed by someone
        #: else, as they mirror members' GroupInfo (the signer must still be a member
        #: the room's trusted GroupInfo lists); the configured bridge is one already
        #: (:attr:`group_info_relayers`)
        self.trusted_relayers: set[str] = set()
        #: one-time KeyPackages of this device claimed by others so far (never decreases;
        #: counted from ``device_one_time_keys_count`` in ``/sync`` and the counts
        #: ``/keys/upload`` returns, our own uploads left out)
        self.key_package_claims = 0
        #: the device's one-time KeyPackage count as last seen (None: not yet)
        self.one_time_key_count: int | None = None
        #: "possible KeyPackage depletion" warnings so far
        self.depletion_warnings = 0
        self.depletion_window = DEPLETION_WINDOW
        self._clock: Callable[[], float] = time.monotonic
        self._count_high_water = 0
        self._claim_log: deque[tuple[float, int]] = deque()
        self._last_depletion_warning: float | None = None
        self._upload_gen = 0  # changes whenever one of our uploads starts or ends
        self._uploading = 0
        #: items delivered with a doubt (forged own echo, unknown device), reported
        #: through ``drops`` once the sync that found them is applied
        self._flags: list[Rejected] = []
        self._group_info_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, homeserver: str, user_id: str, *, journal_path: str | Path,
                      password: str | None = None, access_token: str | None = None,
                      device_id: str | None = None, ca_file: Path | None = None,
                      **options: Any) -> MatrixDeliveryTransport:
        """Log in (a password login reuses the device remembered in the journal) and
        advertise the device's MLS algorithm with minimal device keys, so other users
        find it with ``/keys/query``. ``ca_file``: the CAs an ``https://`` homeserver's
        certificate must chain to, instead of the system's (``MatrixSettings.ca_file``)."""
        journal = Journal(journal_path)
        try:
            remembered = journal.meta("device_id")
            api = await MatrixApi.login(homeserver, user_id, password=password,
                                        access_token=access_token,
                                        device_id=device_id or remembered, ca_file=ca_file)
        except BaseException:
            journal.close()
            raise
        transport = cls(api, journal, **options)
        try:
            if remembered is not None and remembered != api.device_id:
                raise InvalidRequestError(f"the journal belongs to device {remembered}, "
                                          f"not {api.device_id}")
            journal.set_meta("device_id", api.device_id)
            await transport._advertise()
        except BaseException:
            await transport.close()
            raise
        return transport

    # ------------------------------------------------------------------ identity

    @property
    def matrix_user_id(self) -> str:
        """The Matrix user id, e.g. ``@alice:example.org``."""
        return self._api.user_id

    @property
    def user_id(self) -> str:
        """The MLS user id this transport is bound to (``MLSClient.create_identity``
        takes it from here): ``matrix:<user id>``, the same as :attr:`identity`."""
        return self.identity

    @property
    def device_id(self) -> str:
        return self._api.device_id

    @property
    def client_id(self) -> str:
        """This device's MLS client id: ``<user id>/<device id>``."""
        return ev.client_id_of(self.matrix_user_id, self.device_id)

    @property
    def identity(self) -> str:
        """The MLS credential identity of this user: ``matrix:<user id>``."""
        return ev.identity_of(self.matrix_user_id)

    @property
    def api(self) -> MatrixApi:
        return self._api

    @property
    def group_info_relayers(self) -> frozenset[str]:
        """Writers whose GroupInfo need not be signed by themselves: the configured bridge
        (``matrix:<bridge>``) and :attr:`trusted_relayers`."""
        bridge = set() if self.bridge_user is None else {ev.identity_of(self.bridge_user)}
        return frozenset(self.trusted_relayers | bridge)

    def _check(self, client_id: object) -> None:
        if self._closed:
            raise TransportClosedError("the Matrix transport is closed")
        if client_id != self.client_id:
            raise InvalidRequestError(f"this transport serves {self.client_id}, not "
                                      f"{client_id!r}")

    async def upload_media(self, data: bytes) -> str:
        """Store an (encrypted) blob in the media repository
        (``transports.media.MediaStore``); returns its plain HTTP download URL."""
        if self._closed:
            raise TransportClosedError("the Matrix transport is closed")
        return self._api.media_url(await self._api.upload(data))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._preempt()
        async with self._lock:
            await self._api.close()
            self._journal.close()

    async def __aenter__(self) -> MatrixDeliveryTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ KeyPackages

    @property
    def _algorithm(self) -> str:
        return ev.key_algorithm(self.cipher_suite)

    async def _advertise(self) -> None:
        if self._journal.meta("device_keys") == self._algorithm:
            return
        await self._api.request("POST", f"{CLIENT}/keys/upload", {"device_keys": {
            "user_id": self.matrix_user_id, "device_id": self.device_id,
            "algorithms": [self._algorithm], "keys": {}, "signatures": {}}})
        self._journal.set_meta("device_keys", self._algorithm)

    async def publish_key_packages(self, client_id: str, user_id: str,
                                   entries: Sequence[KeyPackageEntry]) -> None:
        """Upload one-time keys ``mls.v1.<suite>:<ref hex>``; the last-resort entry is
        the algorithm's fallback key (it replaces the previous one)."""
        self._check(client_id)
        if user_id != self.identity:
            raise InvalidRequestError(f"this device belongs to {self.identity}")
        one_time: dict[str, Any] = {}
        fallback: dict[str, Any] = {}
        entries = require_entries(entries)
        # keys uploaded before (a retry) do not raise the count again
        fresh = self._journal.record_refs(e.ref for e in entries if not e.last_resort)
        self._journal.record_refs(e.ref for e in entries if e.last_resort)
        for entry in entries:
            suite = ev.key_package_suite(entry.key_package)
            target = fallback if entry.last_resort else one_time
            target[ev.key_id(suite, entry.ref)] = ev.key_object(
                entry.key_package, last_resort=entry.last_resort)
        body: dict[str, Any] = {"one_time_keys": one_time}
        if fallback:
            body["fallback_keys"] = fallback
        await self._upload(body, fresh)

    async def retract_key_packages(self, client_id: str) -> int:
        """Withdraw this device's KeyPackages (DeliveryTransport, optional). The client
        API cannot delete one-time keys, so they are claimed, one ``/keys/claim`` each,
        until the server hands out the fallback key (or nothing); the fallback key is
        replaced by the next last-resort upload. Returns how many there were."""
        self._check(client_id)
        withdrawn = 0
        for _ in range(MAX_RETRACT):
            claimed = await self._claim(self.matrix_user_id, [self.device_id])
            if not claimed:
                break
            withdrawn += 1
            if claimed[0].last_resort:
                break
        return withdrawn

    async def key_package_count(self, client_id: str) -> int:
        self._check(client_id)
        count = await self._upload({}, 0)
        return 0 if count is None else count

    async def _upload(self, body: dict[str, Any], fresh: int) -> int | None:
        """``POST /keys/upload`` adding ``fresh`` new one-time keys; the count it
        returns is a KeyPackage count observation (:meth:`_observe_count`), unless
        another upload of ours overlapped it."""
        self._uploading += 1
        self._upload_gen += 1
        gen = self._upload_gen
        try:
            out = await self._api.request("POST", f"{CLIENT}/keys/upload", body)
        finally:
            overlapped = self._upload_gen != gen
            self._uploading -= 1
            self._upload_gen += 1
        count = self._count_of(out.get("one_time_key_counts"))
        if count is not None:
            self._observe_count(count, fresh, trusted=not overlapped)
        return count

    def _count_of(self, counts: object) -> int | None:
        """Our algorithm's entry of a one-time key count map (absent: 0)."""
        if not isinstance(counts, dict):
            return None
        value = counts.get(self._algorithm, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return None
        return value

    def _observe_count(self, count: int, uploaded: int = 0, *, trusted: bool = True) -> None:
        """A new one-time KeyPackage count: keys that disappeared since the last count
        (our ``uploaded`` ones aside) were claimed by someone (client-server API "Claim
        one-time encryption keys": the homeserver hands each out once and deletes it).
        An observation that may have raced with one of our uploads only resets the
        baseline, so claims are never over-counted."""
        before, self.one_time_key_count = self.one_time_key_count, count
        self._count_high_water = max(self._count_high_water, count)
        if before is None or not trusted:
            return
        claimed = before + uploaded - count
        if claimed > 0:
            self._record_claims(claimed)

    def _record_claims(self, claimed: int) -> None:
        """Add ``claimed`` to :attr:`key_package_claims`; warn (at most once per window)
        when the whole pool — as many KeyPackages as the highest count seen, and at
        least :data:`_MIN_DEPLETION` — was claimed within :attr:`depletion_window`
        seconds."""
        now = self._clock()
        self.key_package_claims += claimed
        self._claim_log.append((now, claimed))
        while self._claim_log and now - self._claim_log[0][0] > self.depletion_window:
            self._claim_log.popleft()
        recent = sum(n for _, n in self._claim_log)
        if recent < max(_MIN_DEPLETION, self._count_high_water):
            return
        last = self._last_depletion_warning
        if last is not None and now - last < self.depletion_window:
            return
        self._last_depletion_warning = now
        self.depletion_warnings += 1
        self.drops.counts["possible-key-package-depletion"] += 1
        log.warning("possible KeyPackage depletion: %d one-time KeyPackages of %s claimed "
                    "within %g s (pool of up to %d, %d left); the homeserver does not say "
                    "by whom, the last-resort KeyPackage keeps the device addable",
                    recent, self.client_id, self.depletion_window, self._count_high_water,
                    self.one_time_key_count or 0)

    async def claim_key_package(self, client_id: str, *,
                                group_id: bytes | None = None) -> ClaimedKeyPackage:
        user, device = ev.split_client_id(client_id)
        claimed = await self._claim(user, [device])
        if not claimed:
            raise NoKeyPackageError(f"no KeyPackage published for {client_id}")
        return claimed[0]

    async def claim_user_key_packages(self, user_id: str, *, group_id: bytes | None = None
                                      ) -> list[ClaimedKeyPackage]:
        """One KeyPackage per device of the user that advertises our algorithm in
        ``/keys/query`` (devices without any KeyPackage left are skipped)."""
        user = ev.user_of_identity(user_id)
        out = await self._api.request("POST", f"{CLIENT}/keys/query",
                                      {"device_keys": {user: []}})
        devices = out.get("device_keys", {}).get(user, {})
        mine = sorted(d for d, keys in devices.items() if isinstance(keys, dict)
                      and self._algorithm in (keys.get("algorithms") or []))
        return await self._claim(user, mine) if mine else []

    async def _claim(self, user: str, devices: Sequence[str]) -> list[ClaimedKeyPackage]:
        out = await self._api.request("POST", f"{CLIENT}/keys/claim", {
            "one_time_keys": {user: dict.fromkeys(devices, self._algorithm)},
            "timeout": 10_000})
        got = out.get("one_time_keys", {}).get(user, {})
        claimed = []
        for device in devices:
            keys = got.get(device) if isinstance(got, dict) else None
            for kid, obj in (keys or {}).items():
                try:
                    suite, ref = ev.parse_key_id(kid)
                    kp, last_resort = ev.parse_key_object(obj)
                except InvalidRequestError as exc:
                    self.drops.drop(sender=ev.identity_of(user), kind="key-package",
                                    reason="malformed-key-package",
                                    detail=f"device {device}: {exc}")
                    continue
                if suite == self.cipher_suite:
                    claimed.append(ClaimedKeyPackage(ev.client_id_of(user, device), ref, kp,
                                                     last_resort))
                    break
        return claimed

    # ------------------------------------------------------------------ rooms

    def _room(self, group_id: bytes) -> RoomRecord:
        room = self._journal.room_for_group(group_id)
        if room is None:
            raise UnknownGroupError(f"no Matrix room is bound to group {group_id.hex()}")
        return room

    def room_id(self, group_id: bytes) -> str | None:
        """The room bound to ``group_id``, if this device knows it."""
        room = self._journal.room_for_group(group_id)
        return None if room is None else room.room_id

    async def subscribe(self, client_id: str, group_id: bytes) -> None:
        """Deliver the group's messages from now on; creates the room (bound to the
        group in its state) if no room is bound yet, joins it if we are invited."""
        self._check(client_id)
        group_id = require_bytes("group_id", group_id)
        room = self._journal.room_for_group(group_id)
        if room is None:
            room_id = await self._join_invited(group_id) or await self._create_room(group_id)
        else:
            room_id = room.room_id
            if self._journal.membership(room_id, self.matrix_user_id) != "join":
                await self._api.request("POST", f"{CLIENT}/join/{quote(room_id)}", {})
        self._apply([Subscribe(room_id, group_id)])

    async def locate_group(self, group_id: bytes) -> bool:
        """Bind the group's room again when our journal does not know it (the device
        lost its state and recovers the group: RFC 9750 "Recovery After State Loss";
        DeliveryTransport, optional): a sync binds the rooms it sees; else each room
        the account is joined to is asked for its group binding. Whether the group's
        room is known now."""
        group_id = require_bytes("group_id", group_id)
        if self._journal.room_for_group(group_id) is not None:
            return True
        await self._sync(0)
        if self._journal.room_for_group(group_id) is not None:
            return True
        joined = await self._api.request("GET", f"{CLIENT}/joined_rooms")
        rooms = joined.get("joined_rooms") if isinstance(joined, dict) else None
        found = []
        for room_id in rooms if isinstance(rooms, list) else []:
            if not isinstance(room_id, str):
                continue
            try:
                bound = ev.parse_group_state(await self._api.request(
                    "GET", f"{CLIENT}/rooms/{quote(room_id)}/state/{ev.GROUP_STATE}/"))
            except (MatrixApiError, ev.MalformedEventError):
                continue
            if bound == group_id:
                found.append(room_id)
        if len(found) != 1:  # none, or a room that copies the binding: bind neither
            if found:
                log.warning("rooms %s all claim group %s: none is bound", ", ".join(found),
                            group_id.hex())
            return False
        self._apply([Subscribe(found[0], group_id)])
        return True

    async def _join_invited(self, group_id: bytes) -> str | None:
        """Join the room we were invited to for ``group_id`` (e.g. by :meth:`admit`),
        if any: the invite only names the group, so the room's binding is checked after
        joining, and a room bound to anything else is left again."""
        await self._sync(0)
        known = self._journal.room_for_group(group_id)
        if known is not None:
            return known.room_id  # a sync or a Welcome bound it meanwhile
        for room_id in self._journal.invited_rooms(group_id):
            self._preempt()
            async with self._lock:  # no sync may journal the room before it is bound
                inviter = self._journal.inviter(room_id)
                if await self._joined_bound(room_id, group_id):
                    self._apply([Invite(room_id, None), Subscribe(room_id, group_id)])
                    return room_id
                self._apply([Invite(room_id, None), Rejected(
                    room_id, f"the invite named group {group_id.hex()}, the room not",
                    "invite-wrong-group", "invite",
                    ev.identity_of(inviter) if inviter else None)])
        return None

    async def _joined_bound(self, room_id: str, group_id: bytes) -> bool:
        try:
            await self._api.request("POST", f"{CLIENT}/join/{quote(room_id)}", {})
            bound = ev.parse_group_state(await self._api.request(
                "GET", f"{CLIENT}/rooms/{quote(room_id)}/state/{ev.GROUP_STATE}/"))
        except (MatrixApiError, ev.MalformedEventError) as exc:
            log.warning("cannot join %s for group %s: %s", room_id, group_id.hex(), exc)
            bound = None
        if bound == group_id:
            return True
        try:
            await self._api.request("POST", f"{CLIENT}/rooms/{quote(room_id)}/leave", {})
        except MatrixApiError as exc:
            log.info("cannot leave %s: %s", room_id, exc)
        return False

    async def _create_room(self, group_id: bytes) -> str:
        """A private room whose state binds it to the group. Any member may invite,
        send group messages and publish its GroupInfo (power level 0); the binding needs
        level 100 (:data:`~.events.MLS_EVENT_LEVELS`, set right after creation so that
        the homeserver's default levels of the other event types stay). A group with a
        room policy gets power levels derived from it (mls_client.matrix_rights)."""
        out = await self._api.request("POST", f"{CLIENT}/createRoom", {
            "preset": "private_chat",
            "topic": ev.group_hint(group_id),
            "initial_state": [{"type": ev.GROUP_STATE, "state_key": "",
                               "content": ev.group_state_content(group_id)}],
            "power_level_content_override": {"invite": 0},
        })
        room_id = out.get("room_id")
        if not isinstance(room_id, str):
            raise TransportError("createRoom returned no room_id")
        await self._set_event_levels(room_id)
        return room_id

    async def _set_event_levels(self, room_id: str) -> None:
        """Merge :data:`~.events.MLS_EVENT_LEVELS` into the room's ``events`` levels
        (``power_level_content_override`` would replace the whole ``events`` map, and
        with it the homeserver's levels for ``m.room.power_levels``, history visibility,
        tombstone...)."""
        path = f"{CLIENT}/rooms/{quote(room_id)}/state/{POWER_LEVELS}/"
        levels = await self._api.request("GET", path)
        events = levels.get("events")
        events = dict(events) if isinstance(events, dict) else {}
        wanted = {**events, **ev.MLS_EVENT_LEVELS}
        if wanted != events:
            await self._api.request("PUT", path, {**levels, "events": wanted})

    async def unsubscribe(self, client_id: str, group_id: bytes) -> None:
        """Stop delivering the group's messages to this device. The room is not left:
        membership is per user, and the user's other devices may still be members."""
        self._check(client_id)
        self._journal.unsubscribe(require_bytes("group_id", group_id))

    # ------------------------------------------------------------------ sending

    async def _carry(self, data: bytes, limit: int) -> ev.Carried:
        if len(data) <= limit:
            return ev.Carried(inline=data)
        uri = await self._api.upload(data)
        return ev.Carried(media=ev.media_ref(uri, data))

    async def _resolve(self, carried: ev.Carried) -> bytes:
        if carried.inline is not None:
            return carried.inline
        assert carried.media is not None
        server, media_id = carried.media.server_and_id()
        data = await self._api.download(server, media_id, min(self._max_media,
                                                               carried.media.size))
        return carried.media.verify(data)

    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        """Send the message to the group's room and wait until the timeline (via sync)
        has it, so :meth:`fetch` returns everything up to it. A Commit is ACCEPTED when
        no earlier Commit for its epoch is in the timeline, else ORDERED. The
        transaction id is ``mls.<message_id>`` (else derived from the bytes): the
        homeserver stores a retried PUT once (Client-Server API, "Transaction
        identifiers")."""
        self._check(sender)
        group_id = require_bytes("group_id", group_id)
        epoch = require_epoch(epoch)
        payload = require_bytes("payload", payload)
        if not isinstance(is_commit, bool):
            raise InvalidRequestError("is_commit must be a bool")
        check_header(payload, group_id, epoch, is_commit)
        room = self._room(group_id)
        if not room.subscribed:
            self._apply([Subscribe(room.room_id, group_id)])
        if message_id is not None:
            message_id = require_message_id(message_id)
        content = ev.message_content(await self._carry(payload, ev.INLINE_LIMIT),
                                     self.device_id, message_id=message_id)
        # one message id (else the same bytes) gets the same transaction id: a
        # resubmission is idempotent
        txn = ("mls." + hashlib.sha256(payload).hexdigest()[:40] if message_id is None
               else "mls." + message_id)
        self._journal.record_txn(txn)
        out = await self._api.request(
            "PUT", f"{CLIENT}/rooms/{quote(room.room_id)}/send/{ev.MESSAGE_EVENT}/{txn}",
            content)
        event_id = out.get("event_id")
        if not isinstance(event_id, str):
            raise TransportError("the homeserver returned no event_id")
        record = await self._await_event(event_id)
        if is_commit and self._journal.earlier_commit(group_id, epoch, record.position):
            return SubmitResult(SubmitStatus.ORDERED, record.position)
        return SubmitResult(SubmitStatus.ACCEPTED, record.position)

    async def _await_event(self, event_id: str) -> EventRecord:
        deadline = time.monotonic() + self._submit_timeout
        while True:
            record = self._journal.event(event_id)
            if record is not None:
                return record
            reason = self._journal.rejection(event_id)
            if reason is not None:
                raise InvalidRequestError(f"our event {event_id} was refused: {reason}")
            if time.monotonic() > deadline:
                raise TransportError(f"{event_id} did not appear in the timeline within "
                                     f"{self._submit_timeout} s")
            await self._sync(1_000)

    async def send_welcome(self, client_ids: Sequence[str], welcome: bytes,
                           group_id: bytes, after_position: int | None = None) -> None:
        """Invite the recipients' users to the room, then send the Welcome as a to-device
        message to each device, naming the Commit that added them (``after_event``)."""
        recipients = [ev.split_client_id(c) for c in require_client_ids(client_ids)]
        welcome = require_bytes("welcome", welcome)
        room = self._room(require_bytes("group_id", group_id))
        after = None if after_position is None else self._journal.event_at(room.room_id,
                                                                           after_position)
        limit = asyncio.Semaphore(_PARALLEL_INVITES)

        async def invite(user: str) -> None:
            async with limit:
                await self._invite(room.room_id, user)

        await asyncio.gather(*(invite(u) for u in dict.fromkeys(u for u, _ in recipients)))
        # one request carries a copy per device: past a budget, upload the Welcome once
        inline = ev.INLINE_LIMIT if len(welcome) * len(recipients) <= _TO_DEVICE_BUDGET else 0
        content = ev.welcome_content(await self._carry(welcome, inline), group_id,
                                     room.room_id, after)
        messages: dict[str, dict[str, Any]] = {}
        for user, device in recipients:
            messages.setdefault(user, {})[device] = content
        txn = hashlib.sha256(welcome + json.dumps(sorted(client_ids)).encode()).hexdigest()
        await self._api.request("PUT", f"{CLIENT}/sendToDevice/{ev.WELCOME_EVENT}/{txn[:40]}",
                                {"messages": messages})

    async def _invite(self, room_id: str, user: str) -> None:
        if user == self.matrix_user_id or self._journal.membership(room_id, user) in ("join",
                                                                               "invite"):
            return
        try:
            await self._api.request("POST", f"{CLIENT}/rooms/{quote(room_id)}/invite",
                                    {"user_id": user})
        except MatrixApiError as exc:
            if exc.status != 403:
                raise
            state = await self._member_state(room_id, user)
            if state not in ("join", "invite"):
                # e.g. banned: the Welcome still goes out, but the room stays closed to
                # them; raising would make the client retry this forever
                log.warning("cannot invite %s to %s (%s); sending the Welcome anyway",
                            user, room_id, exc)

    async def _member_state(self, room_id: str, user: str) -> str | None:
        try:
            out = await self._api.request(
                "GET", f"{CLIENT}/rooms/{quote(room_id)}/state/m.room.member/{quote(user)}")
        except MatrixApiError:
            return None
        membership = out.get("membership")
        return membership if isinstance(membership, str) else None

    # ------------------------------------------------------------------ bridge support

    async def relay_group(self, group_id: bytes, payload: bytes, *, seq: int,
                          sender_identity: str, sender: str | None = None) -> int | None:
        """Post ``payload`` as hub item ``seq`` offered by ``sender_identity`` (client
        ``sender``): a group message event with a ``relay`` object. Waits, like
        :meth:`submit`, until the timeline has it; returns its position."""
        if self._closed:
            raise TransportClosedError("the Matrix transport is closed")
        group_id = require_bytes("group_id", group_id)
        payload = require_bytes("payload", payload)
        relay = ev.Relay.from_json(ev.Relay(seq, sender_identity, sender).to_json())
        if read_header(payload).group_id != group_id:
            raise InvalidRequestError("payload group_id differs from the given group_id")
        room = self._room(group_id)
        if not room.subscribed:
            self._apply([Subscribe(room.room_id, group_id)])
        content = ev.message_content(await self._carry(payload, ev.INLINE_LIMIT),
                                     self.device_id, relay)
        # a relay of the same item after a crash is the same transaction (idempotent)
        digest = hashlib.sha256(seq.to_bytes(8, "big") + payload).hexdigest()
        txn = "relay." + digest[:40]
        self._journal.record_txn(txn)
        out = await self._api.request(
            "PUT", f"{CLIENT}/rooms/{quote(room.room_id)}/send/{ev.MESSAGE_EVENT}/{txn}",
            content)
        event_id = out.get("event_id")
        if not isinstance(event_id, str):
            raise TransportError("the homeserver returned no event_id")
        return (await self._await_event(event_id)).position

    async def send_control(self, user_id: str, body: bytes) -> None:
        """Send ``body`` to every device of ``user_id`` (``matrix:<user id>``) as a
        to-device :data:`~.events.CONTROL_EVENT` (device ``*``, client-server API
        "Send-to-Device messaging"): the homeserver keeps it for each device until that
        device's next ``/sync``. Bodies over the inline limit go through media."""
        if self._closed:
            raise TransportClosedError("the Matrix transport is closed")
        user = ev.require_identity(user_id)
        body = require_bytes("body", body)
        content = ev.control_content(await self._carry(body, ev.INLINE_LIMIT),
                                     self.device_id)
        txn = hashlib.sha256(user.encode() + b"\0" + body).hexdigest()[:40]
        await self._api.request("PUT", f"{CLIENT}/sendToDevice/{ev.CONTROL_EVENT}/{txn}",
                                {"messages": {user: {"*": content}}})

    async def admit(self, group_id: bytes, user_id: str) -> None:
        """Give ``user_id`` (the bridge, ``matrix:<user id>``) power level 100 in the
        group's room and invite it, naming the group in the invite's reason (its
        :meth:`subscribe` finds the room by it). The caller needs level 100 itself
        (a sender cannot raise anyone above its own level)."""
        if self._closed:
            raise TransportClosedError("the Matrix transport is closed")
        user = ev.require_identity(user_id)
        group_id = require_bytes("group_id", group_id)
        room = self._room(group_id)
        path = f"{CLIENT}/rooms/{quote(room.room_id)}/state/{POWER_LEVELS}/"
        levels = await self._api.request("GET", path)
        users = levels.get("users")
        users = dict(users) if isinstance(users, dict) else {}
        if users.get(user) != BRIDGE_LEVEL:
            await self._api.request("PUT", path,
                                    {**levels, "users": {**users, user: BRIDGE_LEVEL}})
        if user == self.matrix_user_id:
            return
        try:
            await self._api.request("POST", f"{CLIENT}/rooms/{quote(room.room_id)}/invite",
                                    {"user_id": user, "reason": ev.group_hint(group_id)})
        except MatrixApiError as exc:
            # already invited or joined is fine; anything else is the caller's problem
            if exc.status != 403 or await self._member_state(room.room_id, user) not in (
                    "join", "invite"):
                raise

    # ------------------------------------------------------------------ GroupInfo

    def _group_info_path(self, room_id: str, state_key: str) -> str:
        return (f"{CLIENT}/rooms/{quote(room_id)}/state/{ev.GROUP_INFO_STATE}/"
                f"{quote(state_key)}")

    async def publish_group_info(self, group_id: bytes, epoch: int, group_info: bytes,
                                 ratchet_tree: bytes | None = None) -> None:
        """Room state :data:`~.events.GROUP_INFO_STATE` under our own user id (nobody
        else may write that state key); an older epoch never replaces a newer one of
        ours; large GroupInfo/tree go through the media repository."""
        group_id = require_bytes("group_id", group_id)
        epoch = require_epoch(epoch)
        group_info = require_bytes("group_info", group_info)
        room = self._room(group_id)
        path = self._group_info_path(room.room_id,
                                     ev.group_info_state_key(self.matrix_user_id))
        current = await self._own_group_info(path)
        if current is not None and current.epoch > epoch:
            return
        half = ev.INLINE_LIMIT // 2
        info = await self._carry(group_info, half)
        tree = None if ratchet_tree is None else await self._carry(
            require_bytes("ratchet_tree", ratchet_tree), half)
        await self._api.request("PUT", path, ev.group_info_content(epoch, info, tree))

    async def _own_group_info(self, path: str) -> ev.ParsedGroupInfo | None:
        try:
            content = await self._api.request("GET", path)
        except MatrixApiError as exc:
            if exc.status == 404:
                return None
            raise
        try:
            return ev.parse_group_info_content(content, self._max_media)
        except InvalidRequestError:
            return None  # not ours to worry about: a new GroupInfo replaces it

    async def fetch_group_info(self, group_id: bytes) -> tuple[bytes, bytes | None]:
        """The newest GroupInfo of the group that a joiner can trust: every
        :data:`~.events.GROUP_INFO_STATE` event of the room (its history since the last
        read, then the current state of every state key, the legacy ``""`` included)
        is checked as a joiner would with ``writer = matrix:<event sender>``
        (:func:`~transports.group_info.check_group_info`; the configured bridge and
        :attr:`trusted_relayers` may publish others' GroupInfo) and must continue the
        room's GroupInfo history (:mod:`transports.group_info_chain`). Every candidate that
        fails is reported through :attr:`drops` with its writer as sender; raises
        :class:`~transports.base.UnknownGroupError` only when none is left."""
        group_id = require_bytes("group_id", group_id)
        room_id = self._room(group_id).room_id
        chain_key, head_key = f"group_info_chain.{room_id}", f"group_info_head.{room_id}"
        async with self._group_info_lock:
            chain = Chain.from_json(self._journal.meta(chain_key))
            head = _decode_head(self._journal.meta(head_key))
            reader = _GroupInfoReader(self, room_id, group_id, chain)
            await reader.read()
            if chain.head is None:
                raise UnknownGroupError(f"no valid GroupInfo published for group "
                                        f"{group_id.hex()}")
            if head is None or head[0] != chain.head.event_id:
                payload = reader.payloads.get(chain.head.event_id) \
                    or await reader.payload_of(chain.head.event_id)
                head = (chain.head.event_id, *payload)
            self._journal.set_metas({chain_key: chain.to_json(),
                                     head_key: _encode_head(*head)})
            return head[1], head[2]

    async def _room_state(self, room_id: str) -> list[dict[str, Any]]:
        """The room's current state events (client-server API ``GET /state``)."""
        raw = await self._api.raw("GET", f"{CLIENT}/rooms/{quote(room_id)}/state")
        try:
            events = json.loads(raw)
        except ValueError:
            raise TransportError("room state: invalid JSON") from None
        return [_dict(e) for e in _list(events)]

    # ------------------------------------------------------------------ receiving

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        """Sync once (without waiting), then return the journal after ``after``."""
        self._check(client_id)
        start = parse_cursor(after)
        limit = require_limit(limit)
        await self._sync(0)
        return self._journal.fetch(start, limit)

    def receive(self, client_id: str, after: str | None = None
                ) -> AsyncIterator[IncomingMessage]:
        self._check(client_id)
        return self._stream(parse_cursor(after))

    async def _stream(self, cursor: int) -> AsyncIterator[IncomingMessage]:
        """The journal from ``cursor``, long-polling ``/sync`` when it runs dry. A failed
        ``/sync`` (homeserver down, connection reset mid long-poll) is retried with
        capped exponential backoff and full jitter; one WARNING per outage, not one per
        attempt (the client reports the outage itself: ``ConnectionLost``)."""
        failures = 0
        while not self._closed:
            batch = self._journal.fetch(cursor, 256)
            for item in batch:
                yield item
                cursor = int(item.cursor)
            if batch or self._closed:
                continue
            poll = asyncio.ensure_future(self._sync(self._long_poll_ms, preemptible=True))
            try:
                await poll
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # preempted by a caller that needed a fresh sync: read the journal again
            except TransportClosedError:
                return
            except FatalTransportError:
                raise  # e.g. a revoked access token: retrying cannot help
            except TransportError as exc:
                failures += 1
                delay = stream_retry_delay(failures)
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "sync failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            else:
                if failures:
                    log.info("sync works again after %d failed attempts", failures)
                failures = 0

    def current_membership(self, room_id: str, user_id: str) -> str | None:
        """The user's membership in the room as last seen by this device."""
        return self._journal.membership(room_id, user_id)

    def mark(self, key: str) -> str | None:
        """A small durable value kept in the journal (e.g. a bot's cursor)."""
        return self._journal.meta(f"mark.{key}")

    def set_mark(self, key: str, value: str) -> None:
        self._journal.set_meta(f"mark.{key}", value)

    def membership_changes(self, after: int = 0) -> list[MembershipChange]:
        """Membership changes seen in the rooms (for the bot's access control)."""
        return self._journal.member_changes(after)

    def room_events(self) -> list[RoomEvent]:
        """Membership changes in bound rooms since the previous call (``DeliveryTransport``
        ``room_events``), from the journal's membership log (its position is a journal
        mark, so a reopened device does not see them twice). A kick or ban of a user
        who is in the room again (invited or joined since) is no longer reported."""
        out: list[RoomEvent] = []
        after = int(self.mark(_ROOM_EVENTS_MARK) or 0)
        while changes := self._journal.member_changes(after):
            for change in changes:
                event = self._room_event_of(change)
                if event is not None:
                    out.append(event)
            after = changes[-1].id
            self.set_mark(_ROOM_EVENTS_MARK, str(after))
        return out

    def _room_event_of(self, change: MembershipChange) -> RoomEvent | None:
        if change.group_id is None:
            return None
        if change.membership == "join":
            kind = RoomChange.JOINED
        elif change.membership == "ban":
            kind = RoomChange.BANNED
        elif change.membership == "leave":
            kind = RoomChange.KICKED if change.kicked_or_banned else RoomChange.LEFT
        else:
            return None
        if kind in (RoomChange.KICKED, RoomChange.BANNED) and self.current_membership(
                change.room_id, change.user_id) not in ("leave", "ban"):
            return None  # invited or joined again since: the old kick no longer applies
        return RoomEvent(change.group_id, ev.identity_of(change.user_id), kind,
                         self=change.user_id == self.matrix_user_id)

    def rejections(self) -> list[tuple[str, str]]:
        """(event id, reason) of every event the transport refused to deliver (each was
        also reported through :attr:`drops`)."""
        return self._journal.rejections()

    def _apply(self, ops: Sequence[Op], token: str | None = None,
               flags: Sequence[Rejected] = ()) -> None:
        """Journal ``ops`` (and the sync token), then report through :attr:`drops`
        whatever was refused and the ``flags`` (items delivered with a doubt)."""
        refused = self._journal.apply(ops, token)
        for item in [*refused, *flags]:
            self.drops.drop(sender=item.sender, kind=item.kind, reason=item.slug,
                            detail=f"{item.event_id}: {item.reason}")

    def _flag(self, event_id: str, reason: str, slug: str, kind: str, sender: str) -> None:
        """Report (after this sync is applied) an item delivered with a doubt."""
        self._flags.append(Rejected(event_id, reason, slug, kind, ev.identity_of(sender)))

    # ------------------------------------------------------------------ sync

    def _preempt(self) -> None:
        if self._poller is not None and not self._poller.done():
            self._poller.cancel()

    async def _sync(self, timeout_ms: int, *, preemptible: bool = False) -> None:
        """One ``/sync``: fetch and resolve (cancellable, no state change), then apply
        everything and the new token in one journal transaction (no ``await``)."""
        if not preemptible:
            self._preempt()
        async with self._lock:
            if self._closed:
                raise TransportClosedError("the Matrix transport is closed")
            if preemptible:
                self._poller = asyncio.current_task()
            gen = self._upload_gen
            try:
                ops, token, count = await self._pull(timeout_ms)
            finally:
                if preemptible:
                    self._poller = None
            flags, self._flags = self._flags, []
            self._apply(ops, token, flags)
            if count is not None:
                # a count the server computed while one of our uploads ran may predate it
                self._observe_count(count, trusted=gen == self._upload_gen
                                    and not self._uploading)

    async def _filter(self) -> str:
        if self._filter_id is None:
            out = await self._api.request(
                "POST", f"{CLIENT}/user/{quote(self.matrix_user_id)}/filter",
                ev.sync_filter(self._timeline_limit))
            filter_id = out.get("filter_id")
            if not isinstance(filter_id, str):
                raise TransportError("the homeserver returned no filter_id")
            self._filter_id = filter_id
        return self._filter_id

    async def _pull(self, timeout_ms: int) -> tuple[list[Op], str, int | None]:
        """One ``/sync`` response as journal operations, its ``next_batch`` and our
        algorithm's ``device_one_time_keys_count`` (client-server API "Extensions to
        /sync" of end-to-end encryption; None if absent)."""
        self._queried.clear()
        self._flags = []
        query = {"filter": await self._filter(), "timeout": str(timeout_ms)}
        token = self._journal.meta("sync_token")
        if token is not None:
            query["since"] = token
        resp = await self._api.request("GET", f"{CLIENT}/sync", query=query,
                                       timeout=timeout_ms / 1000 + 30)
        next_batch = resp.get("next_batch")
        if not isinstance(next_batch, str):
            raise TransportError("/sync returned no next_batch")
        ops: list[Op] = []
        for item in _list(_dict(resp.get("to_device")).get("events")):
            ops.extend(await self._to_device(item))
        rooms = _dict(resp.get("rooms"))
        for room_id, invited in _dict(rooms.get("invite")).items():
            ops.extend(self._invited(room_id, _dict(invited)))
        for room_id in [*_dict(rooms.get("join")), *_dict(rooms.get("leave"))]:
            ops.append(Invite(room_id, None))
        for room_id, joined in _dict(rooms.get("join")).items():
            ops.extend(await self._joined_room(room_id, _dict(joined)))
        for room_id, left in _dict(rooms.get("leave")).items():
            timeline = _list(_dict(_dict(left).get("timeline")).get("events"))
            for event in timeline:
                ops.extend(await self._room_event(room_id, _dict(event)))
        return ops, next_batch, self._count_of(resp.get("device_one_time_keys_count"))

    def _invited(self, room_id: str, invited: Mapping[str, Any]) -> list[Op]:
        """An invite to a room not yet known as bound: remember the group its invite
        reason (or else the room topic, both in the stripped state) names."""
        known = self._journal.room(room_id)
        if known is not None and known.group_id is not None:
            return []
        group_id: bytes | None = None
        inviter = ""
        for event in map(_dict, _list(_dict(invited.get("invite_state")).get("events"))):
            content = _dict(event.get("content"))
            if event.get("type") == "m.room.member" and \
                    event.get("state_key") == self.matrix_user_id:
                inviter = str(event.get("sender", ""))
                group_id = ev.parse_group_hint(content.get("reason")) or group_id
            elif event.get("type") == "m.room.topic" and group_id is None:
                group_id = ev.parse_group_hint(content.get("topic"))
        return [] if group_id is None else [Invite(room_id, group_id, inviter)]

    async def _joined_room(self, room_id: str, joined: Mapping[str, Any]) -> list[Op]:
        """A room's new timeline events, preceded by whatever the sync left out: the
        whole history for a room new to the journal, the gap of a ``limited`` one."""
        room = self._journal.room(room_id)
        timeline = _dict(joined.get("timeline"))
        events = [_dict(e) for e in _list(timeline.get("events"))]
        prev = timeline.get("prev_batch")
        ops: list[Op] = []
        if room is None or room.last_event is None:
            for state in _list(_dict(joined.get("state")).get("events")):
                ops.extend(await self._room_event(room_id, _dict(state), state_only=True))
            bound = (room is not None and room.group_id is not None) or any(
                isinstance(op, Bind) for op in ops) or any(
                e.get("type") == ev.GROUP_STATE for e in events)
            # only rooms bound to a group are worth their history (not every chat room)
            if bound and isinstance(prev, str):
                events = await self._backfill(room_id, prev, None) + events
        elif timeline.get("limited") and isinstance(prev, str):
            events = await self._backfill(room_id, prev, room.last_event) + events
        for event in events:
            ops.extend(await self._room_event(room_id, event))
        if events and isinstance(events[-1].get("event_id"), str):
            ops.append(Seen(room_id, events[-1]["event_id"]))
        return ops

    async def _backfill(self, room_id: str, start: str, stop_at: str | None
                        ) -> list[dict[str, Any]]:
        """Events before ``start`` (back to ``stop_at``, exclusive, or the room's
        beginning), oldest first, via ``/messages`` (spec §"Syncing", gaps)."""
        found: list[dict[str, Any]] = []
        token: str | None = start
        flt = json.dumps(ev.room_event_filter(), separators=(",", ":"))
        while token is not None:
            out = await self._api.request(
                "GET", f"{CLIENT}/rooms/{quote(room_id)}/messages",
                query={"dir": "b", "from": token, "limit": str(_BACKFILL_PAGE), "filter": flt})
            self.backfill_pages += 1
            chunk = [_dict(e) for e in _list(out.get("chunk"))]
            for event in chunk:
                if stop_at is not None and event.get("event_id") == stop_at:
                    return found[::-1]
                found.append(event)
            end = out.get("end")
            token = end if chunk and isinstance(end, str) and end != token else None
        return found[::-1]

    async def _room_event(self, room_id: str, event: Mapping[str, Any], *,
                          state_only: bool = False) -> list[Op]:
        etype, event_id, sender = event.get("type"), event.get("event_id"), event.get("sender")
        if not isinstance(event_id, str) or not isinstance(sender, str):
            return []
        content = event.get("content")
        state_key = event.get("state_key")
        try:
            if etype == ev.GROUP_STATE and state_key == "":
                return [Bind(room_id, ev.parse_group_state(content), ev.identity_of(sender),
                             event_id)]
            if etype == "m.room.member" and isinstance(state_key, str):
                membership = _dict(content).get("membership")
                if isinstance(membership, str):
                    return [Membership(room_id, event_id, state_key, membership, sender)]
                return []
            if etype == ev.MESSAGE_EVENT and not state_only and state_key is None:
                return await self._group_event(room_id, event_id, sender, event)
        except (TransportError, DecodeError) as exc:
            if not self._give_up(event_id, exc):
                raise  # e.g. the media download failed: retry with this sync
            kind = "binding" if etype == ev.GROUP_STATE else "room-event"
            return [Rejected(event_id, str(exc), _slug(exc), kind, ev.identity_of(sender))]
        return []

    async def _group_event(self, room_id: str, event_id: str, sender: str,
                           event: Mapping[str, Any]) -> list[Op]:
        if self._journal.event(event_id) is not None:
            return []
        parsed = ev.parse_message_content(event.get("content"), self._max_media)
        payload = await self._resolve(parsed.carried)
        try:
            header = read_header(payload)
        except DecodeError as exc:
            raise ev.MalformedEventError(f"not an MLS group message: {exc}") from None
        client_id: str | None = ev.client_id_of(sender, parsed.device_id)
        if parsed.relay is not None:
            # a hub item: its client is the origin's, as the poster wrote it; whether
            # to trust that is the reader's business (transports/bridged.py)
            return [GroupEvent(room_id, event_id, header.group_id, header.epoch,
                               header.content_type == ContentType.COMMIT,
                               parsed.relay.sender, ev.identity_of(sender), payload,
                               parsed.relay.seq, parsed.relay.sender_identity)]
        if client_id == self.client_id:
            if not self._own_echo(event):
                client_id = None  # claims to come from this device, which did not send it
                self._flag(event_id, "claims to come from this device, which did not send "
                           "it; delivered without a client id", "forged-own-echo",
                           "room-event", sender)
        elif not await self._known_device(sender, parsed.device_id):
            client_id = None  # a device the sender does not (or no longer) have
            self._flag(event_id, f"device {parsed.device_id!r} is not one of the sender's; "
                       "delivered without a client id", "unknown-device", "room-event",
                       sender)
        return [GroupEvent(room_id, event_id, header.group_id, header.epoch,
                           header.content_type == ContentType.COMMIT, client_id,
                           ev.identity_of(sender), payload, message_id=parsed.message_id)]

    def _give_up(self, key: str, exc: Exception) -> bool:
        """Reject an event for good if the failure is its own fault, or after
        :data:`_TRANSIENT_ATTEMPTS` passing failures (a hostile sender could otherwise
        block the stream with media that never downloads). Never for a fatal failure
        of our own session (e.g. a revoked access token): that is nobody's event's fault."""
        if isinstance(exc, FatalTransportError):
            return False
        if _permanent(exc):
            return True
        self._transient[key] = self._transient.get(key, 0) + 1
        return self._transient[key] >= _TRANSIENT_ATTEMPTS

    async def _known_device(self, user: str, device: str) -> bool:
        """Whether ``user`` has ``device`` (advertising our algorithm); looked up with
        ``/keys/query`` at most once per user and sync when the cache does not know it."""
        known = self._devices.get(user, frozenset())
        if device in known or user in self._queried:
            return device in known
        self._queried.add(user)
        try:
            out = await self._api.request("POST", f"{CLIENT}/keys/query",
                                          {"device_keys": {user: []}})
        except MatrixApiError:
            return False
        devices = _dict(_dict(out.get("device_keys")).get(user))
        self._devices[user] = frozenset(d for d, keys in devices.items()
                                        if self._algorithm in _list(_dict(keys)
                                                                    .get("algorithms")))
        return device in self._devices[user]

    def _own_echo(self, event: Mapping[str, Any]) -> bool:
        """The homeserver returns ``unsigned.transaction_id`` only to the device that
        sent the event; we recorded that id before sending."""
        txn = _dict(event.get("unsigned")).get("transaction_id")
        return isinstance(txn, str) and self._journal.sent_txn(txn)

    async def _to_device(self, message: Mapping[str, Any]) -> list[Op]:
        """A Welcome: resolve it, join its room (we were invited with it). A control
        message: resolve it and deliver it."""
        sender = message.get("sender")
        if message.get("type") == ev.CONTROL_EVENT and isinstance(sender, str):
            return await self._control(sender, message.get("content"))
        if message.get("type") != ev.WELCOME_EVENT or not isinstance(sender, str):
            return []
        key = f"to-device from {sender}"
        try:
            parsed = ev.parse_welcome_content(message.get("content"), self._max_media)
            payload = await self._resolve(parsed.carried)
        except TransportError as exc:
            if not self._give_up(key, exc):
                raise
            return [Rejected(key, str(exc), _slug(exc), "welcome", ev.identity_of(sender))]
        if not self._for_us(payload):
            # never join a room on the word of a Welcome that cannot be ours
            return [Rejected(key, "not an MLSMessage(Welcome) for one of our KeyPackages",
                             "welcome-not-for-us", "welcome", ev.identity_of(sender))]
        if self._journal.membership(parsed.room_id, self.matrix_user_id) != "join":
            try:
                await self._api.request("POST", f"{CLIENT}/join/{quote(parsed.room_id)}", {})
            except MatrixApiError as exc:
                log.warning("cannot join %s for a Welcome: %s", parsed.room_id, exc)
        return [Welcome(parsed.group_id, parsed.room_id, parsed.after_event, payload,
                        sender)]

    async def _control(self, sender: str, content: object) -> list[Op]:
        """A CONTROL item: the homeserver vouches for the sending user, the device named
        in the content must be one of that user's (else ``sender`` is None)."""
        key = f"control from {sender}"
        try:
            parsed = ev.parse_control_content(content, self._max_media)
            payload = await self._resolve(parsed.carried)
        except TransportError as exc:
            if not self._give_up(key, exc):
                raise
            return [Rejected(key, str(exc), _slug(exc), "control", ev.identity_of(sender))]
        known = (sender == self.matrix_user_id and parsed.device_id == self.device_id) \
            or await self._known_device(sender, parsed.device_id)
        if not known:
            self._flag(key, f"device {parsed.device_id!r} is not one of the sender's; "
                       "delivered without a client id", "unknown-device", "control", sender)
        client = ev.client_id_of(sender, parsed.device_id) if known else None
        return [Control(payload, client, ev.identity_of(sender))]

    def _for_us(self, payload: bytes) -> bool:
        """A Welcome naming one of the KeyPackageRefs we published (§12.4.3.1)."""
        try:
            welcome = MLSMessage.decode(payload).welcome
        except DecodeError:
            return False
        return welcome is not None and self._journal.published_any(
            s.new_member for s in welcome.secrets)


class _GroupInfoReader:
    """One read of a room's published GroupInfo (:meth:`MatrixDeliveryTransport
    .fetch_group_info`): offers each GroupInfo event, in timeline order, to the room's
    :class:`~transports.group_info_chain.Chain` and reports every one that fails."""

    def __init__(self, transport: MatrixDeliveryTransport, room_id: str, group_id: bytes,
                 chain: Chain) -> None:
        self.t = transport
        self.room_id = room_id
        self.group_id = group_id
        self.chain = chain
        self.relayers = transport.group_info_relayers
        #: trusted while the room has no trusted GroupInfo yet: ourselves and the room's
        #: creator (set below)
        self.anchors = {transport.identity}
        #: bytes of the head, if it was read during this read
        self.payloads: dict[str, tuple[bytes, bytes | None]] = {}

    async def read(self) -> None:
        """History since the chain's token, then current-state events not seen yet."""
        state = await self.t._room_state(self.room_id)
        creator = next((e.get("sender") for e in state if e.get("type") == "m.room.create"
                        and e.get("state_key") == ""), None)
        if isinstance(creator, str):
            self.anchors.add(ev.identity_of(creator))
        current = {e["event_id"]: e for e in state if e.get("type") == ev.GROUP_INFO_STATE
                   and isinstance(e.get("event_id"), str)}
        offered = set(self.chain.offered_state) & current.keys()
        async for event in self._history():
            if event.get("event_id") in current:
                offered.add(event["event_id"])
            await self._offer(event)
        for event_id, event in current.items():
            if event_id not in offered:
                offered.add(event_id)
                await self._offer(event)
        self.chain.offered_state = sorted(offered)
        for link in self.chain.unreported():
            self.t.drops.drop(sender=link.writer, kind="group-info",
                              reason="group-info-unlinked",
                              detail=f"{link.event_id}: epoch {link.epoch} signed by "
                                     f"{link.signer}, whom no trusted GroupInfo lists")

    async def _history(self) -> AsyncIterator[dict[str, Any]]:
        """The room's GroupInfo events after the chain's token, oldest first
        (``/messages`` forwards; without a token from the room's creation)."""
        flt = json.dumps(ev.group_info_filter(), separators=(",", ":"))
        token = self.chain.token
        while True:
            query = {"dir": "f", "limit": str(_GROUP_INFO_PAGE), "filter": flt}
            if token is not None:
                query["from"] = token
            out = await self.t.api.request(
                "GET", f"{CLIENT}/rooms/{quote(self.room_id)}/messages", query=query)
            for event in _list(out.get("chunk")):
                yield _dict(event)
            end = out.get("end")
            if not isinstance(end, str) or end == token:
                return
            token = self.chain.token = end

    async def _offer(self, event: Mapping[str, Any]) -> None:
        event_id, sender = event.get("event_id"), event.get("sender")
        if not isinstance(event_id, str) or not isinstance(sender, str) \
                or event.get("type") != ev.GROUP_INFO_STATE \
                or not isinstance(event.get("state_key"), str):
            return
        writer = ev.identity_of(sender)
        try:
            checked = await self._check(event_id, event.get("content"), writer)
        except GroupInfoRejected as exc:
            self.t.drops.drop(sender=writer, kind="group-info", reason=exc.reason,
                              detail=f"{event_id}: {exc.detail}")
            return
        self.chain.offer(Link(event_id, writer, checked.epoch, checked.signer,
                              checked.members), anchors=self.anchors, relayers=self.relayers)
        if self.chain.head is not None and self.chain.head.event_id == event_id:
            self.payloads = {event_id: (checked.group_info, checked.ratchet_tree)}

    async def _check(self, event_id: str, content: object, writer: str) -> CheckedGroupInfo:
        """Parse, download and check one GroupInfo event; every fault of the event
        (malformed content, media over the limit or failing its hash, an invalid
        GroupInfo) is a :class:`~transports.group_info.GroupInfoRejected`."""
        try:
            parsed = ev.parse_group_info_content(content, self.t._max_media)
            info = await self.t._resolve(parsed.info)
            tree = None if parsed.tree is None else await self.t._resolve(parsed.tree)
        except (TransportError, DecodeError) as exc:
            if not self.t._give_up(event_id, exc):
                raise  # a passing failure: the caller may try again
            raise GroupInfoRejected(f"group-info-{_slug(exc)}", str(exc)) from None
        try:
            checked = check_group_info(self.group_id, info, tree, writer=writer,
                                       relayers=self.relayers, limits=self.t.limits)
        except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
            # garbage the decoder did not anticipate: never the caller's problem
            raise GroupInfoRejected("group-info-invalid", repr(exc)) from None
        if checked.epoch != parsed.epoch:
            raise GroupInfoRejected("group-info-malformed",
                                    f"its content says epoch {parsed.epoch}, its GroupInfo "
                                    f"{checked.epoch}")
        return checked

    async def payload_of(self, event_id: str) -> tuple[bytes, bytes | None]:
        """The bytes of a GroupInfo event that became the head after it was read."""
        event = await self.t.api.request(
            "GET", f"{CLIENT}/rooms/{quote(self.room_id)}/event/{quote(event_id)}")
        sender = event.get("sender")
        if not isinstance(sender, str):
            raise TransportError(f"the homeserver returned {event_id} without a sender")
        try:
            checked = await self._check(event_id, event.get("content"),
                                        ev.identity_of(sender))
        except GroupInfoRejected as exc:
            raise TransportError(f"GroupInfo event {event_id} no longer checks: {exc}") \
                from None
        return checked.group_info, checked.ratchet_tree


def stream_retry_delay(failures: int) -> float:
    """Seconds before the next ``/sync`` after ``failures`` failed ones in a row:
    uniform in [c/2, c], c doubling from STREAM_RETRY_INITIAL up to STREAM_RETRY_CAP."""
    ceiling = min(STREAM_RETRY_CAP, STREAM_RETRY_INITIAL * 2 ** min(failures - 1, 16))
    return random.uniform(ceiling / 2, ceiling)


def _encode_head(event_id: str, info: bytes, tree: bytes | None) -> str:
    return json.dumps({"event_id": event_id, "group_info": ev.b64encode(info),
                       "ratchet_tree": None if tree is None else ev.b64encode(tree)},
                      separators=(",", ":"))


def _decode_head(text: str | None) -> tuple[str, bytes, bytes | None] | None:
    """(event id, GroupInfo, tree) of the stored head (None: none or unreadable)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
        tree = value.get("ratchet_tree")
        return (str(value["event_id"]), ev.b64decode(value["group_info"]),
                None if tree is None else ev.b64decode(tree))
    except (ValueError, KeyError, TypeError, AttributeError, InvalidRequestError):
        return None


def _slug(exc: Exception) -> str:
    """The stable drop reason of an item's failure."""
    if isinstance(exc, ev.PayloadTooLargeError):
        return "payload-too-large"
    if isinstance(exc, ev.MediaIntegrityError):
        return "media-integrity"
    if isinstance(exc, InvalidRequestError | DecodeError):
        return "malformed"
    return "media-unavailable"  # the media repository refused, or kept failing


def _permanent(exc: Exception) -> bool:
    """Whether an event's failure is its own fault (malformed, oversized, tampered or
    missing media) rather than a passing network or server problem."""
    if isinstance(exc, MatrixApiError):
        return 400 <= exc.status < 500 and exc.status != 429
    return isinstance(exc, InvalidRequestError | ev.MediaIntegrityError | DecodeError)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


__all__ = ["MatrixDeliveryTransport"]
