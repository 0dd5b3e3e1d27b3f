"""Content authentication and message protection (RFC 9420 §6.1-§6.3).

Turns an :class:`~mls_core.framing.AuthenticatedContent` into a PublicMessage (signature
plus membership tag) or a PrivateMessage (signature, then AEAD under a secret-tree key,
with the sender data encrypted separately) and back. These functions hold no state: the
caller passes the epoch's GroupContext, keys and a secret-tree key source, so the group
layer decides when ratchet keys are consumed (only after a message fully verifies).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from .ciphersuite import CipherSuite
from .codec import encode_varint
from .errors import DecodeError, ProtocolError, UsageError, VerificationError
from .framing import (
    AuthenticatedContent,
    AuthenticatedContentTBM,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
    SenderDataAAD,
    SenderType,
    WireFormat,
)
from .key_schedule import GroupContext
from .secret_tree import RatchetKey, apply_reuse_guard, new_reuse_guard, sender_data_key_nonce

FRAMED_CONTENT_TBS_LABEL = b"FramedContentTBS"

#: (leaf_index, content_type, generation) -> that generation's key and nonce
KeySource = Callable[[int, int, int], RatchetKey]


# ------------------------------------------------------------------------- §6.1 signing


def sign_content(
    suite: CipherSuite,
    signature_priv: bytes,
    wire_format: int,
    content: FramedContent,
    context: GroupContext | None,
    confirmation_tag: bytes | None = None,
) -> AuthenticatedContent:
    """Sign ``content`` for ``wire_format`` (SignWithLabel "FramedContentTBS", §6.1).

    ``context`` is the current GroupContext (required for member and new_member_commit
    senders); ``confirmation_tag`` must be given exactly for commits."""
    if (confirmation_tag is None) == (content.content_type == ContentType.COMMIT):
        raise UsageError("§6.1: a confirmation_tag is required for, and only for, commits")
    unsigned = AuthenticatedContent(wire_format, content,
                                    FramedContentAuthData(b"", confirmation_tag))
    tbs = unsigned.to_be_signed(context).encode()
    signature = suite.sign_with_label(signature_priv, FRAMED_CONTENT_TBS_LABEL, tbs)
    return AuthenticatedContent(wire_format, content,
                                FramedContentAuthData(signature, confirmation_tag))


def verify_content(
    suite: CipherSuite,
    signature_pub: bytes,
    content: AuthenticatedContent,
    context: GroupContext | None,
) -> None:
    """Check the FramedContentTBS signature (§6.1); raise VerificationError if invalid."""
    tbs = content.to_be_signed(context).encode()
    suite.check_signature(signature_pub, FRAMED_CONTENT_TBS_LABEL, tbs, content.auth.signature,
                          "FramedContentTBS (§6.1)")


# --------------------------------------------------------------------- §6.2 PublicMessage


def _membership_tag(suite: CipherSuite, membership_key: bytes, content: AuthenticatedContent,
                    context: GroupContext | None) -> bytes:
    tbm = AuthenticatedContentTBM(content.to_be_signed(context), content.auth)
    return suite.mac(membership_key, tbm.encode())


def to_public_message(
    suite: CipherSuite,
    content: AuthenticatedContent,
    context: GroupContext | None,
    membership_key: bytes | None,
) -> PublicMessage:
    """Encode signed content as a PublicMessage, adding the membership tag for member
    senders (§6.2). Application data is never sent as a PublicMessage (§6)."""
    if content.wire_format != WireFormat.MLS_PUBLIC_MESSAGE:
        raise UsageError("content was signed for another wire format")
    if content.content.content_type == ContentType.APPLICATION:
        raise UsageError("§6: application messages MUST use PrivateMessage")
    tag = None
    if content.content.sender.sender_type == SenderType.MEMBER:
        if membership_key is None:
            raise UsageError("member PublicMessage needs the membership_key")
        tag = _membership_tag(suite, membership_key, content, context)
    return PublicMessage(content.content, content.auth, tag)


def from_public_message(
    suite: CipherSuite,
    message: PublicMessage,
    context: GroupContext | None,
    membership_key: bytes | None,
) -> AuthenticatedContent:
    """Check the membership tag of a member's PublicMessage (§6.2) and return its
    AuthenticatedContent. The signature is checked separately with
    :func:`verify_content` once the sender's key is known."""
    content = AuthenticatedContent(WireFormat.MLS_PUBLIC_MESSAGE, message.content, message.auth)
    if message.content.content_type == ContentType.APPLICATION:
        raise ProtocolError("§6: application data in a PublicMessage")
    if message.content.sender.sender_type == SenderType.MEMBER:
        if membership_key is None or message.membership_tag is None:
            raise UsageError("member PublicMessage needs the membership_key")
        expected = _membership_tag(suite, membership_key, content, context)
        if not hmac.compare_digest(expected, message.membership_tag):
            raise VerificationError("invalid membership_tag (§6.2)")
    return content


