"""Secret tree and sender ratchets (RFC 9420 §9), sender-data keys (§6.3.2), reuse guard
(§6.3.1).

The secret tree of an epoch is derived lazily from ``encryption_secret``: only the nodes
on the paths to leaves actually used are ever computed, and a parent secret is dropped as
soon as both children are derived (§9.2). Reaching a leaf turns its secret into a
handshake and an application :class:`HashRatchet` and drops the leaf secret. Memory is
O(log n) per leaf in use, so trees with 10,000+ leaves cost nothing upfront.

A receiving ratchet hands out each generation's key once: consumed keys are deleted, a
second lookup raises :class:`~mls_core.errors.ReplayError`. Keys of skipped generations
are retained for out-of-order delivery, at most ``max_retained`` per ratchet (oldest
evicted first), and a generation more than ``max_forward`` ahead is refused without
touching the ratchet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated, NamedTuple

from . import tree_math
from .codec import Struct, Uint8, Uint16, Uint32, Uint64, VarBytes, Vec
from .errors import DecodeError, MLSError, ProtocolError, ReplayError, UsageError

if TYPE_CHECKING:
    from .ciphersuite import CipherSuite

DEFAULT_MAX_RETAINED = 128
DEFAULT_MAX_FORWARD = 1024
MAX_GENERATION = 0xFFFFFFFF  # SenderData.generation is a uint32 (§6.3.2)
REUSE_GUARD_SIZE = 4

_STORAGE_VERSION = 1

# ContentType values (§6): reserved(0), application(1), proposal(2), commit(3).
_APPLICATION = 1
_HANDSHAKE_TYPES = (2, 3)


class RatchetType(IntEnum):
    """The two sender ratchets rooted at every leaf of the secret tree (§9)."""

    HANDSHAKE = 0
    APPLICATION = 1

    @property
    def label(self) -> bytes:
        return b"handshake" if self is RatchetType.HANDSHAKE else b"application"


def ratchet_type_for(content_type: int) -> RatchetType:
    """Application messages use the application ratchet, proposals and commits the
    handshake ratchet (§6.3.1)."""
    if content_type == _APPLICATION:
        return RatchetType.APPLICATION
    if content_type in _HANDSHAKE_TYPES:
        return RatchetType.HANDSHAKE
    raise ProtocolError(f"§6: content type {content_type} has no sender ratchet")


class RatchetKey(NamedTuple):
    """One generation's AEAD key and (unguarded) nonce from a sender ratchet (§9.1)."""

    generation: int
    key: bytes
    nonce: bytes

    def __repr__(self) -> str:
        return f"RatchetKey(generation={self.generation}, <redacted>)"


# --------------------------------------------------------------------------- §6.3 helpers


def new_reuse_guard() -> bytes:
    """A fresh random 4-byte reuse guard (§6.3.1)."""
    return os.urandom(REUSE_GUARD_SIZE)


def apply_reuse_guard(nonce: bytes, reuse_guard: bytes) -> bytes:
    """XOR the reuse guard into the first four bytes of the ratchet nonce (§6.3.1)."""
    if len(reuse_guard) != REUSE_GUARD_SIZE or len(nonce) < REUSE_GUARD_SIZE:
        raise UsageError("reuse guard must be 4 bytes and the nonce at least 4 bytes")
    head = int.from_bytes(nonce[:REUSE_GUARD_SIZE], "big") ^ int.from_bytes(reuse_guard, "big")
    return head.to_bytes(REUSE_GUARD_SIZE, "big") + nonce[REUSE_GUARD_SIZE:]


def sender_data_key_nonce(suite: CipherSuite, sender_data_secret: bytes,
                          ciphertext: bytes) -> tuple[bytes, bytes]:
    """(sender_data_key, sender_data_nonce) from the first KDF.Nh bytes of the content
    ciphertext, or all of it if shorter (§6.3.2)."""
    return suite.sender_data_key_nonce(sender_data_secret, ciphertext)


# --------------------------------------------------------------------------- hash ratchet


def _check_limits(max_retained: int, max_forward: int) -> None:
    if not 0 <= max_retained <= MAX_GENERATION or not 0 <= max_forward <= MAX_GENERATION:
        raise UsageError("max_retained and max_forward must be in 0..2^32-1")


