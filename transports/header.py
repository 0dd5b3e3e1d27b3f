"""The clear header of a group message, as a Delivery Service may read it.

RFC 9750 lets the DS "rely on the epoch and content_type fields of an MLSMessage"; this
module reads exactly those (and the group_id) from a serialized ``MLSMessage`` without
parsing the rest, and states the ordering rule every ordering point of this project
uses (the embedded service, the bridge's hub).
"""

from __future__ import annotations

from dataclasses import dataclass

from mls_core.codec import U8, U16, U32, U64, Reader, decode_varint
from mls_core.errors import DecodeError
from mls_core.framing import ContentType, ProtocolVersion, SenderType, WireFormat

from .base import InvalidRequestError, SubmitStatus


@dataclass(frozen=True)
class GroupMessageHeader:
    """The clear fields of a PublicMessage/PrivateMessage that ordering needs."""

    group_id: bytes
    epoch: int
    content_type: int


def _skip_sender(r: Reader) -> None:
    """Skip a ``Sender`` (§6): a member/external sender carries a uint32 index."""
    sender_type = U8.decode(r)
    if sender_type in (SenderType.MEMBER, SenderType.EXTERNAL):
        U32.decode(r)
    elif sender_type not in (SenderType.NEW_MEMBER_PROPOSAL, SenderType.NEW_MEMBER_COMMIT):
        raise InvalidRequestError(f"payload has an unknown sender_type {sender_type}")


def read_header(payload: bytes) -> GroupMessageHeader:
    """Read ``MLSMessage`` up to the content_type of its PublicMessage (§6.2: FramedContent
    ``group_id<V>, epoch, sender, authenticated_data<V>, content_type``) or PrivateMessage
    (§6.3: ``group_id<V>, epoch, content_type``); the rest is never looked at. Anything
    malformed is an InvalidRequestError."""
    try:
        return _read(payload)
    except DecodeError as exc:
        raise InvalidRequestError(f"payload is not an MLSMessage: {exc}") from None


def _read(payload: bytes) -> GroupMessageHeader:
    r = Reader(payload)
    if U16.decode(r) != ProtocolVersion.MLS10:
        raise InvalidRequestError("payload is not an mls10 MLSMessage")
    wire_format = U16.decode(r)
    if wire_format not in (WireFormat.MLS_PUBLIC_MESSAGE, WireFormat.MLS_PRIVATE_MESSAGE):
        raise InvalidRequestError(
            f"payload is not a PublicMessage or PrivateMessage (wire_format {wire_format})")
    group_id = r.take(decode_varint(r, "group_id"), "group_id")
    epoch = U64.decode(r)
    if wire_format == WireFormat.MLS_PUBLIC_MESSAGE:
        _skip_sender(r)
        r.take(decode_varint(r, "authenticated_data"), "authenticated_data")
    content_type = U8.decode(r)
    if content_type not in (ContentType.APPLICATION, ContentType.PROPOSAL, ContentType.COMMIT):
        raise InvalidRequestError(f"payload has an unknown content_type {content_type}")
    return GroupMessageHeader(group_id, epoch, content_type)


def check_header(payload: bytes, group_id: bytes, epoch: int,
                 is_commit: bool) -> GroupMessageHeader:
    """:func:`read_header`, and the header must agree with what the caller submitted."""
    header = read_header(payload)
    if header.group_id != group_id:
        raise InvalidRequestError("payload group_id differs from the submitted group_id")
    if header.epoch != epoch:
        raise InvalidRequestError("payload epoch differs from the submitted epoch")
    if (header.content_type == ContentType.COMMIT) != is_commit:
        raise InvalidRequestError("payload content_type disagrees with is_commit")
    return header


def ordering_status(current_epoch: int, epoch: int, content_type: int,
                    commit_taken: bool) -> SubmitStatus:
    """The ordering rule (RFC 9750 "Strongly Consistent"): a Commit must be for the
    current epoch (``commit_taken`` tells whether an older epoch already has its Commit);
    a proposal for the current epoch; an application message for the current or the
    previous epoch."""
    if content_type == ContentType.COMMIT:
        if epoch == current_epoch:
            return SubmitStatus.ACCEPTED
        return (SubmitStatus.REJECTED_EPOCH_TAKEN if commit_taken
                else SubmitStatus.REJECTED_WRONG_EPOCH)
    if epoch == current_epoch or (
            content_type == ContentType.APPLICATION and epoch == current_epoch - 1):
        return SubmitStatus.ACCEPTED
    return SubmitStatus.REJECTED_WRONG_EPOCH
