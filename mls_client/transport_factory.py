"""Open the Delivery Service the settings name (``transport.kind``).

The network adapters are imported only when chosen, so the embedded default needs
neither slixmpp nor matrix-nio.
"""

from __future__ import annotations

from transports.base import DeliveryTransport

from .errors import ConfigError
from .settings import Settings


async def open_transport(settings: Settings) -> DeliveryTransport:
    """A connected transport for ``settings`` (the caller closes it). A network account
    whose settings name a ``bridge`` is a member of bridged groups: its transport is
    wrapped in :class:`~transports.bridged.BridgedTransport`."""
    transport = await _open(settings)
    bridge = _bridge_identity(settings)
    if bridge is None:
        return transport
    from transports.base import RelayTransport
    from transports.bridged import BridgedTransport

    if not isinstance(transport, RelayTransport):
        await transport.close()
        raise ConfigError(f"the {settings.transport.kind} transport cannot be bridged")
    return BridgedTransport(transport, bridge)


def _bridge_identity(settings: Settings) -> str | None:
    """The bridge's identity on this account's network, if the settings name one."""
    kind = settings.transport.kind
    network = settings.xmpp if kind == "xmpp" else settings.matrix if kind == "matrix" else None
    bridge = getattr(network, "bridge", None)
    return None if bridge is None else f"{kind}:{bridge}"


async def _open(settings: Settings) -> DeliveryTransport:
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
