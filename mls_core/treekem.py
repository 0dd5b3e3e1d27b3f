"""TreeKEM (RFC 9420 §7.4-§7.6, §12.4.2): path secrets, creating an UpdatePath as a
committer and processing one as a receiver.

A committer works in two steps because the HPKE context is the *provisional*
GroupContext, whose ``tree_hash`` covers the tree with the path merged (§12.4.2):

1. :func:`prepare_update_path` derives the new keys, computes parent hashes, signs the
   new LeafNode and merges the path into the (staging) tree;
2. the caller builds the provisional GroupContext from ``tree.tree_hash()``;
3. :meth:`PreparedPath.encrypt` encrypts each path secret to the copath resolutions.

A receiver mirrors it: :func:`apply_update_path` validates and merges, the caller builds
the provisional GroupContext, :func:`decrypt_update_path` recovers the path secrets and
``commit_secret``. Private keys live in :class:`TreeKEMPrivate`, keyed by node index.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from .authentication import DEFAULT_VALIDATOR, CredentialValidator
from .ciphersuite import CipherSuite
from .codec import Struct, Uint8, Uint32, VarBytes, Vec
from .commit import UpdatePath, UpdatePathNode
from .errors import DecodeError, UsageError, ValidationError, VerificationError
from .key_package import sign_leaf_node
from .key_schedule import GroupContext
from .messages import RequiredCapabilities
from .nodes import (
    HPKECiphertext,
    LeafNode,
    LeafNodeSource,
    LeafNodeTBS,
    LeafNodeTBSContext,
    Node,
    ParentNode,
)
from .parent_hash import path_parent_hashes
from .ratchet_tree import RatchetTree, in_subtree
from .tree_math import common_ancestor, direct_path
from .tree_validation import check_leaf_fits_tree, check_leaf_node

UPDATE_PATH_NODE_LABEL = b"UpdatePathNode"
_STORAGE_VERSION = 1


def next_path_secret(suite: CipherSuite, path_secret: bytes) -> bytes:
    """path_secret[n+1] = DeriveSecret(path_secret[n], "path") (§7.4)."""
    return suite.derive_secret(path_secret, b"path")


def node_key_pair(suite: CipherSuite, path_secret: bytes) -> tuple[bytes, bytes]:
    """(node_priv, node_pub) = KEM.DeriveKeyPair(DeriveSecret(path_secret, "node")) (§7.4)."""
    return suite.derive_key_pair(suite.derive_secret(path_secret, b"node"))


# --------------------------------------------------------------------------- private state


@dataclass(frozen=True)
class _StoredKey(Struct):
    """Storage layout of one private key: ``uint32 node; opaque private_key<V>``."""

    node: Uint32
    private_key: VarBytes


@dataclass(frozen=True)
class _StoredTreeKEMPrivate(Struct):
    """Storage layout of TreeKEMPrivate (not a wire format)."""

    version: Uint8
    leaf_index: Uint32
    keys: Annotated[tuple[_StoredKey, ...], Vec(_StoredKey)]


@dataclass(frozen=True, repr=False)
class TreeKEMPrivate:
    """A member's HPKE private keys: its leaf's and those of the parent nodes it knows,
    keyed by node index. By the tree invariant (§4.2) they are all on the member's own
    leaf-to-root path. Immutable: every change returns a new object."""

    leaf_index: int
    keys: Mapping[int, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"TreeKEMPrivate(leaf_index={self.leaf_index}, nodes={sorted(self.keys)})"

    @classmethod
    def for_leaf(cls, leaf_index: int, encryption_priv: bytes) -> TreeKEMPrivate:
        """The state of a member who knows only its leaf key (e.g. a new joiner)."""
        return cls(leaf_index, {2 * leaf_index: encryption_priv})

    @property
    def encryption_priv(self) -> bytes | None:
        """The leaf's HPKE private key."""
        return self.keys.get(2 * self.leaf_index)

    def key_for(self, node: int) -> bytes | None:
        return self.keys.get(node)

    def with_keys(self, keys: Mapping[int, bytes]) -> TreeKEMPrivate:
        """A copy with ``keys`` added or replaced."""
        return TreeKEMPrivate(self.leaf_index, {**self.keys, **keys})

    def with_path_secret(self, suite: CipherSuite, node: int,
                         path_secret: bytes) -> TreeKEMPrivate:
        """A copy holding the key pair derived from ``path_secret`` at ``node`` (§7.4)."""
        return self.with_keys({node: node_key_pair(suite, path_secret)[0]})

    def with_path_from(self, tree: RatchetTree, node: int,
                       path_secret: bytes) -> TreeKEMPrivate:
        """A joiner's keys from a Welcome's path secret (§12.4.3.1): ``path_secret``
        belongs to ``node`` (the lowest common ancestor with the committer); each
        non-blank ancestor of ``node`` gets the next path secret. Every derived public
        key must match the tree, else ValidationError."""
        suite = tree.suite
        keys: dict[int, bytes] = {}
        path = [node] + [p for p in direct_path(node, tree.n_leaves)
                         if tree.node(p) is not None]
        for x in path:
            priv, pub = node_key_pair(suite, path_secret)
            current = tree.node(x)
            if current is None or current.value.encryption_key != pub:
                raise ValidationError(f"§12.4.3.1: path secret does not match node {x}")
            keys[x] = priv
            path_secret = next_path_secret(suite, path_secret)
        return self.with_keys(keys)

    def without(self, nodes: Iterable[int]) -> TreeKEMPrivate:
        drop = set(nodes)
        return TreeKEMPrivate(self.leaf_index,
                              {x: k for x, k in self.keys.items() if x not in drop})

    def pruned(self, tree: RatchetTree) -> TreeKEMPrivate:
        """A copy without keys of nodes that are blank (or gone) in ``tree``, e.g. after
        Update and Remove proposals blanked them (§7.5 deletion)."""
        return TreeKEMPrivate(self.leaf_index, {
            x: k for x, k in self.keys.items() if x < tree.width and tree.node(x) is not None
        })

    def check_consistent(self, tree: RatchetTree) -> None:
        """Every node we hold a key for is on our path, non-blank, and carries the
        matching public key; raises ValidationError otherwise."""
        me = 2 * self.leaf_index
        if self.encryption_priv is None:
            raise ValidationError("TreeKEM private state lacks the leaf key")
        allowed = {me, *direct_path(me, tree.n_leaves)} if me < tree.width else set()
        for x, priv in self.keys.items():
            if x not in allowed:
                raise ValidationError(f"private key for node {x}, not on leaf "
                                      f"{self.leaf_index}'s path (§4.2 tree invariant)")
            node = tree.node(x)
            if node is None:
                raise ValidationError(f"private key for blank node {x}")
            if tree.suite.hpke_public_key(priv) != node.value.encryption_key:
                raise ValidationError(f"private key does not match the public key of node {x}")

    def to_bytes(self) -> bytes:
        """Versioned storage encoding (not a wire format)."""
        keys = tuple(_StoredKey(x, k) for x, k in sorted(self.keys.items()))
        return _StoredTreeKEMPrivate(_STORAGE_VERSION, self.leaf_index, keys).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TreeKEMPrivate:
        stored = _StoredTreeKEMPrivate.decode(data)
        if stored.version != _STORAGE_VERSION:
            raise DecodeError(f"TreeKEMPrivate: unknown storage version {stored.version}")
        return cls(stored.leaf_index, {k.node: k.private_key for k in stored.keys})


