"""Parent hashes (RFC 9420 §7.9): computing them along an UpdatePath and verifying them,
both for a committer's new leaf (§7.9.2, §12.4.2) and for a whole tree on join
(§7.9.2, §12.4.3.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .ciphersuite import CipherSuite
from .codec import Struct, VarBytes, encode_varint
from .errors import VerificationError
from .nodes import Node, ParentNode
from .ratchet_tree import RatchetTree, in_subtree


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
    return _hash_with_sibling(suite, _input_prefix(encryption_key, parent_hash),
                              original_sibling_tree_hash)


# ParentHashInput is written out field by field so that verifying a tree can encode P's
# two fields once for both of its children; test_perf_tree checks these bytes against
# the encoding of the declared ParentHashInput above.

def _input_prefix(encryption_key: bytes, parent_hash: bytes) -> bytearray:
    """The ``encryption_key`` and ``parent_hash`` fields of ParentHashInput."""
    data = bytearray()
    encode_varint(len(encryption_key), data)
    data += encryption_key
    encode_varint(len(parent_hash), data)
    data += parent_hash
    return data


def _hash_with_sibling(suite: CipherSuite, prefix: bytearray, sibling_hash: bytes) -> bytes:
    """Hash(ParentHashInput) from :func:`_input_prefix` and the last field."""
    data = prefix.copy()
    encode_varint(len(sibling_hash), data)
    data += sibling_hash
    return suite.hash(bytes(data))


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


def _linked_hash(node: Node | None) -> bytes | None:
    """The ``parent_hash`` field of a parent node or of a commit-sourced leaf, else None."""
    if node is None:
        return None
    value = node.value
    return value.parent_hash


def verify_parent_hashes(tree: RatchetTree) -> None:
    """Check that every non-blank parent node is parent-hash valid (§7.9.2), top down:
    each must have exactly one descendant D whose ``parent_hash`` is valid for it.

    D is valid for parent P (children C on D's side, S the other) when D's
    ``parent_hash`` is the parent hash of P with copath child S, D is in the resolution
    of C and P's unmerged leaves under C are exactly that resolution without D.
    A side of P whose resolution holds no node with a ``parent_hash`` field cannot hold
    D, so its expected hash is not computed. Raises VerificationError naming the first
    parent node that fails."""
    nodes = tree.nodes()
    for p in range(1, len(nodes), 2):
        node = nodes[p]
        if node is None:
            continue
        parent = node.value
        assert isinstance(parent, ParentNode)  # RatchetTree checks node types by position
        half = ((p + 1) & ~p) >> 1  # 2^(level(p) - 1): children are p -/+ half
        prefix = _input_prefix(parent.encryption_key, parent.parent_hash)
        unmerged = parent.unmerged_leaves
        matches = 0
        for c, s in ((p - half, p + half), (p + half, p - half)):
            resolution = _resolution(tree, nodes, c)
            linked = [(d, h) for d in resolution if (h := _linked_hash(nodes[d])) is not None]
            if not linked:
                continue
            sibling_hash = (original_sibling_tree_hash(tree, s, unmerged) if unmerged
                            else tree.tree_hash_of(s))
            expected = _hash_with_sibling(tree.suite, prefix, sibling_hash)
            for d, h in linked:
                if h == expected and _unmerged_match(parent, c, resolution, d):
                    matches += 1
        if matches != 1:
            raise VerificationError(f"parent node {p} is not parent-hash valid "
                                    f"({matches} descendants link to it) (§7.9.2)")


def _resolution(tree: RatchetTree, nodes: Sequence[Node | None], x: int) -> tuple[int, ...]:
    """:meth:`RatchetTree.resolution` of ``x``, without the cache lookup for a non-blank
    node, whose resolution is itself and its unmerged leaves (§4.1.1)."""
    node = nodes[x]
    if node is None:
        return tree.resolution(x)
    value = node.value
    if isinstance(value, ParentNode) and value.unmerged_leaves:
        return (x, *[2 * i for i in value.unmerged_leaves])
    return (x,)


def _unmerged_match(parent: ParentNode, c: int, resolution: Sequence[int], d: int) -> bool:
    """§7.9.2: P's unmerged leaves under C are exactly C's resolution without D."""
    unmerged_here = {2 * i for i in parent.unmerged_leaves if in_subtree(i, c)}
    return set(resolution) - {d} == unmerged_here