# -------------------------------------------------------------------- §6.3 PrivateMessage


def _aads(group_id: bytes, epoch: int, content_type: int,
          authenticated_data: bytes) -> tuple[bytes, bytes]:
    """(PrivateContentAAD, SenderDataAAD) (§6.3.1, §6.3.2): the second is the first
    without its last field, so both come from one encoding."""
    sd_aad = SenderDataAAD(group_id, epoch, content_type).encode()
    out = bytearray(sd_aad)
    encode_varint(len(authenticated_data), out)
    out += authenticated_data
    return bytes(out), sd_aad


def to_private_message(
    suite: CipherSuite,
    content: AuthenticatedContent,
    sender_data_secret: bytes,
    key: RatchetKey,
    padding: int = 0,
    reuse_guard: bytes | None = None,
    *,
    padding_block: int = 0,
) -> PrivateMessage:
    """Encrypt signed member content (§6.3.1) with ``key`` (the sender's next ratchet
    generation) and its sender data (§6.3.2). ``padding`` zero bytes end the plaintext,
    or with ``padding_block`` > 1 as many as round its length up to a multiple of it."""
    framed = content.content
    if content.wire_format != WireFormat.MLS_PRIVATE_MESSAGE:
        raise UsageError("content was signed for another wire format")
    if framed.sender.sender_type != SenderType.MEMBER or framed.sender.index is None:
        raise UsageError("§6.3.2: only members send PrivateMessages")
    guard = new_reuse_guard() if reuse_guard is None else reuse_guard
    plaintext = PrivateMessageContent(framed.content_type, framed.body, content.auth,
                                      padding).encode()
    if padding_block > 1:
        plaintext += bytes(-len(plaintext) % padding_block)
    aad, sd_aad = _aads(framed.group_id, framed.epoch, framed.content_type,
                        framed.authenticated_data)
    ciphertext = suite.seal(key.key, apply_reuse_guard(key.nonce, guard), aad, plaintext)
    sender_data = SenderData(framed.sender.index, key.generation, guard).encode()
    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
    encrypted_sender_data = suite.seal(sd_key, sd_nonce, sd_aad, sender_data)
    return PrivateMessage(framed.group_id, framed.epoch, framed.content_type,
                          framed.authenticated_data, encrypted_sender_data, ciphertext)


def decrypt_sender_data(
    suite: CipherSuite, message: PrivateMessage, sender_data_secret: bytes,
    sd_aad: bytes | None = None,
) -> SenderData:
    """Decrypt and decode the SenderData of a PrivateMessage (§6.3.2); ``sd_aad``, the
    SenderDataAAD, if the caller has it already."""
    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, message.ciphertext)
    if sd_aad is None:
        sd_aad = SenderDataAAD(message.group_id, message.epoch, message.content_type).encode()
    return SenderData.decode(suite.open(sd_key, sd_nonce, sd_aad, message.encrypted_sender_data))


def from_private_message(
    suite: CipherSuite,
    message: PrivateMessage,
    sender_data_secret: bytes,
    key_source: KeySource,
) -> tuple[AuthenticatedContent, SenderData]:
    """Decrypt a PrivateMessage into its AuthenticatedContent (§6.3).

    ``key_source(leaf, content_type, generation)`` supplies the ratchet key; the caller
    checks that the leaf is a non-blank member (§6.3.2) inside it or afterwards, and
    verifies the signature with :func:`verify_content`."""
    aad, sd_aad = _aads(message.group_id, message.epoch, message.content_type,
                        message.authenticated_data)
    sender_data = decrypt_sender_data(suite, message, sender_data_secret, sd_aad)
    key = key_source(sender_data.leaf_index, message.content_type, sender_data.generation)
    nonce = apply_reuse_guard(key.nonce, sender_data.reuse_guard)
    plaintext = suite.open(key.key, nonce, aad, message.ciphertext)
    try:
        body = PrivateMessageContent.decode(plaintext, message.content_type)
    except DecodeError as e:
        raise DecodeError(f"PrivateMessage plaintext: {e}") from None
    framed = FramedContent(message.group_id, message.epoch, Sender.member(sender_data.leaf_index),
                           message.authenticated_data, message.content_type, body.body)
    return AuthenticatedContent(WireFormat.MLS_PRIVATE_MESSAGE, framed, body.auth), sender_data
