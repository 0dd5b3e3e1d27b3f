"""Ratchet tree nodes (RFC 9420 §7.1, §7.2, §7.6, §12.4.3.3).

LeafNode, its to-be-signed form LeafNodeTBS, ParentNode, the Node union used by the
``ratchet_tree`` extension, and the ``optional<Node> ratchet_tree<V>`` vector codec.

``HPKEPublicKey`` and ``SignaturePublicKey`` (§5.1.1) are ``opaque <V>``, i.e.
:data:`~mls_core.codec.VarBytes` fields holding the raw key bytes.

:class:`HPKECiphertext` (§7.6) is declared here, below both of its users,
``UpdatePathNode`` (:mod:`mls_core.commit`, which re-exports it) and
``EncryptedGroupSecrets`` (:mod:`mls_core.messages`), so that the modules import in one
direction only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, ClassVar

from .codec import (
    EMPTY,
    U16,
    U32,
    VAR_BYTES,
    Codec,
    Opt,
    Reader,
    Select,
    Struct,
    Uint8,
    Uint32,
    Uint64,
    VarBytes,
    Vec,
    decode_varint,
    encode_value,
)
from .credentials import Credential
from .errors import DecodeError, LimitError, UsageError, ValidationError
from .extensions import Extension


class LeafNodeSource(IntEnum):
    """How a LeafNode came to be in the tree (§7.2)."""

    RESERVED = 0
    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


class NodeType(IntEnum):
    """Kind of a ratchet tree node (§7.8, §12.4.3.3)."""

    RESERVED = 0
    LEAF = 1
    PARENT = 2


@dataclass(frozen=True)
class HPKECiphertext(Struct):
    """struct {
        opaque kem_output<V>;
        opaque ciphertext<V>;
    } HPKECiphertext;                                                    (§7.6)"""

    kem_output: VarBytes
    ciphertext: VarBytes


@dataclass(frozen=True)
class Capabilities(Struct):
    """struct {
        ProtocolVersion versions<V>;
        CipherSuite cipher_suites<V>;
        ExtensionType extensions<V>;
        ProposalType proposals<V>;
        CredentialType credentials<V>;
    } Capabilities;                                                      (§7.2)

    Every list holds plain ints: unknown (e.g. GREASE, §13.5) values decode and must be
    ignored by the reader."""

    _memoize_wire: ClassVar[bool] = True  # encoded again for signatures and hashes

    versions: Annotated[tuple[int, ...], Vec(U16)]
    cipher_suites: Annotated[tuple[int, ...], Vec(U16)]
    extensions: Annotated[tuple[int, ...], Vec(U16)]
    proposals: Annotated[tuple[int, ...], Vec(U16)]
    credentials: Annotated[tuple[int, ...], Vec(U16)]


@dataclass(frozen=True)
class Lifetime(Struct):
    """struct {
        uint64 not_before;
        uint64 not_after;
    } Lifetime;                                                          (§7.2)"""

    not_before: Uint64
    not_after: Uint64


_SOURCE_CASES: dict[int, Any] = {
    LeafNodeSource.KEY_PACKAGE: Lifetime,
    LeafNodeSource.UPDATE: EMPTY,
    LeafNodeSource.COMMIT: VAR_BYTES,
}


@dataclass(frozen=True)
class LeafNode(Struct):
    """struct {
        HPKEPublicKey encryption_key;
        SignaturePublicKey signature_key;
        Credential credential;
        Capabilities capabilities;

        LeafNodeSource leaf_node_source;
        select (LeafNode.leaf_node_source) {
            case key_package:
                Lifetime lifetime;
            case update:
                struct{};
            case commit:
                opaque parent_hash<V>;
        };

        Extension extensions<V>;
        /* SignWithLabel(., "LeafNodeTBS", LeafNodeTBS) */
        opaque signature<V>;
    } LeafNode;                                                          (§7.2)

    ``source_data`` holds the selected case: a :class:`Lifetime` (key_package), ``None``
    (update) or the ``parent_hash`` bytes (commit); see :attr:`lifetime` and
    :attr:`parent_hash`."""

    _memoize_wire: ClassVar[bool] = True  # encoded again for signatures and hashes

    encryption_key: VarBytes
    signature_key: VarBytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: Uint8
    source_data: Annotated[Lifetime | bytes | None, Select("leaf_node_source", _SOURCE_CASES)]
    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]
    signature: VarBytes

    @property
    def lifetime(self) -> Lifetime | None:
        """The lifetime of a ``key_package`` leaf, else ``None``."""
        return self.source_data if isinstance(self.source_data, Lifetime) else None

    @property
    def parent_hash(self) -> bytes | None:
        """The parent hash of a ``commit`` leaf, else ``None``."""
        return self.source_data if isinstance(self.source_data, bytes) else None

    def to_be_signed(self, group_id: bytes | None = None,
                     leaf_index: int | None = None) -> LeafNodeTBS:
        """The LeafNodeTBS covering this leaf (§7.2); ``group_id`` and ``leaf_index`` are
        required for ``update`` and ``commit`` leaves and ignored for ``key_package``."""
        return LeafNodeTBS(
            encryption_key=self.encryption_key,
            signature_key=self.signature_key,
            credential=self.credential,
            capabilities=self.capabilities,
            leaf_node_source=self.leaf_node_source,
            source_data=self.source_data,
            extensions=self.extensions,
            group_context=_tbs_context(self.leaf_node_source, group_id, leaf_index),
        )

    def to_be_signed_bytes(self, group_id: bytes | None = None,
                           leaf_index: int | None = None) -> bytes:
        """``to_be_signed(group_id, leaf_index).encode()``, built from this leaf's memoized
        encoding: LeafNodeTBS is LeafNode's fields up to ``signature``, in order, then the
        group context of ``update``/``commit`` leaves (§7.2). ``signature`` is the last
        field and encoded with a minimal-length prefix (§2.1.2), so cutting it off the
        end of the encoding leaves exactly the TBS's leading fields."""
        wire = self.encode()
        n = len(self.signature)
        cut = len(wire) - n - (1 if n < 0x40 else 2 if n < 0x4000 else 4)
        context = _tbs_context(self.leaf_node_source, group_id, leaf_index)
        return wire[:cut] if context is None else wire[:cut] + context.encode()


