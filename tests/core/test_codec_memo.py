"""Memoized wire encodings (codec ``_memoize_wire``) never change what is encoded."""

from __future__ import annotations

import dataclasses

from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.key_package import create_key_package
from mls_core.messages import KeyPackage
from mls_core.nodes import LeafNode


def test_memoized_encoding_equals_fresh_encoding() -> None:
    suite = get_suite(1)
    sk, _ = suite.generate_signature_key_pair()
    kp, _ = create_key_package(suite, Credential.basic(b"memo"), sk, now=1_800_000_000)
    wire = kp.encode()
    decoded = KeyPackage.decode(wire)
    assert decoded.encode() == wire  # from the decode-time memo
    assert decoded == kp  # the memo is not a field: equality is unchanged
    changed = dataclasses.replace(decoded.leaf_node, signature=b"\x00" * 64)
    assert changed.encode() != decoded.leaf_node.encode()  # replace() drops the memo
    assert LeafNode.decode(changed.encode()) == changed
