"""What the parts of an :class:`~mls_client.client.MLSClient` share: its identity, store,
transport, settings, the cache of loaded groups and the queue of events to report."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from mls_core.ciphersuite import get_suite
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.errors import MLSError, ProtocolError
from mls_core.events import CommitApplied
from mls_core.framing import MLSMessage, PublicMessage, SenderType
from mls_core.group import Group
from transports.base import DeliveryTransport
from transports.defence import Drops

from .errors import NotFoundError, StorageError
from .events import ClientEvent, CommitProcessed, member_name
from .settings import Settings
from .store import GroupRecord, Identity, Store, Transaction


@dataclass(frozen=True)
class Header:
    """The clear routing fields of a group message (RFC 9420 §6.2, §6.3)."""

    epoch: int
    content_type: int


def read_header(payload: bytes) -> Header:
    """Epoch and content type of an MLSMessage(PublicMessage/PrivateMessage)."""
    msg = MLSMessage.decode(payload)
    body = msg.public_message or msg.private_message
    if body is None:
        raise ProtocolError("§6: expected a PublicMessage or PrivateMessage")
    if isinstance(body, PublicMessage):
        return Header(body.content.epoch, body.content.content_type)
    return Header(body.epoch, body.content_type)


def digest(payload: bytes) -> bytes:
    """The processed-log key of an incoming item."""
    return hashlib.sha256(payload).digest()


@dataclass
class ClientStats:
    """Counters for tests and tools."""

    commits_lost: int = 0
    messages_processed: int = 0
    #: submissions the Delivery Service accepted or ordered (application messages,
    #: proposals and Commits; a retry the service recognises as a repeat counts again)
    messages_sent: int = 0
    messages_rejected: int = 0
    #: group messages of epochs before we joined, skipped silently (mls_client.inbound)
    messages_before_join: int = 0
    #: outages :meth:`MLSClient.run` rode out (ConnectionLost), and the retries it took
    disconnects: int = 0
    #: outages that ended (ConnectionRestored)
    reconnects: int = 0
    reconnect_attempts: int = 0
    #: refills of the KeyPackage pool that claims of our KeyPackages triggered, and
    #: those refused by the refill budget (a possible depletion attack)
    key_package_refills: int = 0
    key_package_refills_refused: int = 0
    #: submissions retried after a transient transport failure (Settings.submit_wait)
    submit_retries: int = 0
    #: application messages delivered before under the same (sender, message id)
    duplicates_dropped: int = 0
    #: inbound items dropped before use, per reason: the client's own drops and its
    #: transports' (docs/security.md, "Inbound inventory"); filled when read
    dropped: dict[str, int] = field(default_factory=dict)


def reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class ClientContext:
    """Shared state of one client. Groups are cached between operations; a failed
    transaction drops the cached groups it concerned (see :meth:`transaction`)."""

    def __init__(self, store: Store, transport: DeliveryTransport, settings: Settings,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.transport = transport
        self.settings = settings
        self.config: GroupConfig = settings.group_config()
        self._clock = clock
        self.cache: dict[bytes, Group] = {}
        self.queued: list[ClientEvent] = []
        self.identity: Identity | None = None
        self.stats = ClientStats()
        #: inbound items the client refuses (Welcomes for none of our KeyPackages,
        #: messages MLS rejects, network sender ≠ MLS sender): counted, WARNING logged
        self.drops = Drops("client")

    def now(self) -> int:
        return int(self._clock())

    def emit(self, event: ClientEvent) -> None:
        self.queued.append(event)

    # ------------------------------------------------------------------ identity

    def require_identity(self) -> Identity:
        if self.identity is None:
            raise NotFoundError("no identity yet: create one first (identity create)")
        return self.identity

    @property
    def user_id(self) -> str:
        return self.require_identity().user_id

    @property
    def client_id(self) -> str:
        return self.require_identity().client_id

    @property
    def credential(self) -> Credential:
        return Credential.basic(self.user_id.encode())

    async def signature_key(self, suite_id: int) -> tuple[bytes, bytes]:
        """(private, public) signature key for a suite, created on first use."""
        keys = await self.store.signature_key(suite_id)
        if keys is None:
            priv, pub = get_suite(suite_id).generate_signature_key_pair()
            async with self.store.transaction() as tx:
                await tx.add_signature_key(suite_id, priv, pub)
            keys = (priv, pub)
        return keys

    # ------------------------------------------------------------------ groups

    async def record(self, group_id: bytes) -> GroupRecord:
        rec = await self.store.group(group_id)
        if rec is None:
            raise NotFoundError(f"unknown group {group_id.hex()}")
        return rec

    async def load(self, group_id: bytes) -> Group:
        """The current state of an active group."""
        group = self.cache.get(group_id)
        if group is not None:
            return group
        rec = await self.record(group_id)
        if not rec.active or rec.state is None:
            raise NotFoundError(f"not a member of group {group_id.hex()} any more")
        try:
            group = Group.from_bytes(rec.state, self.config)
        except MLSError as exc:
            raise StorageError(f"state of group {group_id.hex()} is unreadable ({exc}); "
                               "recover it with recover_group") from None
        self.cache[group_id] = group
        return group

    @contextlib.asynccontextmanager
    async def transaction(self, *group_ids: bytes) -> AsyncIterator[Transaction]:
        """A store transaction; if it fails, the cached groups it concerned are dropped
        so that they are reloaded from their last committed state."""
        try:
            async with self.store.transaction() as tx:
                yield tx
        except BaseException:
            for gid in group_ids:
                self.cache.pop(gid, None)
            raise

    async def save(self, tx: Transaction, group: Group, *, name: str | None = None,
                   joined: bool = False) -> None:
        """Replace the group's stored state with the current one (``joined``: we just
        joined it, at its current epoch)."""
        await tx.put_group(group.group_id, group.to_bytes(), group.epoch, name=name,
                           joined=joined)
        self.cache[group.group_id] = group

    async def drop(self, tx: Transaction, group: Group) -> None:
        """We are no longer a member: delete the group's secrets, keep a tombstone."""
        await tx.put_group(group.group_id, None, group.epoch, active=False)
        await tx.drop_outbox(group.group_id)
        await tx.drop_buffered(group.group_id)
        self.cache.pop(group.group_id, None)

    async def publish_group_info(self, group: Group) -> None:
        """Publish the GroupInfo (with tree and external_pub) for external joins."""
        await self.transport.publish_group_info(group.group_id, group.epoch,
                                                group.group_info())

    # ------------------------------------------------------------------ naming

    @staticmethod
    def leaf_name(group: Group, index: int) -> str:
        for m in group.members:
            if m.index == index:
                return member_name(m)
        return f"leaf {index}"

    def commit_event(self, group: Group, event: CommitApplied, *, own: bool) -> CommitProcessed:
        sender = event.committer
        if own:
            committer = self.user_id
        elif sender.sender_type == SenderType.MEMBER and sender.index is not None:
            committer = self.leaf_name(group, sender.index)
        else:
            committer = next((member_name(m) for m in event.added), "external joiner")
        return CommitProcessed(group.group_id, event.epoch, committer,
                               tuple(member_name(m) for m in event.added),
                               tuple(member_name(m) for m in event.removed), own)
