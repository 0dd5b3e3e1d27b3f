"""The ratchet tree (RFC 9420 §4, §7.7, §7.8, §12.1, §12.4.3.3).

:class:`RatchetTree` is the array representation of Appendix C: a list of ``Node | None``
whose length is always ``2 * n_leaves - 1`` with ``n_leaves`` a power of two (§7.7), leaf
``i`` at node index ``2*i``. It owns the structural operations (add, update, remove,
truncate), resolutions and filtered direct paths (§4.1.2) and tree hashes (§7.8).

Caching: groups may have tens of thousands of members, so each node keeps its tree hash
and its resolution once computed. Both depend only on the node's subtree (tree hashes
bind absolute leaf indices, never the tree's width), so a change to node ``x``
invalidates exactly ``x`` and its ancestors, extending the tree invalidates only the new
nodes and truncating invalidates nothing. After one leaf changes, :meth:`tree_hash`
rehashes O(log n) nodes; the first tree hash of a new tree (a joiner's, §12.4.3.1)
hashes all 2n - 1 nodes level by level on plain lists and fills every resolution in the
same walk, so the joiner's first Commit finds them cached. The hash inputs are assembled
from each node's memoized wire encoding, so no node is encoded twice. An index of the
HPKE and signature keys in use answers the uniqueness questions of §7.3 and §12.4.2
without a scan.

Nodes are immutable values, so :meth:`copy` shares them: the group layer stages every
commit on a copy and drops it on failure. So that a copy does not cost O(n) per commit
(nor freeing the tree of an epoch that is dropped), the arrays are copy-on-write in
chunks of 128 entries (:class:`_CowList`) and the key indexes are a shared base plus
the changes made since (:class:`_KeyCounts`): a copy costs O(n / 128), and a commit
copies the O(log n) chunks it writes to.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import chain, islice
from typing import Annotated, Generic, TypeVar

from .ciphersuite import CipherSuite
from .codec import Opt, Select, Struct, Uint8, Uint32, VarBytes, encode_varint
from .errors import UsageError, ValidationError
from .nodes import (
    LeafNode,
    Node,
    NodeType,
    ParentNode,
    decode_ratchet_tree,
    encode_ratchet_tree,
)
from .tree_math import MAX_LEAVES, left, level, right, root


@dataclass(frozen=True)
class LeafNodeHashInput(Struct):
    """struct {
        uint32 leaf_index;
        optional<LeafNode> leaf_node;
    } LeafNodeHashInput;                                                 (§7.8)"""

    leaf_index: Uint32
    leaf_node: Annotated[LeafNode | None, Opt(LeafNode)]


@dataclass(frozen=True)
class ParentNodeHashInput(Struct):
    """struct {
        optional<ParentNode> parent_node;
        opaque left_hash<V>;
        opaque right_hash<V>;
    } ParentNodeHashInput;                                               (§7.8)"""

    parent_node: Annotated[ParentNode | None, Opt(ParentNode)]
    left_hash: VarBytes
    right_hash: VarBytes


@dataclass(frozen=True)
class TreeHashInput(Struct):
    """struct {
      NodeType node_type;
      select (TreeHashInput.node_type) {
        case leaf:   LeafNodeHashInput leaf_node;
        case parent: ParentNodeHashInput parent_node;
      };
    } TreeHashInput;                                                     (§7.8)"""

    node_type: Uint8
    value: Annotated[
        LeafNodeHashInput | ParentNodeHashInput,
        Select("node_type", {NodeType.LEAF: LeafNodeHashInput,
                             NodeType.PARENT: ParentNodeHashInput}),
    ]


#: leaves below a node above which its first resolution pauses the cyclic collector
_GC_PAUSE_LEAVES = 256


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a large tree is decoded and checked:
    the tens of thousands of new, acyclic node objects (and cached resolutions) would
    otherwise trigger repeated collections over the whole heap, ~20% of joining a
    10,000-member group. Nothing cyclic is created meanwhile; the next collection
    after the block still finds whatever is."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _upward(x: int, width: int) -> Iterator[tuple[int, int]]:
    """(parent, sibling) for ``x`` and each of its ancestors below the root of a full
    tree of ``width`` nodes: the direct path of ``x`` with its copath (§4.1), by the bit
    arithmetic of Appendix C without per-step range checks."""
    top = width >> 1  # the root of 2^k leaves is node 2^k - 1
    step = (x + 1) & ~x  # 2^level(x)
    while x != top:
        if x & (step << 1):  # a right child
            yield x - step, x - 2 * step
            x -= step
        else:
            yield x + step, x + 2 * step
            x += step
        step <<= 1


def leaf_span(x: int) -> tuple[int, int]:
    """The first and last leaf index under node ``x`` (inclusive)."""
    half = (1 << level(x)) - 1
    return (x - half) >> 1, (x + half) >> 1


def in_subtree(leaf_index: int, x: int) -> bool:
    """Whether leaf ``leaf_index`` lies in the subtree headed by node ``x``."""
    lo, hi = leaf_span(x)
    return lo <= leaf_index <= hi


K = TypeVar("K", bytes, int)


def _count(index: dict[K, int], key: K, delta: int) -> None:
    n = index.get(key, 0) + delta
    if n:
        index[key] = n
    else:
        index.pop(key, None)


T = TypeVar("T")
_CHUNK_BITS = 7
_CHUNK = 1 << _CHUNK_BITS


class _CowList(Generic[T]):
    """A list stored in chunks of 128 entries that copies share until one of them
    writes to a chunk (copy-on-write): :meth:`copy` is O(n / 128) and a write copies at
    most one chunk. Indices are non-negative."""

    __slots__ = ("_chunks", "_len", "_owned")

    def __init__(self, values: Iterable[T]) -> None:
        data = list(values)
        self._chunks = [data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK)]
        self._owned = bytearray(b"\x01") * len(self._chunks)
        self._len = len(data)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[T]:
        return chain.from_iterable(self._chunks)

    def __getitem__(self, i: int) -> T:
        return self._chunks[i >> _CHUNK_BITS][i & (_CHUNK - 1)]

    def __setitem__(self, i: int, value: T) -> None:
        self._own(i >> _CHUNK_BITS)[i & (_CHUNK - 1)] = value

    def _own(self, c: int) -> list[T]:
        """Chunk ``c``, copied first if another list may share it."""
        if not self._owned[c]:
            self._chunks[c] = self._chunks[c].copy()
            self._owned[c] = 1
        return self._chunks[c]

    def copy(self) -> _CowList[T]:
        other: _CowList[T] = _CowList.__new__(_CowList)
        other._chunks = self._chunks.copy()
        other._len = self._len
        # Every chunk is now shared: both sides copy before their next write to it.
        other._owned = bytearray(len(self._chunks))
        self._owned = bytearray(len(self._chunks))
        return other

    def extend(self, values: Iterable[T]) -> None:
        data = list(values)
        self._len += len(data)
        if self._chunks and len(self._chunks[-1]) < _CHUNK:
            room = _CHUNK - len(self._chunks[-1])
            self._own(len(self._chunks) - 1).extend(data[:room])
            data = data[room:]
        for i in range(0, len(data), _CHUNK):
            self._chunks.append(data[i:i + _CHUNK])
            self._owned.append(1)

    def truncate(self, length: int) -> None:
        """Drop every entry from index ``length`` on."""
        if length >= self._len:
            return
        keep = (length + _CHUNK - 1) >> _CHUNK_BITS
        del self._chunks[keep:]
        del self._owned[keep:]
        tail = length - ((keep - 1) << _CHUNK_BITS)
        if keep and len(self._chunks[-1]) > tail:
            del self._own(keep - 1)[tail:]
        self._len = length


class _KeyCounts:
    """key -> number of uses, as a base dict that copies share and never change plus
    this copy's own changes; :meth:`copy` copies the changes and folds them into a new
    base once they reach an eighth of its size (amortized O(1) per change)."""

    __slots__ = ("_base", "_delta")

    def __init__(self, counts: dict[bytes, int] | None = None) -> None:
        self._base: dict[bytes, int] = {} if counts is None else counts
        self._delta: dict[bytes, int] = {}

    def get(self, key: bytes, default: int = 0) -> int:
        return self._base.get(key, 0) + self._delta.get(key, 0) or default

    def add(self, key: bytes, delta: int) -> None:
        _count(self._delta, key, delta)

    def max_count(self) -> int:
        """The largest number of uses of any one key (0 if none)."""
        if not self._delta:
            return max(self._base.values(), default=0)
        keys = self._base.keys() | self._delta.keys()
        return max((self.get(k) for k in keys), default=0)

    def copy(self) -> _KeyCounts:
        if len(self._delta) > 32 + len(self._base) // 8:
            base = dict(self._base)
            for key, delta in self._delta.items():
                _count(base, key, delta)
            self._base, self._delta = base, {}
        other = _KeyCounts.__new__(_KeyCounts)
        other._base = self._base
        other._delta = self._delta.copy()
        return other


def _with_unmerged(unmerged: tuple[int, ...], index: int) -> tuple[int, ...]:
    """``unmerged`` (strictly increasing) with ``index`` inserted in order: O(len) at C
    speed, so that Adding many members below one node stays cheap."""
    at = bisect_left(unmerged, index)
    if at < len(unmerged) and unmerged[at] == index:
        return unmerged
    return (*unmerged[:at], index, *unmerged[at:])


def _resolution_of(x: int, value: LeafNode | ParentNode | None,
                   left_res: tuple[int, ...] | None,
                   right_res: tuple[int, ...] | None) -> tuple[int, ...]:
    """The resolution of parent node ``x`` holding ``value`` from its children's (§4.1.1)."""
    if value is None:
        assert left_res is not None and right_res is not None
        return left_res + right_res
    unmerged = value.unmerged_leaves  # type: ignore[union-attr]
    return (x, *[2 * i for i in unmerged]) if unmerged else (x,)


