"""Rejoining by external Commit looks for our old leaf in the Delivery Service's tree
before ``join_external`` verifies it: that look is bounded like the join itself
(docs/security.md, "Bounds"; issue 16)."""

from __future__ import annotations

import pytest

from mls_client.client import _stale_leaf
from mls_core.ciphersuite import get_suite
from mls_core.config import InputLimits
from mls_core.credentials import Credential
from mls_core.errors import LimitError
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.nodes import Node, decode_ratchet_tree, encode_ratchet_tree
from mls_core.proposals import Add

NOW = 1_800_000_000


def test_the_old_leaf_is_looked_up_within_the_bounds() -> None:
    suite = get_suite(1)
    sig, _ = suite.generate_signature_key_pair()
    creator = Group.create(1, Credential.basic(b"a"), sig, now=NOW)
    other_sig, other_pub = suite.generate_signature_key_pair()
    kp, _ = create_key_package(suite, Credential.basic(b"b"), other_sig, now=NOW)
    creator.commit([Add(kp)], now=NOW)
    creator.merge_pending_commit()
    info = MLSMessage.decode(creator.group_info(with_ratchet_tree=False)).group_info
    assert info is not None
    tree = creator.ratchet_tree_bytes()
    assert _stale_leaf(info, tree, other_pub, b"nobody", b"dev", InputLimits()) == 1
    assert _stale_leaf(info, None, other_pub, b"nobody", b"dev", InputLimits()) is None
    real = decode_ratchet_tree(tree)
    huge: list[Node | None] = [None] * (2 * (1 << 20) - 1)
    huge[0], huge[-1] = real[0], real[-1]
    with pytest.raises(LimitError):
        _stale_leaf(info, encode_ratchet_tree(huge), other_pub, b"nobody", b"dev",
                    InputLimits())