class HashRatchet:
    """A sender ratchet (§9.1): ratchet_secret_[j] yields key_[j], nonce_[j] and
    ratchet_secret_[j+1] via DeriveTreeSecret with labels "key", "nonce", "secret".

    ``generation`` is the next generation not yet derived. Generations below it are
    either retained (skipped, still decryptable once) or gone.
    """

    __slots__ = (
        "_floor",
        "_generation",
        "_retained",
        "_secret",
        "_suite",
        "max_forward",
        "max_retained",
    )

    def __init__(self, suite: CipherSuite, secret: bytes, *, generation: int = 0,
                 max_retained: int = DEFAULT_MAX_RETAINED,
                 max_forward: int = DEFAULT_MAX_FORWARD) -> None:
        _check_limits(max_retained, max_forward)
        if not 0 <= generation <= MAX_GENERATION + 1:
            raise UsageError("ratchet generation out of range")
        self._suite = suite
        self._secret = secret
        self._generation = generation
        # generation -> (key, nonce), in ascending generation order (insertion order)
        self._retained: dict[int, tuple[bytes, bytes]] = {}
        # generations below the floor were evicted or skipped past without retention
        self._floor = generation
        self.max_retained = max_retained
        self.max_forward = max_forward

    def __repr__(self) -> str:
        return f"HashRatchet(generation={self._generation}, retained={len(self._retained)})"

    @property
    def generation(self) -> int:
        """The next generation this ratchet would derive."""
        return self._generation

    @property
    def retained_generations(self) -> tuple[int, ...]:
        """Skipped generations whose keys are still held, oldest first."""
        return tuple(self._retained)

    def _step(self) -> tuple[bytes, bytes]:
        """Derive key/nonce of the current generation, then replace the ratchet secret by
        the next one (the old secret is consumed, §9.2)."""
        gen = self._generation
        if gen > MAX_GENERATION:
            raise ProtocolError("§9.1: sender ratchet exhausted (generation is a uint32)")
        key, nonce, self._secret = self._suite.ratchet_step(self._secret, gen,
                                                             last=gen == MAX_GENERATION)
        self._generation = gen + 1
        return key, nonce

    def _skip_secret(self) -> None:
        """Advance past the current generation without deriving its key and nonce."""
        gen = self._generation
        s = self._suite
        self._secret = s.derive_tree_secret(self._secret, b"secret", gen, s.hash_length)
        self._generation = gen + 1

    def _retain(self, generation: int, key: bytes, nonce: bytes) -> None:
        self._retained[generation] = (key, nonce)
        while len(self._retained) > self.max_retained:
            oldest = next(iter(self._retained))
            del self._retained[oldest]
            self._floor = max(self._floor, oldest + 1)

    def _snapshot(self) -> _RatchetState:
        """What :meth:`get`/:meth:`next` may change, for :meth:`_restore`: no copy of
        the ratchet itself (retained keys copied only if there are any)."""
        retained = dict(self._retained) if self._retained else None
        return self._secret, self._generation, self._floor, retained

    def _restore(self, state: _RatchetState) -> None:
        self._secret, self._generation, self._floor, retained = state
        self._retained = {} if retained is None else retained

    def copy(self) -> HashRatchet:
        """An independent copy (for checkpoints; see :meth:`SecretTree.checkpoint`)."""
        new = HashRatchet.__new__(HashRatchet)
        for slot in HashRatchet.__slots__:
            setattr(new, slot, getattr(self, slot))
        new._retained = dict(self._retained)
        return new

    def next(self) -> RatchetKey:
        """Key and nonce for sending the next message (§6.3.1). Each is used once."""
        gen = self._generation
        key, nonce = self._step()
        return RatchetKey(gen, key, nonce)

    def get(self, generation: int) -> RatchetKey:
        """Key and nonce of ``generation`` for receiving; the key is consumed (deleted).

        Raises ReplayError for a generation already consumed, ProtocolError for one that
        fell out of the retention window or lies more than ``max_forward`` ahead (the
        ratchet is then left untouched)."""
        if not 0 <= generation <= MAX_GENERATION:
            raise ProtocolError("§6.3.2: generation out of range")
        if generation < self._generation:
            return self._take_retained(generation)
        if generation - self._generation > self.max_forward:
            raise ProtocolError("§9.2: generation too far ahead of the sender ratchet")
        keep_from = generation - self.max_retained
        while self._generation < generation:
            gen = self._generation
            if gen < keep_from:
                self._skip_secret()
                self._floor = max(self._floor, gen + 1)
            else:
                self._retain(gen, *self._step())
        key, nonce = self._step()
        return RatchetKey(generation, key, nonce)

    def _take_retained(self, generation: int) -> RatchetKey:
        kn = self._retained.pop(generation, None)
        if kn is not None:
            return RatchetKey(generation, *kn)
        if generation < self._floor:
            raise ProtocolError("§9.2: generation is older than the retained window")
        raise ReplayError("§9.2: key for this generation was already consumed")

    # --- storage ---------------------------------------------------------------
    def _export(self) -> _StoredRatchet:
        return _StoredRatchet(
            generation=self._generation,
            floor=self._floor,
            secret=self._secret,
            retained=tuple(_StoredKey(g, k, n) for g, (k, n) in self._retained.items()),
        )

    @classmethod
    def _import(cls, suite: CipherSuite, st: _StoredRatchet, max_retained: int,
                max_forward: int) -> HashRatchet:
        exhausted = st.generation == MAX_GENERATION + 1
        if st.generation > MAX_GENERATION + 1 or st.floor > st.generation:
            raise DecodeError("SecretTree: ratchet generation out of range")
        if len(st.secret) != (0 if exhausted else suite.hash_length):
            raise DecodeError("SecretTree: ratchet secret has the wrong length")
        r = cls(suite, st.secret, generation=st.generation, max_retained=max_retained,
                max_forward=max_forward)
        r._floor = st.floor
        last = st.floor - 1
        for k in st.retained:
            if not last < k.generation < st.generation:
                raise DecodeError("SecretTree: retained generations out of order")
            if len(k.key) != suite.aead_key_size or len(k.nonce) != suite.aead_nonce_size:
                raise DecodeError("SecretTree: retained key has the wrong length")
            last = k.generation
            r._retained[k.generation] = (k.key, k.nonce)
        if len(r._retained) > max_retained:
            raise DecodeError("SecretTree: more retained keys than max_retained")
        return r


