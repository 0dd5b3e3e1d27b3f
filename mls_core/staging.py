"""Applying a Commit's proposal list to a copy of the group state (RFC 9420 §12.3, §12.4).

Both the committer (creating a Commit) and every receiver (processing one) run the same
steps here, on a *copy* of the ratchet tree, so a Commit that turns out to be invalid
leaves the group exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .ciphersuite import CipherSuite
from .errors import ValidationError
from .events import Member
from .extensions import Extension
from .proposal_list import CommittedProposal
from .proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    ReInit,
    Remove,
    Update,
)
from .psk import PreSharedKeyID, psk_secret
from .ratchet_tree import RatchetTree
from .tree_validation import check_leaf_fits_tree

#: Looks up the secret of a PreSharedKeyID (§8.4); raises ValidationError if unknown.
PskLookup = Callable[[PreSharedKeyID], bytes]


@dataclass
class StagedProposals:
    """The result of applying a proposal list (§12.3) to a copy of the tree."""

    tree: RatchetTree
    extensions: tuple[Extension, ...]
    extensions_changed: bool = False
    added: list[int] = field(default_factory=list)
    removed: list[Member] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    psk_ids: list[PreSharedKeyID] = field(default_factory=list)
    reinit: ReInit | None = None
    external_init: ExternalInit | None = None


def apply_proposals(tree: RatchetTree, extensions: tuple[Extension, ...],
                    proposals: Sequence[CommittedProposal]) -> StagedProposals:
    """Apply ``proposals`` in the order §12.3 prescribes: GroupContextExtensions, Updates,
    Removes, Adds (in list order); note PSKs, ExternalInit and ReInit. The input tree is
    not modified. New leaves are checked against the tree as it stands when they enter
    (§7.3 uniqueness and credential support)."""
    staged = StagedProposals(tree.copy(), extensions)
    bodies = [(cp.proposal.body, cp) for cp in proposals]
    for body, _ in bodies:
        if isinstance(body, GroupContextExtensions):
            staged.extensions = body.extensions
            staged.extensions_changed = True
    for body, cp in bodies:
        if isinstance(body, Update):
            index = cp.sender.leaf_index
            assert index is not None  # validated: Updates come from members
            check_leaf_fits_tree(staged.tree, body.leaf_node, index)
            staged.tree.update_leaf(index, body.leaf_node)
            staged.updated.append(index)
    for body, _ in bodies:
        if isinstance(body, Remove):
            leaf = staged.tree.leaf(body.removed)
            if leaf is None:
                raise ValidationError("§12.1.3: Remove of a blank leaf")
            staged.removed.append(Member(body.removed, leaf.credential, leaf.signature_key))
            staged.tree.remove_leaf(body.removed)
    for body, _ in bodies:
        if isinstance(body, Add):
            leaf = body.key_package.leaf_node
            check_leaf_fits_tree(staged.tree, leaf, None)
            staged.added.append(staged.tree.add_leaf(leaf))
    for body, _ in bodies:
        if isinstance(body, PreSharedKey):
            staged.psk_ids.append(body.psk)
        elif isinstance(body, ExternalInit):
            staged.external_init = body
        elif isinstance(body, ReInit):
            staged.reinit = body
    return staged


def compute_psk_secret(suite: CipherSuite, psk_ids: Sequence[PreSharedKeyID],
                       lookup: PskLookup) -> bytes | None:
    """psk_secret over the PSKs in proposal order (§8.4); None when there are none."""
    if not psk_ids:
        return None
    return psk_secret(suite, [(pid, lookup(pid)) for pid in psk_ids])
