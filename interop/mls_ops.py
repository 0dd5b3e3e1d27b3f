"""MLS helpers the interop service needs on top of ``mls_core``: decoding the runner's
opaque byte fields, finding members by identity, building PSK identifiers and
external-sender lists, and inspecting messages before a group processes them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from mls_core.ciphersuite import get_suite
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.extensions import Extension
from mls_core.framing import ContentType, MLSMessage
from mls_core.group import Group
from mls_core.join_flow import _tree_of
from mls_core.messages import (
    GroupInfo,
    KeyPackage,
    external_senders,
)
from mls_core.proposals import PreSharedKey
from mls_core.psk import ExternalPSK, PreSharedKeyID, PSKType, ResumptionPSK, ResumptionPSKUsage
from mls_core.ratchet_tree import RatchetTree

from .errors import FailedPrecondition, InvalidArgument


def decode_key_package(data: bytes) -> KeyPackage:
    """The KeyPackage in an MLSMessage(KeyPackage) (§6, §10)."""
    kp = MLSMessage.decode(data).key_package
    if kp is None:
        raise InvalidArgument("expected an MLSMessage(KeyPackage)")
    return kp


def decode_group_info(data: bytes) -> GroupInfo:
    """The GroupInfo in an MLSMessage(GroupInfo) (§6, §12.4.3)."""
    info = MLSMessage.decode(data).group_info
    if info is None:
        raise InvalidArgument("expected an MLSMessage(GroupInfo)")
    return info


def tree_of(info: GroupInfo, ratchet_tree: bytes) -> RatchetTree:
    """The tree of a GroupInfo: its ratchet_tree extension, else the one given out of band
    (empty bytes mean none)."""
    suite = get_suite(info.group_context.cipher_suite)
    return _tree_of(suite, info, ratchet_tree or None)


def leaf_of_identity(members: Iterable[tuple[int, Credential]], identity: bytes) -> int:
    """Leaf index of the member whose basic credential carries ``identity`` (the runner
    names members by identity, never by leaf index)."""
    for index, credential in members:
        if credential.identity == identity:
            return index
    raise FailedPrecondition("no member with that identity")


def member_of_identity(group: Group, identity: bytes) -> int:
    """Leaf index of the member with basic credential ``identity`` in ``group``."""
    return leaf_of_identity(((m.index, m.credential) for m in group.members), identity)


def tree_member_of_identity(tree: RatchetTree, identity: bytes) -> int:
    """Leaf index of the member with basic credential ``identity`` in ``tree``."""
    return leaf_of_identity(((i, leaf.credential) for i, leaf in tree.leaves()), identity)


def external_psk(psk_id: bytes, hash_length: int) -> PreSharedKey:
    """A PreSharedKey proposal for external PSK ``psk_id`` with a fresh nonce (§8.4)."""
    return PreSharedKey(PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(psk_id),
                                       os.urandom(hash_length)))


def resumption_psk(group_id: bytes, epoch: int, hash_length: int,
                   usage: int = ResumptionPSKUsage.APPLICATION) -> PreSharedKey:
    """A PreSharedKey proposal for the resumption PSK of ``epoch`` of ``group_id``."""
    return PreSharedKey(PreSharedKeyID(PSKType.RESUMPTION,
                                       ResumptionPSK(usage, group_id, epoch),
                                       os.urandom(hash_length)))


def external_sender_index(extensions: Sequence[Extension], signature_key: bytes,
                          hint: int = 0) -> int:
    """Our index in the group's ``external_senders``: ``hint`` if it names our key, else
    the first entry with our signature key."""
    senders = external_senders(extensions)
    if hint < len(senders) and senders[hint].signature_key == signature_key:
        return hint
    for index, sender in enumerate(senders):
        if sender.signature_key == signature_key:
            return index
    raise FailedPrecondition("the group does not list this external signer")


def handshake_content_type(data: bytes) -> int:
    """Content type of a Public- or PrivateMessage, read before processing it so that a
    message of the wrong kind is refused without touching the group."""
    msg = MLSMessage.decode(data)
    if msg.public_message is not None:
        return int(msg.public_message.content.content_type)
    if msg.private_message is not None:
        return int(msg.private_message.content_type)
    raise InvalidArgument("expected an MLSMessage(PublicMessage or PrivateMessage)")


def require_content_type(data: bytes, content_type: int, field_name: str) -> None:
    if handshake_content_type(data) != content_type:
        raise InvalidArgument(f"{field_name} is not a {ContentType(content_type).name} "
                              "message")


def tree_after_pending(group: Group, config: GroupConfig) -> bytes:
    """The ratchet tree of the epoch our pending Commit leads to, for out-of-band
    delivery, computed on a copy so that the group stays pending."""
    copy = Group.from_bytes(group.to_bytes(), config)
    copy.merge_pending_commit()
    return copy.ratchet_tree_bytes()

