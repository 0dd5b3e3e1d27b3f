"""treekem vectors: private-state consistency, processing every UpdatePath at every other
member, and a fresh UpdatePath that every other member decrypts (§7.4-§7.6, §7.9).

The HPKE context is the GroupContext with the vector's parameters, empty extensions and
the tree hash *after* the UpdatePath is merged (the provisional GroupContext, §12.4.2).
"""

from __future__ import annotations

from typing import Any

from ..ciphersuite import CipherSuite, get_suite
from ..commit import UpdatePath
from ..key_schedule import PROTOCOL_VERSION_MLS10, GroupContext
from ..parent_hash import verify_parent_hashes
from ..ratchet_tree import RatchetTree
from ..treekem import (
    TreeKEMPrivate,
    apply_update_path,
    decrypt_update_path,
    prepare_update_path,
)
from ._check import expect, expect_true, h


def _context(suite: CipherSuite, v: dict[str, Any], tree_hash: bytes) -> GroupContext:
    return GroupContext(PROTOCOL_VERSION_MLS10, suite.id, h(v["group_id"]), v["epoch"],
                        tree_hash, h(v["confirmed_transcript_hash"]), ())


def _private_states(suite: CipherSuite, tree: RatchetTree,
                    v: dict[str, Any]) -> dict[int, tuple[TreeKEMPrivate, bytes]]:
    states: dict[int, tuple[TreeKEMPrivate, bytes]] = {}
    for entry in v["leaves_private"]:
        state = TreeKEMPrivate.for_leaf(entry["index"], h(entry["encryption_priv"]))
        for ps in entry["path_secrets"]:
            state = state.with_path_secret(suite, ps["node"], h(ps["path_secret"]))
        state.check_consistent(tree)
        states[entry["index"]] = (state, h(entry["signature_priv"]))
    return states


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    group_id = h(v["group_id"])
    tree = RatchetTree.decode(suite, h(v["ratchet_tree"]))
    states = _private_states(suite, tree, v)
    members = [j for j, _ in tree.leaves()]
    expect_true("every member has private state", set(members) <= set(states))
    _context(suite, v, tree.tree_hash())  # the pre-path GroupContext must be constructible

    for n, up in enumerate(v["update_paths"]):
        sender = up["sender"]
        path = UpdatePath.decode(h(up["update_path"]))
        merged = tree.copy()
        apply_update_path(merged, sender, path, group_id)  # incl. parent-hash validity
        verify_parent_hashes(merged)  # the merged path forms a parent-hash chain (§7.9.2)
        expect(f"update_paths[{n}].tree_hash_after", merged.tree_hash(),
               h(up["tree_hash_after"]))
        context = _context(suite, v, merged.tree_hash())
        for j in members:
            if j == sender:
                continue
            got = decrypt_update_path(merged, sender, path, states[j][0], context)
            got.private.check_consistent(merged)
            expect(f"update_paths[{n}].path_secrets[{j}]", got.path_secret,
                   h(up["path_secrets"][j]))
            expect(f"update_paths[{n}].commit_secret (leaf {j})", got.commit_secret,
                   h(up["commit_secret"]))
        _check_new_path(tree, sender, states, members, v, n)


def _check_new_path(tree: RatchetTree, sender: int,
                    states: dict[int, tuple[TreeKEMPrivate, bytes]], members: list[int],
                    v: dict[str, Any], n: int) -> None:
    suite = tree.suite
    group_id = h(v["group_id"])
    staging = tree.copy()
    prepared = prepare_update_path(staging, sender, states[sender][1], group_id)
    prepared.private.check_consistent(staging)
    context = _context(suite, v, staging.tree_hash())
    new_path = prepared.encrypt(staging, context)
    for j in members:
        if j == sender:
            continue
        theirs = tree.copy()
        apply_update_path(theirs, sender, new_path, group_id)
        expect(f"new update_paths[{n}] tree hash (leaf {j})", theirs.tree_hash(),
               context.tree_hash)
        got = decrypt_update_path(theirs, sender, new_path, states[j][0], context)
        expect(f"new update_paths[{n}] commit_secret (leaf {j})", got.commit_secret,
               prepared.commit_secret)
