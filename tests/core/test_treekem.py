"""TreeKEM: creating, applying and decrypting UpdatePaths (RFC 9420 §7.4-§7.6, §12.4.2)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import pytest

from mls_core.ciphersuite import get_suite
from mls_core.commit import UpdatePath
from mls_core.credentials import Credential
from mls_core.errors import (
    DecodeError,
    DecryptionError,
    UsageError,
    ValidationError,
    VerificationError,
)
from mls_core.key_package import create_key_package, sign_leaf_node
from mls_core.key_schedule import GroupContext
from mls_core.nodes import HPKECiphertext, LeafNode, LeafNodeTBSContext
from mls_core.ratchet_tree import RatchetTree
from mls_core.tree_math import common_ancestor
from mls_core.tree_validation import validate_tree
from mls_core.treekem import (
    PreparedPath,
    TreeKEMPrivate,
    apply_update_path,
    decrypt_update_path,
    prepare_update_path,
)

NOW = 1_800_000_000
GROUP = b"treekem test group"


@dataclass
class Member:
    leaf: LeafNode
    sig: bytes
    private: TreeKEMPrivate | None = None


def _new_member(suite_id: int, name: bytes) -> tuple[Member, bytes]:
    suite = get_suite(suite_id)
    sk, _ = suite.generate_signature_key_pair()
    kp, priv = create_key_package(suite, Credential.basic(name), sk, now=NOW)
    return Member(kp.leaf_node, sk), priv.encryption_priv


def _context(tree: RatchetTree, epoch: int) -> GroupContext:
    return GroupContext(1, tree.suite.id, GROUP, epoch, tree.tree_hash(), b"cth", ())


class Group:
    """A minimal TreeKEM-only group: every member keeps its own copy of the tree."""

    def __init__(self, suite_id: int) -> None:
        self.suite_id = suite_id
        creator, enc = _new_member(suite_id, b"m0")
        creator.private = TreeKEMPrivate.for_leaf(0, enc)
        self.members = {0: creator}
        self.trees = {0: RatchetTree.create(get_suite(suite_id), creator.leaf)}
        self.epoch = 0

    def commit(self, committer: int, adds: int = 0) -> bytes:
        """``committer`` adds ``adds`` members and sends a path; everyone processes it.
        Returns the agreed commit_secret."""
        staging = self.trees[committer].copy()
        joiners: dict[int, tuple[Member, bytes]] = {}
        for k in range(adds):
            member, enc = _new_member(self.suite_id, b"m%d" % (len(self.members) + k))
            joiners[staging.add_leaf(member.leaf)] = (member, enc)
        proposal_tree = staging.copy()
        prepared = prepare_update_path(staging, committer, self.members[committer].sig, GROUP)
        context = _context(staging, self.epoch + 1)
        path = prepared.encrypt(staging, context, new_leaves=joiners)
        secret = prepared.commit_secret
        for j, member in self.members.items():
            if j == committer:
                continue
            theirs = proposal_tree.copy()
            apply_update_path(theirs, committer, path, GROUP, new_leaves=joiners, now=NOW)
            assert theirs == staging
            assert member.private is not None
            got = decrypt_update_path(theirs, committer, path, member.private, context,
                                      new_leaves=joiners)
            assert got.commit_secret == secret
            got.private.check_consistent(theirs)
            member.private = got.private
            self.trees[j] = theirs
        self.members[committer].private = prepared.private
        self.members[committer].leaf = prepared.leaf_node
        self.trees[committer] = staging
        for j, (member, enc) in joiners.items():
            self._welcome(j, member, enc, committer, prepared, staging)
        self.epoch += 1
        validate_tree(staging, GROUP, now=NOW)
        return secret

    def _welcome(self, j: int, member: Member, enc: bytes, committer: int,
                 prepared: PreparedPath, tree: RatchetTree) -> None:
        ancestor = common_ancestor(2 * j, 2 * committer)
        secret = prepared.path_secret_for(j)
        assert secret is not None
        member.private = TreeKEMPrivate.for_leaf(j, enc).with_path_from(tree.copy(), ancestor,
                                                                        secret)
        member.private.check_consistent(tree)
        self.members[j] = member
        self.trees[j] = tree.copy()


@pytest.mark.parametrize("suite_id", [1, 2, 3, 7])
def test_update_path_round_trip_three_members(suite_id: int) -> None:
    group = Group(suite_id)
    secrets = [group.commit(0, adds=2)]
    secrets.append(group.commit(1))
    secrets.append(group.commit(2))
    secrets.append(group.commit(0, adds=1))  # new member excluded from the resolution
    secrets.append(group.commit(3))
    assert len(set(secrets)) == len(secrets)
    hashes = {t.tree_hash() for t in group.trees.values()}
    assert len(hashes) == 1
    assert all(len(s) == get_suite(suite_id).hash_length for s in secrets)


def test_larger_group_with_unmerged_leaves_and_blanks() -> None:
    group = Group(1)
    group.commit(0, adds=6)
    group.commit(5)
    group.commit(2, adds=2)  # adds land under non-blank parents -> unmerged leaves
    tree = group.trees[0]
    assert tree.n_leaves == 16
    unmerged = tree.parent_node(11)  # set by member 5, then leaf 7 was added below it
    assert unmerged is not None and unmerged.unmerged_leaves == (7,)
    for j in (1, 8):
        group.commit(j)


# ---------------------------------------------------------------------- rejection


@pytest.fixture
def setup() -> tuple[Group, RatchetTree, UpdatePath, GroupContext, PreparedPath]:
    """Three members; member 1 prepares a path that members 0 and 2 must process."""
    group = Group(1)
    group.commit(0, adds=2)
    staging = group.trees[1].copy()
    prepared = prepare_update_path(staging, 1, group.members[1].sig, GROUP)
    context = _context(staging, group.epoch + 1)
    return group, staging, prepared.encrypt(staging, context), context, prepared


def _resign(leaf: LeafNode, sig: bytes, index: int, **changes: object) -> LeafNode:
    tbs = dataclasses.replace(leaf, **changes).to_be_signed(GROUP, index)  # type: ignore[arg-type]
    assert tbs.group_context == LeafNodeTBSContext(GROUP, index)
    return sign_leaf_node(get_suite(1), sig, tbs)


def test_wrong_node_count_rejected(setup: tuple) -> None:  # type: ignore[type-arg]
    group, _, path, _, _ = setup
    tree = group.trees[0].copy()
    before = tree.tree_hash()
    with pytest.raises(ValidationError, match="nodes"):
        apply_update_path(tree, 1, dataclasses.replace(path, nodes=path.nodes[:-1]), GROUP)
    assert tree.tree_hash() == before


def test_wrong_ciphertext_count_rejected(setup: tuple) -> None:  # type: ignore[type-arg]
    group, _, path, _, _ = setup
    node = path.nodes[0]
    bad = dataclasses.replace(node, encrypted_path_secret=node.encrypted_path_secret * 2)
    with pytest.raises(ValidationError, match="encrypted path secrets"):
        apply_update_path(group.trees[0].copy(), 1,
                          dataclasses.replace(path, nodes=(bad, *path.nodes[1:])), GROUP)


def test_tampered_leaf_parent_hash_rejected(setup: tuple) -> None:  # type: ignore[type-arg]
    group, _, path, _, _ = setup
    leaf = _resign(path.leaf_node, group.members[1].sig, 1, source_data=os.urandom(32))
    tree = group.trees[0].copy()
    before = tree.tree_hash()
    with pytest.raises(VerificationError, match="parent_hash"):
        apply_update_path(tree, 1, dataclasses.replace(path, leaf_node=leaf), GROUP)
    assert tree.tree_hash() == before  # atomic: nothing merged


def test_swapped_path_key_rejected(setup: tuple) -> None:  # type: ignore[type-arg]
    group, _, path, _, _ = setup
    node = dataclasses.replace(path.nodes[-1], encryption_key=get_suite(1).generate_key_pair()[1])
    with pytest.raises(VerificationError):
        apply_update_path(group.trees[0].copy(), 1,
                          dataclasses.replace(path, nodes=(*path.nodes[:-1], node)), GROUP)


def test_unsigned_leaf_and_wrong_source_rejected(setup: tuple) -> None:  # type: ignore[type-arg]
    group, _, path, _, _ = setup
    forged = dataclasses.replace(path.leaf_node, signature=bytes(64))
    with pytest.raises(VerificationError):
        apply_update_path(group.trees[0].copy(), 1,
                          dataclasses.replace(path, leaf_node=forged), GROUP)
    with pytest.raises(VerificationError):
        apply_update_path(group.trees[0].copy(), 1, path, b"another group")
    kp_leaf = group.members[0].leaf
    with pytest.raises(ValidationError, match="commit"):
        apply_update_path(group.trees[0].copy(), 1,
                          dataclasses.replace(path, leaf_node=dataclasses.replace(
                              kp_leaf, leaf_node_source=1)), GROUP)


def test_reused_keys_rejected(setup: tuple) -> None:  # type: ignore[type-arg]
    group, _, path, _, _ = setup
    tree = group.trees[0]
    old = tree.leaf(1)
    assert old is not None
    same_key = _resign(path.leaf_node, group.members[1].sig, 1,
                       encryption_key=old.encryption_key)
    with pytest.raises(ValidationError, match="encryption_key"):
        apply_update_path(tree.copy(), 1, dataclasses.replace(path, leaf_node=same_key), GROUP)
    existing = tree.leaf(2)
    assert existing is not None
    node = dataclasses.replace(path.nodes[0], encryption_key=existing.encryption_key)
    with pytest.raises(ValidationError, match="already appears"):
        apply_update_path(tree.copy(), 1,
                          dataclasses.replace(path, nodes=(node, *path.nodes[1:])), GROUP)


def test_tampered_ciphertext_and_wrong_context_fail_decryption(
        setup: tuple) -> None:  # type: ignore[type-arg]
    group, _, path, context, _ = setup
    receiver = group.members[0].private
    assert receiver is not None
    tree = group.trees[0].copy()
    apply_update_path(tree, 1, path, GROUP)
    ct = path.nodes[0].encrypted_path_secret[0]
    flipped = HPKECiphertext(ct.kem_output, bytes([ct.ciphertext[0] ^ 1]) + ct.ciphertext[1:])
    node = dataclasses.replace(path.nodes[0], encrypted_path_secret=(flipped,))
    with pytest.raises(DecryptionError):
        decrypt_update_path(tree, 1, dataclasses.replace(path, nodes=(node, *path.nodes[1:])),
                            receiver, context)
    with pytest.raises(DecryptionError):
        decrypt_update_path(tree, 1, path, receiver, dataclasses.replace(context, epoch=99))
    got = decrypt_update_path(tree, 1, path, receiver, context)
    assert got.private.leaf_index == 0
    with pytest.raises(UsageError):
        decrypt_update_path(tree, 1, path, TreeKEMPrivate.for_leaf(1, b"k"), context)


def test_missing_private_key_rejected(setup: tuple) -> None:  # type: ignore[type-arg]
    group, _, path, context, _ = setup
    tree = group.trees[2].copy()
    apply_update_path(tree, 1, path, GROUP)
    with pytest.raises(ValidationError, match="no private key"):
        decrypt_update_path(tree, 1, path, TreeKEMPrivate(2, {}), context)


def test_committer_template_checks() -> None:
    group = Group(1)
    group.commit(0, adds=1)
    tree = group.trees[0].copy()
    with pytest.raises(UsageError, match="signature_priv"):
        prepare_update_path(tree, 0, group.members[1].sig, GROUP)
    tree.remove_leaf(1)
    with pytest.raises(UsageError, match="blank"):
        prepare_update_path(tree, 1, group.members[1].sig, GROUP)


# ---------------------------------------------------------------------- private state


def test_private_state_consistency_and_storage() -> None:
    group = Group(1)
    group.commit(0, adds=3)
    state = group.members[2].private
    assert state is not None
    tree = group.trees[2]
    state.check_consistent(tree)
    assert TreeKEMPrivate.from_bytes(state.to_bytes()) == state
    assert "redacted" not in repr(state) and state.encryption_priv is not None
    assert state.encryption_priv.hex() not in repr(state)

    wrong = state.with_keys({tree.root: get_suite(1).generate_key_pair()[0]})
    with pytest.raises(ValidationError, match="does not match"):
        wrong.check_consistent(tree)
    off_path = state.with_keys({1: get_suite(1).generate_key_pair()[0]})
    with pytest.raises(ValidationError, match="not on leaf"):
        off_path.check_consistent(tree)
    with pytest.raises(DecodeError):
        TreeKEMPrivate.from_bytes(b"\x02" + state.to_bytes()[1:])

    blanked = tree.copy()
    blanked.blank_direct_path(2)
    assert set(state.pruned(blanked).keys) == {4}