# --------------------------------------------------------------------------- committer


@dataclass(frozen=True, repr=False)
class PreparedPath:
    """A committer's new path, merged into its tree but not yet encrypted (§7.5, §12.4.2).

    ``path_secrets`` maps each filtered-direct-path node to its path secret (the Welcome
    carries the one of the lowest common ancestor with each new member, §12.4.3.1)."""

    leaf_index: int
    leaf_node: LeafNode
    path: tuple[tuple[int, int], ...]
    public_keys: tuple[bytes, ...]
    path_secrets: Mapping[int, bytes]
    commit_secret: bytes
    private: TreeKEMPrivate

    def __repr__(self) -> str:
        return f"PreparedPath(leaf_index={self.leaf_index}, nodes={[p for p, _ in self.path]})"

    def path_secret_for(self, new_member: int) -> bytes | None:
        """The path secret a Welcome gives leaf ``new_member``: that of the lowest
        common ancestor of the committer and the new member (§12.4.3.1)."""
        return self.path_secrets.get(common_ancestor(2 * self.leaf_index, 2 * new_member))

    def encrypt(self, tree: RatchetTree, group_context: GroupContext,
                new_leaves: Collection[int] = ()) -> UpdatePath:
        """The UpdatePath: each path secret encrypted with EncryptWithLabel(.,
        "UpdatePathNode", provisional GroupContext, .) to every node in the resolution
        of the copath child, leaves added by this commit excluded (§7.6, §12.4.2)."""
        # All encryptions share label and context: EncryptContext is built and its HPKE
        # key-schedule hashes taken once for the whole path (encrypt_with_label_many).
        recipients: list[tuple[bytes, bytes]] = []
        counts: list[int] = []
        for p, s in self.path:
            resolution = copath_resolution(tree, s, new_leaves)
            counts.append(len(resolution))
            for x in resolution:
                target = tree.node(x)
                assert target is not None  # resolutions hold non-blank nodes only
                recipients.append((target.value.encryption_key, self.path_secrets[p]))
        sealed = iter(tree.suite.encrypt_with_label_many(
            UPDATE_PATH_NODE_LABEL, group_context.encode(), recipients))
        nodes = tuple(
            UpdatePathNode(pub, tuple(HPKECiphertext(*next(sealed)) for _ in range(count)))
            for pub, count in zip(self.public_keys, counts, strict=True))
        return UpdatePath(self.leaf_node, nodes)


