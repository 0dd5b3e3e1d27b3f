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
from mls_core.events import ApplicationMessage, CommitApplied, Event, Member, ProposalReceived
from mls_core.framing import ContentType, MLSMessage, SenderType
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate
from mls_core.proposals import Add
from transports.base import IncomingMessage, MessageKind

from .content import Interpreted, content_columns, content_event, interpret, target_of
from .content import apply as apply_content
from .context import ClientContext, Header, digest, read_header, reason
from .errors import ContentRefusedError, KeyPackageError, SenderMismatchError
from .events import (
    ClientEvent,
    GroupJoined,
    MessageReceived,
    MessageRejected,
    ProposalQueued,
    RemovedFromGroup,
    SignatureKeyChanged,
)
from .keypackages import reuse_grace
from .outbound import Outbound
from .pinning import check_and_pin
from .store import InboxMessage, StoredKeyPackage, Transaction

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
        if item.kind is not MessageKind.GROUP:  # e.g. CONTROL: the transport's business
            async with ctx.store.transaction() as tx:
                await tx.set_cursor(item.cursor)
            return
        gid = item.group_id
        rec = None if gid is None else await ctx.store.group(gid)
        if gid is None or rec is None:
            async with ctx.store.transaction() as tx:
                if gid is not None:
                    await tx.buffer(gid, item.payload, item.sender, h, item.sender_identity)
                await tx.set_cursor(item.cursor)
            return
        if not rec.active:
            await self._skip(h, item.cursor, gid, "not_member")
            return
        await self._on_group_message(gid, item.payload, item.sender, h, cursor=item.cursor,
                                     sender_identity=item.sender_identity,
                                     position=item.position, message_id=item.message_id)

    async def _skip(self, h: bytes, cursor: str | None, gid: bytes | None, outcome: str,
                    buffered_id: int | None = None) -> None:
        async with self._ctx.store.transaction() as tx:
            await _finish(tx, h, cursor, gid, outcome, buffered_id)

    # ------------------------------------------------------------------ group messages

    async def _on_group_message(self, gid: bytes, payload: bytes, sender: str | None,
                                h: bytes, *, cursor: str | None = None,
                                buffered_id: int | None = None,
                                sender_identity: str | None = None,
                                position: int | None = None,
                                message_id: str | None = None) -> None:
        ctx = self._ctx
        try:
            header = read_header(payload)
            group = await ctx.load(gid)
        except MLSError as exc:
            await self._skip(h, cursor, gid, "rejected", buffered_id)
            ctx.emit(MessageRejected(gid, reason(exc)))
            return
        if sender == ctx.client_id or await self._is_outgoing(gid, h):
            await self._on_own_message(group, header, h, cursor, buffered_id, position)
            return
        try:
            event = group.process(payload, now=ctx.now())
            _check_sender(group, event, sender_identity)
        except MLSError as exc:
            if isinstance(exc, SenderMismatchError):
                ctx.cache.pop(gid, None)  # processed in memory only: reload the stored state
            stale = isinstance(exc, EpochError) and header.epoch < group.epoch
            if stale and await _before_join(ctx, gid, header.epoch):
                await self._skip(h, cursor, gid, "stale", buffered_id)
                ctx.stats.messages_before_join += 1
                return
            await self._skip(h, cursor, gid, "stale" if stale else "rejected", buffered_id)
            ctx.stats.messages_rejected += 1
            if not stale:
                ctx.drops.drop(sender=sender_identity or sender, kind="group message",
                               reason=_slug(exc), detail=f"group {gid.hex()[:16]}: {exc}")
            if not (stale and header.content_type != ContentType.APPLICATION):
                ctx.emit(MessageRejected(gid, reason(exc)))
            return
        removed = isinstance(event, CommitApplied) and event.removed_self
        duplicate = (isinstance(event, ApplicationMessage) and message_id is not None
                     and await ctx.store.delivered(gid, ctx.leaf_name(group, event.sender),
                                                   message_id))
        inbox_id = 0
        warnings: list[SignatureKeyChanged] = []
        meta, target, refused = await self._content(group, event, duplicate)
        expired = (meta is not None and meta.expires_at is not None
                   and meta.expires_at <= ctx.now())
        async with ctx.transaction(gid) as tx:
            if removed:
                await ctx.drop(tx, group)
            else:
                await ctx.save(tx, group)
            if isinstance(event, CommitApplied):
                await self._forget_lost_commits(tx, gid)
                if not removed:
                    warnings = await check_and_pin(ctx.store, tx, gid,
                                                   _changed_members(group, event))
            if isinstance(event, ApplicationMessage) and meta is not None and not expired:
                inbox_id = await tx.deliver(gid, ctx.leaf_name(group, event.sender),
                                            event.sender, event.epoch, event.data,
                                            msg_hash=h, message_id=message_id,
                                            **content_columns(meta))
                await apply_content(tx, gid, meta, event.data, target)
            outcome = ("duplicate" if duplicate else "rejected" if refused is not None
                       else "expired" if expired else "ok")
            await _finish(tx, h, cursor, gid, outcome, buffered_id)
        ctx.stats.messages_processed += 1
        if duplicate:  # its sender encrypted it again: delivered once (docs/resilience.md)
            ctx.stats.duplicates_dropped += 1
            return
        if refused is not None:  # MLS authenticated it, its content is refused
            ctx.stats.messages_rejected += 1
            sender_name = ctx.leaf_name(group, getattr(event, "sender", -1))
            ctx.drops.drop(sender=sender_name, kind="content", reason=refused.slug,
                           detail=f"group {gid.hex()[:16]}: {refused}",
                           benign=refused.benign)
            ctx.emit(MessageRejected(gid, f"{sender_name}: {reason(refused)}"))
            return
        if expired:  # expired before it arrived: never shown (docs/content.md)
            return
        ctx.emit(self._event_of(group, event, inbox_id, meta, target))
        for warning in warnings:
            ctx.emit(warning)
        if removed:
            with contextlib.suppress(Exception):
                await ctx.transport.unsubscribe(ctx.client_id, gid)

    async def _content(self, group: Group, event: Event, duplicate: bool
                       ) -> tuple[Interpreted | None, InboxMessage | None,
                                  ContentRefusedError | None]:
        """What an application message is (MIMI content or plain text) and, for an
        edit, delete or unreaction, the message it replaces, checked (docs/content.md);
        (None, None, error) if its content is refused."""
        if not isinstance(event, ApplicationMessage) or duplicate:
            return None, None, None
        sender = self._ctx.leaf_name(group, event.sender)
        try:
            meta = interpret(event.data, sender, group.group_id)
            return meta, await target_of(self._ctx.store, group.group_id, sender, meta), None
        except ContentRefusedError as exc:
            return None, None, exc

    async def _forget_lost_commits(self, tx: Transaction, gid: bytes) -> None:
        """Another member's Commit was applied: our pending Commit for the group lost."""
        for entry in await self._ctx.store.outbox():
            if entry.group_id == gid and entry.kind == "commit" and entry.state == "pending":
                await tx.delete_outbox(entry.id)

    def _event_of(self, group: Group,
                  event: ApplicationMessage | ProposalReceived | CommitApplied,
                  inbox_id: int, meta: Interpreted | None = None,
                  target: InboxMessage | None = None) -> ClientEvent:
        ctx = self._ctx
        gid = group.group_id
        if isinstance(event, ApplicationMessage):
            sender = ctx.leaf_name(group, event.sender)
            if meta is not None:
                special = content_event(gid, sender, meta, target)
                if special is not None:
                    return special
            return MessageReceived(gid, sender, event.sender, event.epoch, event.data,
                                   inbox_id, None if meta is None else meta.content,
                                   None if meta is None else meta.content_id)
        if isinstance(event, ProposalReceived):
            s = event.sender
            who = (ctx.leaf_name(group, s.index) if s.sender_type == SenderType.MEMBER
                   and s.index is not None else "external sender")
            return ProposalQueued(gid, event.proposal.proposal_type, who)
        if event.removed_self:
            by = ctx.commit_event(group, event, own=False).committer
            return RemovedFromGroup(gid, event.epoch, by)
        return ctx.commit_event(group, event, own=False)

    async def _is_outgoing(self, gid: bytes, h: bytes) -> bool:
        """Whether the message is ours: an unfinished send, or an application message
        we sent (its outgoing inbox row). A transport that cannot name the sending
        device (a bridge's hub items) still lets us recognise our own echo, which we
        could not decrypt again (§9.2: its key was used and deleted)."""
        if any(e.group_id == gid and digest(e.payload) == h
               for e in await self._ctx.store.outbox()):
            return True
        sent = await self._ctx.store.inbox_entry(h)
        return sent is not None and sent.outgoing and sent.group_id == gid

    async def _on_own_message(self, group: Group, header: Header, h: bytes,
                              cursor: str | None, buffered_id: int | None,
                              position: int | None = None) -> None:
        """Our own message, echoed in the group's order. Our Commit for the current
        epoch while it is still pending means it won: no valid Commit for the epoch came
        before it (we crashed before learning it, or the transport leaves the decision
        to the stream: SubmitStatus.ORDERED)."""
        if (header.content_type == ContentType.COMMIT and group.has_pending_commit
                and header.epoch == group.epoch and cursor is not None):
            pending = [e for e in await self._ctx.store.outbox()
                       if e.group_id == group.group_id and e.kind == "commit"]
            if pending:
                await self._out.merge(group, pending[-1].id, cursor, h, position=position)
                return
        # the echo proves the message is in the group's order: its outbox entry (an
        # unfinished send) goes in the transaction that logs the echo (docs/resilience.md)
        done = [e.id for e in await self._ctx.store.outbox()
                if e.group_id == group.group_id and e.kind != "commit" and digest(e.payload) == h]
        async with self._ctx.store.transaction() as tx:
            for entry_id in done:
                await tx.delete_outbox(entry_id)
            await _finish(tx, h, cursor, group.group_id, "own", buffered_id)

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
            ctx.drops.drop(sender=item.sender_identity or item.sender, kind="welcome",
                           reason=_slug(exc), detail=str(exc))
            ctx.emit(MessageRejected(item.group_id, reason(exc)))
            return
        gid = group.group_id
        existing = await ctx.store.group(gid)
        if existing is not None and existing.active and existing.epoch >= group.epoch:
            await self._skip(h, item.cursor, gid, "duplicate")  # an old or repeated Welcome
            return
        keep = stored.last_resort or reuse_grace(ctx.settings, ctx.transport) > 0
        # a one-use KeyPackage that two adders claimed: both groups hold our leaf with the
        # same keys, so both replace them at once, like after a last-resort join (RFC 9750)
        reused = stored.used and not stored.last_resort
        async with ctx.transaction(gid) as tx:
            await ctx.save(tx, group, joined=True)
            await tx.set_group_flags(gid, leaving=False,
                                     needs_update=stored.last_resort or reused)
            if reused and stored.used_in is not None and stored.used_in != gid:
                await tx.set_group_flags(stored.used_in, needs_update=True)
            if keep:
                await tx.mark_used(stored.ref, ctx.now(), gid)
            else:
                await tx.delete_key_packages([stored.ref])
            await _finish(tx, h, item.cursor, gid, "joined", None)
            warnings = await check_and_pin(ctx.store, tx, gid, group.members)
        ctx.emit(GroupJoined(gid, group.epoch, last_resort=stored.last_resort))
        for warning in warnings:
            ctx.emit(warning)
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
                                             buffered_id=b.id,
                                             sender_identity=b.sender_identity)


