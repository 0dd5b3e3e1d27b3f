"""Ratchet tree structure, hashes, caching and join validation (RFC 9420 §4, §7, §12.4.3)."""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls_core.ciphersuite import CipherSuite, get_suite
from mls_core.codec import encode_value
from mls_core.credentials import Credential
from mls_core.errors import DecodeError, UsageError, ValidationError, VerificationError
from mls_core.key_package import create_key_package, default_capabilities
from mls_core.nodes import (
    RATCHET_TREE,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    Node,
    ParentNode,
)
from mls_core.parent_hash import verify_parent_hashes
from mls_core.ratchet_tree import RatchetTree, in_subtree, leaf_span
from mls_core.tree_validation import check_leaf_fits_tree, validate_tree
from mls_core.treekem import prepare_update_path

SUITE = get_suite(1)
NOW = 1_800_000_000
GROUP = b"group"


def fake_leaf(i: int) -> LeafNode:
    """An unsigned leaf with unique random keys: enough for structure and hash tests."""
    return LeafNode(os.urandom(32), os.urandom(32), Credential.basic(b"m%d" % i),
                    default_capabilities(), LeafNodeSource.KEY_PACKAGE,
                    Lifetime(0, 2**63), (), b"sig")


def fake_parent(unmerged: tuple[int, ...] = ()) -> Node:
    return Node.of(ParentNode(os.urandom(32), b"", unmerged))


def tree_of(n_members: int) -> RatchetTree:
    tree = RatchetTree.create(SUITE, fake_leaf(0))
    for i in range(1, n_members):
        assert tree.add_leaf(fake_leaf(i)) == i
    return tree


# ---------------------------------------------------------------------- shapes (§7.7)


def test_add_extends_to_powers_of_two() -> None:
    tree = RatchetTree.create(SUITE, fake_leaf(0))
    widths = []
    for i in range(1, 6):
        assert tree.add_leaf(fake_leaf(i)) == i
        widths.append(tree.n_leaves)
    assert widths == [2, 4, 4, 8, 8]
    assert tree.width == 15
    assert [i for i, _ in tree.leaves()] == [0, 1, 2, 3, 4, 5]


def test_add_takes_leftmost_blank_leaf() -> None:
    tree = tree_of(4)
    tree.remove_leaf(2)
    tree.remove_leaf(1)
    assert tree.n_leaves == 4  # leaf 3 keeps the right half alive
    assert tree.add_leaf(fake_leaf(9)) == 1
    assert tree.add_leaf(fake_leaf(10)) == 2
    assert tree.add_leaf(fake_leaf(11)) == 4


def test_add_marks_new_leaf_unmerged_at_nonblank_ancestors() -> None:
    tree = tree_of(3)  # 4 leaves, leaf 3 blank
    tree.set_node(3, fake_parent((1,)))  # root
    tree.set_node(5, fake_parent())
    assert tree.add_leaf(fake_leaf(3)) == 3
    assert tree.parent_node(3).unmerged_leaves == (1, 3)  # type: ignore[union-attr]
    assert tree.parent_node(5).unmerged_leaves == (3,)  # type: ignore[union-attr]
    assert tree.parent_node(1) is None


def test_remove_blanks_path_and_truncates() -> None:
    tree = tree_of(5)  # 8 leaves
    for p in (1, 3, 7, 9, 11):
        tree.set_node(p, fake_parent())
    tree.remove_leaf(1)
    assert tree.n_leaves == 8
    assert tree.node(2) is None and tree.node(1) is None and tree.node(3) is None
    assert tree.node(7) is None and tree.node(9) is not None
    tree.remove_leaf(4)
    assert tree.n_leaves == 4  # right half of the root became empty
    assert tree.width == 7
    assert tree.encryption_key_uses(b"x") == 0
    with pytest.raises(ValidationError):
        tree.remove_leaf(1)  # already blank (§12.1.3)
    with pytest.raises(ValidationError):
        tree.remove_leaf(17)


def test_remove_truncates_repeatedly() -> None:
    tree = tree_of(9)  # 16 leaves
    for i in range(8, 1, -1):
        tree.remove_leaf(i)
    assert tree.n_leaves == 2
    tree.remove_leaf(1)
    assert tree.n_leaves == 1
    assert tree.root == 0


def test_update_replaces_leaf_and_blanks_direct_path() -> None:
    tree = tree_of(4)
    tree.set_node(1, fake_parent())
    tree.set_node(3, fake_parent())
    tree.set_node(5, fake_parent())
    new = fake_leaf(7)
    tree.update_leaf(2, new)
    assert tree.leaf(2) == new
    assert tree.node(5) is None and tree.node(3) is None and tree.node(1) is not None


