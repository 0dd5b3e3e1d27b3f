"""KeyPackage creation and validation (RFC 9420 §10, §7.3)."""

from __future__ import annotations

import dataclasses

import pytest

from mls_core.ciphersuite import SUPPORTED_SUITES, get_suite
from mls_core.credentials import Credential
from mls_core.errors import ValidationError, VerificationError
from mls_core.framing import MLSMessage
from mls_core.key_package import create_key_package, validate_key_package
from mls_core.messages import KeyPackage

NOW = 1_800_000_000


@pytest.mark.parametrize("suite_id", SUPPORTED_SUITES)
def test_created_key_package_validates_and_roundtrips(suite_id: int) -> None:
    suite = get_suite(suite_id)
    sk, _ = suite.generate_signature_key_pair()
    kp, priv = create_key_package(suite, Credential.basic(b"alice"), sk, now=NOW)
    validate_key_package(suite, kp, now=NOW)
    assert KeyPackage.decode(kp.encode()) == kp
    assert MLSMessage.decode(MLSMessage.of(kp).encode()).key_package == kp
    assert suite.hpke_public_key(priv.init_priv) == kp.init_key
    assert suite.hpke_public_key(priv.encryption_priv) == kp.leaf_node.encryption_key
    assert "redacted" in repr(priv)


def _kp() -> tuple[KeyPackage, bytes]:
    suite = get_suite(1)
    sk, _ = suite.generate_signature_key_pair()
    return create_key_package(suite, Credential.basic(b"bob"), sk, now=NOW)[0], sk


def test_tampered_signature_rejected() -> None:
    kp, _ = _kp()
    bad = dataclasses.replace(kp, signature=bytes(len(kp.signature)))
    with pytest.raises(VerificationError):
        validate_key_package(get_suite(1), bad, now=NOW)


def test_tampered_leaf_rejected() -> None:
    kp, _ = _kp()
    leaf = dataclasses.replace(kp.leaf_node, credential=Credential.basic(b"mallory"))
    with pytest.raises(VerificationError):
        validate_key_package(get_suite(1), dataclasses.replace(kp, leaf_node=leaf), now=NOW)


def test_expired_and_wrong_suite_rejected() -> None:
    kp, _ = _kp()
    with pytest.raises(ValidationError, match="lifetime"):
        validate_key_package(get_suite(1), kp, now=NOW + 10**9)
    with pytest.raises(ValidationError, match="cipher suite"):
        validate_key_package(get_suite(3), kp, now=NOW)


def test_empty_identity_rejected() -> None:
    suite = get_suite(1)
    sk, _ = suite.generate_signature_key_pair()
    kp, _ = create_key_package(suite, Credential.basic(b""), sk, now=NOW)
    with pytest.raises(ValidationError, match="empty identity"):
        validate_key_package(suite, kp, now=NOW)
