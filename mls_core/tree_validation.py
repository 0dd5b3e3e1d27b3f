"""Leaf node validation against a group's tree (RFC 9420 §7.3) and validation of a whole
ratchet tree on join (§12.4.3.1).

Time is a parameter (``now``, seconds since the Unix epoch; ``None`` skips the lifetime
check, which §7.3 only RECOMMENDS for received leaves) and credentials go through a
pluggable :class:`~mls_core.authentication.CredentialValidator`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from itertools import pairwise

from .authentication import DEFAULT_VALIDATOR, CredentialValidator
from .ciphersuite import CipherSuite
from .errors import ValidationError
from .key_package import (
    check_leaf_extensions_supported,
    check_lifetime,
    verify_leaf_signature,
    verify_leaf_signatures,
)
from .messages import RequiredCapabilities
from .nodes import LeafNode, LeafNodeSource
from .parent_hash import verify_parent_hashes
from .ratchet_tree import RatchetTree, leaf_span

_SOURCE_NAMES = {LeafNodeSource.KEY_PACKAGE: "key_package", LeafNodeSource.UPDATE: "update",
                 LeafNodeSource.COMMIT: "commit"}


def check_leaf_node(
    suite: CipherSuite,
    leaf: LeafNode,
    *,
    group_id: bytes,
    leaf_index: int | None,
    source: LeafNodeSource | None = None,
    now: int | None = None,
    validator: CredentialValidator = DEFAULT_VALIDATOR,
    required_capabilities: RequiredCapabilities | None = None,
    verify_signature: bool = True,
) -> None:
    """The §7.3 checks that need no other member: ``leaf_node_source`` (when ``source``
    is given), credential, signature (with ``group_id`` and ``leaf_index`` for update and
    commit leaves), required capabilities, lifetime and supported extensions.
    ``verify_signature=False`` is for a caller that verifies the signature itself, as
    :func:`validate_tree` does for all leaves at once."""
    if source is not None and leaf.leaf_node_source != source:
        raise ValidationError(f"§7.3: leaf_node_source must be {_SOURCE_NAMES[source]}")
    if leaf.leaf_node_source != LeafNodeSource.KEY_PACKAGE and leaf_index is None:
        raise ValidationError("§7.3: an update/commit LeafNode needs its leaf index")
    validator.validate(leaf.credential, leaf.signature_key)
    if verify_signature:
        verify_leaf_signature(suite, leaf, group_id, leaf_index)
    if required_capabilities is not None:
        check_required_capabilities(leaf, required_capabilities)
    check_lifetime(leaf, now)
    check_leaf_extensions_supported(leaf)


def check_required_capabilities(leaf: LeafNode, required: RequiredCapabilities) -> None:
    """§7.3, §11.1: the leaf lists every required extension, proposal and credential
    type in its capabilities."""
    caps = leaf.capabilities
    for name, need, have in (("extension", required.extension_types, caps.extensions),
                             ("proposal", required.proposal_types, caps.proposals),
                             ("credential", required.credential_types, caps.credentials)):
        missing = set(need) - set(have)
        if missing:
            raise ValidationError(f"§11.1: leaf lacks required {name} types "
                                  f"{sorted(missing)}")


def check_leaf_fits_tree(tree: RatchetTree, leaf: LeafNode, leaf_index: int | None) -> None:
    """The §7.3 checks against the other members, for a leaf about to enter ``tree`` at
    ``leaf_index`` (replacing the leaf there, if any; ``None`` for a new member):

    * its credential type is supported by every other member and it supports theirs;
    * its ``signature_key`` is not another member's, and its ``encryption_key`` is in
      no node of the tree, including the leaf it replaces (§7.3 Update rule, §12.4.2).
    """
    current = tree.leaf(leaf_index) if leaf_index is not None else None
    if tree.encryption_key_uses(leaf.encryption_key):
        raise ValidationError("§7.3: encryption_key already appears in the tree")
    sig_uses = tree.signature_key_uses(leaf.signature_key)
    if current is not None and current.signature_key == leaf.signature_key:
        sig_uses -= 1
    if sig_uses:
        raise ValidationError("§7.3: signature_key is another member's")
    _check_credential_fit(tree, leaf, current)


def _check_credential_fit(tree: RatchetTree, leaf: LeafNode, current: LeafNode | None) -> None:
    """§7.3 credential-type compatibility, from the tree's counts in O(#types)."""
    mine = leaf.credential.credential_type
    others = tree.member_count
    support = tree.credential_type_support(mine)
    if current is not None:
        others -= 1
        support -= mine in current.capabilities.credentials
    if support != others:
        raise ValidationError(f"§7.3: not every member supports credential type {mine}")
    for ctype, uses in tree.credential_types_in_use().items():
        if current is not None and current.credential.credential_type == ctype:
            uses -= 1
        if uses and ctype not in leaf.capabilities.credentials:
            raise ValidationError(f"§7.3: leaf does not support credential type {ctype} "
                                  "used by other members")


