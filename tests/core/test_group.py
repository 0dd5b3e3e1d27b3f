"""Scenario tests of the group state machine (RFC 9420 §11, §12) for every cipher suite:
joins by Welcome and by external Commit, application data, Commits with every proposal
kind a member sends, both handshake wire formats, late messages and the secrecy of
other epochs. After every epoch all members must agree (see ``World.check``)."""

from __future__ import annotations

import os

import pytest

from mls_core.commit import Commit
from mls_core.errors import EpochError, MLSError, UsageError, ValidationError
from mls_core.events import ApplicationMessage, CommitApplied, ProposalReceived
from mls_core.extensions import Extension, ExtensionType
from mls_core.framing import MLSMessage, SenderType, WireFormat
from mls_core.group import Group
from mls_core.key_package import sign_leaf_node
from mls_core.messages import (
    ExternalSender,
    RequiredCapabilities,
    external_senders_extension,
    required_capabilities_extension,
)
from mls_core.nodes import LeafNodeSource, LeafNodeTBS, LeafNodeTBSContext
from mls_core.proposals import (
    Add,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRefType,
    ProposalType,
    Remove,
    Update,
)
from mls_core.psk import ExternalPSK, PreSharedKeyID, PSKType

from .group_helpers import EXPORT_LABEL, NOW, SUITES, World, header_of, new_client

PUBLIC = WireFormat.MLS_PUBLIC_MESSAGE
PRIVATE = WireFormat.MLS_PRIVATE_MESSAGE

suites = pytest.mark.parametrize("suite_id", SUITES)
wire_formats = pytest.mark.parametrize("wire_format", [PUBLIC, PRIVATE],
                                       ids=["public", "private"])


def _commit_of(data: bytes) -> Commit:
    """The Commit inside a PublicMessage (for inspecting what was sent)."""
    msg = MLSMessage.decode(data).public_message
    assert msg is not None and msg.content.commit is not None
    return msg.content.commit


# --------------------------------------------------------------------------- creation


@suites
def test_create(suite_id: int) -> None:
    c = new_client(suite_id, b"alice")
    g = Group.create(suite_id, c.credential, c.signature_priv, group_id=b"gid", now=NOW)
    assert (g.epoch, g.group_id, g.own_leaf_index, g.active) == (0, b"gid", 0, True)
    assert [m.credential for m in g.members] == [c.credential]
    assert len(g.epoch_authenticator) == g.suite.hash_length
    assert g.export_secret(EXPORT_LABEL, b"", 17) == g.export_secret(EXPORT_LABEL, b"", 17)
    assert len(g.export_secret(EXPORT_LABEL, b"", 17)) == 17
    assert g.export_secret(EXPORT_LABEL, b"a", 32) != g.export_secret(EXPORT_LABEL, b"b", 32)
    info = MLSMessage.decode(g.group_info()).group_info
    assert info is not None and info.group_context == g.context
    other = Group.create(suite_id, c.credential, c.signature_priv, group_id=b"gid", now=NOW)
    assert other.epoch_authenticator != g.epoch_authenticator  # fresh epoch secret


# --------------------------------------------------------------------------- Welcome


@suites
@pytest.mark.parametrize("tree_in_welcome", [True, False], ids=["tree-in-welcome", "oob"])
def test_add_members_by_welcome(suite_id: int, tree_in_welcome: bool) -> None:
    w = World(suite_id)
    first = w.add(b"m0", 2, tree_in_welcome=tree_in_welcome)
    w.check()
    assert w.ds.epoch == 1
    assert [j.g.own_leaf_index for j in first] == [1, 2]
    later = w.add(first[1].name, 1, tree_in_welcome=tree_in_welcome)
    w.check()
    assert len(w.any.g.members) == 4 and later[0].g.epoch == 2


@suites
def test_welcome_without_tree_needs_tree_out_of_band(suite_id: int) -> None:
    w = World(suite_id)
    j = w.client()
    kp, priv = j.key_package()
    result = w.members[b"m0"].g.commit([Add(kp)], ratchet_tree_in_welcome=False)
    assert result.welcome is not None
    with pytest.raises(UsageError, match=r"12\.4\.3\.1"):
        Group.join(result.welcome, kp, priv, config=j.config, now=NOW)


@suites
def test_commit_event_lists_added_members(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 1)
    j = w.client()
    kp, _ = j.key_package()
    result = w.members[b"c1"].g.commit([Add(kp)])
    w.members[b"c1"].g.merge_pending_commit()
    event = w.members[b"m0"].g.process(result.commit, now=NOW)
    assert isinstance(event, CommitApplied)
    assert [(m.index, m.credential) for m in event.added] == [(2, j.credential)]
    assert event.committer.leaf_index == 1 and event.epoch == 2


