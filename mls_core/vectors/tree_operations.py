"""tree-operations vectors: apply an Add, Update or Remove proposal to a ratchet tree and
compare the resulting tree bytes and tree hashes (§7.8, §12.1.1-§12.1.3)."""

from __future__ import annotations

from typing import Any

from ..ciphersuite import get_suite
from ..proposals import Add, Proposal, Remove, Update
from ..ratchet_tree import RatchetTree
from ._check import VectorMismatch, expect, h


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    tree = RatchetTree.decode(suite, h(v["tree_before"]))
    expect("tree_hash_before", tree.tree_hash(), h(v["tree_hash_before"]))
    body = Proposal.decode(h(v["proposal"])).body
    sender = v["proposal_sender"]
    if isinstance(body, Add):
        tree.add_leaf(body.key_package.leaf_node)
    elif isinstance(body, Update):
        tree.update_leaf(sender, body.leaf_node)
    elif isinstance(body, Remove):
        tree.remove_leaf(body.removed)
    else:
        raise VectorMismatch(f"unexpected proposal {type(body).__name__}")
    expect("tree_after", tree.encode(), h(v["tree_after"]))
    expect("tree_hash_after", tree.tree_hash(), h(v["tree_hash_after"]))
