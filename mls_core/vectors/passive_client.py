"""passive-client-* vectors: join by Welcome, then follow every commit (§12.4.2, §12.4.3.1).

Shared by passive-client-welcome, passive-client-handling-commit and
passive-client-random, which have one format."""

from __future__ import annotations

from typing import Any

from ..ciphersuite import get_suite
from ..config import GroupConfig
from ..errors import DecodeError
from ..framing import MLSMessage
from ..group import Group
from ..key_package import KeyPackagePrivate
from ..messages import KeyPackage
from ._check import expect, h


def _key_package(data: bytes) -> KeyPackage:
    """The format says "serialized KeyPackage"; the published files carry an
    MLSMessage(KeyPackage). Accept exactly those two encodings."""
    try:
        kp = MLSMessage.decode(data).key_package
    except DecodeError:
        return KeyPackage.decode(data)
    if kp is None:
        raise DecodeError("key_package: MLSMessage without a KeyPackage")
    return kp


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    kp = _key_package(h(v["key_package"]))
    priv = KeyPackagePrivate(h(v["init_priv"]), h(v["encryption_priv"]), h(v["signature_priv"]))
    expect("init key pair", suite.hpke_public_key(priv.init_priv), kp.init_key)
    expect("leaf key pair", suite.hpke_public_key(priv.encryption_priv),
           kp.leaf_node.encryption_key)
    expect("signature key pair", suite.signature_public_key(priv.signature_priv),
           kp.leaf_node.signature_key)
    config = GroupConfig(external_psks={h(p["psk_id"]): h(p["psk"]) for p in v["external_psks"]})
    tree = h(v["ratchet_tree"]) if v["ratchet_tree"] else None
    group = Group.join(h(v["welcome"]), kp, priv, ratchet_tree=tree, config=config)
    expect("initial_epoch_authenticator", group.epoch_authenticator,
           h(v["initial_epoch_authenticator"]))
    for i, epoch in enumerate(v["epochs"]):
        for proposal in epoch["proposals"]:
            group.process(h(proposal))
        group.process(h(epoch["commit"]))
        expect(f"epochs[{i}].epoch_authenticator", group.epoch_authenticator,
               h(epoch["epoch_authenticator"]))