# --------------------------------------------------------------------------- application


@suites
@wire_formats
def test_application_messages_both_ways(suite_id: int, wire_format: int) -> None:
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 2)
    for sender in list(w.members):
        w.send(sender, b"from " + sender)
    a, b = w.members[b"m0"], w.members[b"c2"]
    data = b.g.encrypt(b"payload", authenticated_data=b"aad")
    event = a.g.process(data, now=NOW)
    assert event == ApplicationMessage(b.g.own_leaf_index, b.g.epoch, b"payload", b"aad")
    assert header_of(data).content_type == 1  # application, always a PrivateMessage
    w.check()


@suites
@pytest.mark.parametrize("block", [32, 64])
def test_private_message_plaintexts_are_padded(suite_id: int, block: int) -> None:
    """GroupConfig.padding_block: every PrivateMessageContent plaintext (application,
    proposal and commit) is a multiple of the block (§6.3.1); AEAD tags are 16 bytes."""
    w = World(suite_id, padding_block=block)
    w.add(b"m0", 1)
    g = w.members[b"m0"].g
    sent = [g.encrypt(b"x" * n) for n in (0, 1, 5, 20, 100)]
    sent.append(g.propose(Remove(1)))
    sent.append(g.commit().commit)
    for data in sent:
        pm = MLSMessage.decode(data).private_message
        assert pm is not None
        assert (len(pm.ciphertext) - 16) % block == 0


# --------------------------------------------------------------------------- update


@suites
@wire_formats
def test_update_by_empty_commit(suite_id: int, wire_format: int) -> None:
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 3)
    for name in [b"c2", b"m0", b"c3"]:
        c = w.members[name]
        before_auth = c.g.epoch_authenticator
        before_key = c.g.tree.leaf(c.g.own_leaf_index).encryption_key  # type: ignore[union-attr]
        w.commit(name)
        w.check()
        leaf = c.g.tree.leaf(c.g.own_leaf_index)
        assert leaf is not None and leaf.leaf_node_source == LeafNodeSource.COMMIT
        assert leaf.encryption_key != before_key
        assert c.g.epoch_authenticator != before_auth
        w.send(name, b"after update")


def _update_leaf(c: Group, signature_priv: bytes) -> Update:
    old = c.tree.leaf(c.own_leaf_index)
    assert old is not None
    _, pub = c.suite.generate_key_pair()
    return Update(sign_leaf_node(c.suite, signature_priv, LeafNodeTBS(
        pub, old.signature_key, old.credential, old.capabilities, LeafNodeSource.UPDATE,
        None, old.extensions, LeafNodeTBSContext(c.group_id, c.own_leaf_index))))


@suites
@wire_formats
def test_update_proposal_committed_by_another_member(suite_id: int, wire_format: int) -> None:
    """§12.1.2: a member proposes an Update; another member commits it; the proposer
    follows with the private key of its proposed leaf."""
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 2)
    c1 = w.members[b"c1"]
    old_key = c1.g.tree.leaf(1).encryption_key  # type: ignore[union-attr]
    data = c1.g.propose_update()
    assert w.ds.submit(b"c1", data)
    w.sync_all()
    w.commit(b"m0")  # the Update blanks c1's path: its path secret goes to the new leaf
    w.check()
    leaf = c1.g.tree.leaf(1)
    assert leaf is not None and leaf.leaf_node_source == LeafNodeSource.UPDATE
    assert leaf.encryption_key != old_key
    w.commit(b"c2")
    w.check()
    w.send(b"c1", b"updated")


def test_update_proposal_from_member_is_applied_by_the_others() -> None:
    """The receiving side of §12.1.2: the others replace the proposer's leaf."""
    w = World(1)
    w.add(b"m0", 2)
    c1 = w.members[b"c1"]
    update = _update_leaf(c1.g, c1.signature_priv)
    w.propose(b"c1", update)
    result = w.members[b"m0"].g.commit()
    event = w.members[b"c2"].g.process(result.commit, now=NOW)
    assert isinstance(event, CommitApplied) and event.updated == (1,)
    assert w.members[b"c2"].g.tree.leaf(1) == update.leaf_node


# --------------------------------------------------------------------------- remove


