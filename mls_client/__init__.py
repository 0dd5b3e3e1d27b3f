"""The async MLS client layer: :class:`MLSClient` over crash-safe SQLite storage and a
:class:`~transports.base.DeliveryTransport` (RFC 9420, RFC 9750).

::

    settings = Settings.load()                  # TOML file + MLS_BRIDGE_* variables
    async with await MLSClient.open(settings) as alice:
        await alice.create_identity("alice@example.org")
        await alice.publish_key_packages()      # pool + last-resort KeyPackage
        group_id = await alice.create_group(name="team")
        await alice.add_members(group_id, ["bob@example.org"])
        await alice.send(group_id, b"hello")
        async for event in alice.events():      # MessageReceived, CommitProcessed, ...
            ...
"""

from .client import AddResult, GroupSummary, MLSClient
from .errors import (
    AmbiguousGroupError,
    ClientError,
    CommitConflictError,
    ConfigError,
    ContentRefusedError,
    DeliveryPendingError,
    KeyPackageError,
    NotFoundError,
    StorageError,
    TransportUnavailableError,
)
from .events import (
    ClientEvent,
    ClientWarning,
    CommitProcessed,
    GroupJoined,
    KickedFromRoom,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    MessageRejected,
    ProposalQueued,
    Reaction,
    RemovedFromGroup,
    SignatureKeyChanged,
)
from .settings import Settings

__all__ = [
    "AddResult",
    "AmbiguousGroupError",
    "ClientError",
    "ClientEvent",
    "ClientWarning",
    "CommitConflictError",
    "DeliveryPendingError",
    "TransportUnavailableError",
    "CommitProcessed",
    "ConfigError",
    "GroupJoined",
    "GroupSummary",
    "KeyPackageError",
    "MLSClient",
    "ContentRefusedError",
    "MessageDeleted",
    "MessageEdited",
    "MessageReceived",
    "MessageRejected",
    "Reaction",
    "NotFoundError",
    "ProposalQueued",
    "KickedFromRoom",
    "RemovedFromGroup",
    "Settings",
    "SignatureKeyChanged",
    "StorageError",
]
