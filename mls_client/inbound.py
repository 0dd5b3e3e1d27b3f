"""Receiving: the client's stream, processed in order from the stored cursor.

Each item is handled in exactly one store transaction that holds all of its effects —
the group's new state, the inbox row of a decrypted application message, the deleted
KeyPackage of a Welcome, the processed-log entry and the new cursor (RFC 9750
"Ordering"; see :mod:`mls_client.store`). An item that fails to process leaves the group
unchanged (the core guarantees it) and is logged as rejected, so one bad message never
blocks the stream. Group messages that arrive before the Welcome into their group are
buffered and replayed after the join.
"""

from __future__ import annotations

import contextlib

from mls_core.errors import EpochError, MLSError, ProtocolError
from mls_core.events import ApplicationMessage, CommitApplied, ProposalReceived
from mls_core.framing import ContentType, MLSMessage, SenderType
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate
from transports.base import IncomingMessage, MessageKind

from .context import ClientContext, Header, digest, read_header, reason
from .errors import KeyPackageError
from .events import (
    ClientEvent,
    GroupJoined,
    MessageReceived,
    MessageRejected,
    ProposalQueued,
    RemovedFromGroup,
)
from .outbound import Outbound
from .store import StoredKeyPackage, Transaction

FETCH_BATCH = 256


