"""A small framework for MLS-speaking Matrix bots (an app on top of :class:`MLSClient`).

:class:`MatrixBot` runs one Matrix device with its :class:`~mls_client.MLSClient`: it
joins groups from Welcomes (the client does), decrypts, and calls your callbacks for
application messages and for room membership changes. MLS membership follows the room
(a user kicked or banned from a bound room is removed by the designated remover, a ban
also becomes the policy role ``banned``) and the room's power levels follow the group's
policy in the client itself, as with plain :meth:`~mls_client.MLSClient.run`
(:mod:`mls_client.room_access`, :mod:`mls_client.matrix_rights`);
``enforce_room_membership=False`` turns the first off. :func:`designated_remover` and
:func:`policy_changer` state the rules for one group.

Moved from ``transports/matrix/bot.py`` (transports import nothing of ``mls_client``).

Example (see ``examples/matrix_bot.py``)::

    bot = await MatrixBot.start(Settings.load(path))
    @bot.on_message
    async def echo(bot, msg):
        await bot.client.send_text(msg.group_id, "echo: " + msg.text)
    await bot.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mls_core.errors import MLSError
from mls_core.room_policy import RoomPolicy
from transports.base import TransportError
from transports.matrix.journal import MembershipChange

from . import room_access
from .room_access import may_remove, with_role

if TYPE_CHECKING:
    from mls_core.group import Group
    from transports.matrix.transport import MatrixDeliveryTransport

    from .client import MLSClient
    from .events import ClientEvent, MessageReceived
    from .matrix_rights import PolicySync
    from .settings import Settings

__all__ = ["MatrixBot", "designated_remover", "may_remove", "policy_changer", "with_role"]

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
        #: room kicks and bans are followed by the client itself (mls_client.room_access)
        client.follow_room_membership = enforce_room_membership
        from .matrix_rights import PolicySync

        rights = client.room_rights
        #: the client's power-level follower (:mod:`mls_client.matrix_rights`)
        self.policy_sync: PolicySync = rights if isinstance(rights, PolicySync) \
            else PolicySync(client, transport)

    @classmethod
    async def start(cls, settings: Settings, *, key_packages: bool = True) -> MatrixBot:
        """Log in as the ``[matrix]`` device, open the client state, create the identity
        (``matrix:<user id>``, client ``<user id>/<device id>``) on first start and keep
        the KeyPackage pool published."""
        from transports.matrix.transport import MatrixDeliveryTransport

        from .client import MLSClient
        from .transport_factory import open_matrix_transport

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
        """Process what arrived (the client also follows room kicks and bans and the
        room's power levels), then call the callbacks: client events, then room
        membership changes."""
        from .events import MessageReceived

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
            self.transport.set_mark(_CURSOR_MARK, str(change.id))
        return events

    async def sync_power_levels(self, group_id: bytes | None = None) -> None:
        """Bring the rooms' power levels in step with the groups' policies now
        (:meth:`PolicySync.reconcile`): ``group_id``, else every group. The client does
        it by itself after each Commit or join; a transport error is logged."""
        due = [group_id] if group_id is not None else [
            g.group_id for g in await self.client.groups() if g.active]
        for gid in due:
            try:
                await self.policy_sync.reconcile(gid)
            except TransportError as exc:
                log.warning("power levels of group %s not updated yet: %s", gid.hex(), exc)

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


def policy_changer(group: Group, excluded: bytes) -> int | None:
    """Leaf index of the lowest-index Matrix member other than ``excluded`` whose policy
    role may change the policy (None without a policy or such a member)."""
    return room_access.policy_changer(
        sorted(group.members, key=lambda m: m.index),
        RoomPolicy.from_extensions(group.context.extensions), excluded, "matrix")


def designated_remover(group: Group, removed: bytes) -> int | None:
    """Leaf index of the member that removes the user ``removed`` (a credential
    identity) after a kick or ban: the lowest-index Matrix member that stays in the
    group and whose policy role allows removing others (:mod:`mls_client.room_access`).
    None if the user is not a member or no remaining member has the right."""
    return room_access.designated_remover(
        group.members, RoomPolicy.from_extensions(group.context.extensions), removed,
        "matrix")
