"""The async MLS client: one identity, its groups, its storage and a Delivery Service.

:class:`MLSClient` sits above the sans-I/O :class:`~mls_core.group.Group` and below any
network adapter. It owns one client identity (user id, client id, basic credential, one
signature key per cipher suite), a :class:`~mls_client.store.Store` and a
:class:`~transports.base.DeliveryTransport`, and follows RFC 9750's Delivery Service
rules:

* Commits race for their epoch: persisted before submission, merged when accepted,
  discarded, caught up and rebuilt when another Commit won (:mod:`mls_client.outbound`).
* The incoming stream is processed in order from the stored cursor, one transaction per
  item (:mod:`mls_client.inbound`).
* A KeyPackage pool with a last-resort KeyPackage (:mod:`mls_client.keypackages`).
* Recovery after state loss by external Commit, removing our stale leaf
  (RFC 9750 "Recovery After State Loss").

One instance per database; its operations are serialized by an internal lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mimi_content import (
    AttachmentError,
    Disposition,
    Expiration,
    ExternalPart,
    NestedPart,
    NullPart,
)
from mls_core.ciphersuite import get_suite
from mls_core.config import InputLimits
from mls_core.errors import MLSError, ProtocolError, UsageError
from mls_core.events import CommitApplied, Member
from mls_core.extensions import (
    GROUP_NAME_EXTENSION,
    Extension,
    ExtensionType,
    GroupName,
    with_extension,
)
from mls_core.framing import ContentType, MLSMessage
from mls_core.group import Group
from mls_core.join_flow import unverified_tree
from mls_core.key_package import DEFAULT_EXTENSIONS, default_capabilities, validate_key_package
from mls_core.messages import (
    ExternalSender,
    GroupInfo,
    KeyPackage,
    external_senders,
    with_external_sender,
)
from mls_core.proposals import Add, GroupContextExtensions, ProposalType, Remove
from mls_core.room_policy import ROOM_POLICY_EXTENSION, Action, Role, RoomPolicy
from transports.base import (
    ClaimedKeyPackage,
    DeliveryTransport,
    FatalTransportError,
    InvalidRequestError,
    MessageKind,
    RoomEvent,
    TransportClosedError,
    TransportError,
)
from transports.bridged import split_client
from transports.defence import Drops
from transports.media import MediaStore, http_download, media_store_of

from . import attachments, content
from .context import ClientContext, ClientStats, read_header, reason
from .errors import AmbiguousGroupError, CommitConflictError, KeyPackageError, NotFoundError
from .events import (
    ClientEvent,
    ClientWarning,
    CommitProcessed,
    ConnectionLost,
    ConnectionRestored,
    GroupJoined,
    KickedFromRoom,
    MessageReceived,
    member_name,
)
from .inbound import Inbound
from .keypackages import (
    ClaimWatch,
    KeyPackagePool,
    PoolReport,
    Progress,
    device_extensions,
    device_of,
)
from .outbound import SETTLE_TIMEOUT, Outbound
from .pinning import check_and_pin, fingerprint
from .room_access import (
    bans_into_policy,
    designated_remover,
    policy_changer,
    with_role,
)
from .settings import Settings
from .store import GroupRecord, Identity, InboxMessage, Store

log = logging.getLogger("mls_bridge.client")

#: how long messages of a group we never joined are kept (seconds)
BUFFER_TTL = 24 * 3600
#: seconds between KeyPackage pool checks in the event loop
MAINTENANCE_INTERVAL = 300.0


@dataclass(frozen=True)
class AddResult:
    """Outcome of :meth:`MLSClient.add_members`."""

    epoch: int
    added_clients: tuple[str, ...]
    missing_users: tuple[str, ...]
    #: leaves removed because their device came back with new keys (it had lost its
    #: state): one per such device, named by its user
    replaced: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupSummary:
    """One group as :meth:`MLSClient.groups` lists it. ``name``: the shared name (the
    group's :class:`~mls_core.extensions.GroupName`), else the local one; ``members``:
    one user id per leaf (a user with two devices appears twice)."""

    group_id: bytes
    name: str | None
    epoch: int
    active: bool
    members: tuple[str, ...]
    topic: str | None = None
    local_name: str | None = None
    shared_name: str | None = None

    @property
    def users(self) -> tuple[str, ...]:
        """The distinct user ids, in leaf order."""
        return tuple(dict.fromkeys(self.members))

    @property
    def devices(self) -> int:
        return len(self.members)


class MLSClient:
    """An async MLS client (see the module docstring). Create with :meth:`open`."""

    def __init__(self, store: Store, transport: DeliveryTransport, settings: Settings, *,
                 clock: Callable[[], float] = time.time, owns_transport: bool = False) -> None:
        self._ctx = ClientContext(store, transport, settings, clock)
        self._out = Outbound(self._ctx, self._catch_up)
        self._in = Inbound(self._ctx, self._out)
        self._owns_transport = owns_transport
        self._lock = asyncio.Lock()
        self._next_maintenance = 0.0
        #: active groups not yet subscribed again in this process (None: not listed yet)
        self._to_follow: dict[bytes, int] | None = None
        self._claims = ClaimWatch(settings.key_packages.max_refill_per_hour, time.monotonic)
        self._closed = False
        #: room kicks/bans of other users not yet acted on (event, tries so far)
        self._room_pending: list[tuple[RoomEvent, int]] = []
        #: whether room kicks and bans are followed in the MLS group (docs/xmpp.md,
        #: docs/matrix.md); a wrapper that does it itself may turn it off
        self.follow_room_membership = True
        #: whether the room's rights (MUC affiliations, Matrix power levels) are derived
        #: from the room policy after each Commit or join (:attr:`room_rights`)
        self.follow_room_rights = True
        self._rights: RoomRights | None = None
        self._rights_known = False
        #: groups whose room rights are checked at the next sync (None: every group)
        self._rights_due: set[bytes] | None = None
        #: failed room-rights updates in a row, per group
        self._rights_tries: dict[bytes, int] = {}
        #: where :meth:`send_file` uploads (None: the transport's network, through
        #: ``transports.media.media_store_of``)
        self.media_store: MediaStore | None = None

    @classmethod
    async def open(cls, settings: Settings, transport: DeliveryTransport | None = None, *,
                   clock: Callable[[], float] = time.time) -> MLSClient:
        """Open the client database in ``settings.state_dir`` and, unless given, the
        transport the settings name."""
        owns = transport is None
        if transport is None:
            from .transport_factory import open_transport

            transport = await open_transport(settings)
        store = await Store.open(settings.client_db_path)
        client = cls(store, transport, settings, clock=clock, owns_transport=owns)
        client._ctx.identity = await store.identity()
        async with store.transaction() as tx:  # expired messages go at once
            await tx.purge_expired(client._ctx.now())
        return client

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._ctx.store.close()
            if self._owns_transport:
                await self._ctx.transport.close()

    async def __aenter__(self) -> MLSClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ identity

    @property
    def identity(self) -> Identity:
        return self._ctx.require_identity()

    @property
    def user_id(self) -> str:
        return self._ctx.user_id

    @property
    def client_id(self) -> str:
        return self._ctx.client_id

    @property
    def store(self) -> Store:
        return self._ctx.store

    @property
    def stats(self) -> ClientStats:
        """Counters; ``dropped`` merges the drops of the client and of its transports
        (a bridged transport and the network transport it wraps)."""
        stats = self._ctx.stats
        stats.key_package_refills = self._claims.refills
        stats.key_package_refills_refused = self._claims.refills_refused
        merged: Counter[str] = Counter(self._ctx.drops.snapshot())
        for drops in _transport_drops(self._ctx.transport):
            merged.update(drops.snapshot())
        stats.dropped = dict(merged)
        return stats

    @property
    def transport(self) -> DeliveryTransport:
        return self._ctx.transport

    async def create_identity(self, user_id: str | None = None,
                              client_id: str | None = None) -> Identity:
        """Create this client's identity (its credential asserts ``user_id``) and its
        signature key for the configured cipher suite. A network transport that is
        bound to an account (``transport.user_id`` / ``transport.client_id``, e.g.
        ``xmpp:alice@example.org`` and its full JID) supplies both, and others are
        refused: the network would not deliver for them."""
        user_id = _bound(self._ctx.transport, "user_id", user_id)
        client_id = _bound(self._ctx.transport, "client_id", client_id) or client_id
        if not user_id or any(c.isspace() for c in user_id):
            raise UsageError("a user id must be non-empty and contain no whitespace")
        async with self._lock:
            old = self._ctx.identity
            if old is not None:
                raise UsageError(f"this state directory already holds the identity "
                                 f"{old.user_id} (client {old.client_id})")
            client_id = client_id or f"{user_id}/{os.urandom(4).hex()}"
            suite = get_suite(self._ctx.settings.cipher_suite)
            priv, pub = suite.generate_signature_key_pair()
            async with self._ctx.store.transaction() as tx:
                await tx.set_identity(user_id, client_id)
                await tx.add_signature_key(suite.id, priv, pub)
            self._ctx.identity = await self._ctx.store.identity()
            return self.identity

    # ------------------------------------------------------------------ KeyPackages

    def _pool(self) -> KeyPackagePool:
        return KeyPackagePool(self._ctx.store, self._ctx.transport, self._ctx.settings,
                              self.user_id, self.client_id)

    async def publish_key_packages(self, count: int | None = None, *,
                                   progress: Progress | None = None) -> PoolReport:
        """Publish ``count`` more one-use KeyPackages, or (None) top the pool up to
        ``pool_size`` and rotate the last-resort KeyPackage when due."""
        async with self._lock:
            if count is None:
                return await self._pool().maintain(self._ctx.now(), progress=progress)
            if count < 1:
                raise UsageError("the KeyPackage count must be positive")
            await self._pool().publish(count, self._ctx.now(), progress=progress)
            remaining = await self._ctx.transport.key_package_count(self.client_id)
            return PoolReport(count, remaining, False, 0)

    # ------------------------------------------------------------------ inspection

    async def resolve_group(self, ref: str) -> bytes:
        """A group id from a reference: a full hex id, a shared name (the group's
        :class:`~mls_core.extensions.GroupName`), a local name or a unique hex prefix,
        in that order. A name or prefix that fits several groups raises
        :class:`~mls_client.errors.AmbiguousGroupError` listing them; groups we left
        count only when no active group fits."""
        summaries = await self.groups()
        if not ref:
            raise NotFoundError("an empty group reference")
        low = ref.lower()
        for s in summaries:
            if s.group_id.hex() == low:
                return s.group_id
        ranked = sorted(summaries, key=lambda s: not s.active)
        passes: list[tuple[Callable[[GroupSummary], bool], str]] = [
            (lambda s: s.shared_name == ref, "name"),
            (lambda s: s.local_name == ref, "local name"),
            (lambda s: s.group_id.hex().startswith(low), "id prefix")]
        for fits, what in passes:
            found = [s for s in ranked if fits(s)]
            if any(s.active for s in found):
                found = [s for s in found if s.active]
            if len(found) == 1:
                return found[0].group_id
            if found:
                raise AmbiguousGroupError(
                    f"the group {what} {ref!r} fits {len(found)} groups; use an id prefix: "
                    + "; ".join(_candidate(s) for s in found),
                    tuple(s.group_id for s in found))
        raise NotFoundError(f"no group named {ref!r}")

    async def group_name(self, group_id: bytes) -> GroupName | None:
        """The group's shared name and topic from its GroupContext (None: it has none,
        or a malformed one)."""
        async with self._lock:
            return _shared_name((await self._ctx.load(group_id)).context.extensions)

    async def group(self, group_id: bytes) -> Group:
        """A copy of the current state of a group, for inspection."""
        async with self._lock:
            group = await self._ctx.load(group_id)
            return Group.from_bytes(group.to_bytes(), self._ctx.config)

    async def members(self, group_id: bytes) -> tuple[Member, ...]:
        async with self._lock:
            return (await self._ctx.load(group_id)).members

    async def epoch(self, group_id: bytes) -> int:
        async with self._lock:
            return (await self._ctx.load(group_id)).epoch

    async def epoch_authenticator(self, group_id: bytes) -> bytes:
        async with self._lock:
            return (await self._ctx.load(group_id)).epoch_authenticator

    async def groups(self) -> list[GroupSummary]:
        async with self._lock:
            out = []
            for rec in await self._ctx.store.groups():
                names: tuple[str, ...] = ()
                shared = None
                if rec.active and rec.state is not None:
                    group = await self._ctx.load(rec.group_id)
                    names = tuple(member_name(m) for m in group.members)
                    shared = _shared_name(group.context.extensions)
                out.append(GroupSummary(
                    rec.group_id, rec.name if shared is None else shared.name_text,
                    rec.epoch, rec.active, names,
                    None if shared is None else shared.topic_text, rec.name,
                    None if shared is None else shared.name_text))
            return out

    async def inbox(self, group_id: bytes | None = None, *, unread_only: bool = False,
                    mark_read: bool = False, kinds: Sequence[str] | None = ("message",)
                    ) -> list[InboxMessage]:
        """Stored application messages (received, and ours as outgoing), oldest first,
        not expired. ``kinds``: ``message`` (default: what is shown; an edited message
        holds its edit), ``reaction``, ``edit``, ``delete``, ``unreaction``; None: all."""
        async with self._lock:
            msgs = await self._ctx.store.inbox(group_id, unread_only=unread_only,
                                               kinds=kinds, now=self._ctx.now())
            if mark_read and msgs:
                async with self._ctx.store.transaction() as tx:
                    await tx.mark_read((m.id for m in msgs if not m.read), self._ctx.now())
            return msgs

    # ------------------------------------------------------------------ group operations

    async def create_group(self, *, name: str | None = None, suite_id: int | None = None,
                           group_id: bytes | None = None,
                           extensions: Sequence[Extension] = (),
                           policy: RoomPolicy | None = None, topic: str | None = None,
                           local_name: str | None = None) -> bytes:
        """A new group with us as its only member (epoch 0); its GroupInfo is published.
        ``name`` and ``topic``: the shared name every member sees (a
        :class:`~mls_core.extensions.GroupName` GroupContext extension); ``local_name``:
        a name only this client knows.
        ``policy``: the room policy every member enforces (:mod:`mls_core.room_policy`).
        A transport that names an external sender (a bridge: ``external_sender``) gets
        it listed in ``external_senders``, allowed to propose Remove (§12.1.8)."""
        if topic is not None and name is None:
            raise UsageError("a topic needs a group name")
        if name is not None:
            extensions = with_extension(extensions, GroupName.build(name, topic or "")
                                        .extension())
        known = await self.groups()
        taken = {s.shared_name for s in known if s.active} | {s.local_name for s in known}
        for wanted in (name, local_name):
            if wanted is not None and wanted in taken:
                raise UsageError(f"a group named {wanted!r} already exists")
        async with self._lock:
            suite_id = suite_id or self._ctx.settings.cipher_suite
            extensions, policy = await self._with_external_sender(suite_id, extensions,
                                                                  policy)
            if policy is not None:
                extensions = [*extensions, policy.extension()]
            priv, _ = await self._ctx.signature_key(suite_id)
            types = {e.extension_type for e in extensions} - DEFAULT_EXTENSIONS
            caps = default_capabilities(extensions=sorted(
                types | {ROOM_POLICY_EXTENSION, GROUP_NAME_EXTENSION}))
            group = Group.create(suite_id, self._ctx.credential, priv, group_id=group_id,
                                 extensions=extensions, capabilities=caps,
                                 now=self._ctx.now(), config=self._ctx.config,
                                 leaf_extensions=device_extensions(self.client_id))
            if await self._ctx.store.group(group.group_id) is not None:
                raise UsageError("a group with that id already exists")
            async with self._ctx.transaction(group.group_id) as tx:
                await self._ctx.save(tx, group, name=local_name)
            await self._ctx.transport.subscribe(self.client_id, group.group_id)
            created = getattr(self._ctx.transport, "group_created", None)
            if created is not None:  # e.g. transports.bridged: the bridge opens its rooms,
                # taking our GroupInfo (§12.4.3) as its first verified view of the group
                await created(group.group_id, group.group_info())
            await self._ctx.publish_group_info(group)
            return group.group_id

    async def _with_external_sender(self, suite_id: int, extensions: Sequence[Extension],
                                    policy: RoomPolicy | None
                                    ) -> tuple[Sequence[Extension], RoomPolicy | None]:
        signer = getattr(self._ctx.transport, "external_sender", None)
        if signer is None:
            return extensions, policy
        sender = ExternalSender.decode(await signer(suite_id))
        extensions = with_external_sender(extensions, sender)
        index = len(external_senders(extensions)) - 1
        if policy is not None:
            policy = policy.granting(index, [ProposalType.REMOVE])
        return extensions, policy

    async def add_members(self, group_id: bytes, user_ids: Sequence[str]) -> AddResult:
        """Claim a KeyPackage of every client of each user, validate them (§10.1), commit
        the Adds and, once accepted, send the Welcome and publish the new GroupInfo.
        Users without a valid KeyPackage are reported in ``missing_users``."""
        async with self._lock:
            await self._ready()
            group = await self._ctx.load(group_id)
            claimed: list[tuple[ClaimedKeyPackage, KeyPackage]] = []
            missing = []
            for user in dict.fromkeys(user_ids):
                # an outage is waited out like a send's (a retried claim may use up
                # one more KeyPackage of the user: RFC 9750 allows it)
                offers = await self._out.patiently(functools.partial(
                    self._ctx.transport.claim_user_key_packages, user, group_id=group_id),
                    queued=False)
                valid = [(c, kp) for c in offers if c.client_id != self.client_id
                         if (kp := self._validated(c, user, group)) is not None]
                valid = await self._trusted(group.group_id, valid)
                if not valid:
                    missing.append(user)
                claimed.extend(valid)

            stale_keys: set[bytes] = set()

            def build(g: Group) -> list[Add | Remove] | None:
                present = {m.signature_key for m in g.members}
                new = [kp for _, kp in claimed if kp.leaf_node.signature_key not in present]
                if not new:
                    return None
                policy = RoomPolicy.from_extensions(g.context.extensions)
                stale = [] if policy is not None and policy.role_of(
                    self._ctx.credential.identity) < policy.min_role(Action.REMOVE) \
                    else _replaced_leaves(g, new)  # else a member with the right does
                stale_keys.clear()
                stale_keys.update(m.signature_key for m in g.members if m.index in stale)
                return [*map(Remove, stale), *map(Add, new)]

            clients = {kp.leaf_node.signature_key: c.client_id for c, kp in claimed}
            event = await self._out.commit(group_id, build, joiners=clients)
            added = () if event is None else tuple(
                clients[m.signature_key] for m in event.added if m.signature_key in clients)
            replaced = () if event is None else tuple(
                member_name(m) for m in event.removed if m.signature_key in stale_keys)
            return AddResult((await self._ctx.load(group_id)).epoch, added, tuple(missing),
                             replaced)

    def _validated(self, claimed: ClaimedKeyPackage, user: str,
                   group: Group) -> KeyPackage | None:
        """A claimed KeyPackage that decodes, matches its ref, is valid (§10.1) and names
        ``user``; else None and a warning event."""
        try:
            kp = MLSMessage.decode(claimed.key_package).key_package
            if kp is None:
                raise ProtocolError("not an MLSMessage(KeyPackage)")
            if group.suite.make_key_package_ref(kp.encode()) != claimed.ref:
                raise KeyPackageError("its KeyPackageRef does not match")
            validate_key_package(group.suite, kp, now=self._ctx.now(),
                                 validator=self._ctx.config.validator)
            if kp.leaf_node.credential.identity != user.encode():
                raise KeyPackageError(f"its credential does not name {user}")
            device = device_of(kp.leaf_node.extensions)
            if device is not None and device.decode("utf-8", "replace") not in {
                    claimed.client_id, split_client(claimed.client_id)[1]}:
                # the Welcome would go to a device that does not hold its private keys
                raise KeyPackageError(f"its application_id names another device, "
                                      f"{device.decode('utf-8', 'replace')!r}")
        except MLSError as exc:
            self._ctx.emit(ClientWarning(group.group_id, f"KeyPackage of client "
                                         f"{claimed.client_id} rejected: {reason(exc)}"))
            return None
        return kp

    async def _trusted(self, group_id: bytes, offers: list[tuple[ClaimedKeyPackage, KeyPackage]]
                       ) -> list[tuple[ClaimedKeyPackage, KeyPackage]]:
        """Pin the keys of claimed KeyPackages; a new key of a known identity is reported
        and, with ``trust.new_signature_key = "reject"``, left out."""
        members = [Member(0, kp.leaf_node.credential, kp.leaf_node.signature_key)
                   for _, kp in offers]
        async with self._ctx.store.transaction() as tx:
            warnings = await check_and_pin(self._ctx.store, tx, group_id, members)
        rejected = set()
        for warning in warnings:
            self._ctx.emit(warning)
            if self._ctx.settings.trust.new_signature_key == "reject":
                rejected.add(warning.fingerprint)
        if not rejected:
            return offers
        async with self._ctx.store.transaction() as tx:
            await tx.unpin_keys([(m.credential.identity or b"", m.signature_key)
                                 for m in members if fingerprint(m.signature_key) in rejected])
        return [(c, kp) for c, kp in offers
                if fingerprint(kp.leaf_node.signature_key) not in rejected]

    async def remove_members(self, group_id: bytes, user_ids: Sequence[str]) -> CommitApplied:
        """Remove every client (leaf) of each user, except our own leaf."""
        users = {u.encode() for u in user_ids}
        async with self._lock:
            await self._ready()

            def build(g: Group) -> list[Remove] | None:
                removes = [Remove(m.index) for m in g.members
                           if m.credential.identity in users and m.index != g.own_leaf_index]
                return removes or None

            event = await self._out.commit(group_id, build)
            if event is None:
                raise NotFoundError(f"none of {', '.join(user_ids)} is a member")
            return event

    async def update(self, group_id: bytes) -> CommitApplied:
        """Self-update: a Commit with a fresh UpdatePath (§12.4); valid pending
        proposals are committed with it."""
        async with self._lock:
            await self._ready()
            event = await self._out.commit(group_id, lambda g: [])
            assert event is not None
            return event

    async def policy(self, group_id: bytes) -> RoomPolicy | None:
        """The room policy in force in a group (None: unrestricted)."""
        async with self._lock:
            group = await self._ctx.load(group_id)
            return RoomPolicy.from_extensions(group.context.extensions)

    async def set_policy(self, group_id: bytes, policy: RoomPolicy) -> CommitApplied:
        """Replace the room policy by a GroupContextExtensions Commit (§12.1.7); the
        policy in force must allow us to (PolicyError otherwise)."""
        async with self._lock:
            await self._ready()

            def build(g: Group) -> list[GroupContextExtensions]:
                others = [e for e in g.context.extensions
                          if e.extension_type != ROOM_POLICY_EXTENSION]
                return [GroupContextExtensions((*others, policy.extension()))]

            event = await self._out.commit(group_id, build)
            assert event is not None
            return event

    async def rename_group(self, group_id: bytes, name: str,
                           topic: str | None = None) -> CommitApplied:
        """Set the group's shared name (and topic; None keeps the current one) by a
        GroupContextExtensions Commit (§12.1.7) that keeps the other extensions (the room
        policy, external senders); the room policy must allow us to change extensions
        (PolicyError otherwise)."""
        async with self._lock:
            await self._ready()
            current = _shared_name((await self._ctx.load(group_id)).context.extensions)
            if topic is None:
                topic = "" if current is None else current.topic_text
            value = GroupName.build(name, topic)

            def build(g: Group) -> list[GroupContextExtensions] | None:
                if GroupName.from_extensions(g.context.extensions) == value:
                    return None
                return [GroupContextExtensions(with_extension(g.context.extensions,
                                                              value.extension()))]

            event = await self._out.commit(group_id, build)
            if event is None:
                raise UsageError(f"the group is already named {name!r}"
                                 + (" with that topic" if topic else ""))
            return event

    async def leave(self, group_id: bytes) -> None:
        """Propose our own removal (§12.1.3); another member commits it. The proposal is
        repeated after every epoch change until a Commit removes us. The last member
        of a group just forgets it."""
        async with self._lock:
            await self._ready()
            group = await self._ctx.load(group_id)
            if len(group.members) > 1:
                await self._out.propose_leave(group_id)
                return
            async with self._ctx.transaction(group_id) as tx:
                await self._ctx.drop(tx, group)
            await self._ctx.transport.unsubscribe(self.client_id, group_id)

    async def send(self, group_id: bytes, data: bytes, *,
                   message_id: str | None = None) -> bytes:
        """Encrypt and submit application data (§15); returns the ciphertext. A
        transport outage is waited out for ``Settings.submit_wait`` seconds, then
        :class:`DeliveryPendingError` says the message stays queued (the next sync
        delivers it once). ``message_id`` (1-64 of ``[A-Za-z0-9._-]``, unique per
        message): the application's idempotency key; a send again with a message id
        already queued or sent does not send a second copy (it pushes the queued one,
        and returns b"" when it was already sent). docs/resilience.md."""
        async with self._lock:
            await self._ready()
            return await self._out.send(group_id, bytes(data), message_id=message_id)

    # ------------------------------------------------------------------ MIMI content

    async def send_text(self, group_id: bytes, text: str, *, markdown: bool = False,
                        in_reply_to: bytes | None = None, expires_at: int | None = None,
                        visible_for: int | None = None) -> bytes:
        """Send a text message as MIMI content (draft-ietf-mimi-content), plain or in the
        draft's GFM-MIMI Markdown (mentions: :func:`mls_client.content.mention`);
        ``in_reply_to``: a message id; ``expires_at`` (seconds since the epoch) or
        ``visible_for`` (seconds after each receiver first reads it) make it expire.
        Returns its message id."""
        if expires_at is not None and visible_for is not None:
            raise UsageError("give expires_at or visible_for, not both")
        expires = (Expiration(True, visible_for) if visible_for is not None
                   else None if expires_at is None else Expiration(False, expires_at))
        return await self._send_content(group_id, content.text_body(text, markdown=markdown),
                                        in_reply_to=in_reply_to, expires=expires)

    async def reply(self, group_id: bytes, message_id: bytes, text: str, *,
                    markdown: bool = False) -> bytes:
        """Reply to ``message_id`` (``inReplyTo``); returns the reply's message id."""
        return await self.send_text(group_id, text, markdown=markdown, in_reply_to=message_id)

    async def react(self, group_id: bytes, message_id: bytes, reaction: str) -> bytes:
        """React to ``message_id`` (disposition ``reaction``, the draft's
        ``reaction.edn``); returns the reaction's message id (to :meth:`unreact`)."""
        if not reaction:
            raise UsageError("a reaction must not be empty")
        return await self._send_content(group_id, content.reaction_body(reaction),
                                        in_reply_to=message_id)

    async def unreact(self, group_id: bytes, reaction_id: bytes) -> bytes:
        """Withdraw our reaction ``reaction_id`` (the draft's ``unlike.edn``: a NullPart
        reaction replacing it)."""
        row = await self._content_row(group_id, reaction_id)
        if row.kind != content.REACTION or row.ref is None:
            raise UsageError("that message is not a reaction")
        return await self._send_content(group_id, content.reaction_body(None),
                                        replaces=reaction_id, in_reply_to=row.ref)

    async def edit(self, group_id: bytes, message_id: bytes, text: str, *,
                   markdown: bool = False) -> bytes:
        """Replace the text of our message ``message_id`` (``replaces``; the draft's
        ``edit.edn``). Only its original sender may (ContentRefusedError)."""
        original = await self._content_row(group_id, message_id)
        return await self._send_content(
            group_id, content.text_body(text, markdown=markdown), replaces=message_id,
            in_reply_to=None if original.kind != content.MESSAGE else original.ref)

    async def delete_message(self, group_id: bytes, message_id: bytes) -> bytes:
        """Delete our message ``message_id`` for everyone (a NullPart replacing it; the
        draft's ``delete.edn``). Only its original sender may (ContentRefusedError)."""
        original = await self._content_row(group_id, message_id)
        return await self._send_content(
            group_id, NestedPart(Disposition.RENDER, "", NullPart()), replaces=message_id,
            in_reply_to=original.ref)

    async def send_file(self, group_id: bytes, data: bytes | Path, *,
                        content_type: str = "application/octet-stream",
                        filename: str | None = None, description: str = "",
                        in_reply_to: bytes | None = None) -> bytes:
        """Send a file as an encrypted attachment (draft "External content"): encrypted
        with AES-128-GCM under a fresh key and nonce, uploaded to our own network
        (XEP-0363 on XMPP, the media repository on Matrix); the key, nonce and hash go
        in the MLS message only. Returns the message id."""
        if isinstance(data, Path):
            filename = data.name if filename is None else filename
            data = await asyncio.to_thread(data.read_bytes)
        limit = self._ctx.settings.attachments.max_size
        if len(data) > limit:
            raise AttachmentError(f"the file's {len(data)} bytes exceed the attachment "
                                  f"limit of {limit}")
        store = self.media_store or media_store_of(self._ctx.transport)
        if store is None:
            raise UsageError("this transport cannot store attachments")
        sealed = await asyncio.to_thread(attachments.seal, data)
        try:
            url = await store.upload_media(sealed.ciphertext)
        except TransportError as exc:
            raise AttachmentError(f"the attachment could not be uploaded: "
                                  f"{reason(exc)}") from None
        part = attachments.external_part(sealed, url, len(data), content_type=content_type,
                                         filename=filename or "", description=description)
        return await self._send_content(group_id, NestedPart(Disposition.ATTACHMENT, "", part),
                                        in_reply_to=in_reply_to)

    async def fetch_attachment(self, part: ExternalPart | MessageReceived) -> bytes:
        """Download an attachment (the first of a message), check its hash and decrypt
        it. A failed, oversized or tampered download is an AttachmentError."""
        if isinstance(part, MessageReceived):
            found = part.attachments
            if not found:
                raise AttachmentError("the message has no attachment")
            part = found[0]
        settings = self._ctx.settings.attachments
        attachments.check_fetchable(part, settings.max_size, self._ctx.now())
        try:
            blob = await http_download(part.url, settings.max_size + attachments.TAG_SIZE,
                                       timeout=settings.download_timeout,
                                       ca_file=self._ctx.settings.ca_file)
        except TransportError as exc:
            raise AttachmentError(f"the attachment could not be downloaded: "
                                  f"{reason(exc)}") from None
        return await asyncio.to_thread(attachments.unseal, part, blob)

    async def message(self, group_id: bytes, message_id: bytes) -> InboxMessage | None:
        """The stored message (or reaction) with that MIMI message id, unless expired."""
        async with self._lock:
            row = await self._ctx.store.by_content_id(group_id, message_id)
        if row is None or (row.expires_at is not None and row.expires_at <= self._ctx.now()):
            return None
        return row

    async def reactions(self, group_id: bytes, message_id: bytes) -> list[InboxMessage]:
        """The reactions to a message still in force, oldest first."""
        async with self._lock:
            return await self._ctx.store.inbox(group_id, kinds=(content.REACTION,),
                                               ref=message_id, now=self._ctx.now())

    async def purge_expired(self) -> int:
        """Delete expired messages from the store (done on open and every sync)."""
        async with self._lock:
            return await self._purge_expired()

    async def _purge_expired(self) -> int:
        async with self._ctx.store.transaction() as tx:
            return await tx.purge_expired(self._ctx.now())

    async def _content_row(self, group_id: bytes, message_id: bytes) -> InboxMessage:
        row = await self.message(group_id, message_id)
        if row is None:
            raise NotFoundError(f"no message {message_id.hex()[:16]} in this group")
        return row

    async def _send_content(self, group_id: bytes, body: NestedPart, *,
                            replaces: bytes | None = None, in_reply_to: bytes | None = None,
                            expires: Expiration | None = None) -> bytes:
        data, cid = content.build(self.user_id, group_id, body, replaces=replaces,
                                  in_reply_to=in_reply_to, expires=expires)
        await self.send(group_id, data)
        return cid

    # ------------------------------------------------------------------ recovery

    async def recover_group(self, group_id: bytes, *, stale_leaf: int | None = None) -> int:
        """Rejoin a group whose state was lost or corrupted, by external Commit from its
        published GroupInfo (§12.4.3.2), removing our stale leaf: the one with our
        signature key, or ``stale_leaf`` (RFC 9750 "Recovery After State Loss").
        Messages of the lost epochs stay unreadable. Returns the new epoch."""
        async with self._lock:
            await self._catch_up()
            rec = await self._ctx.store.group(group_id)
            if rec is not None and not rec.active:
                raise UsageError("we left or were removed from this group: ask a member "
                                 "to add us again")
            locate = getattr(self._ctx.transport, "locate_group", None)
            if rec is None and locate is not None:  # the transport's state may be lost too
                await locate(group_id)
            for _ in range(self._ctx.settings.commit_retries + 1):
                info, tree = await self._ctx.transport.fetch_group_info(group_id)
                group, commit, epoch = await self._external_commit(info, tree, stale_leaf)
                outcome = await self._ctx.transport.submit(
                    group_id, epoch, commit, is_commit=True, sender=self.client_id)
                if outcome.accepted or (outcome.ordered and await self._first_commit_of(
                        group_id, epoch, commit)):
                    await self._install_recovered(group)
                    return group.epoch
                await self._catch_up()
            raise CommitConflictError("could not rejoin: the published GroupInfo kept "
                                      "being outdated")

    async def _first_commit_of(self, group_id: bytes, epoch: int, commit: bytes) -> bool:
        """After SubmitStatus.ORDERED (e.g. through a bridge, whose hub orders every
        Commit): whether our external Commit is the first Commit of ``epoch`` in the
        group's order, read ahead of our cursor without processing anything. Without
        the group's state we cannot tell a valid Commit from an invalid one, so an
        earlier one counts as the winner: we then rejoin again, and that external
        Commit removes the leaf with our key (RFC 9420 §12.4.3.2)."""
        transport = self._ctx.transport
        deadline = time.monotonic() + float(getattr(transport, "settle_timeout",
                                                    SETTLE_TIMEOUT))
        after = await self._ctx.store.cursor()
        while True:
            items = await transport.fetch(self.client_id, after, 1000)
            for item in items:
                if item.kind is not MessageKind.GROUP or item.group_id != group_id:
                    continue
                with contextlib.suppress(MLSError):
                    header = read_header(item.payload)
                    if header.content_type == ContentType.COMMIT and header.epoch == epoch:
                        return item.payload == commit
            if items:
                after = items[-1].cursor
            elif time.monotonic() > deadline:
                return False
            else:
                await asyncio.sleep(self._ctx.settings.poll_interval)

    async def _external_commit(self, info_bytes: bytes, tree: bytes | None,
                               stale: int | None) -> tuple[Group, bytes, int]:
        info = MLSMessage.decode(info_bytes).group_info
        if info is None:
            raise ProtocolError("the Delivery Service returned no GroupInfo")
        gc = info.group_context
        priv, pub = await self._ctx.signature_key(gc.cipher_suite)
        if stale is None:
            stale = _stale_leaf(info, tree, pub, self._ctx.credential.identity,
                                self.client_id.encode(), self._ctx.config.limits)
        # our leaf supports what our KeyPackages support, so that a later Commit may add
        # a room policy or a group name (§12.1.7) to a group that has none yet
        types = {e.extension_type for e in gc.extensions} - DEFAULT_EXTENSIONS
        caps = default_capabilities(extensions=sorted(
            types | {ROOM_POLICY_EXTENSION, GROUP_NAME_EXTENSION}))
        group, commit = Group.join_external(info_bytes, self._ctx.credential, priv,
                                            ratchet_tree=tree, remove_leaf=stale,
                                            config=self._ctx.config, now=self._ctx.now(),
                                            leaf_extensions=device_extensions(self.client_id),
                                            capabilities=caps)
        return group, commit, gc.epoch

    async def _install_recovered(self, group: Group) -> None:
        gid = group.group_id
        async with self._ctx.transaction(gid) as tx:
            await self._ctx.save(tx, group, joined=True)
            await tx.set_group_flags(gid, leaving=False, needs_update=False)
            await tx.drop_outbox(gid)
            await tx.drop_buffered(gid)
        await self._ctx.transport.subscribe(self.client_id, gid)
        await self._ctx.publish_group_info(group)
        self._ctx.emit(GroupJoined(gid, group.epoch, via="external"))

    # ------------------------------------------------------------------ receiving

    async def sync(self, *, housekeeping: bool = True) -> list[ClientEvent]:
        """Process everything the transport has for us now, finish interrupted sends,
        then (unless told not to) commit proposals we are designated for and keep the
        KeyPackage pool full. Returns the events, in order."""
        async with self._lock:
            if self._closed:
                raise UsageError("the client is closed")
            await self._prepare()
            await self._purge_expired()
            if housekeeping:
                await self._housekeeping()
            events, self._ctx.queued = self._ctx.queued, []
        if self._room_pending:
            await self._follow_room_changes()
            async with self._lock:
                events, self._ctx.queued = events + self._ctx.queued, []
        if housekeeping and self.follow_room_rights:
            await self._follow_room_rights(events)
        return events

    @property
    def room_rights(self) -> RoomRights | None:
        """What keeps the rooms' rights in step with the groups' policies on this
        client's network (:class:`~mls_client.matrix_rights.PolicySync`: power levels;
        :class:`~mls_client.xmpp_rights.AffiliationSync`: MUC affiliations), or None
        (a transport without rooms)."""
        if not self._rights_known:
            self._rights_known = True
            self._rights = _room_rights(self, self._ctx.transport)
        return self._rights

    async def _follow_room_rights(self, events: Sequence[ClientEvent]) -> None:
        """Apply the room policy to the room (docs/xmpp.md "Affiliations from the room
        policy", docs/matrix.md "Power levels follow the policy") for every group at
        the first sync, then for each group that had a Commit or was joined; users our
        Commit removed lose room membership where the network needs it. Failures are
        logged and tried again at the next sync."""
        rights = self.room_rights
        if rights is None:
            return
        if self._rights_due is None:
            due = {g.group_id for g in await self.groups() if g.active}
        else:
            due = self._rights_due
        self._rights_due = set()
        revoke = getattr(rights, "revoke", None)
        for event in events:
            if isinstance(event, CommitProcessed | GroupJoined):
                due.add(event.group_id)
            if revoke is not None and isinstance(event, CommitProcessed) and event.removed:
                try:
                    await revoke(event)
                except (TransportError, MLSError) as exc:
                    log.info("revoking removed users' room access failed: %s", exc)
        for gid in sorted(due):
            try:
                await rights.reconcile(gid)
                self._rights_tries.pop(gid, None)
            except NotFoundError:
                continue  # no longer a member
            except (TransportError, MLSError) as exc:
                tries = self._rights_tries[gid] = self._rights_tries.get(gid, 0) + 1
                log.log(logging.WARNING if tries == 1 else logging.INFO,
                        "room rights of group %s not updated yet: %s", gid.hex(), exc)
                if tries < ROOM_TRIES:  # then again at the group's next Commit
                    self._rights_due.add(gid)

    async def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ClientEvent]:
        """Process the incoming stream until :meth:`close` (or ``stop`` is set),
        yielding the events. Transient transport failures never end it: they are
        reported once per outage (:class:`ConnectionLost`, then
        :class:`ConnectionRestored`) and retried with capped exponential backoff and
        jitter. A :class:`~transports.base.FatalTransportError` (e.g.
        :class:`~transports.base.SessionConflictError`: another process took this
        device's session) cannot be cured by retrying: it is raised, once, and ends
        the iteration."""
        outage = _Outage(self._ctx.stats)
        while not self._closed and not (stop is not None and stop.is_set()):
            try:
                events = await self.sync()
            except TransportError as exc:
                if self._closed or isinstance(exc, TransportClosedError):
                    return
                if isinstance(exc, FatalTransportError):
                    log.error("the delivery service stopped for good: %s", reason(exc))
                    raise
                lost = outage.failed(exc)
                if lost is not None:
                    yield lost
                await _sleep_or_stop(outage.delay(), stop)
                continue
            restored = outage.ended()
            if restored is not None:
                yield restored
            for event in events:
                yield event
            if not self._closed:
                with contextlib.suppress(TransportError):  # the next sync reports it
                    await self._wait_for_items(stop)

    async def run(self, handler: Callable[[ClientEvent], Awaitable[None]] | None = None,
                  stop: asyncio.Event | None = None) -> None:
        """Process the stream until ``stop`` is set (or :meth:`close`), passing each
        event to ``handler``. A transient transport failure never ends it; a fatal one
        (:class:`~transports.base.FatalTransportError`) is raised (see :meth:`events`)."""
        async for event in self.events(stop):
            if handler is not None:
                await handler(event)

    async def _wait_for_items(self, stop: asyncio.Event | None = None) -> None:
        """Until the transport has something after our cursor, ``stop`` is set or a poll
        interval passed (the item itself is then fetched by :meth:`sync`)."""
        stream = self._ctx.transport.receive(self.client_id,
                                             after=await self._ctx.store.cursor())
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(anext(stream))]
        if stop is not None:
            waiters.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=self._ctx.settings.poll_interval,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _catch_up(self) -> None:
        await self._in.catch_up()

    async def _ready(self) -> None:
        """:meth:`_prepare` before a user action, waiting out transient transport
        failures for ``Settings.submit_wait`` seconds."""
        await self._out.patiently(self._prepare, queued=False)

    async def _prepare(self) -> None:
        """Catch up with the stream, then finish what the outbox still holds. First,
        follow every active group again (a crash between storing a join and
        subscribing would otherwise leave its room unread; subscribing is idempotent)."""
        await self._resubscribe()
        await self._take_room_events()  # before resuming: a kicked device sends nothing
        await self._in.catch_up()
        await self._take_room_events()
        await self._out.resume()

    async def _resubscribe(self) -> None:
        """Subscribe each active group once per process; a failure is a warning and is
        tried again on the next passes, at most ``RESUBSCRIBE_TRIES`` times."""
        if self._to_follow is None:
            self._to_follow = {rec.group_id: 0 for rec in await self._ctx.store.groups()
                               if rec.active}
        for gid, tries in list(self._to_follow.items()):
            try:
                await self._ctx.transport.subscribe(self.client_id, gid)
            except TransportError as exc:
                if tries + 1 < RESUBSCRIBE_TRIES and not isinstance(exc, InvalidRequestError):
                    self._to_follow[gid] = tries + 1
                    continue
                self._ctx.emit(ClientWarning(gid, f"cannot follow the group's room: "
                                                  f"{reason(exc)}"))
            del self._to_follow[gid]

    # ------------------------------------------------------------------ room membership

    async def _take_room_events(self) -> None:
        """Take the transport's room membership changes (``DeliveryTransport``
        ``room_events``): our own kick or ban ends the group for this device at once
        (:meth:`_kicked`); kicks and bans of others are acted on after the lock is
        released (:meth:`_follow_room_changes`)."""
        take = getattr(self._ctx.transport, "room_events", None)
        if take is None:
            return
        events = take()  # taken even when not followed: the transport keeps nothing
        if not self.follow_room_membership:
            return
        for event in events:
            if not isinstance(event, RoomEvent) or not event.removed:
                continue
            if event.self:
                await self._kicked(event)
            else:
                self._room_pending.append((event, 0))

    async def _kicked(self, event: RoomEvent) -> None:
        """We were kicked or banned from the group's room: drop the group (secrets,
        outbox, buffered messages; a tombstone stays), stop following its room and
        report :class:`KickedFromRoom` once."""
        rec = await self._ctx.store.group(event.group_id)
        if rec is None or not rec.active or rec.state is None:
            return
        group = await self._ctx.load(event.group_id)
        async with self._ctx.transaction(event.group_id) as tx:
            await self._ctx.drop(tx, group)
        if self._to_follow is not None:
            self._to_follow.pop(event.group_id, None)
        with contextlib.suppress(TransportError):
            await self._ctx.transport.unsubscribe(self.client_id, event.group_id)
        log.info("%s from the room of group %s: group dropped",
                 "banned" if event.change == "banned" else "kicked", event.group_id.hex())
        self._ctx.emit(KickedFromRoom(event.group_id, group.epoch,
                                      banned=event.change == "banned"))

    async def _follow_room_changes(self) -> None:
        """Act on other users' room kicks and bans (mls_client.room_access): the
        designated remover removes the user's leaves (RFC 9420 §12.1.3), and a Matrix
        ban is recorded as the policy role ``banned`` (§12.1.7). A transport failure
        is tried again at the next sync (at most ``ROOM_TRIES`` times)."""
        pending, self._room_pending = self._room_pending, []
        for event, tries in pending:
            try:
                await self._follow_room_change(event)
            except TransportError as exc:
                if tries + 1 < ROOM_TRIES:
                    self._room_pending.append((event, tries + 1))
                else:
                    self._ctx.emit(ClientWarning(event.group_id, f"removing {event.user} "
                                                 f"after its room exit failed: {reason(exc)}"))
            except MLSError as exc:  # e.g. a concurrent Commit removed them already
                log.info("removing %s after its room exit: %s", event.user, reason(exc))

    async def _follow_room_change(self, event: RoomEvent) -> None:
        rec = await self._ctx.store.group(event.group_id)
        if rec is None or not rec.active or rec.state is None:
            return
        removed = event.user.encode()
        group = await self.group(event.group_id)
        policy = RoomPolicy.from_extensions(group.context.extensions)
        if designated_remover(group.members, policy, removed) == group.own_leaf_index:
            await self.remove_members(event.group_id, [event.user])
            log.info("removed %s from group %s after its room %s", event.user,
                     event.group_id.hex(), event.change)
        if not bans_into_policy(event, policy):
            return
        group = await self.group(event.group_id)
        policy = RoomPolicy.from_extensions(group.context.extensions)
        if policy is not None and policy_changer(group.members, policy, removed) \
                == group.own_leaf_index and policy.role_of(removed) != Role.BANNED:
            await self.set_policy(event.group_id, with_role(policy, removed, Role.BANNED))
            log.info("room ban of %s recorded in the policy of group %s", event.user,
                     event.group_id.hex())

    # ------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        """Per group: re-propose a pending leave, self-update after a last-resort join,
        commit proposals we are designated for; then KeyPackage upkeep. Failures become
        :class:`ClientWarning` events and are retried on the next pass."""
        for rec in await self._ctx.store.groups():
            if rec.active:
                try:
                    await self._group_housekeeping(rec)
                except MLSError as exc:
                    self._ctx.emit(ClientWarning(rec.group_id, reason(exc)))
        if self._in.key_package_used:
            self._in.key_package_used = False
            self._next_maintenance = 0.0
        claimed = self._ctx.identity is not None and self._claims.due(self._ctx.transport)
        if claimed:
            self._next_maintenance = 0.0
        if self._ctx.identity is not None and time.monotonic() >= self._next_maintenance:
            self._next_maintenance = time.monotonic() + MAINTENANCE_INTERVAL
            try:
                report = await self._pool().maintain(self._ctx.now())
                if claimed:
                    self._claims.spent(report.published)
                async with self._ctx.store.transaction() as tx:
                    await tx.prune_processed()
                    await tx.prune_buffered(self._ctx.now() - BUFFER_TTL)
            except Exception as exc:  # any adapter's transport failure: retry next pass
                self._ctx.emit(ClientWarning(None, f"KeyPackage upkeep failed: {reason(exc)}"))
                self._next_maintenance = 0.0

    async def _group_housekeeping(self, rec: GroupRecord) -> None:
        gid = rec.group_id
        group = await self._ctx.load(gid)
        removes = {p.body.removed for p in group.pending_proposals
                   if isinstance(p.body, Remove)}
        if rec.leaving:
            if group.own_leaf_index not in removes:
                await self._out.propose_leave(gid)
        elif rec.needs_update:
            await self._out.commit(gid, lambda g: [])
            async with self._ctx.store.transaction() as tx:
                await tx.set_group_flags(gid, needs_update=False)
        elif group.pending_proposals and _designated(group, removes):
            await self._out.commit(gid, lambda g: [] if g.pending_proposals else None)


class RoomRights(Protocol):
    """A network's room-rights follower (see :attr:`MLSClient.room_rights`)."""

    async def reconcile(self, group_id: bytes) -> bool: ...