class RatchetTree:
    """A ratchet tree in array form with cached tree hashes and resolutions (§7.7)."""

    __slots__ = ("_cred_support", "_cred_use", "_enc_keys", "_free_hint", "_hashes",
                 "_nodes", "_resolutions", "_sig_keys", "_unhashed", "suite")

    def __init__(self, suite: CipherSuite, nodes: Sequence[Node | None]) -> None:
        """A tree holding ``nodes`` in array order, padded with blanks to a full tree.

        Shape checks are the caller's (see :meth:`decode`); a node of the wrong type at
        a position is a :class:`~mls_core.errors.ValidationError`."""
        self.suite = suite
        width = 1
        while width < len(nodes):
            width = 2 * width + 1
        if (width + 1) // 2 > MAX_LEAVES:
            raise ValidationError("ratchet tree: more than 2^32 leaves")
        self._nodes: _CowList[Node | None] = _CowList(
            [*nodes, *[None] * (width - len(nodes))])
        self._hashes: _CowList[bytes | None] = _CowList([None] * width)
        self._resolutions: _CowList[tuple[int, ...] | None] = _CowList([None] * width)
        self._free_hint = 0
        self._unhashed = True  # no tree hash computed yet: the first is done in bulk
        self._index_all(nodes)

    def _index_all(self, nodes: Sequence[Node | None]) -> None:
        """Build the key and credential-type indexes of :meth:`_index_keys` in one pass,
        checking each node's type against its position."""
        enc: dict[bytes, int] = {}
        sig: dict[bytes, int] = {}
        cred_use: dict[int, int] = {}
        cred_support: dict[int, int] = {}
        for i, node in enumerate(nodes):
            if node is None:
                continue
            value = node.value
            if node.node_type != (NodeType.PARENT if i & 1 else NodeType.LEAF):
                raise ValidationError(f"ratchet tree: wrong node type at node index {i}")
            key = value.encryption_key
            enc[key] = enc.get(key, 0) + 1
            if isinstance(value, LeafNode):
                key = value.signature_key
                sig[key] = sig.get(key, 0) + 1
                ctype = value.credential.credential_type
                cred_use[ctype] = cred_use.get(ctype, 0) + 1
                for t in set(value.capabilities.credentials):
                    cred_support[t] = cred_support.get(t, 0) + 1
        self._enc_keys = _KeyCounts(enc)
        self._sig_keys = _KeyCounts(sig)
        self._cred_use = cred_use
        self._cred_support = cred_support

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(cls, suite: CipherSuite, leaf: LeafNode) -> RatchetTree:
        """The one-member tree of a new group (§11)."""
        return cls(suite, [Node.of(leaf)])

    @classmethod
    def decode(cls, suite: CipherSuite, data: bytes,
               max_leaves: int | None = None) -> RatchetTree:
        """Decode the ``ratchet_tree`` extension form (§12.4.3.3) and pad it to a full tree.

        DecodeError for malformed bytes; LimitError for more than ``max_leaves`` leaves
        (refused while decoding); ValidationError for an empty tree, a trailing blank, a
        node of the wrong type for its position, or an untruncated tree whose right half
        has no member (§7.7, §12.1.3 require truncation)."""
        with gc_paused():
            return cls.from_decoded(suite, decode_ratchet_tree(data, max_leaves))

    @classmethod
    def from_decoded(cls, suite: CipherSuite, nodes: Sequence[Node | None]) -> RatchetTree:
        """:meth:`decode` from nodes already decoded and shape-checked (e.g. by
        :class:`~mls_core.nodes.RatchetTreeReader`)."""
        with gc_paused():
            tree = cls(suite, nodes)
        n = tree.n_leaves
        if n > 1 and all(tree._nodes[i] is None for i in range(n, 2 * n - 1, 2)):
            raise ValidationError("ratchet tree: right subtree of the root has no "
                                  "member; the tree was not truncated (§7.7)")
        return tree

    def encode(self) -> bytes:
        """The ``ratchet_tree`` extension form, trailing blanks dropped (§12.4.3.3)."""
        return encode_ratchet_tree(list(self._nodes))

    def nodes(self) -> tuple[Node | None, ...]:
        """All nodes in array order, including trailing blanks."""
        return tuple(self._nodes)

    def copy(self) -> RatchetTree:
        """An independent tree sharing the (immutable) nodes and cached values."""
        other = RatchetTree.__new__(RatchetTree)
        other.suite = self.suite
        other._nodes = self._nodes.copy()
        other._hashes = self._hashes.copy()
        other._resolutions = self._resolutions.copy()
        other._enc_keys = self._enc_keys.copy()
        other._sig_keys = self._sig_keys.copy()
        other._cred_use = self._cred_use.copy()
        other._cred_support = self._cred_support.copy()
        other._free_hint = self._free_hint
        other._unhashed = self._unhashed
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RatchetTree):
            return NotImplemented
        return self.suite.id == other.suite.id and list(self._nodes) == list(other._nodes)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        members = sum(1 for _ in self.leaves())
        return f"RatchetTree(n_leaves={self.n_leaves}, members={members})"

    # ------------------------------------------------------------------ access

    @property
    def n_leaves(self) -> int:
        return (len(self._nodes) + 1) // 2

    @property
    def width(self) -> int:
        """Number of nodes, 2 * n_leaves - 1."""
        return len(self._nodes)

    @property
    def root(self) -> int:
        return root(self.n_leaves)

    def node(self, x: int) -> Node | None:
        """The node at index ``x`` (None if blank)."""
        if not 0 <= x < len(self._nodes):
            raise UsageError(f"node index {x} outside a tree of width {len(self._nodes)}")
        return self._nodes[x]

    def leaf(self, leaf_index: int) -> LeafNode | None:
        """The LeafNode at ``leaf_index``; None if blank or beyond the tree's leaves."""
        if not 0 <= leaf_index < self.n_leaves:
            return None
        node = self._nodes[2 * leaf_index]
        return None if node is None else node.leaf_node

    def parent_node(self, x: int) -> ParentNode | None:
        node = self.node(x)
        return None if node is None else node.parent_node

    def leaves(self) -> Iterator[tuple[int, LeafNode]]:
        """(leaf_index, LeafNode) of every member, in leaf order."""
        for i, node in enumerate(islice(self._nodes, 0, None, 2)):
            if node is not None:
                value = node.value
                if isinstance(value, LeafNode):
                    yield i, value

    def parents(self) -> Iterator[tuple[int, ParentNode]]:
        """(node_index, ParentNode) of every non-blank parent node."""
        for i, node in enumerate(islice(self._nodes, 1, None, 2)):
            if node is not None and node.parent_node is not None:
                yield 2 * i + 1, node.parent_node

    def encryption_key_uses(self, key: bytes) -> int:
        """How many nodes (leaf or parent) hold HPKE public key ``key``."""
        return self._enc_keys.get(key, 0)

    def max_key_uses(self) -> int:
        """The most nodes sharing one HPKE key or leaves sharing one signature key:
        above 1 means a uniqueness rule of §7.3 / §12.4.3.1 is broken."""
        return max(self._enc_keys.max_count(), self._sig_keys.max_count())

    def signature_key_uses(self, key: bytes) -> int:
        """How many leaves hold signature key ``key``."""
        return self._sig_keys.get(key, 0)

    @property
    def member_count(self) -> int:
        """Number of non-blank leaves."""
        return sum(self._cred_use.values())

    def credential_types_in_use(self) -> dict[int, int]:
        """credential_type -> number of members whose credential has that type."""
        return dict(self._cred_use)

    def credential_type_support(self, credential_type: int) -> int:
        """Number of members whose capabilities list ``credential_type``."""
        return self._cred_support.get(credential_type, 0)

    def find_leaf(self, leaf: LeafNode) -> int | None:
        """The index of a leaf equal to ``leaf`` (e.g. a joiner's own, §12.4.3.1)."""
        if self.signature_key_uses(leaf.signature_key) == 0:
            return None
        key = leaf.signature_key
        for i, candidate in self.leaves():
            if candidate.signature_key == key and candidate == leaf:
                return i
        return None

    # ------------------------------------------------------------------ mutation

    def set_node(self, x: int, node: Node | None) -> None:
        """Replace node ``x`` and invalidate the caches of ``x`` and its ancestors."""
        old = self.node(x)
        if node is not None and node.node_type != (NodeType.PARENT if x & 1 else NodeType.LEAF):
            raise UsageError(f"node type {node.node_type} does not fit node index {x}")
        if old is not None:
            self._index_keys(old, -1)
        if node is not None:
            self._index_keys(node, +1)
        elif not x & 1:
            self._free_hint = min(self._free_hint, x >> 1)
        self._nodes[x] = node
        self._invalidate(x)

    def set_leaf(self, leaf_index: int, leaf: LeafNode | None) -> None:
        self.set_node(2 * leaf_index, None if leaf is None else Node.of(leaf))

    def reserve_leaf(self) -> int:
        """The leftmost blank leaf, extending the tree to the right if there is none
        (§7.7, §12.1.1, §12.4.2 for external joiners). The leaf stays blank."""
        nodes = self._nodes
        for x in range(2 * self._free_hint, len(nodes), 2):
            if nodes[x] is None:
                self._free_hint = x >> 1
                return x >> 1
        n = self.n_leaves
        if 2 * n > MAX_LEAVES:
            raise ValidationError("ratchet tree: cannot grow beyond 2^32 leaves")
        # New root and all-blank right subtree; existing caches stay valid (§7.7).
        nodes.extend([None] * (2 * n))
        self._hashes.extend([None] * (2 * n))
        self._resolutions.extend([None] * (2 * n))
        self._free_hint = n
        return n

    def add_leaf(self, leaf: LeafNode) -> int:
        """Apply an Add (§12.1.1): put ``leaf`` in the leftmost blank leaf (extending if
        needed) and list it as unmerged at every non-blank parent above it."""
        index = self.reserve_leaf()
        for p, _ in _upward(2 * index, len(self._nodes)):
            parent = self.parent_node(p)
            if parent is not None:
                unmerged = _with_unmerged(parent.unmerged_leaves, index)
                self.set_node(p, Node.of(replace(parent, unmerged_leaves=unmerged)))
        self.set_leaf(index, leaf)
        self._free_hint = index + 1
        return index

    def blank_direct_path(self, leaf_index: int) -> None:
        """Blank every parent node on the direct path of ``leaf_index`` (§7.5, §12.1)."""
        for p, _ in _upward(2 * leaf_index, len(self._nodes)):
            if self._nodes[p] is not None:
                self.set_node(p, None)

    def update_leaf(self, leaf_index: int, leaf: LeafNode) -> None:
        """Apply an Update (§12.1.2): replace the member's leaf and blank its direct path."""
        self._require_member(leaf_index, "Update")
        self.set_leaf(leaf_index, leaf)
        self.blank_direct_path(leaf_index)

    def remove_leaf(self, leaf_index: int) -> None:
        """Apply a Remove (§12.1.3): blank the leaf and its direct path, then truncate."""
        self._require_member(leaf_index, "Remove")
        self.set_leaf(leaf_index, None)
        self.blank_direct_path(leaf_index)
        self.truncate()

    def truncate(self) -> None:
        """Halve the tree while the root's right subtree holds no member (§7.7, §12.1.3)."""
        nodes = self._nodes
        last = len(nodes) - 1
        while last > 0 and nodes[last] is None:
            last -= 2
        n = 1
        while n <= last >> 1:
            n *= 2
        if n < self.n_leaves:
            width = 2 * n - 1
            for node in islice(nodes, width, None):
                if node is not None:
                    self._index_keys(node, -1)
            nodes.truncate(width)
            self._hashes.truncate(width)
            self._resolutions.truncate(width)
            self._free_hint = min(self._free_hint, n)

    def _require_member(self, leaf_index: int, what: str) -> None:
        if self.leaf(leaf_index) is None:
            raise ValidationError(f"{what}: leaf {leaf_index} is not a member (§12.1)")

    def _index_keys(self, node: Node, delta: int) -> None:
        """Keep the key and credential-type indexes in step with the nodes."""
        value = node.value
        self._enc_keys.add(value.encryption_key, delta)
        if isinstance(value, LeafNode):
            self._sig_keys.add(value.signature_key, delta)
            _count(self._cred_use, value.credential.credential_type, delta)
            for t in set(value.capabilities.credentials):
                _count(self._cred_support, t, delta)

    def _invalidate(self, x: int) -> None:
        """Clear the cached tree hash and resolution of ``x`` and of its ancestors.

        A node's cached value is only ever computed from cached values of what it
        depends on below it, so above an ancestor with nothing cached nothing that
        depends on ``x`` is cached either: the walk stops there, and merging a whole
        path costs O(log n) rather than O(log^2 n)."""
        hashes, resolutions = self._hashes, self._resolutions
        hashes[x] = None
        resolutions[x] = None
        for p, _ in _upward(x, len(self._nodes)):
            if hashes[p] is None and resolutions[p] is None:
                break
            hashes[p] = None
            resolutions[p] = None

    # ------------------------------------------------------------------ paths (§4.1.2)

    def resolution(self, x: int) -> tuple[int, ...]:
        """The resolution of node ``x`` as node indices (§4.1.1): a non-blank node and
        its unmerged leaves, or the concatenated resolutions of a blank node's children."""
        cached = self._resolutions[x]
        if cached is not None:
            return cached
        if not 0 <= x < len(self._nodes):
            raise UsageError(f"node index {x} outside a tree of width {len(self._nodes)}")
        return self._resolve_large(x)

    def _resolve_large(self, x: int) -> tuple[int, ...]:
        """:meth:`_resolve`, with the cyclic collector paused for a large subtree
        resolved for the first time (e.g. a blank copath node after a mass Add, §7.6):
        it fills thousands of cache entries with new tuples, and the collections of the
        whole heap they would trigger cost 5x the resolution itself (see gc_paused)."""
        cached = self._resolutions[x]
        if cached is not None:
            return cached
        if (x + 1) & ~x > _GC_PAUSE_LEAVES:  # 2^level(x) leaves below x
            with gc_paused():
                return self._resolve(x)
        return self._resolve(x)

    def _resolve(self, x: int) -> tuple[int, ...]:
        """:meth:`resolution` of an in-range node, filling the cache below it."""
        cached = self._resolutions[x]
        if cached is not None:
            return cached
        node = self._nodes[x]
        res: tuple[int, ...]
        if node is not None:
            value = node.value
            unmerged = value.unmerged_leaves if x & 1 else ()  # type: ignore[union-attr]
            res = (x, *[2 * i for i in unmerged]) if unmerged else (x,)
        elif x & 1:
            half = ((x + 1) & ~x) >> 1  # 2^(level(x) - 1): children are x -/+ half
            res = self._resolve(x - half) + self._resolve(x + half)
        else:
            res = ()
        self._resolutions[x] = res
        return res

    def filtered_path(self, leaf_index: int) -> list[tuple[int, int]]:
        """(node, copath child) for each node of the filtered direct path of
        ``leaf_index``, leaf to root: direct-path nodes whose child on the copath has a
        non-empty resolution (§4.1.2)."""
        if not 0 <= leaf_index < self.n_leaves:
            raise UsageError(f"leaf {leaf_index} outside the tree")
        resolve = self._resolve_large
        return [(p, s) for p, s in _upward(2 * leaf_index, len(self._nodes)) if resolve(s)]

    def filtered_direct_path(self, leaf_index: int) -> list[int]:
        """The filtered direct path of ``leaf_index`` (§4.1.2)."""
        return [p for p, _ in self.filtered_path(leaf_index)]

    def filtered_copath(self, leaf_index: int) -> list[int]:
        """The copath children matching :meth:`filtered_direct_path`, in order."""
        return [s for _, s in self.filtered_path(leaf_index)]

    # ------------------------------------------------------------------ hashes (§7.8)

    def tree_hash(self) -> bytes:
        """The tree hash of the root (§7.8)."""
        return self.tree_hash_of(self.root)

    def tree_hash_of(self, x: int) -> bytes:
        """The tree hash of node ``x``, recomputing only nodes changed since last asked."""
        cached = self._hashes[x]
        if cached is not None:
            return cached
        if self._unhashed:
            self._hash_all()
            return self.tree_hash_of(x)
        return self._rehash(x, level(x))

    def _hash_all(self) -> None:
        """Fill every node's tree hash and resolution (§7.8, §4.1.1) level by level on
        plain lists: the first tree hash of a decoded tree (e.g. on join) needs all
        2n - 1 hashes, and the first Commit the joiner processes needs the resolution of
        every copath node of the committer, i.e. of the whole tree. Walking the tree
        once for both keeps that Commit as cheap as the ones after it."""
        nodes, hashes = list(self._nodes), list(self._hashes)
        resolutions = list(self._resolutions)
        width = len(nodes)
        hash_leaf, hash_parent = self._hash_leaf, self._hash_parent
        for x in range(0, width, 2):
            node = nodes[x]
            if hashes[x] is None:
                hashes[x] = hash_leaf(x >> 1, None if node is None else node.value)
            if resolutions[x] is None:
                resolutions[x] = () if node is None else (x,)
        lvl = 1
        while (1 << lvl) <= width:
            half = 1 << (lvl - 1)
            for x in range((1 << lvl) - 1, width, 1 << (lvl + 1)):
                node = nodes[x]
                value = None if node is None else node.value
                if hashes[x] is None:
                    left_hash, right_hash = hashes[x - half], hashes[x + half]
                    assert left_hash is not None and right_hash is not None
                    hashes[x] = hash_parent(value, left_hash, right_hash)
                if resolutions[x] is None:
                    resolutions[x] = _resolution_of(x, value, resolutions[x - half],
                                                    resolutions[x + half])
            lvl += 1
        self._hashes = _CowList(hashes)
        self._resolutions = _CowList(resolutions)
        self._unhashed = False

    def _rehash(self, x: int, lvl: int) -> bytes:
        """:meth:`tree_hash_of` for node ``x`` at level ``lvl``, filling the cache below."""
        hashes = self._hashes
        cached = hashes[x]
        if cached is not None:
            return cached
        node = self._nodes[x]
        if lvl:
            half = 1 << (lvl - 1)
            digest = self._hash_parent(None if node is None else node.value,
                                       self._rehash(x - half, lvl - 1),
                                       self._rehash(x + half, lvl - 1))
        else:
            digest = self._hash_leaf(x >> 1, None if node is None else node.value)
        hashes[x] = digest
        return digest

    def tree_hash_without(self, x: int, leaves: frozenset[int]) -> bytes:
        """The tree hash of node ``x`` in the tree where every leaf in ``leaves`` is
        blank and removed from all ``unmerged_leaves`` lists: the "original sibling tree
        hash" of §7.9. Subtrees holding none of ``leaves`` use the cached hashes."""
        return self._hash_without(x, leaves, sorted(leaves))

    def _hash_without(self, x: int, leaves: frozenset[int], ordered: list[int]) -> bytes:
        """:meth:`tree_hash_without`; ``ordered`` is ``leaves`` sorted, so that finding
        whether a subtree holds one costs O(log) rather than O(len(leaves)) per node
        (a parent listing thousands of unmerged leaves after a mass Add, §7.9.2, made
        it quadratic)."""
        lo, hi = leaf_span(x)
        at = bisect_left(ordered, lo)
        if at == len(ordered) or ordered[at] > hi:
            return self.tree_hash_of(x)
        node = self.node(x)
        if not x & 1:
            return self._hash_leaf(x >> 1, None)
        value = None if node is None else node.parent_node
        if value is not None:
            kept = tuple(i for i in value.unmerged_leaves if i not in leaves)
            value = replace(value, unmerged_leaves=kept)
        return self._hash_parent(value, self._hash_without(left(x), leaves, ordered),
                                 self._hash_without(right(x), leaves, ordered))

    # The two hash inputs below are TreeHashInput (§7.8) written out from the node's
    # memoized wire encoding rather than by building the wrapper structs: the tree hash of
    # a joined 10,000-member group takes 32,767 of them. test_perf_tree checks that they
    # equal the encodings of the declared TreeHashInput structs above.

    def _hash_leaf(self, leaf_index: int, leaf: LeafNode | ParentNode | None) -> bytes:
        """Hash(TreeHashInput{leaf, LeafNodeHashInput{leaf_index, optional<LeafNode>}})."""
        head = _LEAF_TAG + leaf_index.to_bytes(4, "big")
        return self.suite.hash(head + _ABSENT if leaf is None
                               else head + _PRESENT + leaf.encode())

    def _hash_parent(self, parent: LeafNode | ParentNode | None, left_hash: bytes,
                     right_hash: bytes) -> bytes:
        """Hash(TreeHashInput{parent, ParentNodeHashInput{optional<ParentNode>, left_hash,
        right_hash}})."""
        data = bytearray(_PARENT_TAG)
        if parent is None:
            data += _ABSENT
        else:
            data += _PRESENT
            data += parent.encode()
        encode_varint(len(left_hash), data)
        data += left_hash
        encode_varint(len(right_hash), data)
        data += right_hash
        return self.suite.hash(bytes(data))


_LEAF_TAG = bytes([NodeType.LEAF])
_PARENT_TAG = bytes([NodeType.PARENT])
_ABSENT, _PRESENT = b"\x00", b"\x01"  # optional<T> presence byte (§2.1.1)
