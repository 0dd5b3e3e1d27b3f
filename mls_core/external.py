"""Proposals from outside the group (RFC 9420 §12.1.8): by a pre-provisioned external
sender listed in the ``external_senders`` extension (e.g. a bridge or moderation
service), or by a prospective member asking to be added (``new_member_proposal``).
Both are PublicMessages signed without a GroupContext and carry no membership tag."""

from __future__ import annotations

from .ciphersuite import get_suite
from .errors import ProtocolError, UsageError
from .framing import ContentType, FramedContent, MLSMessage, PublicMessage, Sender, WireFormat
from .messages import KeyPackage
from .proposal_list import EXTERNAL_SENDER_TYPES
from .proposals import Add, Proposal
from .protection import sign_content


def _public(suite_id: int, signature_priv: bytes, content: FramedContent) -> bytes:
    signed = sign_content(get_suite(suite_id), signature_priv, WireFormat.MLS_PUBLIC_MESSAGE,
                          content, None)
    return MLSMessage.of(PublicMessage(signed.content, signed.auth, None)).encode()


def external_proposal(suite_id: int, group_id: bytes, epoch: int, sender_index: int,
                      signature_priv: bytes, proposal: Proposal,
                      authenticated_data: bytes = b"") -> bytes:
    """An MLSMessage(PublicMessage) with a proposal from ``external_senders[sender_index]``
    for ``epoch`` of the group (§12.1.8). Only Add, Remove, PSK, ReInit and
    GroupContextExtensions may come from external senders."""
    if proposal.proposal_type not in EXTERNAL_SENDER_TYPES:
        raise UsageError("§12.1.8: this proposal type may not come from an external sender")
    content = FramedContent(group_id, epoch, Sender.external(sender_index), authenticated_data,
                            ContentType.PROPOSAL, proposal)
    return _public(suite_id, signature_priv, content)


def join_proposal(group_info: bytes, key_package: KeyPackage, signature_priv: bytes,
                  authenticated_data: bytes = b"") -> bytes:
    """A ``new_member_proposal`` Add of ``key_package`` for the epoch of ``group_info``
    (§12.1.8): the group's members decide whether to commit it."""
    info = MLSMessage.decode(group_info).group_info
    if info is None:
        raise ProtocolError("expected an MLSMessage(GroupInfo)")
    gc = info.group_context
    if key_package.cipher_suite != gc.cipher_suite:
        raise UsageError("KeyPackage cipher suite differs from the group's")
    content = FramedContent(gc.group_id, gc.epoch, Sender.new_member_proposal(),
                            authenticated_data, ContentType.PROPOSAL,
                            Proposal.of(Add(key_package)))
    return _public(gc.cipher_suite, signature_priv, content)
