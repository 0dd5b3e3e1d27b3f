"""ReInit (§11.2) and subgroup branching (§11.3) with resumption PSKs."""

from __future__ import annotations

import pytest

from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.errors import UsageError, ValidationError
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add, ReInit

NOW = 1_800_000_000


def _group(names: list[bytes], suite_id: int = 1) -> tuple[list[Group], list[bytes]]:
    s = get_suite(suite_id)
    keys = [s.generate_signature_key_pair()[0] for _ in names]
    creator = Group.create(suite_id, Credential.basic(names[0]), keys[0], now=NOW)
    kps = [create_key_package(s, Credential.basic(n), k, now=NOW)
           for n, k in zip(names[1:], keys[1:], strict=True)]
    res = creator.commit([Add(kp) for kp, _ in kps], now=NOW)
    creator.merge_pending_commit()
    assert res.welcome is not None
    return [creator, *(Group.join(res.welcome, kp, pr, now=NOW) for kp, pr in kps)], keys


def test_reinit_moves_the_group_to_a_new_suite() -> None:
    (a, b), _ = _group([b"a", b"b"])
    result = a.commit([ReInit(b"new-group", 1, 2, ())], now=NOW)
    a.merge_pending_commit()
    event = b.process(result.commit)
    assert event.reinit is not None  # type: ignore[union-attr]
    assert not a.active and not b.active
    with pytest.raises(UsageError):
        a.encrypt(b"old group is closed")
    s2 = get_suite(2)
    a_key, b_key = s2.generate_signature_key_pair()[0], s2.generate_signature_key_pair()[0]
    kp_b, priv_b = create_key_package(s2, Credential.basic(b"b"), b_key, now=NOW)
    new_a, res = a.reinit(Credential.basic(b"a"), a_key, [kp_b], now=NOW)
    new_a.merge_pending_commit()
    assert res.welcome is not None
    new_b = Group.join(res.welcome, kp_b, priv_b, linked_group=b, now=NOW)
    assert (new_b.group_id, new_b.suite.id, new_b.epoch) == (b"new-group", 2, 1)
    assert new_a.epoch_authenticator == new_b.epoch_authenticator
    assert new_b.process(new_a.encrypt(b"hello")).data == b"hello"  # type: ignore[union-attr]


def test_reinit_welcome_needs_the_old_group() -> None:
    (a, b), _ = _group([b"a", b"b"])
    result = a.commit([ReInit(b"g2", 1, 1, ())], now=NOW)
    a.merge_pending_commit()
    b.process(result.commit)
    s = get_suite(1)
    b_key = s.generate_signature_key_pair()[0]
    kp_b, priv_b = create_key_package(s, Credential.basic(b"b"), b_key, now=NOW)
    _new_a, res = a.reinit(Credential.basic(b"a"), s.generate_signature_key_pair()[0], [kp_b],
                          now=NOW)
    assert res.welcome is not None
    with pytest.raises(ValidationError, match="PSK"):
        Group.join(res.welcome, kp_b, priv_b, now=NOW)


def test_branch_a_subgroup() -> None:
    (a, b, c), keys = _group([b"a", b"b", b"c"])
    s = get_suite(1)
    kp_b, priv_b = create_key_package(s, Credential.basic(b"b"), keys[1], now=NOW)
    sub_a, res = a.branch([kp_b], group_id=b"sub", now=NOW)
    sub_a.merge_pending_commit()
    assert res.welcome is not None
    sub_b = Group.join(res.welcome, kp_b, priv_b, linked_group=b, now=NOW)
    assert sub_b.epoch == 1 and len(sub_b.members) == 2
    assert sub_a.epoch_authenticator == sub_b.epoch_authenticator
    assert a.active  # branching leaves the original group usable
    outsider_kp, outsider_priv = create_key_package(s, Credential.basic(b"zed"),
                                        s.generate_signature_key_pair()[0], now=NOW)
    _, res2 = a.branch([outsider_kp], group_id=b"sub2", now=NOW)
    assert res2.welcome is not None
    with pytest.raises(ValidationError):  # c's view: the branch is checked against it
        Group.join(res2.welcome, outsider_kp, outsider_priv, linked_group=c, now=NOW)
