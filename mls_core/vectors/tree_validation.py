"""tree-validation vectors: resolutions, per-node tree hashes, parent hashes and leaf
signatures of a decoded ratchet tree, then the full join validation (§12.4.3.1)."""

from __future__ import annotations

from typing import Any

from ..ciphersuite import get_suite
from ..key_package import verify_leaf_signature
from ..parent_hash import verify_parent_hashes
from ..ratchet_tree import RatchetTree
from ..tree_validation import validate_tree
from ._check import expect, h


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    group_id = h(v["group_id"])
    tree = RatchetTree.decode(suite, h(v["tree"]))
    expect("node count (resolutions)", tree.width, len(v["resolutions"]))
    expect("node count (tree_hashes)", tree.width, len(v["tree_hashes"]))
    for i, want in enumerate(v["resolutions"]):
        expect(f"resolution[{i}]", list(tree.resolution(i)), want)
    for i, want in enumerate(v["tree_hashes"]):
        expect(f"tree_hash[{i}]", tree.tree_hash_of(i), h(want))
    verify_parent_hashes(tree)
    for i, leaf in tree.leaves():
        verify_leaf_signature(suite, leaf, group_id, i)
    validate_tree(tree, group_id)
