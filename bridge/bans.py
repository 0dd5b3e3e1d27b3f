"""Room kicks and bans seen by the bridge's accounts, as (group_id, identity) pairs.

Native moderation maps into MLS (docs/bridge.md): the bridge proposes the removal of a
user kicked or banned from a bridged group's room on any network
(:meth:`bridge.service.Bridge.ban`). Each network reports them its own way:

* Matrix: ``m.room.member`` changes to ``leave`` by someone else, or ``ban``, which the
  bridge's Matrix transport journals while it syncs (durable: a bridge that was down
  reads them on restart);
* XMPP: occupant presence with status 307 (kicked) or 301 (banned), XEP-0045 §9.1 and
  §9.4, which the ``mls_bridge`` plugin reports as ``mls_room_exit`` while connected.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from transports.base import RelayTransport

#: XEP-0045 status codes of an involuntary exit the bridge acts on
_EXIT_CODES = frozenset({"301", "307"})
#: seconds between looks at the Matrix journal
POLL_INTERVAL = 0.5


async def room_bans(transport: RelayTransport, *, after: int = 0
                    ) -> AsyncIterator[tuple[int, bytes, str]]:
    """(position, group_id, identity) of each kick or ban ``transport`` sees, for ever.
    ``position`` is a durable mark for Matrix (resume with ``after``), 0 for XMPP."""
    if _is(transport, "transports.matrix.transport", "MatrixDeliveryTransport"):
        async for item in _matrix_bans(transport, after):
            yield item
    elif _is(transport, "transports.xmpp.transport", "XmppDeliveryTransport"):
        async for item in _xmpp_bans(transport):
            yield item
    else:  # e.g. the embedded service: no native moderation
        await asyncio.Event().wait()


def _is(transport: object, module: str, name: str) -> bool:
    """An instance of ``module.name``? (An instance implies the module is imported, so
    the embedded default never imports slixmpp or matrix-nio here.)"""
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(transport, cls)


async def _matrix_bans(transport: object, after: int
                       ) -> AsyncIterator[tuple[int, bytes, str]]:
    from transports.matrix.transport import MatrixDeliveryTransport

    assert isinstance(transport, MatrixDeliveryTransport)
    while True:
        for change in transport.membership_changes(after):
            after = change.id
            if change.kicked_or_banned and change.group_id is not None:
                yield change.id, change.group_id, f"matrix:{change.user_id}"
        await asyncio.sleep(POLL_INTERVAL)


async def _xmpp_bans(transport: object) -> AsyncIterator[tuple[int, bytes, str]]:
    from slixmpp import JID

    from transports.xmpp.plugin import RoomExit
    from transports.xmpp.stanza import group_of_room
    from transports.xmpp.transport import XmppDeliveryTransport

    assert isinstance(transport, XmppDeliveryTransport)
    exits: asyncio.Queue[RoomExit] = asyncio.Queue()
    transport.xmpp.add_event_handler("mls_room_exit", exits.put_nowait)
    try:
        while True:
            exit_ = await exits.get()
            group_id = group_of_room(JID(exit_.room).user)
            if group_id is not None and exit_.codes & _EXIT_CODES:
                yield 0, group_id, f"xmpp:{exit_.user}"
    finally:
        transport.xmpp.del_event_handler("mls_room_exit", exits.put_nowait)
