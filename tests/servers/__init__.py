"""The integration tests' servers: :mod:`devservers` (shared with ``mls-bridge demo
--real``)."""

from devservers import terminate

__all__ = ["terminate"]
