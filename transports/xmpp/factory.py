"""Build the xmpp transport from client settings (filled in by the xmpp transport work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transports.base import DeliveryTransport, TransportError

if TYPE_CHECKING:
    from mls_client.settings import Settings


async def open_xmpp_transport(settings: Settings) -> DeliveryTransport:
    raise TransportError("the xmpp transport is not available yet")
