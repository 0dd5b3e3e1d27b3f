"""What :meth:`MLSClient.events` / :meth:`MLSClient.sync` report to the application.

These are client-level events (group ids, user names), built from the sans-I/O events of
:mod:`mls_core.events` after the corresponding state change has been committed to the
database. Application data itself is stored in the inbox first, so an application that
crashes after the transaction but before handling :class:`MessageReceived` still finds
the message in :meth:`MLSClient.inbox`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mimi_content import ExternalPart, MimiContent
from mls_core.events import Member


def member_name(member: Member) -> str:
    """The user id a member's basic credential asserts (RFC 9420 §5.3)."""
    identity = member.credential.identity
    if identity is None:
        return f"<x509 leaf {member.index}>"
    return identity.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class MessageReceived:
    """An application message was decrypted and stored in the inbox (RFC 9420 §15)."""

    group_id: bytes
    sender: str
    sender_leaf: int
    epoch: int
    data: bytes = field(repr=False)
    inbox_id: int = 0
    #: the MIMI content (None: a plain UTF-8 message of an older version)
    content: MimiContent | None = field(default=None, repr=False)
    #: the MIMI message id (draft-ietf-mimi-content "Message ID"), if MIMI content
    message_id: bytes | None = None

    @property
    def text(self) -> str:
        """The text to show (the first text part, or the plain UTF-8 payload)."""
        from .content import text_of

        return text_of(self.content, self.data)

    @property
    def in_reply_to(self) -> bytes | None:
        """The message id this one replies to."""
        return None if self.content is None else self.content.in_reply_to

    @property
    def attachments(self) -> tuple[ExternalPart, ...]:
        """Its external parts (fetch each with ``MLSClient.fetch_attachment``)."""
        from .content import attachments_of

        return attachments_of(self.content)

    @property
    def mentions(self) -> tuple[str, ...]:
        """URIs its Markdown links to (mentions when they name members)."""
        from .content import mentions_of

        return mentions_of(self.content)


@dataclass(frozen=True)
class MessageEdited:
    """The original sender replaced the content of ``replaces``
    (draft-ietf-mimi-content "Editing a message"); the inbox row holds the new one."""

    group_id: bytes
    sender: str
    message_id: bytes
    replaces: bytes
    content: MimiContent = field(repr=False)

    @property
    def text(self) -> str:
        from .content import text_of

        return text_of(self.content, b"")


@dataclass(frozen=True)
class MessageDeleted:
    """The original sender deleted ``replaces`` (draft "Deleting a message"); it was
    removed from the inbox."""

    group_id: bytes
    sender: str
    message_id: bytes
    replaces: bytes


@dataclass(frozen=True)
class Reaction:
    """``sender`` reacted to ``target`` (draft "Reactions") or, ``removed``, withdrew
    its reaction ``message_id`` replaces (draft's ``unlike`` example; ``reaction`` is
    then the withdrawn one's, or "" if unknown)."""

    group_id: bytes
    sender: str
    message_id: bytes
    target: bytes
    reaction: str = field(repr=False)
    removed: bool = False
    #: for a withdrawal: the message id of the reaction withdrawn
    replaces: bytes | None = None


@dataclass(frozen=True)
class GroupJoined:
    """We joined ``group_id`` by Welcome or (``via="external"``) by external Commit."""

    group_id: bytes
    epoch: int
    via: str = "welcome"
    last_resort: bool = False


@dataclass(frozen=True)
class CommitProcessed:
    """A Commit (``own`` if ours) moved ``group_id`` to ``epoch`` (RFC 9420 §12.4.2)."""

    group_id: bytes
    epoch: int
    committer: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    own: bool = False


@dataclass(frozen=True)
class RemovedFromGroup:
    """A Commit removed us; the group's secrets were deleted (RFC 9420 §12.4.2)."""

    group_id: bytes
    epoch: int
    by: str


@dataclass(frozen=True)
class KickedFromRoom:
    """We were kicked or banned from the group's room: with no room access no Commit
    can reach us any more, so the group is over for this device: its secrets and its
    outbox were deleted and the room is no longer followed (RFC 9420 §12.4.2 as if
    removed; RFC 9750 "Delivery Service": the room is who may receive the group)."""

    group_id: bytes
    epoch: int
    banned: bool = False


@dataclass(frozen=True)
class ProposalQueued:
    """A proposal is waiting for the next Commit (RFC 9420 §12.1)."""

    group_id: bytes
    proposal_type: int
    sender: str


@dataclass(frozen=True)
class MessageRejected:
    """An incoming item failed to process; it was skipped (state unchanged)."""

    group_id: bytes | None
    reason: str


@dataclass(frozen=True)
class ClientWarning:
    """Background work (auto-commit, KeyPackage upkeep) failed; it is retried later."""

    group_id: bytes | None
    message: str


@dataclass(frozen=True)
class SignatureKeyChanged:
    """An identity we had seen before appeared with a signature key we had not seen for
    it: a new device, a key rotation, or a Delivery Service or bridge substituting a
    KeyPackage (trust on first use; see docs/security.md). Reported once per key."""

    group_id: bytes | None
    identity: str
    #: SHA-256 of the new key, hex, first 16 bytes (compare out of band)
    fingerprint: str
    #: how many keys had been seen for this identity before
    known_keys: int


@dataclass(frozen=True)
class ConnectionLost:
    """The Delivery Service could not be reached (``cause``); :meth:`MLSClient.run` and
    :meth:`MLSClient.events` keep trying, with capped exponential backoff and jitter.
    Reported once per outage."""

    cause: str


@dataclass(frozen=True)
class ConnectionRestored:
    """The Delivery Service answered again after ``outage`` seconds."""

    outage: float


ClientEvent = (MessageReceived | MessageEdited | MessageDeleted | Reaction | GroupJoined
               | CommitProcessed | RemovedFromGroup
               | KickedFromRoom | ProposalQueued | MessageRejected | ClientWarning
               | SignatureKeyChanged | ConnectionLost | ConnectionRestored)