@suites
@wire_formats
def test_remove(suite_id: int, wire_format: int) -> None:
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 3)
    victim = w.members[b"c3"]
    victim_index = victim.g.own_leaf_index
    w.remove(b"c1", b"c3")  # the victim processed it and left (see World.sync)
    assert not victim.g.active
    w.check()
    assert w.any.g.tree.leaf(victim_index) is None
    with pytest.raises(UsageError):
        victim.g.encrypt(b"still here?")
    with pytest.raises(UsageError):
        victim.g.commit()
    later = w.send(b"m0", b"after removal")
    w.check_former_cannot_read(later)
    with pytest.raises(MLSError):
        victim.g.process(later, now=NOW)
    w.commit(b"c2")
    w.check_former_cannot_read(w.send(b"c1", b"two epochs later"))


@suites
def test_removed_member_sees_removed_self_event(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 2)
    victim = w.members[b"c2"]
    result = w.members[b"c1"].g.commit([Remove(victim.g.own_leaf_index)])
    event = victim.g.process(result.commit, now=NOW)
    assert isinstance(event, CommitApplied) and event.removed_self
    assert [m.credential for m in event.removed] == [victim.credential]
    assert not victim.g.active


@suites
def test_remove_and_readd_same_client(suite_id: int) -> None:
    """§12.2: an Add of a client in the group is fine if the same Commit removes it."""
    w = World(suite_id)
    (c1,) = w.add(b"m0", 1)
    kp, _ = c1.key_package()
    result = w.members[b"m0"].g.commit([Remove(1), Add(kp)])
    w.members[b"m0"].g.merge_pending_commit()
    assert result.welcome is not None
    assert w.members[b"m0"].g.members[1].credential == c1.credential


# --------------------------------------------------------------------------- PSKs


@suites
@wire_formats
def test_external_psk(suite_id: int, wire_format: int) -> None:
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 2)
    w.psks[b"psk-1"] = os.urandom(32)
    w.psks[b"psk-2"] = os.urandom(16)
    # by reference
    data = w.members[b"c1"].g.propose_external_psk(b"psk-1")
    assert w.ds.submit(b"c1", data)
    w.sync_all()
    result = w.commit(b"c2")
    w.check()
    # by value, together with an Add: the joiner needs the PSK as well (§12.4.3.1)
    nonce = os.urandom(w.suite.hash_length)
    psk = PreSharedKey(PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(b"psk-2"), nonce))
    j = w.client()
    kp, priv = j.key_package()
    w.commit(b"m0", [psk, Add(kp)], [(j, kp, priv)])
    w.check()
    assert result.welcome is None and j.g.epoch == w.ds.epoch


@suites
def test_commit_with_psk_reports_it(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 1)
    w.psks[b"k"] = b"secret"
    proposal = w.members[b"m0"].g.propose_external_psk(b"k")
    w.members[b"c1"].g.process(proposal, now=NOW)
    result = w.members[b"m0"].g.commit()
    event = w.members[b"c1"].g.process(result.commit, now=NOW)
    assert isinstance(event, CommitApplied) and event.psks == 1


@suites
def test_unknown_external_psk_is_rejected(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 1)
    w.psks[b"k"] = b"secret"
    w.propose(b"m0", PreSharedKey(PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(b"k"),
                                                 os.urandom(w.suite.hash_length))))
    result = w.members[b"m0"].g.commit()
    w.members[b"m0"].g.merge_pending_commit()
    del w.psks[b"k"]
    before = w.members[b"c1"].g.epoch_authenticator
    with pytest.raises(ValidationError, match="PSK"):
        w.members[b"c1"].g.process(result.commit, now=NOW)
    assert w.members[b"c1"].g.epoch_authenticator == before


@suites
@wire_formats
def test_resumption_psk(suite_id: int, wire_format: int) -> None:
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 2)
    w.commit(b"c1")
    epoch = w.ds.epoch
    data = w.members[b"c2"].g.propose_resumption_psk(epoch - 1)
    assert w.ds.submit(b"c2", data)
    w.sync_all()
    w.commit(b"m0")
    w.check()
    # the current epoch's resumption PSK, by value (psk_epoch = current epoch)
    g = w.members[b"c1"].g
    assert g.resumption_psk(epoch) != g.resumption_psk(epoch - 1)
    w.propose(b"c1", _resumption(w, epoch + 1))
    w.commit(b"c2")
    w.check()


def _resumption(w: World, epoch: int) -> PreSharedKey:
    from mls_core.psk import ResumptionPSK, ResumptionPSKUsage

    return PreSharedKey(PreSharedKeyID(
        PSKType.RESUMPTION, ResumptionPSK(ResumptionPSKUsage.APPLICATION,
                                          w.any.g.group_id, epoch),
        os.urandom(w.suite.hash_length)))