def _room_rights(client: MLSClient, transport: DeliveryTransport) -> RoomRights | None:
    """The room-rights follower for ``transport``'s network (by its ``network`` name and
    the operations it offers; a wrapper such as a bridged transport is looked through
    to the network transport it wraps, ``inner``), or None."""
    while isinstance(vars(transport).get("inner") if hasattr(transport, "__dict__")
                     else None, DeliveryTransport):
        transport = vars(transport)["inner"]
    network = getattr(transport, "network", None)
    if network == "matrix" and hasattr(transport, "api") and hasattr(transport, "room_id"):
        from transports.matrix.transport import MatrixDeliveryTransport

        from .matrix_rights import PolicySync

        if isinstance(transport, MatrixDeliveryTransport):
            return PolicySync(client, transport)
    if network == "xmpp" and hasattr(transport, "plugin"):
        from transports.xmpp.transport import XmppDeliveryTransport

        from .xmpp_rights import AffiliationSync

        if isinstance(transport, XmppDeliveryTransport):
            return AffiliationSync(client, transport)
    return None


def _bound(transport: DeliveryTransport, name: str, given: str | None) -> str | None:
    """The transport's own ``user_id``/``client_id``, if it has one; ``given`` must then
    be None or equal to it."""
    own = getattr(transport, name, None)
    if not isinstance(own, str):
        return given
    if given is not None and given != own:
        raise UsageError(f"this transport is bound to {name} {own!r}, not {given!r}")
    return own