def _tbs_context(source: int, group_id: bytes | None,
                 leaf_index: int | None) -> LeafNodeTBSContext | None:
    if source == LeafNodeSource.KEY_PACKAGE:
        return None
    if group_id is None or leaf_index is None:
        raise UsageError("LeafNodeTBS: update/commit leaves need group_id and leaf_index")
    return LeafNodeTBSContext(group_id, leaf_index)


@dataclass(frozen=True)
class LeafNodeTBSContext(Struct):
    """The ``update``/``commit`` case of LeafNodeTBS's trailing select (§7.2)::

        opaque group_id<V>;
        uint32 leaf_index;
    """

    group_id: VarBytes
    leaf_index: Uint32


@dataclass(frozen=True)
class LeafNodeTBS(Struct):
    """struct {
        HPKEPublicKey encryption_key;
        SignaturePublicKey signature_key;
        Credential credential;
        Capabilities capabilities;

        LeafNodeSource leaf_node_source;
        select (LeafNodeTBS.leaf_node_source) {
            case key_package:
                Lifetime lifetime;
            case update:
                struct{};
            case commit:
                opaque parent_hash<V>;
        };

        Extension extensions<V>;

        select (LeafNodeTBS.leaf_node_source) {
            case key_package:
                struct{};
            case update:
                opaque group_id<V>;
                uint32 leaf_index;
            case commit:
                opaque group_id<V>;
                uint32 leaf_index;
        };
    } LeafNodeTBS;                                                       (§7.2)"""

    encryption_key: VarBytes
    signature_key: VarBytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: Uint8
    source_data: Annotated[Lifetime | bytes | None, Select("leaf_node_source", _SOURCE_CASES)]
    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]
    group_context: Annotated[
        LeafNodeTBSContext | None,
        Select(
            "leaf_node_source",
            {
                LeafNodeSource.KEY_PACKAGE: EMPTY,
                LeafNodeSource.UPDATE: LeafNodeTBSContext,
                LeafNodeSource.COMMIT: LeafNodeTBSContext,
            },
        ),
    ]

    def signed(self, signature: bytes) -> LeafNode:
        """The LeafNode carrying these fields and ``signature``."""
        return LeafNode(
            encryption_key=self.encryption_key,
            signature_key=self.signature_key,
            credential=self.credential,
            capabilities=self.capabilities,
            leaf_node_source=self.leaf_node_source,
            source_data=self.source_data,
            extensions=self.extensions,
            signature=signature,
        )


@dataclass(frozen=True)
class ParentNode(Struct):
    """struct {
        HPKEPublicKey encryption_key;
        opaque parent_hash<V>;
        uint32 unmerged_leaves<V>;
    } ParentNode;                                                        (§7.1)"""

    _memoize_wire: ClassVar[bool] = True  # encoded again for every tree hash over it

    encryption_key: VarBytes
    parent_hash: VarBytes
    unmerged_leaves: Annotated[tuple[int, ...], Vec(U32)]


@dataclass(frozen=True)
class Node(Struct):
    """struct {
        NodeType node_type;
        select (Node.node_type) {
            case leaf:   LeafNode leaf_node;
            case parent: ParentNode parent_node;
        };
    } Node;                                                              (§12.4.3.3)

    Build with :meth:`of`, which sets ``node_type`` from the value's class."""

    node_type: Uint8
    value: Annotated[
        LeafNode | ParentNode,
        Select("node_type", {NodeType.LEAF: LeafNode, NodeType.PARENT: ParentNode}),
    ]

    @classmethod
    def of(cls, value: LeafNode | ParentNode) -> Node:
        """Wrap a LeafNode or ParentNode with the matching ``node_type``."""
        if isinstance(value, LeafNode):
            return cls(NodeType.LEAF, value)
        if isinstance(value, ParentNode):
            return cls(NodeType.PARENT, value)
        raise UsageError(f"Node.of: not a tree node: {type(value).__name__}")

    @property
    def leaf_node(self) -> LeafNode | None:
        return self.value if isinstance(self.value, LeafNode) else None

    @property
    def parent_node(self) -> ParentNode | None:
        return self.value if isinstance(self.value, ParentNode) else None


