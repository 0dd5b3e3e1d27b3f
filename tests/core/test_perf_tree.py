"""Structural tests of the join fast paths (RFC 9420 §7.2, §7.8, §7.9, §12.4.3.1): the
hand-assembled hash and signature inputs are byte-for-byte the encodings of the declared
structs, and a join decodes, encodes, hashes and verifies each thing exactly as often as
the protocol needs. No timing: counts only."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from mls_core import ciphersuite, key_package, tree_validation
from mls_core.ciphersuite import CipherSuite, get_suite
from mls_core.credentials import Credential
from mls_core.errors import ValidationError, VerificationError
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.nodes import LeafNode, LeafNodeSource, Lifetime, Node, NodeType, ParentNode
from mls_core.parent_hash import ParentHashInput, compute_parent_hash
from mls_core.proposals import Add, Remove
from mls_core.ratchet_tree import (
    LeafNodeHashInput,
    ParentNodeHashInput,
    RatchetTree,
    TreeHashInput,
    gc_paused,
)
from mls_core.tree_validation import check_unique_keys, validate_tree

NOW = 1_800_000_000


def _leaf(suite: CipherSuite, name: bytes, sig_priv: bytes | None = None) -> LeafNode:
    if sig_priv is None:
        sig_priv, _ = suite.generate_signature_key_pair()
    kp, _ = create_key_package(suite, Credential.basic(name), sig_priv, now=NOW)
    return kp.leaf_node


def _group(suite_id: int, size: int) -> tuple[Group, list[Group]]:
    """A creator and ``size - 1`` joined members; everyone has committed once, so the
    tree has non-blank parents, parent hashes and commit-sourced leaves."""
    suite = get_suite(suite_id)
    sig, _ = suite.generate_signature_key_pair()
    creator = Group.create(suite_id, Credential.basic(b"creator"), sig, now=NOW)
    members: list[Group] = []
    for i in range(1, size):
        msig, _ = suite.generate_signature_key_pair()
        kp, priv = create_key_package(suite, Credential.basic(b"m%d" % i), msig, now=NOW)
        result = creator.commit([Add(kp)], now=NOW)
        creator.merge_pending_commit()
        for m in members:
            m.process(result.commit, now=NOW)
        assert result.welcome is not None
        members.append(Group.join(result.welcome, kp, priv, now=NOW))
    for committer in members:
        result = committer.commit(now=NOW)
        committer.merge_pending_commit()
        for other in [creator, *members]:
            if other is not committer:
                other.process(result.commit, now=NOW)
    return creator, members


@contextmanager
def _counting(obj: Any, name: str, counter: list[int]) -> Iterator[None]:
    """Count calls of ``obj.name`` (an instance or class attribute) within the block."""
    original: Callable[..., Any] = getattr(obj, name)
    own = name in vars(obj)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original(*args, **kwargs)

    setattr(obj, name, wrapper)
    try:
        yield
    finally:
        if own:
            setattr(obj, name, original)
        else:
            delattr(obj, name)


# --------------------------------------------------------------------------- byte equality


@pytest.mark.parametrize("suite_id", [1, 2, 5])  # SHA-256, and SHA-512 (64-byte hashes)
def test_tree_hash_inputs_equal_declared_structs(suite_id: int) -> None:
    suite = get_suite(suite_id)
    tree = RatchetTree.create(suite, _leaf(suite, b"a"))
    leaf = _leaf(suite, b"b")
    for index, value in ((0, leaf), (5, None), (70_000, leaf)):
        expected = suite.hash(TreeHashInput(NodeType.LEAF,
                                            LeafNodeHashInput(index, value)).encode())
        assert tree._hash_leaf(index, value) == expected
    h = suite.hash_length
    parent = ParentNode(b"\x01" * 32, b"\x02" * h, (1, 3, 200))
    for node, lh, rh in ((parent, b"\x03" * h, b"\x04" * h), (None, b"\x05" * h, b"")):
        expected = suite.hash(TreeHashInput(NodeType.PARENT,
                                            ParentNodeHashInput(node, lh, rh)).encode())
        assert tree._hash_parent(node, lh, rh) == expected


@pytest.mark.parametrize("sizes", [(32, 0, 32), (32, 32, 64), (65, 64, 48), (133, 100, 0)])
def test_parent_hash_input_equals_declared_struct(sizes: tuple[int, int, int]) -> None:
    suite = get_suite(1)
    key, ph, osth = (bytes([i]) * n for i, n in enumerate(sizes, 1))
    assert compute_parent_hash(suite, key, ph, osth) == suite.hash(
        ParentHashInput(key, ph, osth).encode())


@pytest.mark.parametrize("sig_len", [0, 63, 64, 72, 132, 16_384])
@pytest.mark.parametrize("source", [LeafNodeSource.KEY_PACKAGE, LeafNodeSource.UPDATE,
                                    LeafNodeSource.COMMIT])
def test_tbs_bytes_equal_declared_tbs(source: LeafNodeSource, sig_len: int) -> None:
    """LeafNodeTBS from the leaf's encoding minus its signature (every varint length
    class of the signature: 1, 2 and 4 bytes), fresh and decoded (memoized wire)."""
    suite = get_suite(1)
    base = _leaf(suite, b"tbs")
    data: Lifetime | bytes | None = {LeafNodeSource.KEY_PACKAGE: base.source_data,
                    LeafNodeSource.UPDATE: None,
                    LeafNodeSource.COMMIT: b"\x07" * 32}[source]
    leaf = LeafNode(base.encryption_key, base.signature_key, base.credential,
                    base.capabilities, source, data, base.extensions, b"\x09" * sig_len)
    for value in (leaf, LeafNode.decode(leaf.encode())):
        assert value.to_be_signed_bytes(b"group", 3) == \
            value.to_be_signed(b"group", 3).encode()


# --------------------------------------------------------------------------- counts


def test_join_decodes_verifies_and_hashes_once_per_node(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Joining a 5-member group: one LeafNode decode and one LeafNodeTBS signature check
    per member, no LeafNode re-encoding (the decoded wire is reused for signatures and
    hashes), and each node's tree hash computed once."""
    creator, _ = _group(1, 5)
    suite = creator.suite
    kp_sig, _ = suite.generate_signature_key_pair()
    kp, priv = create_key_package(suite, Credential.basic(b"joiner"), kp_sig, now=NOW)
    result = creator.commit([Add(kp)], now=NOW)
    creator.merge_pending_commit()
    assert result.welcome is not None
    members = sum(1 for _ in creator.tree.leaves())
    leaf_codec = LeafNode.codec()
    decodes, encodes, leaf_hashes, parent_hashes = [0], [0], [0], [0]
    checked: list[int] = []
    original = key_package.verify_leaf_signatures

    def verify(suite: CipherSuite, leaves: Sequence[tuple[int, LeafNode]],
               group_id: bytes) -> None:
        checked.extend(i for i, _ in leaves)
        original(suite, leaves, group_id)

    monkeypatch.setattr(tree_validation, "verify_leaf_signatures", verify)
    LeafNode.decode(kp.leaf_node.encode())  # compile the codec outside the counts
    with _counting(leaf_codec, "decode", decodes), _counting(leaf_codec, "encode", encodes), \
            _counting(RatchetTree, "_hash_leaf", leaf_hashes), \
            _counting(RatchetTree, "_hash_parent", parent_hashes):
        joined = Group.join(result.welcome, kp, priv, now=NOW)
    assert joined.epoch_authenticator == creator.epoch_authenticator
    assert decodes[0] == members
    assert encodes[0] == 0
    assert sorted(checked) == [i for i, _ in creator.tree.leaves()]  # each leaf, once
    width = creator.tree.width
    # every node once; at most a few extra for the "original sibling" hashes of §7.9
    # under parents with unmerged leaves (the new member is unmerged above it)
    assert leaf_hashes[0] + parent_hashes[0] >= width
    assert leaf_hashes[0] + parent_hashes[0] <= width + 2 * width.bit_length()


