"""Transcript hashes (RFC 9420 §8.2)::

    confirmed_transcript_hash_[epoch] =
        Hash(interim_transcript_hash_[epoch - 1] || ConfirmedTranscriptHashInput_[epoch])
    interim_transcript_hash_[epoch] =
        Hash(confirmed_transcript_hash_[epoch] || InterimTranscriptHashInput_[epoch])

Both start as the empty string at epoch 0, before the creator's first update (§11).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UsageError
from .framing import AuthenticatedContent, ContentType, InterimTranscriptHashInput

if TYPE_CHECKING:
    from .ciphersuite import CipherSuite

#: confirmed_transcript_hash_[0] and interim_transcript_hash_[0] (§8.2)
INITIAL_TRANSCRIPT_HASH = b""


def confirmed_transcript_hash(suite: CipherSuite, interim_before: bytes,
                              authenticated_content: AuthenticatedContent) -> bytes:
    """The confirmed transcript hash after the Commit carried in ``authenticated_content``
    (wire_format || content || signature), chained on the previous interim hash (§8.2)."""
    if authenticated_content.content.content_type != ContentType.COMMIT:
        raise UsageError("§8.2: only a Commit updates the transcript hashes")
    thi = authenticated_content.confirmed_transcript_hash_input()
    return suite.hash(interim_before + thi.encode())


def interim_transcript_hash(suite: CipherSuite, confirmed: bytes,
                            confirmation_tag: bytes) -> bytes:
    """The interim transcript hash: Hash(confirmed || InterimTranscriptHashInput) (§8.2).
    New members take ``confirmation_tag`` from the GroupInfo."""
    return suite.hash(confirmed + InterimTranscriptHashInput(confirmation_tag).encode())


def update_transcript_hashes(suite: CipherSuite, interim_before: bytes,
                             authenticated_content: AuthenticatedContent) -> tuple[bytes, bytes]:
    """(confirmed, interim) after a Commit whose auth carries its confirmation_tag."""
    tag = authenticated_content.auth.confirmation_tag
    if tag is None:
        raise UsageError("§8.2: the Commit's FramedContentAuthData has no confirmation_tag")
    confirmed = confirmed_transcript_hash(suite, interim_before, authenticated_content)
    return confirmed, interim_transcript_hash(suite, confirmed, tag)
