"""MLS over XMPP: the ``mls_bridge`` slixmpp plugin and :class:`XmppDeliveryTransport`.

Importing the package needs no slixmpp (the settings are pydantic only, and the client
settings import them). Importing :mod:`transports.xmpp.plugin` (or calling
:func:`register`) makes the plugin known to slixmpp, after which any client can
``xmpp.register_plugin("mls_bridge")``. See ``docs/xmpp.md`` for the wire mapping.
"""

from __future__ import annotations


def register() -> None:
    """Register the ``mls_bridge`` plugin with slixmpp (idempotent)."""
    from slixmpp.plugins.base import register_plugin

    from .plugin import MLSBridgePlugin

    register_plugin(MLSBridgePlugin)