# ---------------------------------------------------------------------- encoding (§12.4.3.3)


def test_encode_strips_trailing_blanks_and_roundtrips() -> None:
    tree = tree_of(5)
    data = tree.encode()
    assert len(encode_value(RATCHET_TREE, tree.nodes())) > len(data)
    again = RatchetTree.decode(SUITE, data)
    assert again == tree
    assert again.n_leaves == 8
    assert again.tree_hash() == tree.tree_hash()


def _raw(nodes: list[Node | None]) -> bytes:
    return encode_value(RATCHET_TREE, tuple(nodes))


@pytest.mark.parametrize("nodes, why", [
    ([], "empty"),
    ([Node.of(fake_leaf(0)), None], "trailing blank"),
    ([Node.of(fake_leaf(0)), Node.of(fake_leaf(1))], "leaf at a parent position"),
    ([fake_parent()], "parent at a leaf position"),
    ([Node.of(fake_leaf(0)), fake_parent()], "untruncated"),
    ([Node.of(fake_leaf(0)), None, Node.of(fake_leaf(1)), None, None, None,
      Node.of(fake_leaf(2)), fake_parent()], "wrong type late in tree"),
])
def test_malformed_tree_shapes_rejected(nodes: list[Node | None], why: str) -> None:
    with pytest.raises(ValidationError):
        RatchetTree.decode(SUITE, _raw(nodes))


def test_even_length_encoding_is_a_valid_shape() -> None:
    # Leaves 0..2, parent 5 set by leaf 2: the encoding ends with a parent (6 nodes).
    nodes = [Node.of(fake_leaf(0)), None, Node.of(fake_leaf(1)), None,
             Node.of(fake_leaf(2)), fake_parent()]
    tree = RatchetTree.decode(SUITE, _raw(nodes))
    assert tree.width == 7 and tree.node(6) is None


@pytest.mark.parametrize("data", [b"", b"\x05\x01", b"\x01\x07", b"\x02\x01\x01", b"\x40"])
def test_garbage_tree_bytes_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        RatchetTree.decode(SUITE, data)


def test_out_of_range_access() -> None:
    tree = tree_of(2)
    assert tree.leaf(5) is None
    with pytest.raises(UsageError):
        tree.node(3)
    with pytest.raises(UsageError):
        tree.set_node(1, Node.of(fake_leaf(3)))


# ---------------------------------------------------------------------- paths (§4.1)


def test_resolution_example_of_section_4_1_1() -> None:
    tree = RatchetTree(SUITE, [None] * 15)
    for leaf in (0, 1, 3, 4, 5, 7):
        tree.set_leaf(leaf, fake_leaf(leaf))
    tree.set_node(3, fake_parent((1,)))  # X[B]
    tree.set_node(9, fake_parent())  # Y
    assert tree.resolution(3) == (3, 2)
    assert tree.resolution(4) == () and tree.resolution(12) == ()
    assert tree.resolution(7) == (3, 2, 9, 14)
    tree.set_node(9, None)
    assert tree.resolution(7) == (3, 2, 8, 10, 14)  # cache invalidated up the path


def test_filtered_direct_path_example_of_section_4_1_2() -> None:
    tree = RatchetTree(SUITE, [None] * 15)
    for leaf in (0, 1, 4, 5, 6):
        tree.set_leaf(leaf, fake_leaf(leaf))
    for p in (1, 7, 9, 11):  # T, W, X, Y
        tree.set_node(p, fake_parent())
    assert tree.filtered_direct_path(0) == [1, 7]
    assert tree.filtered_direct_path(1) == [1, 7]
    assert tree.filtered_direct_path(4) == [9, 11, 7]
    assert tree.filtered_direct_path(6) == [11, 7]
    assert tree.filtered_copath(6) == [9, 3]


def test_leaf_span() -> None:
    assert leaf_span(0) == (0, 0)
    assert leaf_span(3) == (0, 3)
    assert leaf_span(11) == (4, 7)


# ---------------------------------------------------------------------- caching


class _HashCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = CipherSuite.hash

        def counting(suite: CipherSuite, data: bytes) -> bytes:
            self.calls += 1
            return original(suite, data)

        monkeypatch.setattr(CipherSuite, "hash", counting)