def prepare_update_path(
    tree: RatchetTree,
    leaf_index: int,
    signature_priv: bytes,
    group_id: bytes,
    *,
    leaf: LeafNode | None = None,
) -> PreparedPath:
    """Update the committer's direct path in ``tree`` (§7.4, §7.5): fresh leaf key pair,
    path secrets up the filtered direct path, parent hashes set top-down (§7.9), a new
    LeafNode (source ``commit``) signed with ``signature_priv``; then merge it all.

    ``leaf`` supplies the new leaf's signature key, credential, capabilities and
    extensions (default: the current leaf; required for an external joiner, whose leaf
    is blank). ``tree`` is modified: pass the staging copy."""
    suite = tree.suite
    template = leaf if leaf is not None else tree.leaf(leaf_index)
    if template is None:
        raise UsageError(f"leaf {leaf_index} is blank: pass the new leaf's fields")
    if suite.signature_public_key(signature_priv) != template.signature_key:
        raise UsageError("signature_priv does not match the leaf's signature_key")
    path = tree.filtered_path(leaf_index)

    chain = os.urandom(suite.hash_length)
    secrets: dict[int, bytes] = {}
    keys: dict[int, bytes] = {}
    publics: list[bytes] = []
    for p, _ in path:
        secrets[p] = chain
        keys[p], pub = node_key_pair(suite, chain)
        publics.append(pub)
        chain = next_path_secret(suite, chain)
    fields, leaf_parent_hash = path_parent_hashes(tree, path, publics)

    leaf_priv, leaf_pub = suite.generate_key_pair()
    tbs = LeafNodeTBS(
        encryption_key=leaf_pub,
        signature_key=template.signature_key,
        credential=template.credential,
        capabilities=template.capabilities,
        leaf_node_source=LeafNodeSource.COMMIT,
        source_data=leaf_parent_hash,
        extensions=template.extensions,
        group_context=LeafNodeTBSContext(group_id, leaf_index),
    )
    new_leaf = sign_leaf_node(suite, signature_priv, tbs)
    _merge(tree, leaf_index, path, publics, fields, new_leaf)
    keys[2 * leaf_index] = leaf_priv
    return PreparedPath(leaf_index, new_leaf, tuple(path), tuple(publics), secrets, chain,
                        TreeKEMPrivate(leaf_index, keys))


def copath_resolution(tree: RatchetTree, copath_child: int,
                      new_leaves: Collection[int]) -> list[int]:
    """The resolution of a copath child without the leaves added by this commit (§7.6)."""
    resolution = tree.resolution(copath_child)
    if not new_leaves:  # the usual Commit (no Adds): nothing to filter, O(1) per node
        return list(resolution)
    return [x for x in resolution if x & 1 or (x >> 1) not in new_leaves]


def _merge(tree: RatchetTree, leaf_index: int, path: Sequence[tuple[int, int]],
           publics: Sequence[bytes], fields: Sequence[bytes], leaf: LeafNode) -> None:
    """Blank the direct path, set the filtered path's nodes (no unmerged leaves) and the
    new leaf (§7.5 "merges UpdatePath into the tree")."""
    tree.blank_direct_path(leaf_index)
    for (p, _), pub, parent_hash in zip(path, publics, fields, strict=True):
        tree.set_node(p, Node.of(ParentNode(pub, parent_hash, ())))
    tree.set_leaf(leaf_index, leaf)


# --------------------------------------------------------------------------- receiver