# --------------------------------------------------------------------------- secret tree


#: (secret, generation, floor, retained keys or None) of a HashRatchet
_RatchetState = tuple[bytes, int, int, dict[int, tuple[bytes, bytes]] | None]


class SecretTreeCheckpoint(NamedTuple):
    """State of one leaf of a SecretTree captured by :meth:`SecretTree.checkpoint`: the
    leaf's two ratchets and their states then, or (a leaf not used yet) the frontier."""

    leaf: int
    ratchets: tuple[HashRatchet, HashRatchet] | None
    nodes: dict[int, bytes] | None
    states: tuple[_RatchetState, _RatchetState] | None = None


class SecretTree:
    """The secret tree of one epoch (§9) over ``n_leaves`` leaves, rooted at
    ``encryption_secret``, with lazily created per-leaf sender ratchets."""

    def __init__(self, suite: CipherSuite, encryption_secret: bytes, n_leaves: int, *,
                 max_retained: int = DEFAULT_MAX_RETAINED,
                 max_forward: int = DEFAULT_MAX_FORWARD) -> None:
        if not 0 < n_leaves <= tree_math.MAX_LEAVES:
            raise UsageError("secret tree needs 1..2^32 leaves")
        if len(encryption_secret) != suite.hash_length:
            raise UsageError("encryption_secret must be KDF.Nh bytes")
        _check_limits(max_retained, max_forward)
        self._suite = suite
        self._n_leaves = n_leaves
        self._max_retained = max_retained
        self._max_forward = max_forward
        # Secrets of the not-yet-expanded frontier nodes. Every leaf without ratchets has
        # exactly one ancestor-or-self here.
        self._nodes: dict[int, bytes] = {tree_math.root(n_leaves): encryption_secret}
        self._ratchets: dict[int, tuple[HashRatchet, HashRatchet]] = {}

    def __repr__(self) -> str:
        return (f"SecretTree(n_leaves={self._n_leaves}, frontier={len(self._nodes)}, "
                f"leaves_in_use={len(self._ratchets)})")

    @property
    def suite(self) -> CipherSuite:
        return self._suite

    @property
    def n_leaves(self) -> int:
        return self._n_leaves

    @property
    def stored_node_count(self) -> int:
        """How many tree-node secrets are currently held (for tests and diagnostics)."""
        return len(self._nodes)

    # --- derivation --------------------------------------------------------------
    def _has_leaves(self, node: int) -> bool:
        """Whether the subtree under ``node`` holds a real leaf (< n_leaves)."""
        leftmost = node - ((1 << tree_math.level(node)) - 1)
        return leftmost < tree_math.node_width(self._n_leaves)

    def _take_leaf_secret(self, leaf: int) -> bytes:
        """Derive down to ``leaf``, keep the off-path siblings, drop every consumed
        parent secret (§9, §9.2), and remove the leaf secret from the tree."""
        target = tree_math.leaf_to_node(leaf)
        x = tree_math.root(self._n_leaves)
        while x not in self._nodes:
            if x == target:  # unreachable: _check_cover guards loaded state
                raise ProtocolError("§9: secret tree holds no secret for this leaf")
            x = tree_math.left(x) if target < x else tree_math.right(x)
        secret = self._nodes.pop(x)
        s = self._suite
        while x != target:
            lx, rx = tree_math.left(x), tree_math.right(x)
            ls = s.expand_with_label(secret, b"tree", b"left", s.hash_length)
            rs = s.expand_with_label(secret, b"tree", b"right", s.hash_length)
            if target < x:
                x, secret, other, other_secret = lx, ls, rx, rs
            else:
                x, secret, other, other_secret = rx, rs, lx, ls
            if self._has_leaves(other):
                self._nodes[other] = other_secret
        return secret

    def _leaf_ratchets(self, leaf: int) -> tuple[HashRatchet, HashRatchet]:
        if not 0 <= leaf < self._n_leaves:
            raise ProtocolError("§9: leaf index outside the secret tree")
        pair = self._ratchets.get(leaf)
        if pair is None:
            leaf_secret = self._take_leaf_secret(leaf)
            pair = (self._new_ratchet(leaf_secret, RatchetType.HANDSHAKE),
                    self._new_ratchet(leaf_secret, RatchetType.APPLICATION))
            self._ratchets[leaf] = pair
        return pair

    def _new_ratchet(self, leaf_secret: bytes, kind: RatchetType) -> HashRatchet:
        s = self._suite
        root = s.expand_with_label(leaf_secret, kind.label, b"", s.hash_length)
        return HashRatchet(s, root, max_retained=self._max_retained,
                           max_forward=self._max_forward)

    # --- public API --------------------------------------------------------------
    def ratchet(self, leaf: int, kind: RatchetType) -> HashRatchet:
        """The handshake or application ratchet of ``leaf`` (created on first use)."""
        return self._leaf_ratchets(leaf)[kind]

    def next(self, leaf: int, content_type: int) -> RatchetKey:
        """Sender side: (generation, key, nonce) for our next message of ``content_type``
        from our own ``leaf``. Apply :func:`apply_reuse_guard` to the nonce before use."""
        return self.ratchet(leaf, ratchet_type_for(content_type)).next()

    def get(self, leaf: int, content_type: int, generation: int) -> RatchetKey:
        """Receiver side: key and nonce of ``leaf``'s ``generation``; consumed by the call
        (see :meth:`HashRatchet.get` for the errors)."""
        return self.ratchet(leaf, ratchet_type_for(content_type)).get(generation)

    # --- transactions -------------------------------------------------------------
    def checkpoint(self, leaf: int) -> SecretTreeCheckpoint:
        """Capture what a ``next``/``get`` on ``leaf`` may change, so that a message that
        later fails verification can be undone with :meth:`restore` (atomic processing).
        Cheap, as it is taken for every message received: the few scalars of that
        leaf's two ratchets (no copy of them), or the frontier the first time the leaf
        is used."""
        pair = self._ratchets.get(leaf)
        if pair is None:
            return SecretTreeCheckpoint(leaf, None, dict(self._nodes))
        return SecretTreeCheckpoint(leaf, pair, None, (pair[0]._snapshot(), pair[1]._snapshot()))

    def restore(self, cp: SecretTreeCheckpoint) -> None:
        """Undo everything done to ``cp.leaf`` since :meth:`checkpoint`."""
        if cp.ratchets is None or cp.states is None:
            self._ratchets.pop(cp.leaf, None)
            if cp.nodes is not None:
                self._nodes = cp.nodes
        else:
            for ratchet, state in zip(cp.ratchets, cp.states, strict=True):
                ratchet._restore(state)
            self._ratchets[cp.leaf] = cp.ratchets

    # --- storage -----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Versioned storage encoding of the tree's current state (not a wire format)."""
        return _StoredSecretTree(
            version=_STORAGE_VERSION,
            cipher_suite=self._suite.id,
            n_leaves=self._n_leaves,
            max_retained=self._max_retained,
            max_forward=self._max_forward,
            nodes=tuple(_StoredNode(n, s) for n, s in sorted(self._nodes.items())),
            leaves=tuple(_StoredLeaf(leaf, hs._export(), app._export())
                         for leaf, (hs, app) in sorted(self._ratchets.items())),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SecretTree:
        """Inverse of :meth:`to_bytes`; raises DecodeError on malformed input."""
        from .ciphersuite import get_suite

        st = _StoredSecretTree.decode(data)
        if st.version != _STORAGE_VERSION:
            raise DecodeError(f"SecretTree: unknown storage version {st.version}")
        try:
            suite = get_suite(st.cipher_suite)
            tree = cls(suite, bytes(suite.hash_length), st.n_leaves,
                       max_retained=st.max_retained, max_forward=st.max_forward)
        except MLSError as e:
            raise DecodeError(f"SecretTree: invalid parameters: {e}") from None
        tree._nodes = {}
        width = tree_math.node_width(st.n_leaves)
        for node in st.nodes:
            if node.node >= width or len(node.secret) != suite.hash_length:
                raise DecodeError("SecretTree: invalid stored node")
            tree._nodes[node.node] = node.secret
        for lf in st.leaves:
            if not 0 <= lf.leaf < st.n_leaves or lf.leaf in tree._ratchets:
                raise DecodeError("SecretTree: invalid stored leaf")
            tree._ratchets[lf.leaf] = (
                HashRatchet._import(suite, lf.handshake, st.max_retained, st.max_forward),
                HashRatchet._import(suite, lf.application, st.max_retained, st.max_forward),
            )
        tree._check_cover()
        return tree

    def _check_cover(self) -> None:
        """Every leaf must be reachable exactly once: through one stored ancestor-or-self
        secret, or through its ratchets. Raises DecodeError otherwise."""
        n = self._n_leaves
        cover = set(self._nodes) | {tree_math.leaf_to_node(leaf) for leaf in self._ratchets}
        root = tree_math.root(n)
        total = 0
        for x in cover:
            y = x
            while y != root:
                y = tree_math.parent(y, n)
                if y in cover:
                    raise DecodeError("SecretTree: stored secrets overlap")
            k = tree_math.level(x)
            first_leaf = (x - ((1 << k) - 1)) >> 1
            total += max(0, min(1 << k, n - first_leaf))
        if total != n:
            raise DecodeError("SecretTree: stored secrets do not cover every leaf")


@dataclass(frozen=True)
class _StoredKey(Struct):
    """Storage: a retained key of a skipped generation."""

    generation: Uint32
    key: VarBytes
    nonce: VarBytes


@dataclass(frozen=True)
class _StoredRatchet(Struct):
    """Storage: one HashRatchet (generation may be 2^32 once exhausted)."""

    generation: Uint64
    floor: Uint64
    secret: VarBytes
    retained: Annotated[tuple[_StoredKey, ...], Vec(_StoredKey)]


@dataclass(frozen=True)
class _StoredLeaf(Struct):
    """Storage: the two ratchets of a leaf in use."""

    leaf: Uint32
    handshake: _StoredRatchet
    application: _StoredRatchet


@dataclass(frozen=True)
class _StoredNode(Struct):
    """Storage: a frontier node secret."""

    node: Uint64
    secret: VarBytes


@dataclass(frozen=True)
class _StoredSecretTree(Struct):
    """Storage layout of a SecretTree, version 1."""

    version: Uint8
    cipher_suite: Uint16
    n_leaves: Uint64
    max_retained: Uint32
    max_forward: Uint32
    nodes: Annotated[tuple[_StoredNode, ...], Vec(_StoredNode)]
    leaves: Annotated[tuple[_StoredLeaf, ...], Vec(_StoredLeaf)]
