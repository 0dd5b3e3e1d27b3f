"""Errors of the MIMI content format, a branch of the project's one hierarchy.

``mls_core.errors.MLSError``
    ``ContentError``              ``application/mimi-content`` that cannot be used
        ``ContentDecodeError``       not CBOR, or not in the deterministic encoding the
                                     draft requires (also a ``mls_core`` ``DecodeError``)
        ``ContentValidationError``   well-formed CBOR that breaks the draft's schema or
                                     one of its limits (the message names the field)
        ``AttachmentError``          an external part's content failed its hash or its
                                     decryption, or exceeds the size allowed
"""

from __future__ import annotations

from mls_core.errors import DecodeError, MLSError


class ContentError(MLSError):
    """Base class of every error about MIMI content (draft-ietf-mimi-content)."""


class ContentDecodeError(ContentError, DecodeError):
    """The bytes are not CBOR, or not its deterministic encoding (draft §"Encoding
    restrictions", RFC 8949 §4.2.1)."""


class ContentValidationError(ContentError):
    """Well-formed CBOR that breaks the schema, the data model or a limit of the draft."""


class AttachmentError(ContentError):
    """An external part cannot be used: its download, hash or decryption failed."""
