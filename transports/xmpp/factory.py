"""Build the xmpp transport from client settings (``transport.kind = "xmpp"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transports.base import DeliveryTransport, TransportError

if TYPE_CHECKING:
    from mls_client.settings import Settings


async def open_xmpp_transport(settings: Settings) -> DeliveryTransport:
    """Connect the ``[xmpp]`` account of ``settings`` (the caller closes it)."""
    if settings.xmpp is None:
        raise TransportError("transport.kind is xmpp but the [xmpp] table is missing")
    from .transport import XmppDeliveryTransport

    return await XmppDeliveryTransport.connect(settings.xmpp)
