"""The copy-on-write storage behind RatchetTree.copy() (mls_core.ratchet_tree): every
copy must behave as an independent list / counter whatever the other copies do."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mls_core.ratchet_tree import (
    _CHUNK,
    RatchetTree,
    _CowList,
    _KeyCounts,
    _with_unmerged,
    leaf_span,
)
from tests.core.test_ratchet_tree import SUITE, fake_leaf, fake_parent, tree_of

# An operation: (copy index, kind, a, b), applied to the copy at index % len(copies).
OPS = st.lists(st.tuples(st.integers(0, 7),
                         st.sampled_from(["set", "copy", "extend", "truncate"]),
                         st.integers(0, 10 * _CHUNK), st.integers(-5, 5)),
               max_size=60)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3 * _CHUNK + 5), OPS)
def test_cow_list_copies_behave_as_independent_lists(size: int, ops: list) -> None:
    models: list[list[int]] = [list(range(size))]
    lists: list[_CowList[int]] = [_CowList(range(size))]
    for which, kind, a, b in ops:
        i = which % len(lists)
        model, cow = models[i], lists[i]
        if kind == "set" and model:
            model[a % len(model)] = b
            cow[a % len(model)] = b
        elif kind == "copy":
            models.append(model.copy())
            lists.append(cow.copy())
        elif kind == "extend":
            extra = [b] * (a % (2 * _CHUNK + 3))
            model.extend(extra)
            cow.extend(extra)
        elif kind == "truncate":
            keep = a % (len(model) + 1)
            del model[keep:]
            cow.truncate(keep)
        for m, c in zip(models, lists, strict=True):
            assert len(c) == len(m)
            assert list(c) == m
            assert all(c[k] == m[k] for k in range(0, len(m), 37))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 24), st.integers(0, 40),
                          st.sampled_from([-1, 1, 1])), max_size=400))
def test_key_counts_copies_behave_as_independent_counters(ops: list) -> None:
    """Copies are rare enough that changes pile up past the point where copy() folds
    them into a new base."""
    models: list[dict[bytes, int]] = [{}]
    counts = [_KeyCounts()]
    for which, action, key_no, delta in ops:
        i = which % len(counts)
        if action == 0:
            models.append(dict(models[i]))
            counts.append(counts[i].copy())
            continue
        key = b"k%d" % key_no
        if delta < 0 and not models[i].get(key):
            continue  # a tree never removes a key it does not hold
        models[i][key] = models[i].get(key, 0) + delta
        counts[i].add(key, delta)
        for m, c in zip(models, counts, strict=True):
            assert all(c.get(b"k%d" % k) == m.get(b"k%d" % k, 0) for k in range(41))


def test_with_unmerged_inserts_in_order_once() -> None:
    assert _with_unmerged((), 4) == (4,)
    assert _with_unmerged((1, 3, 9), 5) == (1, 3, 5, 9)
    assert _with_unmerged((1, 3, 9), 0) == (0, 1, 3, 9)
    assert _with_unmerged((1, 3, 9), 12) == (1, 3, 9, 12)
    assert _with_unmerged((1, 3, 9), 3) == (1, 3, 9)


def test_key_counts_fold_changes_into_a_new_base_without_touching_copies() -> None:
    counts = _KeyCounts()
    for k in range(100):
        counts.add(b"k%d" % k, +1)
    first = counts.copy()  # 100 changes on an empty base: folded into a new base
    counts.add(b"k0", -1)
    first.add(b"k1", +1)
    second = first.copy()
    second.add(b"k2", -1)
    assert [counts.get(b"k%d" % k) for k in range(3)] == [0, 1, 1]
    assert [first.get(b"k%d" % k) for k in range(3)] == [1, 2, 1]
    assert [second.get(b"k%d" % k) for k in range(3)] == [1, 2, 0]
    assert all(c.get(b"k99") == 1 for c in (counts, first, second))
    assert counts.get(b"absent") == 0


TREE_OPS = st.lists(st.tuples(st.integers(0, 3),
                              st.sampled_from(["add", "remove", "update", "parent", "copy",
                                               "hash", "resolution"]),
                              st.integers(0, 1000)), max_size=50)


@settings(max_examples=40, deadline=None)
@given(st.integers(60, 140), TREE_OPS)
def test_tree_copies_stay_independent_and_caches_exact(size: int, ops: list) -> None:
    """Trees wider than one chunk, copied and changed on every side, with caches filled
    node by node (so that the early stop of the cache invalidation is exercised): each
    equals, hash for hash and resolution for resolution, a cache-free tree of its nodes,
    and the original's nodes are never changed by a copy."""
    trees = [tree_of(size)]
    trees[0].tree_hash()
    for which, op, k in ops:
        tree = trees[which % len(trees)]
        members = [i for i, _ in tree.leaves()]
        if op == "copy":
            trees.append(tree.copy())
        elif op == "add" or len(members) < 2:
            tree.add_leaf(fake_leaf(k))
        elif op == "remove":
            tree.remove_leaf(members[k % len(members)])
        elif op == "update":
            tree.update_leaf(members[k % len(members)], fake_leaf(k))
        elif op == "parent":
            p = 2 * (k % (tree.n_leaves - 1)) + 1
            lo, hi = leaf_span(p)
            tree.set_node(p, fake_parent(tuple(i for i in members if lo <= i <= hi)[:2]))
        elif op == "hash":
            tree.tree_hash_of(k % tree.width)
        else:
            tree.resolution(k % tree.width)
    for tree in trees:
        fresh = RatchetTree.decode(SUITE, tree.encode())
        assert fresh == tree
        for x in range(tree.width):
            assert tree.resolution(x) == fresh.resolution(x)
            assert tree.tree_hash_of(x) == fresh.tree_hash_of(x)
        for _, leaf in tree.leaves():
            assert tree.encryption_key_uses(leaf.encryption_key) == 1
            assert tree.signature_key_uses(leaf.signature_key) == 1