def apply_update_path(
    tree: RatchetTree,
    sender: int,
    update_path: UpdatePath,
    group_id: bytes,
    *,
    new_leaves: Collection[int] = (),
    now: int | None = None,
    validator: CredentialValidator = DEFAULT_VALIDATOR,
    required_capabilities: RequiredCapabilities | None = None,
) -> None:
    """Validate a received UpdatePath against ``tree`` (the tree after the commit's
    proposals) and merge it (§7.5, §7.6, §12.4.2). On failure ``tree`` is unchanged.

    Checks: one UpdatePathNode per filtered-direct-path node, one ciphertext per node
    of each copath resolution (``new_leaves`` excluded); the LeafNode valid for a
    commit (§7.3) with a fresh encryption key; no public key of the path already in the
    tree; the leaf's ``parent_hash`` equal to the recomputed one (§7.9.2)."""
    path = tree.filtered_path(sender)
    if len(update_path.nodes) != len(path):
        raise ValidationError(f"§7.6: UpdatePath has {len(update_path.nodes)} nodes, the "
                              f"filtered direct path {len(path)}")
    for i, ((_, s), node) in enumerate(zip(path, update_path.nodes, strict=True)):
        if len(node.encrypted_path_secret) != len(copath_resolution(tree, s, new_leaves)):
            raise ValidationError(f"§7.6: UpdatePath node {i} has the wrong number of "
                                  "encrypted path secrets")
    leaf = update_path.leaf_node
    publics = [n.encryption_key for n in update_path.nodes]
    if len({leaf.encryption_key, *publics}) != len(publics) + 1 or any(
            tree.encryption_key_uses(k) for k in publics):
        raise ValidationError("§12.4.2: an UpdatePath public key already appears in the tree")
    check_leaf_node(tree.suite, leaf, group_id=group_id, leaf_index=sender,
                    source=LeafNodeSource.COMMIT, now=now, validator=validator,
                    required_capabilities=required_capabilities)
    check_leaf_fits_tree(tree, leaf, sender)
    fields, leaf_parent_hash = path_parent_hashes(tree, path, publics)
    if leaf.parent_hash != leaf_parent_hash:
        raise VerificationError("§7.9.2: UpdatePath leaf parent_hash does not match")
    _merge(tree, sender, path, publics, fields, leaf)


@dataclass(frozen=True, repr=False)
class ReceivedPath:
    """What a receiver learns from an UpdatePath (§7.5): the decrypted path secret and
    its node, the ``commit_secret`` and the updated private state."""

    node: int
    path_secret: bytes
    commit_secret: bytes
    private: TreeKEMPrivate

    def __repr__(self) -> str:
        return f"ReceivedPath(node={self.node})"


def decrypt_update_path(
    tree: RatchetTree,
    sender: int,
    update_path: UpdatePath,
    private: TreeKEMPrivate,
    group_context: GroupContext,
    *,
    new_leaves: Collection[int] = (),
) -> ReceivedPath:
    """Decrypt our path secret from an UpdatePath already merged into ``tree`` by
    :func:`apply_update_path`, using the provisional GroupContext (§7.5, §12.4.2).

    Finds the filtered-direct-path node whose copath child covers our leaf, decrypts
    with a key we hold for a node of that child's resolution, derives the path secrets
    above it, checks each derived public key against the UpdatePath (VerificationError
    if one differs) and returns ``commit_secret`` = DeriveSecret(last, "path")."""
    suite = tree.suite
    me = private.leaf_index
    if me == sender:
        raise UsageError("the committer does not decrypt its own UpdatePath")
    path = tree.filtered_path(sender)
    if len(path) != len(update_path.nodes):
        raise UsageError("UpdatePath does not fit this tree; apply it first")
    start = next((i for i, (_, s) in enumerate(path) if in_subtree(me, s)), None)
    if start is None:
        raise UsageError(f"leaf {me} is under no copath node of leaf {sender}")
    resolution = copath_resolution(tree, path[start][1], new_leaves)
    slot = next((k for k, x in enumerate(resolution) if private.key_for(x) is not None), None)
    if slot is None:
        raise ValidationError("§7.5: we hold no private key for the copath resolution")
    ciphertexts = update_path.nodes[start].encrypted_path_secret
    if len(ciphertexts) != len(resolution):
        raise ValidationError("§7.6: wrong number of encrypted path secrets")
    ct = ciphertexts[slot]
    key = private.key_for(resolution[slot])
    assert key is not None
    secret = suite.decrypt_with_label(key, UPDATE_PATH_NODE_LABEL, group_context.encode(),
                                      ct.kem_output, ct.ciphertext)
    if len(secret) != suite.hash_length:
        raise ValidationError("§7.4: decrypted path secret has the wrong length")

    decrypted = secret
    keys: dict[int, bytes] = {}
    for (p, _), node in zip(path[start:], update_path.nodes[start:], strict=True):
        priv, pub = node_key_pair(suite, secret)
        if pub != node.encryption_key:
            raise VerificationError(f"§7.5: derived public key differs from UpdatePath "
                                    f"node {p}")
        keys[p] = priv
        secret = next_path_secret(suite, secret)
    stale = direct_path(2 * sender, tree.n_leaves)
    updated = private.without(stale).pruned(tree).with_keys(keys)
    return ReceivedPath(path[start][0], decrypted, secret, updated)