def validate_tree(
    tree: RatchetTree,
    group_id: bytes,
    *,
    now: int | None = None,
    validator: CredentialValidator = DEFAULT_VALIDATOR,
    required_capabilities: RequiredCapabilities | None = None,
) -> None:
    """Verify the integrity of a tree received on join (§12.4.3.1), except the tree hash
    against the GroupInfo, which the caller compares with :meth:`RatchetTree.tree_hash`:

    * unique HPKE keys across all nodes and unique signature keys across leaves (§7.3);
    * well-formed ``unmerged_leaves`` (sorted, §7.1; members below the node, listed at
      every non-blank node in between, §12.4.3.1);
    * every non-blank parent node parent-hash valid (§7.9.2);
    * every leaf valid (§7.3), including credential types supported by all members;
      the leaf signatures are verified last, as one batch (in parallel where the
      machine has several cores, :meth:`CipherSuite.verify_many_with_label`).

    Raises ValidationError, or VerificationError for a parent hash or leaf signature."""
    members = list(tree.leaves())
    if not members:
        raise ValidationError("ratchet tree has no members")
    check_unique_keys(tree)
    check_unmerged_leaves(tree)
    verify_parent_hashes(tree)
    for i, leaf in members:
        check_leaf_node(tree.suite, leaf, group_id=group_id, leaf_index=i, now=now,
                        validator=validator, required_capabilities=required_capabilities,
                        verify_signature=False)
    check_tree_credential_support(tree)
    verify_leaf_signatures(tree.suite, members, group_id)


def check_unique_keys(tree: RatchetTree) -> None:
    """§7.3, §12.4.3.1: no HPKE public key appears in two nodes and no signature key
    in two leaves."""
    if tree.max_key_uses() <= 1:  # the tree's key indexes count every use
        return
    enc_uses, sig_uses = tree.encryption_key_uses, tree.signature_key_uses
    for x, node in enumerate(tree.nodes()):
        if node is None:
            continue
        value = node.value
        if enc_uses(value.encryption_key) > 1:
            raise ValidationError(f"§12.4.3.1: node {x}'s encryption_key appears twice")
        if not x & 1 and sig_uses(value.signature_key) > 1:  # type: ignore[union-attr]
            raise ValidationError(f"§7.3: leaf {x >> 1}'s signature_key appears twice")


def check_unmerged_leaves(tree: RatchetTree) -> None:
    """§7.1, §12.4.3.1: each parent's ``unmerged_leaves`` is strictly increasing and
    names member leaves below it, and each such leaf is listed at every non-blank parent
    between it and that node.

    The last rule is checked link by link: it holds iff every non-blank parent Q lists
    those unmerged leaves of its nearest non-blank ancestor A that lie below Q (by
    induction along the non-blank parents from the leaf up). The parents sharing one A
    head disjoint subtrees, so each listed leaf is looked at once or twice: O(n + total
    listed), where walking each leaf's path was O(log n) per listing."""
    width = tree.width
    nearest = _nearest_non_blank(tree)
    for p, parent in tree.parents():
        unmerged = parent.unmerged_leaves
        if any(a >= b for a, b in pairwise(unmerged)):
            raise ValidationError(f"§7.1: unmerged_leaves of node {p} not strictly sorted")
        lo, hi = leaf_span(p)
        for i in unmerged:
            if not lo <= i <= hi or tree.leaf(i) is None:
                raise ValidationError(f"§12.4.3.1: node {p} lists unmerged leaf {i}, "
                                      "which is not a member below it")
        a = nearest[_parent_of(p)] if p != width >> 1 else -1
        if a < 0:
            continue
        above = tree.parent_node(a)
        assert above is not None
        listed = above.unmerged_leaves
        mine = set(unmerged)
        for k in range(bisect_left(listed, lo), bisect_right(listed, hi)):
            if listed[k] not in mine:
                raise ValidationError(f"§12.4.3.1: leaf {listed[k]} is unmerged at node {a} "
                                      f"but not at node {p} below it")


def _parent_of(x: int) -> int:
    """The parent of node ``x`` in a full tree (Appendix C), ``x`` not the root."""
    step = (x + 1) & ~x  # 2^level(x)
    return x - step if x & (step << 1) else x + step


def _nearest_non_blank(tree: RatchetTree) -> list[int]:
    """For each parent node index x: x if non-blank, else its nearest non-blank
    ancestor, else -1 (leaf indices: -1). Filled top down, level by level."""
    width = tree.width
    nodes = tree.nodes()
    nearest = [-1] * width
    lvl = (width + 1).bit_length() - 2  # the root's level
    root = width >> 1
    nearest[root] = root if nodes[root] is not None else -1
    for level_ in range(lvl - 1, 0, -1):
        step = 1 << level_
        for x in range(step - 1, width, step << 1):
            nearest[x] = x if nodes[x] is not None else nearest[_parent_of(x)]
    return nearest


def check_tree_credential_support(tree: RatchetTree) -> None:
    """§7.3: every credential type in use in ``tree`` is supported by every member, from
    the tree's counts (each member counts once per type it supports) in O(#types)."""
    members = tree.member_count
    missing = {int(t) for t in tree.credential_types_in_use()
               if tree.credential_type_support(t) != members}
    if missing:
        raise ValidationError(f"§7.3: credential types {sorted(missing)} are not "
                              "supported by every member")


def check_credential_support(leaves: Iterable[LeafNode]) -> None:
    """§7.3: every credential type in use is supported by every member."""
    in_use: set[int] = set()
    supported: set[int] | None = None
    for leaf in leaves:
        in_use.add(leaf.credential.credential_type)
        caps = set(leaf.capabilities.credentials)
        supported = caps if supported is None else supported & caps
    missing = in_use - (supported or set())
    if missing:
        raise ValidationError(f"§7.3: credential types {sorted(missing)} are not "
                              "supported by every member")
