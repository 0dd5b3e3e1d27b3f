"""A small framework for MLS-speaking Matrix bots.

:class:`MatrixBot` runs one Matrix device with its :class:`~mls_client.MLSClient`: it
joins groups from Welcomes (the client does), decrypts, and calls your callbacks for
application messages and for room membership changes. MLS membership follows the room
(a user kicked or banned from a bound room is removed by the designated remover, a ban
also becomes the policy role ``banned``) in the client itself, as with plain
:meth:`~mls_client.MLSClient.run` (``mls_client.room_access``; ``enforce_room_membership``
turns it off). :func:`designated_remover` and :func:`policy_changer` state the rules.
The room's power levels follow the group's policy (:mod:`.policy_sync`): after each
Commit, and for every group at the first :meth:`MatrixBot.step`, the designated member
writes them.

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
from mls_core.room_policy import Action, Role, RoomPolicy
from transports.base import TransportError

from .journal import MembershipChange
from .policy_sync import PolicySync

if TYPE_CHECKING:
    from mls_client import MLSClient, Settings
    from mls_client.events import ClientEvent, MessageReceived
    from mls_core.events import Member
    from mls_core.group import Group

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
        #: room kicks and bans are followed by the client itself (mls_client.room_access)
        client.follow_room_membership = enforce_room_membership
        self.policy_sync = PolicySync(client, transport)
        #: groups whose power levels are checked at the next step (None: all groups)
        self._policy_due: set[bytes] | None = None

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
        from mls_client.events import CommitProcessed, GroupJoined, MessageReceived

        events = await self.client.sync()
        for event in events:
            if isinstance(event, CommitProcessed | GroupJoined) and self._policy_due is not None:
                self._policy_due.add(event.group_id)
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
        await self.sync_power_levels()
        return events

    async def sync_power_levels(self, group_id: bytes | None = None) -> None:
        """Bring the rooms' power levels in step with the groups' policies (see
        :mod:`.policy_sync`): ``group_id``, else the groups that had a Commit or were
        joined since the last call (every group the first time). A group whose update
        failed on a transport error is tried again at the next call."""
        if group_id is not None:
            due = [group_id]
        elif self._policy_due is None:
            due = [g.group_id for g in await self.client.groups()]
        else:
            due = sorted(self._policy_due)
        if group_id is None:
            self._policy_due = set()
        for gid in due:
            try:
                await self.policy_sync.reconcile(gid)
            except TransportError as exc:
                log.warning("power levels of group %s not updated yet: %s", gid.hex(), exc)
                if self._policy_due is not None:
                    self._policy_due.add(gid)

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


def may_remove(policy: RoomPolicy | None, identity: bytes | None) -> bool:
    """Whether the room policy lets ``identity`` remove other members (no policy: yes)."""
    if policy is None:
        return True
    role = policy.role_of(identity)
    needed = policy.min_role(Action.REMOVE)
    return role != Role.BANNED and needed != Role.NOBODY and role >= needed


def with_role(policy: RoomPolicy, identity: bytes, role: Role) -> RoomPolicy:
    """``policy`` with ``identity`` given ``role`` (everything else unchanged)."""
    roles = {r.identity: Role(r.role) for r in policy.roles}
    roles[identity] = role
    return RoomPolicy.build(roles, default_role=Role(policy.default_role),
                            rules={Action(r.action): Role(r.min_role) for r in policy.rules},
                            external_senders={e.index: e.allowed
                                              for e in policy.external_senders})


def policy_changer(group: Group, excluded: bytes) -> int | None:
    """Leaf index of the lowest-index member other than ``excluded`` whose policy role
    may change the policy (None without a policy or such a member)."""
    policy = RoomPolicy.from_extensions(group.context.extensions)
    if policy is None:
        return None
    needed = policy.min_role(Action.CHANGE_POLICY)
    for member in sorted(group.members, key=lambda m: m.index):
        role = policy.role_of(member.credential.identity)
        if member.credential.identity != excluded and needed != Role.NOBODY \
                and role != Role.BANNED and role >= needed and _on_matrix(member):
            return member.index
    return None


def designated_remover(group: Group, removed: bytes) -> int | None:
    """Leaf index of the member that removes the user ``removed`` (a credential
    identity) after a kick or ban: the lowest-index Matrix member that stays in the
    group and whose policy role allows removing others. None if the user is not a member or no
    remaining member has the right."""
    policy = RoomPolicy.from_extensions(group.context.extensions)
    members = sorted(group.members, key=lambda m: m.index)
    if not any(m.credential.identity == removed for m in members):
        return None
    for member in members:
        if member.credential.identity != removed \
                and may_remove(policy, member.credential.identity) and _on_matrix(member):
            return member.index
    return None


def _on_matrix(member: Member) -> bool:
    """Only members on Matrix see the room's kicks and bans; in a bridged group the
    others are on other networks (docs/bridge.md)."""
    return (member.credential.identity or b"").startswith(b"matrix:")