#: passes that try to follow an active group again after opening
RESUBSCRIBE_TRIES = 3
#: syncs that try to act on another user's room kick or ban, or to update a room's rights
ROOM_TRIES = 5
#: backoff of :meth:`MLSClient.events` after a transport failure (seconds)
RETRY_INITIAL = 0.5
RETRY_CAP = 30.0


class _Outage:
    """One outage of the Delivery Service as :meth:`MLSClient.events` sees it: capped
    exponential backoff with full jitter, and the events that frame it."""

    def __init__(self, stats: ClientStats) -> None:
        self._stats = stats
        self._since: float | None = None
        self._attempt = 0

    def failed(self, exc: BaseException) -> ConnectionLost | None:
        self._attempt += 1
        self._stats.reconnect_attempts += 1
        if self._since is not None:
            return None
        self._since = time.monotonic()
        self._stats.disconnects += 1
        log.warning("the delivery service failed (%s); retrying", reason(exc))
        return ConnectionLost(reason(exc))

    def delay(self) -> float:
        ceiling = min(RETRY_CAP, RETRY_INITIAL * 2 ** min(self._attempt - 1, 16))
        return random.uniform(ceiling / 2, ceiling)

    def ended(self) -> ConnectionRestored | None:
        if self._since is None:
            return None
        outage, self._since, self._attempt = time.monotonic() - self._since, None, 0
        self._stats.reconnects += 1
        log.warning("the delivery service answers again after %.1f s", outage)
        return ConnectionRestored(outage)