async def _before_join(ctx: ClientContext, gid: bytes, epoch: int) -> bool:
    """Whether ``epoch`` precedes the epoch we created or joined the group at: such a
    message was never ours to read (a Welcome gives only the joining epoch's secrets,
    RFC 9420 §12.4.3.1; an external Commit likewise, §12.4.3.2), so it is skipped
    without an alarm. A group stored before the joined epoch was recorded counts as
    joined at epoch 0 (every stale message is then reported, as before)."""
    rec = await ctx.store.group(gid)
    joined = 0 if rec is None or rec.joined_epoch is None else rec.joined_epoch
    return epoch < joined


def _slug(exc: BaseException) -> str:
    """A stable drop reason for an MLS rejection: ``mls-`` and the error's class,
    kebab-cased (``mls-sender-mismatch-error``)."""
    name = type(exc).__name__
    return "mls-" + "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


def _changed_members(group: Group, event: CommitApplied) -> list[Member]:
    """Members whose leaf a Commit added or replaced (their signature key may be new)."""
    indexes = set(event.updated)
    if event.committer.sender_type == SenderType.MEMBER and event.committer.index is not None:
        indexes.add(event.committer.index)
    changed = [m for i in sorted(indexes) if (m := group.member(i)) is not None]
    return [*event.added, *changed]


