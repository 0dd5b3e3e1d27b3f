"""Build the matrix transport from client settings (filled in by the matrix transport work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transports.base import DeliveryTransport, TransportError

if TYPE_CHECKING:
    from mls_client.settings import Settings


async def open_matrix_transport(settings: Settings) -> DeliveryTransport:
    raise TransportError("the matrix transport is not available yet")
