"""See :mod:`devservers.prosody`."""

from devservers.prosody import DOMAIN, MUC_DOMAIN, ProsodyServer, free_port, prosody_available

__all__ = ["DOMAIN", "MUC_DOMAIN", "ProsodyServer", "free_port", "prosody_available"]