def test_tree_hash_of_decoded_tree_hashes_each_node_once() -> None:
    creator, _ = _group(3, 6)
    tree = RatchetTree.decode(creator.suite, creator.tree.encode())
    leaves, parents = [0], [0]
    with _counting(RatchetTree, "_hash_leaf", leaves), \
            _counting(RatchetTree, "_hash_parent", parents):
        assert tree.tree_hash() == creator.tree.tree_hash()
        assert (leaves[0], parents[0]) == (tree.n_leaves, tree.n_leaves - 1)
        assert tree.tree_hash() == creator.tree.tree_hash()
        assert (leaves[0], parents[0]) == (tree.n_leaves, tree.n_leaves - 1)  # cached
        copy = tree.copy()
        copy.set_leaf(1, None)
        copy.tree_hash()
        # the changed leaf and its ancestors only
        depth = tree.n_leaves.bit_length() - 1
        assert (leaves[0], parents[0]) == (tree.n_leaves + 1, tree.n_leaves - 1 + depth)


def test_validate_tree_still_checks_every_leaf_signature() -> None:
    """§12.4.3.1 / §7.3: one bad leaf signature among valid ones fails validation (the
    parents are blank, so no parent hash covers the leaf and only its signature can)."""
    suite = get_suite(1)
    leaves = [_leaf(suite, b"m%d" % i) for i in range(4)]
    nodes: list[Node | None] = [Node.of(leaves[0]), None, Node.of(leaves[1]), None,
                                Node.of(leaves[2]), None, Node.of(leaves[3])]
    validate_tree(RatchetTree(suite, nodes), b"group", now=NOW)
    leaf = leaves[2]
    bad = bytearray(leaf.signature)
    bad[0] ^= 1
    nodes[4] = Node.of(LeafNode(leaf.encryption_key, leaf.signature_key, leaf.credential,
                                leaf.capabilities, leaf.leaf_node_source, leaf.source_data,
                                leaf.extensions, bytes(bad)))
    with pytest.raises(VerificationError, match="invalid signature on LeafNode"):
        validate_tree(RatchetTree(suite, nodes), b"group", now=NOW)