class Inbound:
    """The receiving half of a client."""

    def __init__(self, ctx: ClientContext, outbound: Outbound) -> None:
        self._ctx = ctx
        self._out = outbound
        #: set when a Welcome consumed a KeyPackage (the pool needs a refill)
        self.key_package_used = False

    async def catch_up(self) -> None:
        """Process everything the transport holds after our cursor."""
        ctx = self._ctx
        while True:
            items = await ctx.transport.fetch(ctx.client_id, after=await ctx.store.cursor(),
                                              limit=FETCH_BATCH)
            if not items:
                return
            for item in items:
                await self.handle(item)

    async def handle(self, item: IncomingMessage) -> None:
        """Process one item: its effects and the cursor move are one transaction."""
        ctx = self._ctx
        h = digest(item.payload)
        if await ctx.store.is_processed(h):
            async with ctx.store.transaction() as tx:
                await tx.set_cursor(item.cursor)
            return
        if item.kind is MessageKind.WELCOME:
            await self._on_welcome(item, h)
            return
        gid = item.group_id
        rec = None if gid is None else await ctx.store.group(gid)
        if gid is None or rec is None:
            async with ctx.store.transaction() as tx:
                if gid is not None:
                    await tx.buffer(gid, item.payload, item.sender, h)
                await tx.set_cursor(item.cursor)
            return
        if not rec.active:
            await self._skip(h, item.cursor, gid, "not_member")
            return
        await self._on_group_message(gid, item.payload, item.sender, h, cursor=item.cursor)

    async def _skip(self, h: bytes, cursor: str | None, gid: bytes | None, outcome: str,
                    buffered_id: int | None = None) -> None:
        async with self._ctx.store.transaction() as tx:
            await _finish(tx, h, cursor, gid, outcome, buffered_id)

    # ------------------------------------------------------------------ group messages

    async def _on_group_message(self, gid: bytes, payload: bytes, sender: str | None,
                                h: bytes, *, cursor: str | None = None,
                                buffered_id: int | None = None) -> None:
        ctx = self._ctx
        try:
            header = read_header(payload)
            group = await ctx.load(gid)
        except MLSError as exc:
            await self._skip(h, cursor, gid, "rejected", buffered_id)
            ctx.emit(MessageRejected(gid, reason(exc)))
            return
        if sender == ctx.client_id:
            await self._on_own_message(group, header, h, cursor, buffered_id)
            return
        try:
            event = group.process(payload, now=ctx.now())
        except MLSError as exc:
            stale = isinstance(exc, EpochError) and header.epoch < group.epoch
            await self._skip(h, cursor, gid, "stale" if stale else "rejected", buffered_id)
            ctx.stats.messages_rejected += 1
            if not (stale and header.content_type != ContentType.APPLICATION):
                ctx.emit(MessageRejected(gid, reason(exc)))
            return
        removed = isinstance(event, CommitApplied) and event.removed_self
        inbox_id = 0
        async with ctx.transaction(gid) as tx:
            if removed:
                await ctx.drop(tx, group)
            else:
                await ctx.save(tx, group)
            if isinstance(event, CommitApplied):
                await self._forget_lost_commits(tx, gid)
            if isinstance(event, ApplicationMessage):
                inbox_id = await tx.deliver(gid, ctx.leaf_name(group, event.sender),
                                            event.sender, event.epoch, event.data,
                                            msg_hash=h)
            await _finish(tx, h, cursor, gid, "ok", buffered_id)
        ctx.stats.messages_processed += 1
        ctx.emit(self._event_of(group, event, inbox_id))
        if removed:
            with contextlib.suppress(Exception):
                await ctx.transport.unsubscribe(ctx.client_id, gid)

    async def _forget_lost_commits(self, tx: Transaction, gid: bytes) -> None:
        """Another member's Commit was applied: our pending Commit for the group lost."""
        for entry in await self._ctx.store.outbox():
            if entry.group_id == gid and entry.kind == "commit" and entry.state == "pending":
                await tx.delete_outbox(entry.id)

    def _event_of(self, group: Group,
                  event: ApplicationMessage | ProposalReceived | CommitApplied,
                  inbox_id: int) -> ClientEvent:
        ctx = self._ctx
        gid = group.group_id
        if isinstance(event, ApplicationMessage):
            return MessageReceived(gid, ctx.leaf_name(group, event.sender), event.sender,
                                   event.epoch, event.data, inbox_id)
        if isinstance(event, ProposalReceived):
            s = event.sender
            who = (ctx.leaf_name(group, s.index) if s.sender_type == SenderType.MEMBER
                   and s.index is not None else "external sender")
            return ProposalQueued(gid, event.proposal.proposal_type, who)
        if event.removed_self:
            by = ctx.commit_event(group, event, own=False).committer
            return RemovedFromGroup(gid, event.epoch, by)
        return ctx.commit_event(group, event, own=False)

    async def _on_own_message(self, group: Group, header: Header, h: bytes,
                              cursor: str | None, buffered_id: int | None) -> None:
        """Our own message, echoed in the group's order. Our Commit for the current
        epoch while it is still pending means it won (we crashed before learning it)."""
        if (header.content_type == ContentType.COMMIT and group.has_pending_commit
                and header.epoch == group.epoch and cursor is not None):
            pending = [e for e in await self._ctx.store.outbox()
                       if e.group_id == group.group_id and e.kind == "commit"]
            if pending:
                await self._out.merge(group, pending[-1].id, cursor, h)
                return
        await self._skip(h, cursor, group.group_id, "own", buffered_id)

    # ------------------------------------------------------------------ Welcome

    async def _join(self, item: IncomingMessage) -> tuple[Group, StoredKeyPackage]:
        ctx = self._ctx
        welcome = MLSMessage.decode(item.payload).welcome
        if welcome is None:
            raise ProtocolError("expected an MLSMessage(Welcome)")
        stored = None
        for secrets in welcome.secrets:
            stored = stored or await ctx.store.key_package(secrets.new_member)
        if stored is None:
            raise KeyPackageError("the Welcome is for none of our KeyPackages")
        kp = MLSMessage.decode(stored.key_package).key_package
        if kp is None:
            raise KeyPackageError("a stored KeyPackage does not decode")
        priv, _ = await ctx.signature_key(stored.suite)
        private = KeyPackagePrivate(stored.init_priv, stored.encryption_priv, priv)
        return Group.join(item.payload, kp, private, config=ctx.config, now=ctx.now()), stored

    async def _on_welcome(self, item: IncomingMessage, h: bytes) -> None:
        """Join from a Welcome to one of our KeyPackages (§12.4.3.1). Its private keys
        are deleted in the same transaction, a last-resort one is marked for rotation
        and the group for an early self-update (RFC 9750)."""
        ctx = self._ctx
        try:
            group, stored = await self._join(item)
        except MLSError as exc:
            await self._skip(h, item.cursor, item.group_id, "rejected")
            ctx.emit(MessageRejected(item.group_id, reason(exc)))
            return
        gid = group.group_id
        existing = await ctx.store.group(gid)
        if existing is not None and existing.active and existing.epoch >= group.epoch:
            await self._skip(h, item.cursor, gid, "duplicate")  # an old or repeated Welcome
            return
        async with ctx.transaction(gid) as tx:
            await ctx.save(tx, group)
            await tx.set_group_flags(gid, leaving=False, needs_update=stored.last_resort)
            if stored.last_resort:
                await tx.mark_used(stored.ref)
            else:
                await tx.delete_key_packages([stored.ref])
            await _finish(tx, h, item.cursor, gid, "joined", None)
        ctx.emit(GroupJoined(gid, group.epoch, last_resort=stored.last_resort))
        self.key_package_used = True
        await ctx.transport.subscribe(ctx.client_id, gid)
        await self._replay_buffered(group)

    async def _replay_buffered(self, group: Group) -> None:
        """Group messages that reached us before the Welcome, in their order; those of
        earlier epochs (e.g. the Commit that added us) are dropped."""
        ctx = self._ctx
        for b in await ctx.store.buffered(group.group_id):
            try:
                stale = read_header(b.payload).epoch < group.epoch
            except MLSError:
                stale = True
            if stale or await ctx.store.is_processed(b.msg_hash):
                await self._skip(b.msg_hash, None, group.group_id, "stale", b.id)
            else:
                await self._on_group_message(group.group_id, b.payload, b.sender, b.msg_hash,
                                             buffered_id=b.id)


async def _finish(tx: Transaction, h: bytes, cursor: str | None, gid: bytes | None,
                  outcome: str, buffered_id: int | None) -> None:
    """Log the item as processed and move the cursor (or drop it from the buffer)."""
    await tx.mark_processed(h, cursor, gid, outcome)
    if cursor is not None:
        await tx.set_cursor(cursor)
    if buffered_id is not None:
        await tx.delete_buffered(buffered_id)
