"""External proposals (§12.1.8): external senders and new-member Add proposals."""

from __future__ import annotations

import pytest

from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.errors import UsageError, ValidationError, VerificationError
from mls_core.events import ProposalReceived
from mls_core.external import external_proposal, join_proposal
from mls_core.group import Group
from mls_core.key_package import create_key_package, default_capabilities
from mls_core.messages import ExternalSender, external_senders_extension
from mls_core.proposals import Add, Proposal, Remove, Update

NOW = 1_800_000_000


def _group_with_external_sender() -> tuple[Group, Group, bytes]:
    s = get_suite(1)
    bridge_priv, bridge_pub = s.generate_signature_key_pair()
    ext = external_senders_extension([ExternalSender(bridge_pub, Credential.basic(b"bridge"))])
    ska = s.generate_signature_key_pair()[0]
    a = Group.create(1, Credential.basic(b"a"), ska, extensions=[ext], now=NOW,
                     capabilities=default_capabilities())
    skb = s.generate_signature_key_pair()[0]
    kp, priv = create_key_package(s, Credential.basic(b"b"), skb, now=NOW)
    res = a.commit([Add(kp)], now=NOW)
    a.merge_pending_commit()
    assert res.welcome is not None
    return a, Group.join(res.welcome, kp, priv, now=NOW), bridge_priv


def test_external_sender_remove_is_committed() -> None:
    a, b, bridge_priv = _group_with_external_sender()
    msg = external_proposal(1, a.group_id, a.epoch, 0, bridge_priv, Proposal.of(Remove(1)))
    assert isinstance(a.process(msg), ProposalReceived)
    b.process(msg)
    result = a.commit(now=NOW)
    a.merge_pending_commit()
    event = b.process(result.commit)
    assert event.removed_self  # type: ignore[union-attr]
    assert [m.index for m in a.members] == [0]


def test_external_sender_forgery_and_disallowed_types() -> None:
    a, _, bridge_priv = _group_with_external_sender()
    forged = get_suite(1).generate_signature_key_pair()[0]
    msg = external_proposal(1, a.group_id, a.epoch, 0, forged, Proposal.of(Remove(1)))
    before = a.epoch_authenticator
    with pytest.raises(VerificationError):
        a.process(msg)
    with pytest.raises(ValidationError):
        a.process(external_proposal(1, a.group_id, a.epoch, 5, bridge_priv,
                                    Proposal.of(Remove(1))))
    assert a.epoch_authenticator == before and not a.pending_proposals
    leaf = a.tree.leaf(0)
    assert leaf is not None
    with pytest.raises(UsageError):
        external_proposal(1, a.group_id, a.epoch, 0, bridge_priv, Proposal.of(Update(leaf)))


def test_new_member_proposal_add() -> None:
    a, b, _ = _group_with_external_sender()
    s = get_suite(1)
    skc = s.generate_signature_key_pair()[0]
    kp, priv = create_key_package(s, Credential.basic(b"c"), skc, now=NOW)
    msg = join_proposal(a.group_info(), kp, skc)
    a.process(msg)
    b.process(msg)
    result = b.commit(now=NOW)
    b.merge_pending_commit()
    a.process(result.commit)
    assert result.welcome is not None
    c = Group.join(result.welcome, kp, priv, now=NOW)
    assert a.epoch_authenticator == b.epoch_authenticator == c.epoch_authenticator


def test_external_join_with_an_external_psk() -> None:
    """§12.2: an external Commit may carry PreSharedKey proposals."""
    from mls_core.config import GroupConfig

    psks = {b"shared-psk": b"\x07" * 32}
    s = get_suite(1)
    a = Group.create(1, Credential.basic(b"a"), s.generate_signature_key_pair()[0], now=NOW,
                     config=GroupConfig(external_psks=dict(psks)))
    joiner, commit = Group.join_external(
        a.group_info(), Credential.basic(b"j"), s.generate_signature_key_pair()[0],
        psk_ids=[b"shared-psk"], config=GroupConfig(external_psks=dict(psks)), now=NOW)
    event = a.process(commit, now=NOW)
    assert event.psks == 1  # type: ignore[union-attr]
    assert a.epoch_authenticator == joiner.epoch_authenticator
    with pytest.raises(ValidationError, match="PSK"):
        Group.join_external(a.group_info(), Credential.basic(b"k"),
                            s.generate_signature_key_pair()[0], psk_ids=[b"unknown"], now=NOW)
