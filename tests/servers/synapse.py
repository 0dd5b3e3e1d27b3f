"""See :mod:`devservers.synapse`."""

from devservers.synapse import (
    DEFAULT_VENV,
    SERVER_NAME,
    SynapseServer,
    SynapseUnavailable,
    free_port,
    synapse_python,
)

__all__ = ["DEFAULT_VENV", "SERVER_NAME", "SynapseServer", "SynapseUnavailable", "free_port",
           "synapse_python"]