async def _sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


def _transport_drops(transport: object) -> list[Drops]:
    """The :class:`~transports.defence.Drops` of a transport and of those it wraps."""
    out: list[Drops] = []
    seen: set[int] = set()
    while transport is not None and id(transport) not in seen:
        seen.add(id(transport))
        drops = vars(transport).get("drops") if hasattr(transport, "__dict__") else None
        if isinstance(drops, Drops):
            out.append(drops)
        transport = vars(transport).get("inner") if hasattr(transport, "__dict__") else None
    return out


def _shared_name(extensions: Sequence[Extension]) -> GroupName | None:
    """The group's GroupName; a malformed one (a foreign or hostile client's) counts as
    none, so that listing and resolving groups keep working."""
    try:
        return GroupName.from_extensions(extensions)
    except MLSError as exc:
        log.info("ignoring a malformed group name: %s", exc)
        return None


def _candidate(summary: GroupSummary) -> str:
    """One candidate of an ambiguous group reference: id prefix, name, users."""
    users = ", ".join(summary.users[:4]) + (", ..." if len(summary.users) > 4 else "")
    state = "" if summary.active else " (left)"
    return f"{summary.group_id.hex()[:16]} {summary.name or '-'}{state} [{users}]"


def _designated(group: Group, removes: set[int]) -> bool:
    """Whether we commit pending proposals: the lowest-index member not being removed
    does (any member also commits them before sending application data, §12.4)."""
    candidates = [m.index for m in group.members if m.index not in removes]
    return bool(candidates) and min(candidates) == group.own_leaf_index


