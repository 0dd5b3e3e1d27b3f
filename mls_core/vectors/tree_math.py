"""tree-math vectors: n_nodes, root, left, right, parent, sibling (Appendix C)."""

from __future__ import annotations

from typing import Any

from .. import tree_math as tm
from ..errors import UsageError
from ._check import expect


def _or_none(fn: Any, *args: int) -> int | None:
    try:
        value: int = fn(*args)
    except UsageError:
        return None
    return value


def check(v: dict[str, Any]) -> None:
    n = v["n_leaves"]
    expect("n_nodes", tm.node_width(n), v["n_nodes"])
    expect("root", tm.root(n), v["root"])
    for i in range(v["n_nodes"]):
        expect(f"left[{i}]", _or_none(tm.left, i), v["left"][i])
        expect(f"right[{i}]", _or_none(tm.right, i), v["right"][i])
        expect(f"parent[{i}]", _or_none(tm.parent, i, n), v["parent"][i])
        expect(f"sibling[{i}]", _or_none(tm.sibling, i, n), v["sibling"][i])