def test_duplicate_keys_are_still_found() -> None:
    suite = get_suite(1)
    sig, _ = suite.generate_signature_key_pair()
    a, b = _leaf(suite, b"a", sig), _leaf(suite, b"b", sig)
    tree = RatchetTree(suite, [Node.of(a), None, Node.of(b)])
    assert tree.max_key_uses() == 2
    with pytest.raises(ValidationError, match="signature_key appears twice"):
        check_unique_keys(tree)
    same = RatchetTree(suite, [Node.of(a), None, Node.of(a)])
    with pytest.raises(ValidationError, match="encryption_key appears twice"):
        check_unique_keys(same)
    fine = RatchetTree(suite, [Node.of(a), None, Node.of(_leaf(suite, b"c"))])
    assert fine.max_key_uses() == 1
    check_unique_keys(fine)


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector_state(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), gc_paused():
            raise RuntimeError("boom")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("suite_id", [1, 2])  # Ed25519, ECDSA P-256
def test_batch_verification_matches_one_by_one(suite_id: int, threads: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch split across threads (or not) gives, in order, exactly the answers of
    one-by-one VerifyWithLabel, bad signatures included (§5.1.2)."""
    monkeypatch.setattr(ciphersuite, "_verify_workers", lambda count: threads)
    suite = get_suite(suite_id)
    keys = [suite.generate_signature_key_pair() for _ in range(4)]
    items: list[tuple[bytes, bytes, bytes]] = []
    for i in range(300):
        priv, pub = keys[i % 4]
        content = b"content %d" % i
        sig = suite.sign_with_label(priv, b"LeafNodeTBS", content)
        if i in (0, 131, 299):
            content += b"!"  # no longer what was signed
        items.append((pub, content, sig))
    expected = [suite.verify_with_label(pk, b"LeafNodeTBS", c, s) for pk, c, s in items]
    assert expected.count(False) == 3
    assert suite.verify_many_with_label("LeafNodeTBS", items) == expected
    assert suite.verify_many_with_label(b"LeafNodeTBS", items[:5]) == expected[:5]
    monkeypatch.setattr(ciphersuite, "_verify_workers", lambda count: 1)
    assert suite.verify_many_with_label(b"LeafNodeTBS", []) == []


def test_verify_workers_scale_with_batch_size() -> None:
    assert ciphersuite._verify_workers(1) == 1
    assert ciphersuite._verify_workers(127) == 1
    assert 1 <= ciphersuite._verify_workers(10_000) <= 8


def test_batch_leaf_verification_names_the_first_bad_leaf() -> None:
    suite = get_suite(1)
    leaves = [(i, _leaf(suite, b"m%d" % i)) for i in range(3)]
    key_package.verify_leaf_signatures(suite, leaves, b"group")
    bad = leaves[1][1]
    forged = LeafNode(bad.encryption_key, bad.signature_key, bad.credential,
                      bad.capabilities, bad.leaf_node_source, bad.source_data,
                      bad.extensions, bytes(64))
    with pytest.raises(VerificationError, match="at leaf 7"):
        key_package.verify_leaf_signatures(suite, [leaves[0], (7, forged), (9, forged)],
                                           b"group")


@pytest.mark.parametrize("context_len", [0, 63, 64, 20_000])
def test_expand_with_label_builds_kdf_label(context_len: int) -> None:
    """ExpandWithLabel (§8) with its cached label head equals KDF.Expand over KDFLabel
    built in full, for str and bytes labels and every context length class."""
    suite = get_suite(1)
    secret, context = b"\x11" * 32, b"\x22" * context_len
    info = bytearray(b"\x00\x2a")
    for field in (b"MLS 1.0 my label", context):
        n = len(field)
        info += bytes([n]) if n < 64 else (0x4000 | n).to_bytes(2, "big") if n < 16384 \
            else (0x80000000 | n).to_bytes(4, "big")
        info += field
    expected = suite.expand(secret, bytes(info), 42)
    for label in ("my label", b"my label", "my label"):
        assert suite.expand_with_label(secret, label, context, 42) == expected


def test_batch_verification_without_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no thread can be started, the batch is verified on the calling thread."""
    def no_threads(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(ciphersuite, "_verify_workers", lambda count: 3)
    monkeypatch.setattr(ciphersuite, "ThreadPoolExecutor", no_threads)
    suite = get_suite(1)
    priv, pub = suite.generate_signature_key_pair()
    good = suite.sign_with_label(priv, b"L", b"m")
    items = [(pub, b"m", good), (pub, b"x", good), (pub, b"m", good)]
    assert suite.verify_many_with_label(b"L", items) == [True, False, True]


def test_first_tree_hash_fills_every_resolution() -> None:
    """The bulk walk of the first tree hash also caches each node's resolution (§4.1.1),
    equal to the lazily computed one, unmerged leaves and blanks included."""
    creator, _ = _group(1, 6)
    suite = creator.suite
    for name in (b"late-1", b"late-2"):  # unmerged leaves below non-blank parents
        sig, _ = suite.generate_signature_key_pair()
        kp, _ = create_key_package(suite, Credential.basic(name), sig, now=NOW)
        creator.commit([Add(kp)], force_path=False, now=NOW)
        creator.merge_pending_commit()
    creator.commit([Remove(2)], force_path=False, now=NOW)  # a blank leaf and path
    creator.merge_pending_commit()
    tree = RatchetTree.decode(suite, creator.tree.encode())
    tree.tree_hash()
    cached = [tree._resolutions[x] for x in range(tree.width)]
    assert None not in cached
    fresh = RatchetTree.decode(suite, creator.tree.encode())
    assert [fresh.resolution(x) for x in range(fresh.width)] == cached
    assert any(len(r) > 1 and r[0] & 1 for r in cached)  # a parent with unmerged leaves


def test_first_commit_after_join_resolves_nothing_anew() -> None:
    """A joiner's first Commit needs the resolution of every copath node of the
    committer; the join already cached them, so none is computed while processing."""
    creator, _ = _group(1, 4)
    suite = creator.suite
    sig, _ = suite.generate_signature_key_pair()
    kp, priv = create_key_package(suite, Credential.basic(b"joiner"), sig, now=NOW)
    result = creator.commit([Add(kp)], now=NOW)
    creator.merge_pending_commit()
    assert result.welcome is not None
    joined = Group.join(result.welcome, kp, priv, now=NOW)
    commit = creator.commit(now=NOW)
    creator.merge_pending_commit()
    resolved = [0]
    with _counting(RatchetTree, "_resolve", resolved):
        joined.process(commit.commit, now=NOW)
    assert resolved[0] == 0
    assert joined.epoch_authenticator == creator.epoch_authenticator


def test_validate_tree_checks_credential_support_from_the_counts() -> None:
    """§7.3 on join: a credential type in use that one member does not support fails
    validation (checked from the tree's counts, not by rescanning every leaf)."""
    from mls_core.key_package import default_capabilities

    suite = get_suite(1)
    leaves = []
    for i, credentials in enumerate(((1, 2), (2,), (1, 2))):  # member 1 lacks basic (1)
        sig, _ = suite.generate_signature_key_pair()
        kp, _ = create_key_package(suite, Credential.basic(b"c%d" % i), sig, now=NOW,
                                   capabilities=default_capabilities(credentials=credentials))
        leaves.append(kp.leaf_node)
    tree = RatchetTree(suite, [Node.of(leaves[0]), None, Node.of(leaves[2])])
    validate_tree(tree, b"group", now=NOW)
    tree.set_leaf(1, leaves[1])
    with pytest.raises(ValidationError, match=r"credential types \[1\]"):
        validate_tree(tree, b"group", now=NOW)
