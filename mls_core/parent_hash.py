"""Parent hashes (RFC 9420 §7.9): computing them along an UpdatePath and verifying them,
both for a committer's new leaf (§7.9.2, §12.4.2) and for a whole tree on join
(§7.9.2, §12.4.3.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .ciphersuite import CipherSuite
from .codec import Struct, VarBytes
from .errors import VerificationError
from .nodes import Node
from .ratchet_tree import RatchetTree, in_subtree
from .tree_math import left, right


@dataclass(frozen=True)
class ParentHashInput(Struct):
    """struct {
        HPKEPublicKey encryption_key;
        opaque parent_hash<V>;
        opaque original_sibling_tree_hash<V>;
    } ParentHashInput;                                                   (§7.9)"""

    encryption_key: VarBytes
    parent_hash: VarBytes
    original_sibling_tree_hash: VarBytes


def compute_parent_hash(suite: CipherSuite, encryption_key: bytes, parent_hash: bytes,
                        original_sibling_tree_hash: bytes) -> bytes:
    """Hash(ParentHashInput): the parent hash of a node P with copath child S (§7.9)."""
    return suite.hash(
        ParentHashInput(encryption_key, parent_hash, original_sibling_tree_hash).encode())


def original_sibling_tree_hash(tree: RatchetTree, sibling: int,
                               unmerged_leaves: Sequence[int]) -> bytes:
    """The tree hash of ``sibling`` with P's unmerged leaves blanked and removed from
    every ``unmerged_leaves`` list (§7.9); the cached tree hash when none lie under it."""
    return tree.tree_hash_without(sibling, frozenset(unmerged_leaves))


def path_parent_hashes(tree: RatchetTree, path: Sequence[tuple[int, int]],
                       keys: Sequence[bytes]) -> tuple[list[bytes], bytes]:
    """The ``parent_hash`` fields for a new filtered direct path (§7.9, §7.5 step 3).

    ``path`` is the (node, copath child) list of :meth:`RatchetTree.filtered_path`,
    ``keys`` the new public keys of those nodes. Returns (``parent_hash`` of each path
    node, ``parent_hash`` for the leaf). Computed root first: the root's field is empty
    and each node's field is the parent hash of the next node up. The new nodes have no
    unmerged leaves, so each original sibling tree hash is the copath child's tree hash,
    which the path does not change; the tree need not have the path merged yet."""
    fields: list[bytes] = [b""] * len(path)
    above = b""
    for i in range(len(path) - 1, -1, -1):
        fields[i] = above
        above = compute_parent_hash(tree.suite, keys[i], above, tree.tree_hash_of(path[i][1]))
    return fields, above


def _node_parent_hash(node: Node) -> bytes | None:
    """The ``parent_hash`` field of a parent node or of a commit-sourced leaf."""
    value = node.value
    return value.parent_hash


def verify_parent_hashes(tree: RatchetTree) -> None:
    """Check that every non-blank parent node is parent-hash valid (§7.9.2), top down:
    each must have exactly one descendant D whose ``parent_hash`` is valid for it.

    D is valid for parent P (children C on D's side, S the other) when D's
    ``parent_hash`` is the parent hash of P with copath child S, D is in the resolution
    of C and P's unmerged leaves under C are exactly that resolution without D.
    Raises VerificationError naming the first parent node that fails."""
    for p, parent in tree.parents():
        matches = 0
        for c, s in ((left(p), right(p)), (right(p), left(p))):
            expected = compute_parent_hash(
                tree.suite, parent.encryption_key, parent.parent_hash,
                original_sibling_tree_hash(tree, s, parent.unmerged_leaves))
            resolution = tree.resolution(c)
            unmerged_here = {2 * i for i in parent.unmerged_leaves if in_subtree(i, c)}
            for d in resolution:
                node = tree.node(d)
                if node is None or _node_parent_hash(node) != expected:
                    continue
                if set(resolution) - {d} == unmerged_here:
                    matches += 1
        if matches != 1:
            raise VerificationError(f"parent node {p} is not parent-hash valid "
                                    f"({matches} descendants link to it) (§7.9.2)")