#: ``optional<Node> ratchet_tree<V>`` (§12.4.3.3): the nodes in array order, ``None``
#: for a blank node. Purely syntactic; see :func:`decode_ratchet_tree` for the checks.
_OPTIONAL_NODE: Codec[Node | None] = Opt(Node)
RATCHET_TREE: Codec[tuple[Node | None, ...]] = Vec(_OPTIONAL_NODE)


def encode_ratchet_tree(nodes: tuple[Node | None, ...] | list[Node | None]) -> bytes:
    """Encode a ratchet tree, dropping trailing blank nodes as §12.4.3.3 requires."""
    end = len(nodes)
    while end > 0 and nodes[end - 1] is None:
        end -= 1
    return encode_value(RATCHET_TREE, tuple(nodes[:end]))


def decode_ratchet_tree(data: bytes, max_leaves: int | None = None,
                        ) -> tuple[Node | None, ...]:
    """Decode a ``ratchet_tree`` and apply the shape checks of §12.4.3.3.

    Raises DecodeError for malformed bytes, LimitError for a tree of more than
    ``max_leaves`` leaves (found while decoding: see :class:`RatchetTreeReader`) and
    ValidationError if the tree is empty, ends in a blank node, or has a leaf at an odd
    (parent) position or a parent at an even (leaf) position. Extending the array to
    2^(d+1)-1 nodes is left to the caller."""
    return RatchetTreeReader(data, max_leaves).finish()


_NON_BLANK = re.compile(rb"[^\x00]")


class RatchetTreeReader:
    """Decodes ``optional<Node> ratchet_tree<V>`` (§12.4.3.3) node by node, so that a
    joiner can stop early: at the GroupInfo signer's leaf to check the signature before
    decoding the rest (:meth:`node_at`), and at the node bound.

    With ``max_leaves``, a tree of more leaves is refused (LimitError) when its
    ``2 * max_leaves``-th node is reached, before it is built: neither the time nor the
    memory spent depends on how large the tree claims to be. Runs of blank nodes (one
    zero byte each) are counted at C speed."""

    def __init__(self, data: bytes, max_leaves: int | None = None) -> None:
        self._r = r = Reader(bytes(data))
        n = decode_varint(r, "ratchet_tree")
        self._stop = r.pos + n
        if self._stop > r.end:
            raise DecodeError(f"ratchet_tree: vector of {n} bytes truncated at offset {r.pos}")
        if self._stop != r.end:
            raise DecodeError(f"ratchet_tree: {r.end - self._stop} trailing bytes at offset "
                              f"{self._stop}")
        self._max_leaves = max_leaves
        self._max_nodes = None if max_leaves is None else 2 * max_leaves - 1
        self._nodes: list[Node | None] = []

    def node_at(self, x: int) -> Node | None:
        """Node ``x``, decoding only up to it; None if blank or past the end."""
        self._read_until(x + 1)
        return self._nodes[x] if x < len(self._nodes) else None

    def finish(self) -> tuple[Node | None, ...]:
        """All nodes, shape-checked (§12.4.3.3)."""
        self._read_until(None)
        nodes = self._nodes
        if not nodes or nodes[-1] is None:
            raise ValidationError("ratchet_tree: last node must be non-blank (§12.4.3.3)")
        for i, node in enumerate(nodes):
            if node is not None and node.node_type != (NodeType.PARENT if i & 1
                                                       else NodeType.LEAF):
                raise ValidationError(f"ratchet_tree: wrong node type at node index {i}")
        return tuple(nodes)

    def _read_until(self, count: int | None) -> None:
        """Decode nodes until there are ``count`` (all if None) or the vector ends."""
        r, stop, nodes = self._r, self._stop, self._nodes
        data, item = r.data, _OPTIONAL_NODE
        r.end = stop
        while r.pos < stop and (count is None or len(nodes) < count):
            if data[r.pos] == 0:  # a run of blanks
                match = _NON_BLANK.search(data, r.pos, stop)
                run = (stop if match is None else match.start()) - r.pos
                if count is not None:
                    run = min(run, count - len(nodes))
                self._check_bound(len(nodes) + run)
                nodes.extend([None] * run)
                r.pos += run
            else:
                self._check_bound(len(nodes) + 1)
                nodes.append(item.decode(r))

    def _check_bound(self, n_nodes: int) -> None:
        if self._max_nodes is not None and n_nodes > self._max_nodes:
            raise LimitError(f"ratchet_tree: more than {self._max_nodes} nodes, i.e. more "
                             f"than {self._max_leaves} leaves (InputLimits.max_tree_leaves)")
