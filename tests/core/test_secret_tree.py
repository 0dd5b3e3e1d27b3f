"""Secret tree and sender ratchets (RFC 9420 §9, §6.3)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls_core.ciphersuite import get_suite
from mls_core.errors import DecodeError, ProtocolError, ReplayError, UsageError
from mls_core.secret_tree import (
    HashRatchet,
    RatchetType,
    SecretTree,
    apply_reuse_guard,
    ratchet_type_for,
    sender_data_key_nonce,
)

SUITE = get_suite(1)
SECRET = bytes(range(32))
APP, PROPOSAL, COMMIT = 1, 2, 3


def tree(n: int = 8, **kw: int) -> SecretTree:
    return SecretTree(SUITE, SECRET, n, **kw)


def test_ratchet_matches_rfc_derivation() -> None:
    """Leaf 0 of a 1-leaf tree: the root secret is the leaf secret (§9, §9.1)."""
    s = SUITE
    root = s.expand_with_label(SECRET, b"application", b"", 32)
    key0 = s.derive_tree_secret(root, b"key", 0, 16)
    nonce0 = s.derive_tree_secret(root, b"nonce", 0, 12)
    secret1 = s.derive_tree_secret(root, b"secret", 0, 32)
    key1 = s.derive_tree_secret(secret1, b"key", 1, 16)
    t = tree(1)
    assert t.get(0, APP, 0) == (0, key0, nonce0)
    assert t.get(0, APP, 1).key == key1


def test_sender_and_receiver_agree() -> None:
    sender, receiver = tree(), tree()
    for _ in range(3):
        sent = sender.next(5, APP)
        assert receiver.get(5, APP, sent.generation) == sent
    assert sender.next(5, COMMIT).generation == 0  # handshake ratchet is separate
    assert receiver.get(5, PROPOSAL, 0).key == tree().next(5, COMMIT).key


def test_replay_raises() -> None:
    t = tree()
    t.get(2, APP, 0)
    with pytest.raises(ReplayError):
        t.get(2, APP, 0)


def test_sent_generation_cannot_be_received() -> None:
    t = tree()
    g = t.next(1, APP).generation
    with pytest.raises(ReplayError):
        t.get(1, APP, g)


def test_out_of_order_within_window() -> None:
    ref = [tree().get(3, APP, g) for g in range(6)]  # fresh trees; each is a first lookup
    t = tree()
    assert t.get(3, APP, 5) == ref[5]
    assert t.ratchet(3, RatchetType.APPLICATION).retained_generations == (0, 1, 2, 3, 4)
    assert t.get(3, APP, 2) == ref[2]
    assert t.get(3, APP, 0) == ref[0]
    with pytest.raises(ReplayError):
        t.get(3, APP, 2)
    assert t.ratchet(3, RatchetType.APPLICATION).retained_generations == (1, 3, 4)


def test_fresh_tree_lookups_agree_with_sequential() -> None:
    t = tree()
    for g in range(6):
        assert t.get(3, APP, g) == tree().get(3, APP, g)


def test_window_evicts_oldest() -> None:
    t = tree(max_retained=4)
    t.get(0, APP, 10)
    r = t.ratchet(0, RatchetType.APPLICATION)
    assert r.retained_generations == (6, 7, 8, 9)
    with pytest.raises(ProtocolError) as e:
        t.get(0, APP, 5)
    assert not isinstance(e.value, ReplayError)
    assert t.get(0, APP, 6).key == tree().get(0, APP, 6).key
    t.get(0, APP, 12)  # retains 11; 6 and 10 were consumed
    assert r.retained_generations == (7, 8, 9, 11)
    t.get(0, APP, 14)  # retains 13, evicting 7
    assert r.retained_generations == (8, 9, 11, 13)
    with pytest.raises(ProtocolError) as e:
        t.get(0, APP, 7)
    assert not isinstance(e.value, ReplayError)
    with pytest.raises(ReplayError):
        t.get(0, APP, 12)


def test_no_retention() -> None:
    t = tree(max_retained=0)
    t.get(0, APP, 3)
    with pytest.raises(ProtocolError):
        t.get(0, APP, 1)


def test_forward_bound_does_not_advance() -> None:
    t = tree(max_forward=10)
    with pytest.raises(ProtocolError):
        t.get(0, APP, 11)
    r = t.ratchet(0, RatchetType.APPLICATION)
    assert r.generation == 0 and r.retained_generations == ()
    assert t.get(0, APP, 10).key == tree(max_forward=10).get(0, APP, 10).key
    with pytest.raises(ProtocolError):
        t.get(0, APP, 22)
    assert r.generation == 11


def test_bad_inputs() -> None:
    t = tree(4)
    with pytest.raises(ProtocolError):
        t.get(4, APP, 0)
    with pytest.raises(ProtocolError):
        t.get(-1, APP, 0)
    with pytest.raises(ProtocolError):
        t.get(0, 0, 0)
    with pytest.raises(ProtocolError):
        t.get(0, APP, 1 << 32)
    with pytest.raises(UsageError):
        SecretTree(SUITE, b"short", 4)
    with pytest.raises(UsageError):
        SecretTree(SUITE, SECRET, 0)


def test_ratchet_type_for() -> None:
    assert ratchet_type_for(1) is RatchetType.APPLICATION
    assert ratchet_type_for(2) is RatchetType.HANDSHAKE
    assert ratchet_type_for(3) is RatchetType.HANDSHAKE


def test_lazy_and_parent_secrets_deleted() -> None:
    """A 16384-leaf tree holds one node until used; using a leaf leaves one secret per
    level (the off-path siblings), and parents are gone (§9.2)."""
    t = tree(1 << 14)
    assert t.stored_node_count == 1
    t.get(0, APP, 0)
    assert t.stored_node_count == 14
    t.get(1, APP, 0)  # sibling leaf: its secret was held, now consumed
    assert t.stored_node_count == 13
    t.get((1 << 14) - 1, APP, 0)
    assert t.stored_node_count == 13 - 1 + 13  # right half: 13 levels below it


def test_non_power_of_two_leaf_count_skips_empty_subtrees() -> None:
    t = tree(5)  # root covers 8 leaves; leaves 5..7 do not exist
    t.get(4, APP, 0)
    # on the path 7 -> 11 -> 9 -> 8 only node 3 (leaves 0-3) has real leaves off-path
    assert t.stored_node_count == 1


def test_sender_data_key_nonce_uses_sample() -> None:
    sds = bytes(32)
    long_ct = bytes(range(100))
    k1, n1 = sender_data_key_nonce(SUITE, sds, long_ct)
    assert (k1, n1) == sender_data_key_nonce(SUITE, sds, long_ct[:32])
    assert k1 == SUITE.expand_with_label(sds, b"key", long_ct[:32], 16)
    assert len(n1) == 12
    short = sender_data_key_nonce(SUITE, sds, b"abc")
    assert short[0] == SUITE.expand_with_label(sds, b"key", b"abc", 16)


def test_reuse_guard() -> None:
    nonce = bytes(range(12))
    guarded = apply_reuse_guard(nonce, b"\xff\x00\xff\x00")
    assert guarded == bytes([0xFF, 1, 0xFD, 3]) + nonce[4:]
    assert apply_reuse_guard(guarded, b"\xff\x00\xff\x00") == nonce
    with pytest.raises(UsageError):
        apply_reuse_guard(nonce, b"\x00")


def test_serialization_round_trip() -> None:
    t = tree(8, max_retained=16, max_forward=50)
    t.get(2, APP, 5)
    t.get(2, APP, 1)
    t.next(6, COMMIT)
    blob = t.to_bytes()
    u = SecretTree.from_bytes(blob)
    assert u.to_bytes() == blob
    assert u.stored_node_count == t.stored_node_count
    assert u.get(2, APP, 3) == t.get(2, APP, 3)
    with pytest.raises(ReplayError):
        u.get(2, APP, 1)
    assert u.next(6, COMMIT) == t.next(6, COMMIT)
    assert u.get(7, APP, 0) == t.get(7, APP, 0)
    with pytest.raises(ProtocolError):
        u.get(0, APP, 51)


def test_serialization_rejects_garbage() -> None:
    blob = tree().to_bytes()
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(blob[:-1])
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(b"\x02" + blob[1:])
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(blob[:1] + b"\x99\x99" + blob[3:])  # unknown suite


def test_ratchet_exhaustion() -> None:
    r = HashRatchet(SUITE, SECRET, generation=0xFFFFFFFF)
    assert r.next().generation == 0xFFFFFFFF
    with pytest.raises(ProtocolError):
        r.next()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30))
def test_any_receive_order_never_yields_a_key_twice(gens: list[int]) -> None:
    """Property: each generation is yielded at most once and always with the right key."""
    t = tree(2, max_retained=8)
    expected = {g: tree(2).get(1, APP, g) for g in set(gens)}
    yielded: set[int] = set()
    for g in gens:
        try:
            got = t.get(1, APP, g)
        except ReplayError:
            assert g in yielded
            continue
        except ProtocolError:
            continue  # evicted from the window
        assert g not in yielded
        assert got == expected[g]
        yielded.add(g)


def test_serialization_rejects_inconsistent_cover() -> None:
    from mls_core.secret_tree import _StoredNode, _StoredSecretTree

    t = tree(4)
    t.get(1, APP, 0)  # frontier: node 0 (leaf 0) and node 5 (leaves 2-3)
    st0 = _StoredSecretTree.decode(t.to_bytes())
    assert [n.node for n in st0.nodes] == [0, 5]
    missing = dataclasses.replace(st0, nodes=st0.nodes[:1])
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(missing.encode())
    overlap = dataclasses.replace(st0, nodes=(*st0.nodes, _StoredNode(3, SECRET)))
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(overlap.encode())
    out_of_range = dataclasses.replace(st0, nodes=(_StoredNode(99, SECRET),))
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(out_of_range.encode())



def test_checkpoint_restore_undoes_a_consumed_key() -> None:
    """A message whose key was consumed but which then fails verification is undone."""
    tree = SecretTree(get_suite(1), bytes(range(32)), 8)
    cp = tree.checkpoint(3)
    first = tree.get(3, 1, 5)
    tree.restore(cp)
    assert tree.get(3, 1, 5) == first  # the same key is available again
    cp = tree.checkpoint(3)
    tree.get(3, 1, 7)
    tree.restore(cp)
    assert tree.ratchet(3, RatchetType.APPLICATION).generation == 6
    with pytest.raises(ReplayError):
        tree.get(3, 1, 5)


def test_checkpoint_restore_keeps_retained_keys_and_ratchet_objects() -> None:
    """Restoring puts back the generation, the ratchet secret and exactly the retained
    keys of the checkpoint, in the same ratchet objects (no copies are kept)."""
    tree = SecretTree(get_suite(1), bytes(range(32)), 8)
    tree.get(3, 1, 2)  # retains generations 0 and 1
    ratchet = tree.ratchet(3, RatchetType.APPLICATION)
    cp = tree.checkpoint(3)
    one = tree.get(3, 1, 1)  # a retained key consumed
    tree.get(3, 1, 6)  # more retained
    tree.restore(cp)
    assert tree.ratchet(3, RatchetType.APPLICATION) is ratchet
    assert ratchet.retained_generations == (0, 1) and ratchet.generation == 3
    assert tree.get(3, 1, 1) == one
    cp = tree.checkpoint(3)
    tree.get(3, 1, 4)
    tree.restore(cp)
    assert ratchet.retained_generations == (0,) and ratchet.generation == 3
