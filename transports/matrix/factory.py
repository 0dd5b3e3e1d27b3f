"""Build the Matrix transport from client settings (``transport.kind = "matrix"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transports.base import DeliveryTransport, InvalidRequestError

if TYPE_CHECKING:
    from mls_client.settings import Settings


async def open_matrix_transport(settings: Settings) -> DeliveryTransport:
    """Log in as the ``[matrix]`` device and open its journal in the state directory."""
    from .transport import MatrixDeliveryTransport

    cfg = settings.matrix
    if cfg is None:
        raise InvalidRequestError("transport.kind is 'matrix' but there is no [matrix] table")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    journal = cfg.journal_path or settings.state_dir / "matrix-journal.sqlite"
    return await MatrixDeliveryTransport.connect(
        cfg.homeserver, cfg.user_id, journal_path=journal,
        password=None if cfg.password is None else cfg.password.get_secret_value(),
        access_token=None if cfg.access_token is None else cfg.access_token.get_secret_value(),
        device_id=cfg.device_id, cipher_suite=settings.cipher_suite,
        long_poll_ms=cfg.long_poll_ms, timeline_limit=cfg.timeline_limit,
        max_media=cfg.max_media_bytes, submit_timeout=cfg.submit_timeout,
        bridge=cfg.bridge)