def _stale_leaf(info: GroupInfo, tree: bytes | None, signature_key: bytes,
                identity: bytes | None, device: bytes, limits: InputLimits) -> int | None:
    """Our old leaf in the published tree: the one holding our signature key or, after
    the whole state was lost (a new signature key), the one of our identity whose
    application_id names this device (RFC 9420 §5.3.3). The tree is not verified yet
    (join_external does that next), so it is decoded within the join bounds: a hostile
    GroupInfo costs no more here than there."""
    if tree is None and not any(e.extension_type == ExtensionType.RATCHET_TREE
                                for e in info.extensions):
        return None
    leaves = list(unverified_tree(info, tree, limits).leaves())
    for index, leaf in leaves:
        if leaf.signature_key == signature_key:
            return index
    for index, leaf in leaves:
        if leaf.credential.identity == identity and device_of(leaf.extensions) == device:
            return index
    return None


def _replaced_leaves(group: Group, new: Sequence[KeyPackage]) -> list[int]:
    """Leaves of devices that come back with a new KeyPackage: same identity, same
    application_id (the device's client id, §5.3.3), another signature key. The device
    lost its state, so these leaves can no longer read anything; the Commit that adds
    the device again removes them."""
    devices = {(kp.leaf_node.credential.identity, device_of(kp.leaf_node.extensions)):
               kp.leaf_node.signature_key for kp in new
               if device_of(kp.leaf_node.extensions) is not None}
    out = []
    for index, leaf in group.tree.leaves():
        key = devices.get((leaf.credential.identity, device_of(leaf.extensions)))
        if key is not None and key != leaf.signature_key and index != group.own_leaf_index:
            out.append(index)
    return out