# --------------------------------------------------------------------------- extensions


@suites
@wire_formats
def test_group_context_extensions(suite_id: int, wire_format: int) -> None:
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 2)
    required = RequiredCapabilities((), (), (1,))
    ext_sender = new_client(suite_id, b"server")
    sender_key = w.suite.signature_public_key(ext_sender.signature_priv)
    extensions = (
        Extension(ExtensionType.APPLICATION_ID, b"chat-42"),
        required_capabilities_extension(required),
        external_senders_extension([ExternalSender(sender_key, ext_sender.credential)]),
    )
    result = w.commit(b"c1", [Proposal.of(GroupContextExtensions(extensions))])
    w.check()
    assert w.any.g.context.extensions == extensions
    assert result.welcome is None
    # members joining later see and accept the new extensions
    (late,) = w.add(b"c2", 1)
    w.check()
    assert late.g.context.extensions == extensions


@suites
def test_gce_event_flag(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 1)
    gce = Proposal.of(GroupContextExtensions((Extension(ExtensionType.APPLICATION_ID,
                                                        b"x"),)))
    result = w.members[b"m0"].g.commit([gce])
    event = w.members[b"c1"].g.process(result.commit, now=NOW)
    assert isinstance(event, CommitApplied) and event.extensions_changed


# --------------------------------------------------------------------------- by reference


@suites
def test_propose_by_reference_then_commit(suite_id: int) -> None:
    w = World(suite_id, wire_format=PUBLIC)
    w.add(b"m0", 3)
    j = w.client()
    kp, priv = j.key_package()
    events = {}
    for name, proposal in ((b"c1", Add(kp)), (b"c2", Remove(3))):
        data = w.members[name].g.propose(proposal)
        assert w.ds.submit(name, data)
        events[name] = w.sync_all()
    received = events[b"c1"][b"m0"][0]
    assert isinstance(received, ProposalReceived)
    assert received.proposal.proposal_type == ProposalType.ADD
    assert received.sender.leaf_index == 1
    assert len(w.members[b"m0"].g.pending_proposals) == 2
    result = w.commit(b"m0", joiners=[(j, kp, priv)])
    commit = _commit_of(result.commit)
    assert [p.type for p in commit.proposals] == [ProposalOrRefType.REFERENCE] * 2
    assert b"c3" in w.former
    w.check()
    assert not w.any.g.pending_proposals


@suites
def test_private_proposals_by_reference(suite_id: int) -> None:
    w = World(suite_id, wire_format=PRIVATE)
    w.add(b"m0", 2)
    w.propose(b"c1", Remove(2))
    w.propose(b"m0", _resumption(w, w.ds.epoch))
    w.commit(b"c1")
    w.check()
    assert b"c2" in w.former


@suites
def test_application_data_blocked_while_proposals_pending(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 1)
    w.propose(b"c1", Remove(0))
    with pytest.raises(UsageError, match=r"§12\.4"):
        w.members[b"c1"].g.encrypt(b"x")


# --------------------------------------------------------------------------- external joins


@suites
@wire_formats
def test_external_join(suite_id: int, wire_format: int) -> None:
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 2)
    w.send(b"c1", b"before the join")
    j = w.external_join(b"c2")
    w.check()
    assert j.g.own_leaf_index == 3
    w.send(j.name, b"hello from the joiner")
    w.send(b"m0", b"welcome")
    w.commit(j.name)
    w.check()


@suites
def test_external_join_with_out_of_band_tree(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 1)
    via = w.members[b"c1"].g
    info = via.group_info(with_ratchet_tree=False)
    j = w.client()
    with pytest.raises(UsageError):
        Group.join_external(info, j.credential, j.signature_priv, config=j.config, now=NOW)
    group, commit = Group.join_external(info, j.credential, j.signature_priv,
                                        ratchet_tree=via.ratchet_tree_bytes(),
                                        config=j.config, now=NOW)
    event = via.process(commit, now=NOW)
    assert isinstance(event, CommitApplied)
    assert event.committer.sender_type == SenderType.NEW_MEMBER_COMMIT
    assert group.epoch_authenticator == via.epoch_authenticator