def test_tree_hash_after_one_leaf_change_is_logarithmic(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tree_of(1024)
    before = tree.tree_hash()
    counter = _HashCounter(monkeypatch)
    assert tree.tree_hash() == before
    assert counter.calls == 0  # fully cached

    tree.set_leaf(517, fake_leaf(10_000))
    after = tree.tree_hash()
    assert after != before
    assert counter.calls == 11  # the leaf and its 10 ancestors: log2(1024) + 1

    counter.calls = 0
    tree.update_leaf(3, fake_leaf(10_001))
    tree.tree_hash()
    assert counter.calls <= 2 * 11

    monkeypatch.undo()
    fresh = RatchetTree(SUITE, tree.nodes())  # no caches: recompute everything
    assert fresh.tree_hash() == tree.tree_hash()


def test_copy_is_independent_and_keeps_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tree_of(64)
    h0 = tree.tree_hash()
    staged = tree.copy()
    counter = _HashCounter(monkeypatch)
    assert staged.tree_hash() == h0 and counter.calls == 0
    staged.add_leaf(fake_leaf(99))
    staged.remove_leaf(5)
    assert staged.tree_hash() != h0
    assert tree.tree_hash() == h0  # the original is untouched
    assert tree.leaf(5) is not None and tree.n_leaves == 64
    assert staged.n_leaves == 128


def test_extension_and_truncation_keep_valid_caches() -> None:
    tree = tree_of(4)
    tree.tree_hash()
    tree.add_leaf(fake_leaf(4))
    tree.remove_leaf(4)
    assert tree.n_leaves == 4
    assert tree.tree_hash() == RatchetTree(SUITE, tree.nodes()).tree_hash()


# ---------------------------------------------------------------------- validation


def _member(name: bytes) -> tuple[LeafNode, bytes, bytes]:
    sk, _ = SUITE.generate_signature_key_pair()
    kp, priv = create_key_package(SUITE, Credential.basic(name), sk, now=NOW)
    return kp.leaf_node, priv.encryption_priv, sk


def signed_tree() -> RatchetTree:
    """A five-member tree with parent hashes: each member commits once after joining."""
    leaf, _, sk0 = _member(b"m0")
    tree = RatchetTree.create(SUITE, leaf)
    keys = [sk0]
    for i in range(1, 5):
        leaf, _, sk = _member(b"m%d" % i)
        tree.add_leaf(leaf)
        keys.append(sk)
        prepare_update_path(tree, i - 1, keys[i - 1], GROUP)
    tree.add_leaf(_member(b"late")[0])  # leaves unmerged entries
    return tree


def test_signed_tree_validates() -> None:
    tree = signed_tree()
    assert any(p.unmerged_leaves for _, p in tree.parents())
    validate_tree(tree, GROUP, now=NOW)
    again = RatchetTree.decode(SUITE, tree.encode())
    validate_tree(again, GROUP, now=NOW)


def test_tampered_parent_hash_rejected() -> None:
    tree = signed_tree()
    p, parent = next(tree.parents())
    tree.set_node(p, Node.of(dataclasses.replace(parent, parent_hash=os.urandom(32))))
    with pytest.raises(VerificationError, match="parent-hash valid"):
        verify_parent_hashes(tree)
    with pytest.raises(VerificationError):
        validate_tree(tree, GROUP)


def test_tampered_parent_key_rejected() -> None:
    tree = signed_tree()
    p, parent = next(tree.parents())
    fresh = SUITE.generate_key_pair()[1]
    tree.set_node(p, Node.of(dataclasses.replace(parent, encryption_key=fresh)))
    with pytest.raises(VerificationError):
        verify_parent_hashes(tree)


def test_tampered_leaf_signature_rejected() -> None:
    tree = signed_tree()
    i, leaf = next(tree.leaves())
    tree.set_leaf(i, dataclasses.replace(leaf, credential=Credential.basic(b"mallory")))
    with pytest.raises(VerificationError):
        validate_tree(tree, GROUP)


def test_wrong_group_id_rejected() -> None:
    with pytest.raises(VerificationError):
        validate_tree(signed_tree(), b"other group")


def test_duplicate_keys_rejected() -> None:
    def dup_leaf_key(tree: RatchetTree) -> None:
        (_, a), (j, b) = list(tree.leaves())[:2]
        tree.set_leaf(j, dataclasses.replace(b, encryption_key=a.encryption_key))

    def dup_signature_key(tree: RatchetTree) -> None:
        (_, a), (j, b) = list(tree.leaves())[:2]
        tree.set_leaf(j, dataclasses.replace(b, signature_key=a.signature_key))

    def dup_parent_key(tree: RatchetTree) -> None:
        (_, a), (p, parent) = next(tree.leaves()), next(tree.parents())
        tree.set_node(p, Node.of(dataclasses.replace(parent, encryption_key=a.encryption_key)))

    for tamper, what in ((dup_leaf_key, "encryption_key"), (dup_signature_key, "signature_key"),
                         (dup_parent_key, "encryption_key")):
        tree = signed_tree()
        tamper(tree)
        with pytest.raises(ValidationError, match=what):
            validate_tree(tree, GROUP)


def test_bad_unmerged_leaves_rejected() -> None:
    tree = signed_tree()
    root = tree.root
    parent = tree.parent_node(root)
    assert parent is not None
    for bad in ((5, 5), (6, 5), (7,)):
        broken = tree.copy()
        broken.set_node(root, Node.of(dataclasses.replace(parent, unmerged_leaves=bad)))
        with pytest.raises(ValidationError, match="unmerged"):
            validate_tree(broken, GROUP)


def test_expired_leaf_rejected_only_when_time_given() -> None:
    tree = signed_tree()
    validate_tree(tree, GROUP)
    with pytest.raises(ValidationError, match="lifetime"):
        validate_tree(tree, GROUP, now=NOW + 10**9)


def test_leaf_fits_tree_checks() -> None:
    tree = signed_tree()
    i, leaf = next(tree.leaves())
    check_leaf_fits_tree(tree, _member(b"new")[0], None)
    with pytest.raises(ValidationError):
        check_leaf_fits_tree(tree, leaf, None)  # keys already in the tree
    # replacing one's own leaf may keep the signature key but not the HPKE key
    fresh = dataclasses.replace(leaf, encryption_key=SUITE.generate_key_pair()[1])
    check_leaf_fits_tree(tree, fresh, i)
    with pytest.raises(ValidationError, match="encryption_key"):
        check_leaf_fits_tree(tree, leaf, i)
    picky = dataclasses.replace(fresh, capabilities=default_capabilities(credentials=(2,)))
    with pytest.raises(ValidationError, match="used by other members"):
        check_leaf_fits_tree(tree, picky, i)
    x509 = dataclasses.replace(fresh, credential=Credential.x509([b"cert"]))
    check_leaf_fits_tree(tree, x509, i)  # every member lists basic and x509
    j, other = list(tree.leaves())[1]
    tree.set_leaf(j, dataclasses.replace(other, capabilities=default_capabilities(
        credentials=(1,))))
    with pytest.raises(ValidationError, match="not every member supports"):
        check_leaf_fits_tree(tree, x509, i)
    assert tree.credential_types_in_use() == {1: tree.member_count}
    assert tree.credential_type_support(2) == tree.member_count - 1


# ---------------------------------------------------------------------- properties

_OPS = st.lists(st.tuples(st.sampled_from(["add", "remove", "update", "parent"]),
                          st.integers(0, 40)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(_OPS)
def test_cached_hashes_and_resolutions_match_fresh_tree(ops: list[tuple[str, int]]) -> None:
    """After any sequence of tree operations the cached values equal a cache-free tree's."""
    tree = tree_of(3)
    tree.tree_hash()
    for op, k in ops:
        members = [i for i, _ in tree.leaves()]
        if op == "add" or len(members) < 2:
            tree.add_leaf(fake_leaf(k))
        elif op == "remove":
            tree.remove_leaf(members[k % len(members)])
        elif op == "update":
            tree.update_leaf(members[k % len(members)], fake_leaf(k))
        else:
            p = 2 * (k % (tree.n_leaves - 1)) + 1
            tree.set_node(p, fake_parent(tuple(i for i in members if in_subtree(i, p))[:1]))
        if k % 3 == 0:
            tree.tree_hash()
            tree.resolution(tree.root)
    fresh = RatchetTree.decode(SUITE, tree.encode())
    assert fresh == tree
    assert fresh.tree_hash() == tree.tree_hash()
    for x in range(tree.width):
        assert tree.resolution(x) == fresh.resolution(x)
        assert tree.tree_hash_of(x) == fresh.tree_hash_of(x)
    assert tree.member_count == len(list(tree.leaves())) == fresh.member_count
    assert tree.credential_types_in_use() == fresh.credential_types_in_use()
    for _, leaf in tree.leaves():
        assert tree.signature_key_uses(leaf.signature_key) == 1
        assert tree.encryption_key_uses(leaf.encryption_key) == 1
