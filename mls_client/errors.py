"""Errors of the client layer: one family below :class:`~mls_core.errors.MLSError`, so a
caller can catch everything MLS-related with one ``except``.

``ClientError``
    ``ConfigError``          the settings (TOML file or environment) are invalid.
    ``StorageError``         the client database is unusable (schema too new, corrupt).
    ``NotFoundError``        no identity yet, unknown group, not a member.
    ``KeyPackageError``      a claimed KeyPackage is missing or fails validation.
    ``CommitConflictError``  our Commit kept losing the race for its epoch (RFC 9750).
    ``SenderMismatchError``  the network's sender of a message is not its MLS sender.
    ``ContentRefusedError``  MIMI content MLS authenticated but the client refuses:
                             a spoofed sender or room URI, an edit or delete of
                             another sender's message (docs/content.md).
    ``TransportUnavailableError`` the transport stayed unavailable for
                             ``submit_wait`` seconds, nothing queued (a TransportError);
      ``DeliveryPendingError``   ... after the message was queued: it stays queued.
"""

from __future__ import annotations

from mls_core.errors import MLSError
from transports.base import TransportError


class ClientError(MLSError):
    """Base class of the errors raised by ``mls_client``."""


class ConfigError(ClientError):
    """Invalid settings; the message lists each bad field and where it came from."""


class StorageError(ClientError):
    """The client database cannot be used."""


class NotFoundError(ClientError):
    """A named identity, group or member does not exist here."""


class AmbiguousGroupError(NotFoundError):
    """A group reference (name or id prefix) matches several groups; ``candidates`` are
    their ids, and the message lists them."""

    def __init__(self, message: str, candidates: tuple[bytes, ...]) -> None:
        super().__init__(message)
        self.candidates = candidates


class KeyPackageError(ClientError):
    """A KeyPackage could not be claimed or did not validate (RFC 9420 §10.1)."""


class CommitConflictError(ClientError):
    """Another member's Commit won the epoch every time we retried (RFC 9750)."""


class SenderMismatchError(ClientError):
    """The sender the network authenticated (e.g. the XMPP JID or Matrix user of the
    stanza/event) is not the identity in the MLS sender's credential (RFC 9750
    "Authentication Service": the messaging layer's and MLS's identities must agree)."""


class TransportUnavailableError(ClientError, TransportError):
    """The transport kept failing transiently for ``Settings.submit_wait`` seconds
    before anything was queued: nothing was sent, the call may be repeated
    (docs/resilience.md)."""


class DeliveryPendingError(TransportUnavailableError):
    """The transport kept failing transiently for ``Settings.submit_wait`` seconds after
    the message (or Commit) was queued. It stays in the outbox under its message id and
    is submitted again by the next :meth:`~mls_client.client.MLSClient.sync`, and stored
    at most once: the application must not send it again, except under the same
    ``message_id`` (docs/resilience.md)."""


class ContentRefusedError(ClientError):
    """MIMI content that MLS authenticated but that the client refuses
    (draft-ietf-mimi-content "Security Considerations"): its senderUri is not the MLS
    sender or its roomUri not the group, it edits, deletes or withdraws a message of
    another sender or one unknown here, or it has no meaning (a reaction to nothing).
    ``slug`` names the reason in drop counts; ``benign``: ordinary operation produces
    it (an edit of a message from before we joined), logged at INFO."""

    def __init__(self, message: str, slug: str = "content_refused", *,
                 benign: bool = False) -> None:
        super().__init__(message)
        self.slug = slug
        self.benign = benign