@suites
@wire_formats
def test_external_resync(suite_id: int, wire_format: int) -> None:
    """A member that lost its state rejoins, removing its old leaf (§12.4.3.2)."""
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 3)
    c2 = w.members[b"c2"]
    old_group, old_index = c2.g, c2.g.own_leaf_index
    group, commit = w.external_commit(b"m0", c2, resync=True)
    assert w.ds.submit(c2.name, commit)
    events = w.external_accepted(c2, group, resync=True)
    assert events.pop(c2.name) == []
    for (event,) in events.values():
        assert isinstance(event, CommitApplied) and not event.removed_self
        assert [(m.index, m.credential) for m in event.removed] == [(old_index,
                                                                    c2.credential)]
        assert [(m.index, m.credential) for m in event.added] == [(old_index,
                                                                  c2.credential)]
    w.check()
    assert len(w.any.g.members) == 4 and c2.g is not old_group
    w.send(b"c2", b"back")
    w.commit(b"c3")
    w.check()


@suites
def test_external_commit_event_lists_the_joiner(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 1)
    j = w.client()
    _, commit = Group.join_external(w.members[b"m0"].g.group_info(), j.credential,
                                    j.signature_priv, config=j.config, now=NOW)
    event = w.members[b"c1"].g.process(commit, now=NOW)
    assert isinstance(event, CommitApplied)
    assert [(m.index, m.credential) for m in event.added] == [(2, j.credential)]


# --------------------------------------------------------------------------- concurrency


@suites
def test_concurrent_commits_first_wins_loser_retries(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 3)
    a, b = w.members[b"c1"], w.members[b"c3"]
    ra = a.g.commit([Remove(2)])
    rb = b.g.commit()
    assert w.ds.submit(a.name, ra.commit)
    assert not w.ds.submit(b.name, rb.commit)
    a.g.merge_pending_commit()
    b.g.discard_pending_commit()
    assert not b.g.has_pending_commit
    w.sync_all()
    w.check()
    assert w.try_commit(b.name) is not None
    w.check()


# --------------------------------------------------------------------------- epochs


@suites
@wire_formats
def test_late_application_message_from_previous_epoch(suite_id: int,
                                                       wire_format: int) -> None:
    w = World(suite_id, wire_format=wire_format)
    w.add(b"m0", 2)
    sender = w.members[b"c1"]
    late = sender.g.encrypt(b"sent in epoch 1")
    w.commit(b"c2")  # everyone (incl. the sender) moves to epoch 2 first
    assert w.ds.submit(sender.name, late)
    for name, events in w.sync_all().items():
        if name != sender.name:
            assert events == [ApplicationMessage(sender.g.own_leaf_index, 1,
                                                 b"sent in epoch 1")]
    w.check()


@suites
def test_message_older_than_retained_epochs_is_rejected(suite_id: int) -> None:
    w = World(suite_id, max_past_epochs=1)
    w.add(b"m0", 1)
    late = w.members[b"c1"].g.encrypt(b"old")
    w.commit(b"m0")
    w.commit(b"c1")
    with pytest.raises(EpochError):
        w.members[b"m0"].g.process(late, now=NOW)


@suites
def test_new_member_cannot_decrypt_earlier_messages(suite_id: int) -> None:
    w = World(suite_id)
    w.add(b"m0", 1)
    earlier = [w.send(b"m0", b"secret 1"), w.send(b"c1", b"secret 2")]
    (j,) = w.add(b"c1", 1)
    for data in earlier:
        with pytest.raises(MLSError):
            j.g.process(data, now=NOW)
    ext = w.external_join(b"m0")
    for data in earlier:
        with pytest.raises(MLSError):
            ext.g.process(data, now=NOW)
    w.check()


@suites
def test_long_scenario(suite_id: int) -> None:
    """A bit of everything in one group, checking agreement after every epoch."""
    w = World(suite_id, wire_format=PUBLIC)
    w.psks[b"ext"] = os.urandom(32)
    w.add(b"m0", 3)
    w.check()
    w.send(b"c3", b"1")
    w.commit(b"c1")
    w.check()
    w.remove(b"c2", b"c1")
    w.check()
    w.external_join(b"c3")
    w.check()
    w.propose(b"m0", PreSharedKey(PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(b"ext"),
                                                 os.urandom(w.suite.hash_length))))
    w.commit(b"c3")
    w.check()
    w.commit(b"c2", [Proposal.of(GroupContextExtensions((
        Extension(ExtensionType.APPLICATION_ID, b"id"),)))])
    w.check()
    w.external_join(b"m0", w.members[b"c3"], resync=True)
    w.check()
    w.add(b"c4", 2, tree_in_welcome=False)
    w.check()
    for name in list(w.members):
        w.send(name, b"bye from " + name)
    assert w.ds.epoch == 8
