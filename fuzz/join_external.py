"""Fuzz target ``join_external``: ``Group.join_external`` from a GroupInfo (§12.4.3.2).

Input: ``mode || chunks`` (:func:`fuzz.harness.split_chunks`, two chunks: the
MLSMessage(GroupInfo) and an out-of-band ratchet tree, used if non-empty). Mode bits:

* bit 0: re-sign the GroupInfo (§12.4.3) with the key of the leaf its ``signer`` names,
  so mutations reach the tree and context checks behind the signature;
* bit 1: before re-signing, set ``tree_hash`` to the hash of the tree the GroupInfo
  carries, so a mutated tree reaches tree validation (§7.9) and commit building;
* bit 2: also remove leaf 1 in the external Commit (a resync, §12.4.3.2).

Oracle: only MLSError may escape, and a produced Commit must decode as an
MLSMessage(PublicMessage) of the new member.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import cache

from mls_core.ciphersuite import CipherSuite
from mls_core.credentials import Credential
from mls_core.errors import MLSError
from mls_core.extensions import ExtensionType
from mls_core.framing import MLSMessage, SenderType
from mls_core.group import Group
from mls_core.messages import GroupInfo
from mls_core.nodes import decode_ratchet_tree
from mls_core.ratchet_tree import RatchetTree
from mls_core.welcome import sign_group_info

from .harness import InvariantViolation, Outcome, guarded, join_chunks, split_chunks
from .world import NOW, World, config, load_world


@cache
def _world() -> tuple[World, dict[bytes, bytes]]:
    world = load_world()
    suite = world.suite
    return world, {suite.signature_public_key(k): k for k in world.keys.values()}


def tree_bytes_of(info: GroupInfo, out_of_band: bytes | None) -> bytes | None:
    """The tree a joiner would use: the ratchet_tree extension, else the one given."""
    for ext in info.extensions:
        if ext.extension_type == ExtensionType.RATCHET_TREE:
            return ext.extension_data
    return out_of_band


def resign_group_info(suite: CipherSuite, keyring: dict[bytes, bytes], fallback: bytes,
                      info: GroupInfo, tree: bytes | None, fix_tree_hash: bool) -> GroupInfo:
    """``info`` signed with the private key of its ``signer`` leaf in ``tree`` (or
    ``fallback``), after setting the context's tree hash to ``tree``'s if asked."""
    if fix_tree_hash and tree is not None:
        try:
            tree_hash = RatchetTree.decode(suite, tree).tree_hash()
            info = replace(info, group_context=replace(info.group_context,
                                                       tree_hash=tree_hash))
        except MLSError:
            pass
    key = fallback
    try:
        nodes = decode_ratchet_tree(tree) if tree is not None else ()
        i = 2 * info.signer
        node = nodes[i] if i < len(nodes) else None
        if node is not None and node.leaf_node is not None:
            key = keyring.get(node.leaf_node.signature_key, fallback)
    except MLSError:
        pass
    return sign_group_info(suite, key, info.to_be_signed())


def _join(world: World, group_info: bytes, tree: bytes | None, remove: bool) -> None:
    _, commit = Group.join_external(group_info, Credential.basic(b"eve"), world.keys["eve"],
                                    ratchet_tree=tree, remove_leaf=1 if remove else None,
                                    config=config(), now=NOW)
    pub = MLSMessage.decode(commit).public_message
    if pub is None or pub.content.sender.sender_type != SenderType.NEW_MEMBER_COMMIT:
        raise InvariantViolation("join_external returned something else than an external "
                                 "Commit")


def run_one(data: bytes) -> Outcome:
    if not data:
        return Outcome.SKIPPED
    world, keyring = _world()
    mode = data[0]
    gi_bytes, tree_chunk = split_chunks(data[1:], 2)
    tree = tree_chunk or None
    if mode & 1:
        try:
            info = MLSMessage.decode(gi_bytes).group_info
            if info is None:
                return Outcome.SKIPPED
            signed = resign_group_info(world.suite, keyring, world.keys["alice"], info,
                                       tree_bytes_of(info, tree), bool(mode & 2))
            gi_bytes = MLSMessage.of(signed).encode()
        except MLSError:
            return Outcome.SKIPPED
    return guarded(lambda: _join(world, gi_bytes, tree, bool(mode & 4)))


def TestOneInput(data: bytes) -> None:
    run_one(data)


def seeds() -> Iterator[bytes]:
    """Alice's and Bob's GroupInfo with and without the tree, and the vectors' ones."""
    from .vectors import vector_blobs

    world, _ = _world()
    for name in ("alice", "bob"):
        g = world.group(name)
        with_tree = g.group_info()
        without = g.group_info(with_ratchet_tree=False)
        for mode in (0, 1, 3, 5):
            yield bytes([mode]) + join_chunks(with_tree, b"")
            yield bytes([mode]) + join_chunks(without, g.ratchet_tree_bytes())
    n = 0
    for blob in vector_blobs():
        try:
            if MLSMessage.decode(blob).group_info is None:
                continue
        except MLSError:
            continue
        yield b"\x00" + join_chunks(blob, b"")
        n += 1
        if n == 10:
            break