def _check_sender(group: Group, event: Event, identity: str | None) -> None:
    """The network-authenticated sender must be the identity in the MLS sender's
    credential (RFC 9750 "Authentication Service"). Senders without a basic-credential
    identity (x509), external senders and unknown network senders are not compared."""
    if identity is None:
        return
    claimed = _mls_sender_identity(group, event)
    if claimed is not None and claimed != identity.encode():
        shown = claimed.decode("utf-8", errors="replace")
        raise SenderMismatchError(f"the network says the sender is {identity}, the MLS "
                                  f"message is signed by {shown}")


def _mls_sender_identity(group: Group, event: Event) -> bytes | None:
    if isinstance(event, ApplicationMessage):
        return _leaf_identity(group, event.sender)
    sender = event.sender if isinstance(event, ProposalReceived) else event.committer
    if sender.sender_type == SenderType.MEMBER and sender.index is not None:
        return _leaf_identity(group, sender.index)
    if isinstance(event, ProposalReceived) and isinstance(event.proposal.body, Add):
        return event.proposal.body.key_package.leaf_node.credential.identity
    if isinstance(event, CommitApplied) and sender.sender_type == SenderType.NEW_MEMBER_COMMIT:
        return event.added[0].credential.identity if event.added else None
    return None


def _leaf_identity(group: Group, index: int) -> bytes | None:
    member = group.member(index)
    return None if member is None else member.credential.identity


async def _finish(tx: Transaction, h: bytes, cursor: str | None, gid: bytes | None,
                  outcome: str, buffered_id: int | None) -> None:
    """Log the item as processed and move the cursor (or drop it from the buffer)."""
    await tx.mark_processed(h, cursor, gid, outcome)
    if cursor is not None:
        await tx.set_cursor(cursor)
    if buffered_id is not None:
        await tx.delete_buffered(buffered_id)
