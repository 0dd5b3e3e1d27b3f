"""Array-based tree index arithmetic (RFC 9420 Appendix C).

Leaves sit at even node indices (leaf ``i`` at node ``2*i``), parents at odd indices.
MLS trees are always complete: the number of leaves is a power of two (§7.7). All
functions are pure integer arithmetic and valid for up to 2^32 leaves.
"""

from __future__ import annotations

from .errors import UsageError

MAX_LEAVES = 1 << 32


def log2(x: int) -> int:
    """Exponent of the largest power of 2 not above ``x`` (0 for x == 0)."""
    return x.bit_length() - 1 if x else 0


def level(x: int) -> int:
    """Level of node ``x``: leaves are 0, their parents 1, ... (count of trailing 1 bits)."""
    return ((x ^ (x + 1)).bit_length()) - 1


def node_width(n_leaves: int) -> int:
    """Number of nodes in a tree with ``n_leaves`` leaves."""
    return 0 if n_leaves == 0 else 2 * (n_leaves - 1) + 1


def root(n_leaves: int) -> int:
    """Node index of the root of a tree with ``n_leaves`` leaves."""
    if not 0 < n_leaves <= MAX_LEAVES:
        raise UsageError(f"tree with {n_leaves} leaves")
    return (1 << log2(node_width(n_leaves))) - 1


def left(x: int) -> int:
    """Left child of intermediate node ``x``."""
    k = level(x)
    if k == 0:
        raise UsageError(f"leaf node {x} has no children")
    return x ^ (0x01 << (k - 1))


def right(x: int) -> int:
    """Right child of intermediate node ``x``."""
    k = level(x)
    if k == 0:
        raise UsageError(f"leaf node {x} has no children")
    return x ^ (0x03 << (k - 1))


def parent(x: int, n_leaves: int) -> int:
    """Parent of node ``x`` in a tree with ``n_leaves`` leaves."""
    if x == root(n_leaves):
        raise UsageError("root node has no parent")
    k = level(x)
    b = (x >> (k + 1)) & 0x01
    return (x | (1 << k)) ^ (b << (k + 1))


def sibling(x: int, n_leaves: int) -> int:
    """The other child of ``x``'s parent."""
    p = parent(x, n_leaves)
    return right(p) if x < p else left(p)


def direct_path(x: int, n_leaves: int) -> list[int]:
    """Nodes from ``x``'s parent up to the root (§4.1)."""
    r = root(n_leaves)
    d: list[int] = []
    while x != r:
        x = parent(x, n_leaves)
        d.append(x)
    return d


def copath(x: int, n_leaves: int) -> list[int]:
    """Siblings of ``x`` and of each node of its direct path except the root (§4.1)."""
    r = root(n_leaves)
    out: list[int] = []
    while x != r:
        out.append(sibling(x, n_leaves))
        x = parent(x, n_leaves)
    return out


def common_ancestor(x: int, y: int) -> int:
    """Lowest node that is ``x``, ``y`` or an ancestor of both."""
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and x >> ly == y >> ly:
        return y
    if ly <= lx and x >> lx == y >> lx:
        return x
    k = 0
    while x != y:
        x, y = x >> 1, y >> 1
        k += 1
    return (x << k) + (1 << (k - 1)) - 1


def leaf_to_node(leaf: int) -> int:
    return 2 * leaf


def node_to_leaf(node: int) -> int:
    if node & 1:
        raise UsageError(f"node {node} is not a leaf")
    return node >> 1


def is_leaf(node: int) -> bool:
    return node & 1 == 0
