"""Open the Delivery Service the settings name (``transport.kind``).

The network adapters are imported only when chosen, so the embedded default needs
neither slixmpp nor matrix-nio.
"""

from __future__ import annotations

import os

from transports.base import DeliveryTransport, InvalidRequestError, TransportError

from .errors import ConfigError
from .settings import Settings
from .store import Store


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
            return await open_xmpp_transport(await with_xmpp_device(settings))
        return await open_matrix_transport(settings)
    except ImportError as exc:
        raise ConfigError(f"the {kind} transport is not installed ({exc}); install the "
                          f"project with the [{kind}] extra") from None


async def with_xmpp_device(settings: Settings) -> Settings:
    """``settings`` with the XMPP resource of this state directory's device.

    The resource names the device (docs/xmpp.md "Identities"), and two connections of
    one full JID kick each other out (RFC 6120 §4.9.3.3, ``SessionConflictError``). So
    when ``[xmpp] jid`` is bare and no ``device`` is configured, the resource is not a
    shared default: it is the one of the client id stored here (the device this state
    directory already is), or, before an identity exists, a new random ``mls-<hex>``
    that ``identity create`` then stores as the client id. An explicit resource or
    ``device`` is kept as it is."""
    xmpp = settings.xmpp
    if xmpp is None or "/" in xmpp.jid or "device" in xmpp.model_fields_set:
        return settings
    device = await _stored_resource(settings, xmpp.bare_jid) or f"mls-{os.urandom(4).hex()}"
    return settings.model_copy(update={"xmpp": xmpp.model_copy(update={"device": device})})


async def _stored_resource(settings: Settings, bare_jid: str) -> str | None:
    """The resource of the stored client id, if it is a full JID of ``bare_jid``."""
    if not settings.client_db_path.exists():
        return None
    store = await Store.open(settings.client_db_path)
    try:
        identity = await store.identity()
    finally:
        await store.close()
    if identity is None:
        return None
    bare, slash, resource = identity.client_id.partition("/")
    return resource if slash and resource and bare == bare_jid else None


async def open_xmpp_transport(settings: Settings) -> DeliveryTransport:
    """Connect the ``[xmpp]`` account of ``settings`` (the caller closes it). Moved
    from ``transports/xmpp/factory.py``: transports know nothing of client settings."""
    if settings.xmpp is None:
        raise TransportError("transport.kind is xmpp but the [xmpp] table is missing")
    from transports.xmpp.transport import XmppDeliveryTransport

    return await XmppDeliveryTransport.connect(settings.xmpp)


async def open_matrix_transport(settings: Settings) -> DeliveryTransport:
    """Log in as the ``[matrix]`` device and open its journal in the state directory
    (moved from ``transports/matrix/factory.py``)."""
    from transports.matrix.transport import MatrixDeliveryTransport

    cfg = settings.matrix
    if cfg is None:
        raise InvalidRequestError("transport.kind is 'matrix' but there is no [matrix] table")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    journal = cfg.journal_path or settings.state_dir / "matrix-journal.sqlite"
    return await MatrixDeliveryTransport.connect(
        cfg.homeserver, cfg.user_id, journal_path=journal,
        password=None if cfg.password is None else cfg.password.get_secret_value(),
        access_token=None if cfg.access_token is None else cfg.access_token.get_secret_value(),
        device_id=cfg.device_id, ca_file=cfg.ca_file, cipher_suite=settings.cipher_suite,
        long_poll_ms=cfg.long_poll_ms, timeline_limit=cfg.timeline_limit,
        max_media=cfg.max_media_bytes, submit_timeout=cfg.submit_timeout,
        bridge=cfg.bridge, limits=cfg.limits)
