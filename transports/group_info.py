"""Checking a published GroupInfo before anyone uses it (docs/security.md).

A GroupInfo (RFC 9420 §12.4.3) read from a room, a state event or a bridge control
message is hostile until checked. :func:`check_group_info` checks it as a joiner would
(§12.4.3.1: the signature by the signer's leaf, the tree hash, the tree's validity) and
binds it to the network: it must be for the expected group, and the signer's credential
must be the account the network says wrote it, unless that account is a trusted relayer
(the configured bridge, which mirrors members' GroupInfo). A stranger can therefore not
pass off a member's GroupInfo as its own nor a GroupInfo signed in someone else's name;
readers take the newest one that passes (:func:`newest_valid`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from mls_core.config import GroupConfig, InputLimits
from mls_core.errors import MLSError
from mls_core.join_flow import verified_group_info

from .base import InvalidRequestError


class GroupInfoRejected(InvalidRequestError):
    """A published GroupInfo failed a check; ``reason`` is a stable slug."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CheckedGroupInfo:
    """A GroupInfo that passed :func:`check_group_info`."""

    group_info: bytes
    ratchet_tree: bytes | None
    epoch: int
    #: the signer's credential identity (basic credentials), e.g. ``xmpp:alice@x``
    signer: str | None
    #: credential identities of every leaf in the GroupInfo's tree
    members: frozenset[str]


def _text(identity: bytes | None) -> str | None:
    if identity is None:
        return None
    try:
        return identity.decode()
    except UnicodeDecodeError:
        return None


def check_group_info(group_id: bytes, group_info: bytes, ratchet_tree: bytes | None, *,
                     writer: str | None, relayers: Collection[str] = (),
                     limits: InputLimits | None = None) -> CheckedGroupInfo:
    """Check ``group_info`` (an encoded MLSMessage(GroupInfo)) for ``group_id`` as
    published by the network account ``writer`` (``xmpp:…``/``matrix:…``; None: not
    known, e.g. the embedded service). ``limits`` bound the GroupInfo and its tree
    before they are decoded (§12.4.3.2, §12.4.3.3; None: the defaults); anything over
    them is ``group-info-invalid`` with a LimitError. Raises :class:`GroupInfoRejected`."""
    config = GroupConfig(limits=limits or InputLimits())
    try:
        info, tree = verified_group_info(group_info, ratchet_tree, config, None)
    except MLSError as exc:
        raise GroupInfoRejected("group-info-invalid", f"{type(exc).__name__}: {exc}") from None
    gc = info.group_context
    if gc.group_id != group_id:
        raise GroupInfoRejected("group-info-wrong-group",
                                f"it is for group {gc.group_id.hex()[:32]}")
    signer_leaf = tree.leaf(info.signer)
    signer = None if signer_leaf is None else _text(signer_leaf.credential.identity)
    if writer is not None and writer not in relayers and signer != writer:
        raise GroupInfoRejected("group-info-wrong-signer",
                                f"signed by {signer!r}, published by {writer!r}")
    members = frozenset(t for t in (_text(leaf.credential.identity)
                                    for _, leaf in tree.leaves()) if t is not None)
    return CheckedGroupInfo(group_info, ratchet_tree, gc.epoch, signer, members)


def newest_valid(group_id: bytes,
                 candidates: Iterable[tuple[str | None, bytes, bytes | None]], *,
                 relayers: Collection[str] = (),
                 on_reject: Callable[[str | None, GroupInfoRejected], None] | None = None,
                 limits: InputLimits | None = None) -> CheckedGroupInfo | None:
    """The highest-epoch candidate ``(writer, group_info, tree)`` that passes
    :func:`check_group_info` within ``limits`` (ties: the later candidate);
    ``on_reject(writer, error)`` hears of every one that does not."""
    best: CheckedGroupInfo | None = None
    for writer, info, tree in candidates:
        try:
            checked = check_group_info(group_id, info, tree, writer=writer, relayers=relayers,
                                       limits=limits)
        except GroupInfoRejected as exc:
            if on_reject is not None:
                on_reject(writer, exc)
            continue
        if best is None or checked.epoch >= best.epoch:
            best = checked
    return best


__all__ = ["CheckedGroupInfo", "GroupInfoRejected", "check_group_info", "newest_valid"]
