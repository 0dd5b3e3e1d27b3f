"""Tree math (RFC 9420 Appendix C) beyond the official vectors: large trees, invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mls_core import tree_math as tm
from mls_core.errors import UsageError


@given(st.integers(min_value=0, max_value=32))
def test_root_is_ancestor_of_every_leaf(exp: int) -> None:
    n = 1 << exp
    r = tm.root(n)
    assert tm.level(r) == exp
    for leaf in (0, n - 1, n // 2):
        path = tm.direct_path(tm.leaf_to_node(leaf), n)
        assert (path[-1] if path else tm.leaf_to_node(leaf)) == r
        assert len(path) == exp
        assert len(tm.copath(tm.leaf_to_node(leaf), n)) == exp


@given(st.integers(min_value=1, max_value=20), st.data())
def test_parent_child_consistency(exp: int, data: st.DataObject) -> None:
    n = 1 << exp
    x = data.draw(st.integers(min_value=0, max_value=tm.node_width(n) - 1))
    if x != tm.root(n):
        p = tm.parent(x, n)
        assert x in (tm.left(p), tm.right(p))
        s = tm.sibling(x, n)
        assert tm.parent(s, n) == p and s != x


def test_common_ancestor() -> None:
    assert tm.common_ancestor(0, 2) == 1
    assert tm.common_ancestor(0, 6) == 3
    assert tm.common_ancestor(4, 4) == 4
    assert tm.common_ancestor(8, 14) == 11


def test_errors_are_typed() -> None:
    with pytest.raises(UsageError):
        tm.left(4)
    with pytest.raises(UsageError):
        tm.parent(7, 8)
    with pytest.raises(UsageError):
        tm.root(0)
    with pytest.raises(UsageError):
        tm.node_to_leaf(3)
