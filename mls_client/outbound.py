"""Sending: Commits that race for their epoch, proposals and application messages
(RFC 9420 §12.4, RFC 9750 "Delivery Service" ordering).

Everything is persisted before it is submitted: the group state (which already consumed
the sending generation, or holds the pending Commit) and an outbox row with the bytes, in
one transaction. A crash after that leaves the row behind and :meth:`Outbound.resume`
finishes the job: an accepted Commit still owes its Welcome and GroupInfo; a pending one
is resubmitted (merged if accepted, discarded if it lost); a proposal or application
message is resubmitted.

Every outbox entry has one *message id*, passed to every submission of it (also after a
crash), so a transport stores it once (:meth:`DeliveryTransport.submit`). A transient
transport failure is retried with capped backoff for ``Settings.submit_wait`` seconds
(:class:`DeliveryPendingError` after that; the entry stays queued). The own echo of a
message in the group's order deletes its entry, in the transaction that logs it. A stored
plaintext is encrypted again in a later epoch only when the transport vouches that a
refused resubmission means it never stored that message id (``idempotent_submit``); the
new ciphertext keeps the message id, so receivers deliver it once (docs/resilience.md).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from mls_core.errors import MLSError, UsageError
from mls_core.events import CommitApplied
from mls_core.group import Group
from mls_core.proposals import Add, Proposal, ProposalBody, Remove
from transports.base import SubmitResult, TransportError, is_transient
from transports.validation import require_message_id

from .content import apply as apply_content
from .content import content_columns, interpret, target_of
from .context import ClientContext, digest, reason
from .errors import CommitConflictError, DeliveryPendingError, TransportUnavailableError
from .events import ClientWarning
from .store import OutboxEntry

#: SubmitStatus.ORDERED: how long to wait for our Commit's echo (a transport may say
#: otherwise with a ``settle_timeout`` attribute, e.g. one that relays through a bridge),
#: the first delay between looks and the longest one
SETTLE_TIMEOUT = 3.0
SETTLE_DELAY = 0.05
SETTLE_MAX_DELAY = 0.5
#: retries of a transient transport failure: the first delay and the cap (seconds)
RETRY_DELAY = 0.2
RETRY_MAX_DELAY = 2.0

T = TypeVar("T")

#: makes a Commit's proposals from the current state; None when nothing is left to do
Build = Callable[[Group], Sequence[Proposal | ProposalBody] | None]


class Outbound:
    """The sending half of a client. ``catch_up`` processes the incoming stream (it is
    called after a Commit lost its epoch, to apply the winner before retrying)."""

    def __init__(self, ctx: ClientContext, catch_up: Callable[[], Awaitable[None]]) -> None:
        self._ctx = ctx
        self._catch_up_once = catch_up
        #: outbox id -> the event of our Commit merged from its echo in the stream
        self._merged: dict[int, CommitApplied] = {}

    async def _catch_up(self, *, queued: bool = True) -> None:
        await self.patiently(self._catch_up_once, queued=queued)

    @property
    def _retries(self) -> int:
        return self._ctx.settings.commit_retries

    # ------------------------------------------------------------------ commits

    async def commit(self, group_id: bytes, build: Build, *,
                     joiners: Mapping[bytes, str] | None = None) -> CommitApplied | None:
        """Build, persist and submit a Commit; after losing the epoch, process the
        winner and rebuild, at most ``commit_retries`` times. ``joiners`` maps the
        signature key of each KeyPackage to add to its client id (Welcome recipients)."""
        ctx = self._ctx
        for _ in range(self._retries + 1):
            group = await ctx.load(group_id)
            proposals = build(group)
            if proposals is None:
                return None
            result = group.commit(proposals, now=ctx.now())
            epoch = group.epoch
            welcome_to = _recipients(proposals, joiners or {})
            message_id = new_message_id()
            async with ctx.transaction(group_id) as tx:
                await ctx.save(tx, group)
                entry = await tx.add_outbox(group_id, epoch, "commit", result.commit,
                                            welcome=result.welcome,
                                            welcome_to=welcome_to if result.welcome else (),
                                            message_id=message_id)
            outcome = await self._submit(group_id, epoch, result.commit, is_commit=True,
                                         message_id=message_id)
            if outcome.accepted:
                return await self.merge(group, entry, position=outcome.position)
            if outcome.ordered:
                event = await self._settle(entry)
                if event is not None:
                    return event
            else:
                await self._discard(group, entry)
                await self._catch_up(queued=False)
            ctx.stats.commits_lost += 1
        raise CommitConflictError(f"gave up after {self._retries + 1} Commits lost their "
                                  "epoch to other members' Commits")

    async def _submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                      is_commit: bool, message_id: str | None,
                      wait: bool = True) -> SubmitResult:
        """Submit under ``message_id``; with ``wait``, retry transient failures with
        capped exponential backoff for ``submit_wait`` seconds, then raise
        :class:`DeliveryPendingError` (the outbox entry stays: the next sync resubmits
        it under the same id). Without ``wait``, one attempt."""
        ctx = self._ctx

        def call() -> Awaitable[SubmitResult]:
            return ctx.transport.submit(group_id, epoch, payload, is_commit=is_commit,
                                        sender=ctx.client_id, message_id=message_id)

        outcome = await self.patiently(call) if wait else await call()
        if outcome.accepted or outcome.ordered:
            ctx.stats.messages_sent += 1
        return outcome

    async def patiently(self, call: Callable[[], Awaitable[T]], *, queued: bool = True) -> T:
        """``call()``, again after each transient transport failure (capped exponential
        backoff) for ``submit_wait`` seconds; then :class:`DeliveryPendingError` if
        something is ``queued`` in the outbox, else :class:`TransportUnavailableError`."""
        ctx = self._ctx
        deadline = time.monotonic() + ctx.settings.submit_wait
        delay = RETRY_DELAY
        while True:
            try:
                return await call()
            except TransportError as exc:
                if not is_transient(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    failing = f"the transport kept failing for {ctx.settings.submit_wait:g} s"
                    if not queued:
                        raise TransportUnavailableError(
                            f"{failing} ({exc}); nothing was sent") from exc
                    raise DeliveryPendingError(
                        f"{failing} ({exc}); the message stays queued and will be "
                        "submitted once by the next sync: do not send it again") from exc
                ctx.stats.submit_retries += 1
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, RETRY_MAX_DELAY)

    async def _settle(self, entry_id: int) -> CommitApplied | None:
        """SubmitStatus.ORDERED: process the stream up to our Commit. It won if it is
        still pending when its echo arrives (:meth:`Inbound._on_own_message` merges it);
        a valid Commit of another member before it applies first and drops ours."""
        timeout = float(getattr(self._ctx.transport, "settle_timeout", SETTLE_TIMEOUT))
        deadline = time.monotonic() + timeout
        delay = SETTLE_DELAY
        while True:
            await self._catch_up()
            if entry_id in self._merged:
                return self._merged.pop(entry_id)
            if not any(e.id == entry_id for e in await self._ctx.store.outbox()):
                return None  # another Commit won; _forget_lost_commits dropped ours
            if time.monotonic() > deadline:
                raise TransportError(f"our Commit was ordered but did not come back in "
                                     f"the stream within {timeout:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, SETTLE_MAX_DELAY)

    async def _discard(self, group: Group, entry_id: int) -> None:
        group.discard_pending_commit()
        async with self._ctx.transaction(group.group_id) as tx:
            await self._ctx.save(tx, group)
            await tx.delete_outbox(entry_id)

    async def merge(self, group: Group, entry_id: int, cursor: str | None = None,
                    msg_hash: bytes | None = None, *,
                    position: int | None = None) -> CommitApplied:
        """Our Commit was accepted (at ``position`` of the group's order, if known): enter
        the new epoch (and move the cursor, if we learned it from the echo in our
        stream), then send the Welcome and GroupInfo."""
        ctx = self._ctx
        event = group.merge_pending_commit()
        self._merged[entry_id] = event
        async with ctx.transaction(group.group_id) as tx:
            await ctx.save(tx, group)
            await tx.set_outbox_state(entry_id, "accepted", position)
            if cursor is not None and msg_hash is not None:
                await tx.mark_processed(msg_hash, cursor, group.group_id, "own_commit")
                await tx.set_cursor(cursor)
        ctx.emit(ctx.commit_event(group, event, own=True))
        for entry in await ctx.store.outbox():
            if entry.id == entry_id:
                await self._finish_accepted(entry)
        return event

    async def _finish_accepted(self, entry: OutboxEntry, *, wait: bool = True) -> None:
        """Send the Welcome and GroupInfo our accepted Commit owes (waiting out transient
        failures with ``wait``), then forget the entry."""
        ctx = self._ctx

        async def patiently(call: Callable[[], Awaitable[None]]) -> None:
            await (self.patiently(call) if wait else call())

        welcome = entry.welcome
        if welcome is not None and entry.welcome_to:
            # after_position: messages ordered after our Commit follow the Welcome
            await patiently(lambda: ctx.transport.send_welcome(
                entry.welcome_to, welcome, entry.group_id, after_position=entry.position))
        rec = await ctx.store.group(entry.group_id)
        if rec is not None and rec.active:
            group = await ctx.load(entry.group_id)
            await patiently(lambda: ctx.publish_group_info(group))
        async with ctx.store.transaction() as tx:
            await tx.delete_outbox(entry.id)

    # ------------------------------------------------------------------ other messages

    async def _submit_entry(self, group_id: bytes, epoch: int, data: bytes, entry: int,
                            message_id: str | None, *, wait: bool = True,
                            keep_refused: bool = False) -> bool:
        """Submit a proposal or application message; its outbox entry is deleted once
        the transport answered (``keep_refused``: only if it was stored)."""
        ctx = self._ctx
        outcome = await self._submit(group_id, epoch, data, is_commit=False,
                                     message_id=message_id, wait=wait)
        sent = outcome.accepted or outcome.ordered  # ORDERED: in the order, so sent
        if sent or not keep_refused:
            async with ctx.store.transaction() as tx:
                await tx.delete_outbox(entry)
        return sent

    async def propose_leave(self, group_id: bytes) -> None:
        """Propose our own removal (§12.1.3) and remember that we are leaving."""
        ctx = self._ctx
        group = await ctx.load(group_id)
        data = group.propose(Remove(group.own_leaf_index))
        async with ctx.transaction(group_id) as tx:
            await ctx.save(tx, group)
            await tx.set_group_flags(group_id, leaving=True)
            message_id = new_message_id()
            entry = await tx.add_outbox(group_id, group.epoch, "proposal", data,
                                        message_id=message_id)
        await self._submit_entry(group_id, group.epoch, data, entry, message_id)

    async def send(self, group_id: bytes, data: bytes,
                   message_id: str | None = None) -> bytes:
        """Encrypt and submit application data, committing pending proposals first
        (§12.4); our copy goes to the inbox as outgoing. Returns the ciphertext. Every
        ciphertext of this call carries one message id (``message_id`` when the outbox
        already gave it one)."""
        ctx = self._ctx
        if message_id is not None:
            try:
                message_id = require_message_id(message_id)
            except TransportError as exc:
                raise UsageError(str(exc)) from None
            earlier = await self._earlier_send(group_id, message_id)
            if earlier is not None:
                return earlier
        message_id = message_id or new_message_id()
        # MIMI content is checked as a receiver would (docs/content.md): we may not
        # spoof, nor edit or delete another sender's message
        meta = interpret(data, ctx.user_id, group_id)
        target = await target_of(ctx.store, group_id, ctx.user_id, meta)
        for _ in range(self._retries + 1):
            if (await ctx.record(group_id)).leaving:
                raise UsageError("we are leaving this group")
            group = await ctx.load(group_id)
            if group.pending_proposals:
                await self.commit(group_id, lambda g: [])
                group = await ctx.load(group_id)
            ciphertext = group.encrypt(data)
            async with ctx.transaction(group_id) as tx:
                await ctx.save(tx, group)
                entry = await tx.add_outbox(group_id, group.epoch, "application", ciphertext,
                                            message_id=message_id)
                own = await tx.deliver(group_id, ctx.user_id, group.own_leaf_index,
                                       group.epoch, data, outgoing=True,
                                       msg_hash=digest(ciphertext), message_id=message_id,
                                       **content_columns(meta))
                await apply_content(tx, group_id, meta, data, target)
            if await self._submit_entry(group_id, group.epoch, ciphertext, entry,
                                        message_id):
                return ciphertext
            async with ctx.store.transaction() as tx:
                await tx.delete_inbox(own)
            await self._catch_up(queued=False)
        raise CommitConflictError("the group's epoch kept moving; the message was not sent")

    async def _earlier_send(self, group_id: bytes, message_id: str) -> bytes | None:
        """A send again under an application's message id: the queued entry is pushed
        (its ciphertext returned), b"" if it was sent already, None if it is new."""
        ctx = self._ctx
        queued = [e for e in await ctx.store.outbox()
                  if e.group_id == group_id and e.message_id == message_id]
        if queued:
            entry = queued[0]
            await self.patiently(lambda: self._resume_entry(entry))
            return entry.payload
        if await ctx.store.delivered(group_id, ctx.user_id, message_id):
            return b""
        return None

    # ------------------------------------------------------------------ recovery

    async def resume(self) -> None:
        """Finish sends interrupted by a crash or a transport failure. Call it after
        catching up: an accepted Commit of ours has then been merged from its echo."""
        for entry in await self._ctx.store.outbox():
            try:
                await self._resume_entry(entry)
            except DeliveryPendingError:
                raise  # still queued: the next sync tries again
            except MLSError as exc:  # e.g. the group is gone: drop it, say so
                self._ctx.emit(ClientWarning(entry.group_id, f"unsent {entry.kind} dropped: "
                                             f"{reason(exc)}"))
                async with self._ctx.store.transaction() as tx:
                    await tx.delete_outbox(entry.id)

    async def _resume_entry(self, entry: OutboxEntry) -> None:
        if entry.state == "accepted":
            await self._finish_accepted(entry, wait=False)
            return
        rec = await self._ctx.store.group(entry.group_id)
        if rec is None or not rec.active:
            async with self._ctx.store.transaction() as tx:
                await tx.delete_outbox(entry.id)
        elif entry.kind == "application":
            await self._resume_application(entry)
        elif entry.kind != "commit":
            await self._submit_entry(entry.group_id, entry.epoch, entry.payload, entry.id,
                                     entry.message_id, wait=False)
        else:
            await self._resume_commit(entry)

    async def _resume_application(self, entry: OutboxEntry) -> None:
        """Resubmit under the entry's message id. If the transport refuses it (its
        epoch is over), encrypt the stored plaintext again in the current epoch, so a
        message we accepted to send is never lost, but only when it was surely never
        stored: we caught up past it without its echo (which deletes the entry), and
        the transport vouches that a refused message id was never stored
        (``idempotent_submit``). Otherwise the entry is dropped with a warning: a
        second copy could be a duplicate (docs/resilience.md)."""
        ctx = self._ctx
        if await self._submit_entry(entry.group_id, entry.epoch, entry.payload, entry.id,
                                    entry.message_id, wait=False, keep_refused=True):
            return
        await self._catch_up_once()  # resume is one pass: the caller retries a failure
        if not any(e.id == entry.id for e in await ctx.store.outbox()):
            return  # its echo came: it was in the order after all
        own = await ctx.store.inbox_entry(digest(entry.payload))
        vouched = entry.message_id is not None and bool(
            getattr(ctx.transport, "idempotent_submit", False))
        async with ctx.store.transaction() as tx:
            await tx.delete_outbox(entry.id)
            if own is not None and vouched:
                await tx.delete_inbox(own.id)
        if own is None:
            return
        if not vouched:
            ctx.emit(ClientWarning(entry.group_id, "a message refused after a restart was "
                                   "not sent again: the transport cannot tell whether it "
                                   "stored it"))
            return
        await self.send(entry.group_id, own.data, message_id=entry.message_id)

    async def _resume_commit(self, entry: OutboxEntry) -> None:
        ctx = self._ctx
        group = await ctx.load(entry.group_id)
        if not group.has_pending_commit or group.epoch != entry.epoch:
            async with ctx.store.transaction() as tx:
                await tx.delete_outbox(entry.id)
            return
        outcome = await self._submit(entry.group_id, entry.epoch, entry.payload,
                                     is_commit=True, message_id=entry.message_id, wait=False)
        if outcome.accepted:
            await self.merge(group, entry.id, position=outcome.position)
        elif outcome.ordered:
            await self._settle(entry.id)
            self._merged.pop(entry.id, None)
        else:
            await self._discard(group, entry.id)
            await self._catch_up_once()


def _recipients(proposals: Sequence[Proposal | ProposalBody],
                joiners: Mapping[bytes, str]) -> list[str]:
    keys = [p.key_package.leaf_node.signature_key for p in proposals if isinstance(p, Add)]
    return [joiners[k] for k in keys if k in joiners]


def new_message_id() -> str:
    """A fresh message id for an outbox entry (DeliveryTransport.submit)."""
    return uuid.uuid4().hex
