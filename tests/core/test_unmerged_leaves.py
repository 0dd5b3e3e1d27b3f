"""``unmerged_leaves`` checks of a joiner's tree (RFC 9420 §7.1, §12.4.3.1):
:func:`~mls_core.tree_validation.check_unmerged_leaves`, which checks the "listed at
every non-blank parent in between" rule link by link (each non-blank parent against
its nearest non-blank ancestor) so that it stays linear in what is listed (issue 16).
The cases compare it with the rule as written, walking each leaf's direct path."""

from __future__ import annotations

import itertools
import random

import pytest

from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.errors import ValidationError
from mls_core.key_package import create_key_package
from mls_core.nodes import LeafNode, Node, ParentNode
from mls_core.ratchet_tree import RatchetTree, in_subtree
from mls_core.tree_math import direct_path
from mls_core.tree_validation import check_unmerged_leaves

SUITE = get_suite(1)
NOW = 1_800_000_000
_sig, _ = SUITE.generate_signature_key_pair()
LEAF: LeafNode = create_key_package(SUITE, Credential.basic(b"x"), _sig, now=NOW)[0].leaf_node


def _tree(n_leaves: int, blank_leaves: set[int],
          parents: dict[int, tuple[int, ...]]) -> RatchetTree:
    """Leaves all members but ``blank_leaves``; parent node -> its unmerged leaves
    (others blank). The same leaf everywhere: keys do not matter here."""
    nodes: list[Node | None] = [None] * (2 * n_leaves - 1)
    for i in range(n_leaves):
        if i not in blank_leaves:
            nodes[2 * i] = Node.of(LEAF)
    for p, unmerged in parents.items():
        nodes[p] = Node.of(ParentNode(b"k%d" % p, b"", unmerged))
    return RatchetTree(SUITE, nodes)


def _rule_as_written(tree: RatchetTree) -> bool:
    """§12.4.3.1 literally: every listed leaf is a member below, and is listed at every
    non-blank parent between it and the listing node."""
    for p, parent in tree.parents():
        u = parent.unmerged_leaves
        if any(a >= b for a, b in itertools.pairwise(u)):
            return False
        for i in u:
            if not in_subtree(i, p) or tree.leaf(i) is None:
                return False
            for q in direct_path(2 * i, tree.n_leaves):
                if q == p:
                    break
                between = tree.parent_node(q)
                if between is not None and i not in between.unmerged_leaves:
                    return False
    return True


CASES = {
    "listed at every non-blank parent": (4, set(), {3: (3,), 5: (3,)}, None),
    "blank parent in between": (4, set(), {3: (3,)}, None),
    "missing at the parent below": (4, set(), {3: (3,), 5: ()},
                                    "leaf 3 is unmerged at node 3 but not at node 5"),
    "missing two levels down": (8, set(), {7: (6,), 11: (6,), 13: ()},
                                "leaf 6 is unmerged at node 11 but not at node 13"),
    "missing below a blank parent": (8, set(), {7: (6,), 13: ()},
                                     "leaf 6 is unmerged at node 7 but not at node 13"),
    "not sorted": (4, set(), {3: (3, 2)}, "not strictly sorted"),
    "not below": (4, set(), {1: (2,)}, "not a member below it"),
    "blank leaf": (4, {2}, {3: (2,)}, "not a member below it"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_unmerged_leaves_cases(case: str) -> None:
    n, blank, parents, error = CASES[case]
    tree = _tree(n, blank, parents)
    assert _rule_as_written(tree) == (error is None)
    if error is None:
        check_unmerged_leaves(tree)
    else:
        with pytest.raises(ValidationError, match=error):
            check_unmerged_leaves(tree)


def test_random_trees_agree_with_the_rule_as_written() -> None:
    """Random non-blank parents listing random leaves below them: the link-by-link
    check accepts exactly the trees the literal rule accepts."""
    rng = random.Random(16)
    n = 16
    verdicts = set()
    for _ in range(400):
        parents: dict[int, tuple[int, ...]] = {}
        for p in range(1, 2 * n - 1, 2):
            if rng.random() < 0.6:
                below = [i for i in range(n) if in_subtree(i, p)]
                parents[p] = tuple(sorted(rng.sample(below, rng.randint(0, 2))))
        # make some trees valid: copy each listing down the non-blank parents
        if rng.random() < 0.5:
            for p in sorted(parents, key=lambda x: -((x + 1) & ~x)):
                for i in parents[p]:
                    for q in direct_path(2 * i, n):
                        if q == p:
                            break
                        if q in parents and i not in parents[q]:
                            parents[q] = tuple(sorted((*parents[q], i)))
        tree = _tree(n, set(), parents)
        expected = _rule_as_written(tree)
        verdicts.add(expected)
        try:
            check_unmerged_leaves(tree)
            got = True
        except ValidationError:
            got = False
        assert got == expected, parents
    assert verdicts == {True, False}


def test_tree_hash_without_matches_the_tree_with_those_leaves_blanked() -> None:
    """§7.9's "original sibling tree hash": for random leaf sets, equal to the tree hash
    of the tree where they are blank and unlisted (the bisection over sorted leaves
    finds every subtree that holds one)."""
    rng = random.Random(9420)
    n = 16
    for _ in range(30):
        parents = {p: tuple(i for i in range(n) if in_subtree(i, p) and rng.random() < 0.3)
                   for p in range(1, 2 * n - 1, 2) if rng.random() < 0.6}
        tree = _tree(n, set(), parents)
        gone = frozenset(rng.sample(range(n), rng.randint(1, 6)))
        kept = {p: tuple(i for i in u if i not in gone) for p, u in parents.items()}
        blanked = _tree(n, set(gone), kept)
        for x in range(2 * n - 1):
            assert tree.tree_hash_without(x, gone) == blanked.tree_hash_of(x), (x, gone)
