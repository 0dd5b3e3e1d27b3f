"""crypto-basics vectors: RefHash (RFC 9420 §5.2), ExpandWithLabel / DeriveSecret (§8),
DeriveTreeSecret (§9), SignWithLabel / VerifyWithLabel (§5.1.2) and EncryptWithLabel /
DecryptWithLabel (§5.1.3).

Keys are in the vectors' representation: HPKE keys as SerializePublicKey /
SerializePrivateKey, ECDSA private keys as big-endian scalars, EdDSA keys raw.
"""

from __future__ import annotations

from typing import Any

from ..ciphersuite import CipherSuite, get_suite
from ._check import expect, expect_true, h


def _ref_hash(suite: CipherSuite, v: dict[str, Any]) -> None:
    expect("ref_hash.out", suite.ref_hash(v["label"], h(v["value"])), h(v["out"]))


def _expand_with_label(suite: CipherSuite, v: dict[str, Any]) -> None:
    out = suite.expand_with_label(h(v["secret"]), v["label"], h(v["context"]), v["length"])
    expect("expand_with_label.out", out, h(v["out"]))


def _derive_secret(suite: CipherSuite, v: dict[str, Any]) -> None:
    expect("derive_secret.out", suite.derive_secret(h(v["secret"]), v["label"]), h(v["out"]))


def _derive_tree_secret(suite: CipherSuite, v: dict[str, Any]) -> None:
    out = suite.derive_tree_secret(h(v["secret"]), v["label"], v["generation"], v["length"])
    expect("derive_tree_secret.out", out, h(v["out"]))


def _sign_with_label(suite: CipherSuite, v: dict[str, Any]) -> None:
    priv, pub, label, content = h(v["priv"]), h(v["pub"]), v["label"], h(v["content"])
    expect("sign_with_label.pub", suite.signature_public_key(priv), pub)
    expect_true("sign_with_label: VerifyWithLabel(signature)",
                suite.verify_with_label(pub, label, content, h(v["signature"])))
    ours = suite.sign_with_label(priv, label, content)
    expect_true("sign_with_label: VerifyWithLabel(SignWithLabel(priv))",
                suite.verify_with_label(pub, label, content, ours))


def _encrypt_with_label(suite: CipherSuite, v: dict[str, Any]) -> None:
    priv, pub, label, context = h(v["priv"]), h(v["pub"]), v["label"], h(v["context"])
    plaintext = h(v["plaintext"])
    expect("encrypt_with_label.pub", suite.hpke_public_key(priv), pub)
    got = suite.decrypt_with_label(priv, label, context, h(v["kem_output"]), h(v["ciphertext"]))
    expect("encrypt_with_label: DecryptWithLabel(vector)", got, plaintext)
    kem_output, ciphertext = suite.encrypt_with_label(pub, label, context, plaintext)
    got = suite.decrypt_with_label(priv, label, context, kem_output, ciphertext)
    expect("encrypt_with_label: DecryptWithLabel(EncryptWithLabel(pub))", got, plaintext)


def check(v: dict[str, Any]) -> None:
    suite = get_suite(v["cipher_suite"])
    _ref_hash(suite, v["ref_hash"])
    _expand_with_label(suite, v["expand_with_label"])
    _derive_secret(suite, v["derive_secret"])
    _derive_tree_secret(suite, v["derive_tree_secret"])
    _sign_with_label(suite, v["sign_with_label"])
    _encrypt_with_label(suite, v["encrypt_with_label"])
