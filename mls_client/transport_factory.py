"""Open the Delivery Service the settings name (``transport.kind``).

The network adapters are imported only when chosen, so the embedded default needs
neither slixmpp nor matrix-nio.
"""

from __future__ import annotations

from transports.base import DeliveryTransport

from .errors import ConfigError
from .settings import Settings


async def open_transport(settings: Settings) -> DeliveryTransport:
    """A connected transport for ``settings`` (the caller closes it)."""
    kind = settings.transport.kind
    if kind == "local":
        from transports.local import LocalDeliveryService

        return LocalDeliveryService(settings.delivery_db_path)
    try:
        if kind == "xmpp":
            from transports.xmpp.factory import open_xmpp_transport

            return await open_xmpp_transport(settings)
        from transports.matrix.factory import open_matrix_transport

        return await open_matrix_transport(settings)
    except ImportError as exc:
        raise ConfigError(f"the {kind} transport is not installed ({exc}); install the "
                          f"project with the [{kind}] extra") from None
