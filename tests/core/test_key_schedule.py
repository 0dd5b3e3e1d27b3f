"""Key schedule (RFC 9420 §8), PSK chaining (§8.4), exporter (§8.5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mls_core.ciphersuite import get_suite
from mls_core.errors import DecodeError, UsageError, VerificationError
from mls_core.key_schedule import (
    EpochSecrets,
    confirmation_tag,
    derive_epoch_secrets,
    derive_joiner_secret,
    mls_exporter,
    next_epoch,
    secrets_from_epoch_secret,
    verify_confirmation_tag,
    welcome_key_nonce,
    welcome_secret,
)
from mls_core.psk import ExternalPSK, PreSharedKeyID, PSKType, psk_secret

SUITE = get_suite(1)
INIT = bytes([1]) * 32
COMMIT = bytes([2]) * 32
CTX = b"group context bytes"


def test_zero_psk_equals_none() -> None:
    zero = bytes(32)
    a = next_epoch(SUITE, INIT, COMMIT, None, CTX)
    b = next_epoch(SUITE, INIT, COMMIT, zero, CTX)
    assert a.secrets == b.secrets
    assert a.welcome_secret == b.welcome_secret
    c = next_epoch(SUITE, INIT, COMMIT, bytes([9]) * 32, CTX)
    assert c.secrets.encryption_secret != a.secrets.encryption_secret
    assert c.joiner_secret == a.joiner_secret  # the PSK enters after joiner_secret


def test_zero_commit_secret_equals_none() -> None:
    assert derive_joiner_secret(SUITE, INIT, None, CTX) == derive_joiner_secret(
        SUITE, INIT, bytes(32), CTX)


def test_joiner_path_matches_member_path() -> None:
    """A Welcome joiner starting from joiner_secret reaches the same epoch secrets."""
    t = next_epoch(SUITE, INIT, COMMIT, None, CTX)
    assert derive_epoch_secrets(SUITE, t.joiner_secret, None, CTX) == t.secrets
    assert welcome_secret(SUITE, t.joiner_secret, None) == t.welcome_secret
    assert derive_epoch_secrets(SUITE, t.joiner_secret, None, CTX + b"x") != t.secrets


def test_rfc_diagram_by_hand() -> None:
    s = SUITE
    joiner = s.expand_with_label(s.extract(INIT, COMMIT), b"joiner", CTX, 32)
    member = s.extract(joiner, bytes(32))
    epoch = s.expand_with_label(member, b"epoch", CTX, 32)
    t = next_epoch(s, INIT, COMMIT, None, CTX)
    assert t.joiner_secret == joiner
    assert t.welcome_secret == s.derive_secret(member, b"welcome")
    assert t.secrets == secrets_from_epoch_secret(s, epoch)
    assert t.secrets.init_secret == s.derive_secret(epoch, b"init")
    assert t.secrets.epoch_authenticator == s.derive_secret(epoch, b"authentication")
    assert not hasattr(t.secrets, "epoch_secret") and not hasattr(t.secrets, "joiner_secret")


def test_epochs_chain_through_init_secret() -> None:
    e1 = next_epoch(SUITE, INIT, COMMIT, None, CTX)
    e2 = next_epoch(SUITE, e1.secrets.init_secret, COMMIT, None, CTX)
    assert e2.secrets != e1.secrets


@pytest.mark.parametrize("length", [0, 1, 16, 32, 64, 255, 1000])
def test_exporter_lengths(length: int) -> None:
    out = mls_exporter(SUITE, bytes(32), "label", b"ctx", length)
    assert len(out) == length
    if length:  # the length is bound into KDFLabel, so outputs are not prefixes
        longer = mls_exporter(SUITE, bytes(32), "label", b"ctx", length + 1)
        assert longer[:length] != out


def test_exporter_binds_label_and_context() -> None:
    base = mls_exporter(SUITE, bytes(32), "a", b"c", 32)
    assert base == mls_exporter(SUITE, bytes(32), b"a", b"c", 32)
    assert base != mls_exporter(SUITE, bytes(32), "b", b"c", 32)
    assert base != mls_exporter(SUITE, bytes(32), "a", b"d", 32)
    with pytest.raises(UsageError):
        mls_exporter(SUITE, bytes(32), "a", b"c", 1 << 16)


def test_wrong_secret_lengths_rejected() -> None:
    with pytest.raises(UsageError):
        next_epoch(SUITE, b"short", COMMIT, None, CTX)
    with pytest.raises(UsageError):
        next_epoch(SUITE, INIT, COMMIT, b"short", CTX)
    with pytest.raises(UsageError):
        derive_epoch_secrets(SUITE, b"short", None, CTX)


def test_sha512_suite_sizes() -> None:
    s = get_suite(4)
    t = next_epoch(s, bytes(64), None, None, CTX)
    assert len(t.secrets.encryption_secret) == 64
    key, nonce = welcome_key_nonce(s, t.welcome_secret)
    assert (len(key), len(nonce)) == (32, 12)


def test_confirmation_tag() -> None:
    key = bytes(32)
    tag = confirmation_tag(SUITE, key, b"cth")
    assert tag == SUITE.mac(key, b"cth")
    verify_confirmation_tag(SUITE, key, b"cth", tag)
    with pytest.raises(VerificationError):
        verify_confirmation_tag(SUITE, key, b"cth2", tag)


def test_epoch_secrets_storage_and_repr() -> None:
    sec = next_epoch(SUITE, INIT, COMMIT, None, CTX).secrets
    assert EpochSecrets.from_bytes(sec.to_bytes()) == sec
    assert sec.encryption_secret.hex() not in repr(sec)
    with pytest.raises(DecodeError):
        EpochSecrets.from_bytes(b"\x02" + sec.to_bytes()[1:])
    with pytest.raises(DecodeError):
        EpochSecrets.from_bytes(sec.to_bytes()[:-1])


def _ext(i: int) -> PreSharedKeyID:
    return PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(bytes([i])), bytes(32))


def test_psk_secret_empty_is_zero() -> None:
    assert psk_secret(SUITE, []) == bytes(32)
    assert psk_secret(get_suite(7), []) == bytes(48)


def test_psk_secret_single_by_hand() -> None:
    s = SUITE
    pid = _ext(1)
    label = pid.encode() + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    psk_input = s.expand_with_label(s.extract(bytes(32), b"psk"), b"derived psk", label, 32)
    assert psk_secret(s, [(pid, b"psk")]) == s.extract(psk_input, bytes(32))


@given(st.lists(st.binary(min_size=1, max_size=8), min_size=2, max_size=4, unique=True))
def test_psk_secret_depends_on_order(psks: list[bytes]) -> None:
    items = [(_ext(i), p) for i, p in enumerate(psks)]
    assert psk_secret(SUITE, items) != psk_secret(SUITE, items[::-1])
