"""A small framework for MLS-speaking Matrix bots.

:class:`MatrixBot` runs one Matrix device with its :class:`~mls_client.MLSClient`: it
joins groups from Welcomes (the client does), decrypts, and calls your callbacks for
application messages and for room membership changes. It also keeps MLS membership in
step with the room (issue "Room ↔ group binding"): when a user is kicked or banned from a
bound room, the *lowest-index remaining member* of the MLS group removes all of that
user's leaves (every device runs the same rule, so exactly one member commits, and the
Delivery Service ordering resolves any race). The mapping of room power levels to an MLS
group policy (who may add/remove) is not enforced here yet; see ``docs/matrix.md``.

Example (see ``examples/matrix_bot.py``)::

    bot = await MatrixBot.start(Settings.load(path))
    @bot.on_message
    async def echo(bot, msg):
        await bot.client.send(msg.group_id, b"echo: " + msg.data)
    await bot.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mls_core.errors import MLSError
from transports.base import TransportError

from .events import identity_of
from .journal import MembershipChange

if TYPE_CHECKING:
    from mls_client import MLSClient, Settings
    from mls_client.events import ClientEvent, MessageReceived

    from .transport import MatrixDeliveryTransport

log = logging.getLogger(__name__)
_CURSOR_MARK = "bot.membership_cursor"

MessageHandler = Callable[["MatrixBot", "MessageReceived"], Awaitable[None]]
MembershipHandler = Callable[["MatrixBot", MembershipChange], Awaitable[None]]
EventHandler = Callable[["MatrixBot", "ClientEvent"], Awaitable[None]]


class MatrixBot:
    """One device, its MLS client and callbacks (see module docstring)."""

    def __init__(self, client: MLSClient, transport: MatrixDeliveryTransport, *,
                 enforce_room_membership: bool = True, poll_interval: float = 1.0) -> None:
        self.client = client
        self.poll_interval = poll_interval
        self.transport = transport
        self.enforce_room_membership = enforce_room_membership
        self._message_handlers: list[MessageHandler] = []
        self._membership_handlers: list[MembershipHandler] = []
        self._event_handlers: list[EventHandler] = []
        self._member_cursor = int(transport.mark(_CURSOR_MARK) or 0)

    @classmethod
    async def start(cls, settings: Settings, *, key_packages: bool = True) -> MatrixBot:
        """Log in as the ``[matrix]`` device, open the client state, create the identity
        (``matrix:<user id>``, client ``<user id>/<device id>``) on first start and keep
        the KeyPackage pool published."""
        from mls_client import MLSClient

        from .factory import open_matrix_transport
        from .transport import MatrixDeliveryTransport

        transport = await open_matrix_transport(settings)
        assert isinstance(transport, MatrixDeliveryTransport)
        try:
            client = await MLSClient.open(settings, transport)
            if await client.store.identity() is None:
                await client.create_identity(transport.identity, transport.client_id)
            if key_packages:
                await client.publish_key_packages()
        except BaseException:
            await transport.close()
            raise
        return cls(client, transport, poll_interval=settings.poll_interval)

    async def close(self) -> None:
        await self.client.close()
        await self.transport.close()

    # ------------------------------------------------------------------ callbacks

    def on_message(self, handler: MessageHandler) -> MessageHandler:
        """Call ``handler(bot, MessageReceived)`` for each decrypted application message."""
        self._message_handlers.append(handler)
        return handler

    def on_membership(self, handler: MembershipHandler) -> MembershipHandler:
        """Call ``handler(bot, MembershipChange)`` for each room membership change."""
        self._membership_handlers.append(handler)
        return handler

    def on_event(self, handler: EventHandler) -> EventHandler:
        """Call ``handler(bot, ClientEvent)`` for every client event (joins, commits...)."""
        self._event_handlers.append(handler)
        return handler

    # ------------------------------------------------------------------ loop

    async def step(self) -> list[ClientEvent]:
        """Process what arrived: client events, then membership changes."""
        from mls_client.events import MessageReceived

        events = await self.client.sync()
        for event in events:
            for on_event in self._event_handlers:
                await on_event(self, event)
            if isinstance(event, MessageReceived):
                for on_message in self._message_handlers:
                    await on_message(self, event)
        for change in self.transport.membership_changes(self._member_cursor):
            self._member_cursor = change.id
            for on_membership in self._membership_handlers:
                await on_membership(self, change)
            if self.enforce_room_membership and change.kicked_or_banned:
                await self._enforce(change)
            self.transport.set_mark(_CURSOR_MARK, str(change.id))
        return events

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """:meth:`step` until ``stop`` is set, waiting for new items in between."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.step()
            except (TransportError, MLSError) as exc:
                log.warning("bot step failed, retrying: %s", exc)
            await self._wait(stop)

    async def _wait(self, stop: asyncio.Event) -> None:
        stream = self.transport.receive(self.transport.client_id,
                                        after=await self.client.store.cursor())
        waiters = [asyncio.ensure_future(anext(stream)), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.poll_interval,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ access control

    async def _enforce(self, change: MembershipChange) -> None:
        """A user kicked or banned from the room leaves the MLS group: removed by the
        lowest-index member that remains (only that member commits)."""
        gid = change.group_id
        if gid is None or change.user_id == self.transport.user_id:
            return
        if self.transport.current_membership(change.room_id, change.user_id) not in (
                "leave", "ban"):
            return  # invited or joined again since: the old kick no longer applies
        removed = identity_of(change.user_id).encode()
        try:
            group = await self.client.group(gid)
        except MLSError:
            return  # not (or no longer) in this group
        remaining = [m.index for m in group.members if m.credential.identity != removed]
        if len(remaining) == len(group.members) or min(remaining) != group.own_leaf_index:
            return
        try:
            await self.client.remove_members(gid, [identity_of(change.user_id)])
            log.info("removed %s from group %s after a kick/ban", change.user_id, gid.hex())
        except MLSError as exc:  # e.g. already removed by a concurrent Commit
            log.info("could not remove %s: %s", change.user_id, exc)
