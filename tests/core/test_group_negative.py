"""Invalid input to the group state machine: one test per proposal-list rule of RFC 9420
§12.2, plus broken signatures, tags, hashes, epochs, group ids, replays and malformed
bytes. Every rejection must raise a typed MLSError naming what failed and leave the
receiving group exactly as it was (same epoch, epoch_authenticator, members, exporter,
stored proposals), so that the next valid message still processes.

Offending Commits are built with the group's own code: either :meth:`Group.commit` with
the committer-side proposal-list check switched off (so path, signature, membership and
confirmation tags are all valid), or by hand (:func:`raw_commit`) where the committer
could not even apply the list; the receiver then rejects them on the rule itself.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from mls_core import commit_flow, treekem
from mls_core.commit import Commit
from mls_core.credentials import Credential
from mls_core.errors import (
    DecodeError,
    EpochError,
    MLSError,
    ProtocolError,
    ReplayError,
    ValidationError,
    VerificationError,
)
from mls_core.events import Member, ProposalReceived
from mls_core.extensions import Extension, ExtensionType
from mls_core.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
    WireFormat,
)
from mls_core.group import Group
from mls_core.key_package import default_capabilities, sign_leaf_node
from mls_core.messages import KeyPackage, KeyPackageTBS
from mls_core.nodes import LeafNodeSource, LeafNodeTBS, LeafNodeTBSContext, Lifetime
from mls_core.proposal_list import (
    CommittedProposal,
    ValidationContext,
    validate_external_commit,
    validate_member_commit,
)
from mls_core.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    ReInit,
    Remove,
    Update,
)
from mls_core.protection import sign_content, to_private_message, to_public_message
from mls_core.psk import ExternalPSK, PreSharedKeyID, PSKType

from .group_helpers import EXPORT_LABEL, NOW, Client, World

PUBLIC = WireFormat.MLS_PUBLIC_MESSAGE
PRIVATE = WireFormat.MLS_PRIVATE_MESSAGE

wire_formats = pytest.mark.parametrize("wire_format", [PUBLIC, PRIVATE],
                                       ids=["public", "private"])


# --------------------------------------------------------------------------- harness


@dataclass(frozen=True)
class Snapshot:
    epoch: int
    authenticator: bytes
    members: tuple[Member, ...]
    exporter: bytes
    proposals: tuple[Proposal, ...]
    pending: bool
    active: bool


def snapshot(g: Group) -> Snapshot:
    return Snapshot(g.epoch, g.epoch_authenticator, g.members,
                    g.export_secret(EXPORT_LABEL, b"", 32), g.pending_proposals,
                    g.has_pending_commit, g.active)


@pytest.fixture
def world(request: pytest.FixtureRequest) -> World:
    """Three members m0, c1, c2 (suite 1) with the requested handshake wire format."""
    wf = getattr(request, "param", PUBLIC)
    w = World(1, wire_format=wf)
    w.add(b"m0", 2)
    return w


def rejects(w: World, receiver: bytes, data: bytes, error: type[MLSError],
            match: str | None = None) -> None:
    """``receiver`` rejects ``data`` with ``error`` (message matching ``match``) and its
    state is unchanged: a second attempt fails the same way (so no ratchet key was used
    up either). Afterwards the group still works for everyone."""
    g = w.members[receiver].g
    before = snapshot(g)
    for _ in range(2):
        with pytest.raises(error, match=None if match is None else re.escape(match)):
            g.process(data, now=NOW)
        assert snapshot(g) == before
    still_works(w)


def still_works(w: World) -> None:
    """A valid Commit and a valid application message still process everywhere. (The
    Commit leaves stored proposals out: an Update proposal's sender could not follow.)"""
    names = list(w.members)
    w.commit(names[0], include_pending=False)
    w.check()
    w.send(names[-1], b"still alive")


def _no_check(*args: Any, **kwargs: Any) -> None:
    return None


def forged(w: World, sender: bytes, proposals: Sequence[Any], monkeypatch: pytest.MonkeyPatch,
           *, patches: Sequence[tuple[Any, str, Any]] = (), **kw: Any) -> bytes:
    """A Commit from ``sender`` over ``proposals`` that the committer-side §12.2 check
    would refuse, otherwise fully valid (path, signature, tags). Not merged."""
    g = w.members[sender].g
    with monkeypatch.context() as m:
        m.setattr(commit_flow, "validate_member_commit", _no_check)
        for obj, name, value in patches:
            m.setattr(obj, name, value)
        result = g.commit(list(proposals), now=NOW, **kw)
    g.discard_pending_commit()
    return result.commit


def committer_refuses(w: World, sender: bytes, proposals: Sequence[Any], match: str) -> None:
    """The committer itself refuses to create the Commit (§12.2 applies to both sides)."""
    g = w.members[sender].g
    before = snapshot(g)
    with pytest.raises(ValidationError, match=re.escape(match)):
        g.commit(list(proposals), now=NOW)
    assert snapshot(g) == before


def raw_commit(w: World, sender: bytes, proposals: Sequence[Proposal | bytes], *,
               path: Any = None, wire_format: int = PUBLIC,
               signature_priv: bytes | None = None) -> bytes:
    """A Commit built by hand: ``proposals`` by value (or ProposalRef bytes), optional
    ``path``, signed (by default with the sender's key) and protected for the current
    epoch; its confirmation_tag is a dummy (rules are checked before the key schedule)."""
    g = w.members[sender].g
    pors = tuple(ProposalOrRef.by_reference(p) if isinstance(p, bytes)
                 else ProposalOrRef.by_value(p) for p in proposals)
    content = FramedContent(g.group_id, g.epoch, Sender.member(g.own_leaf_index), b"",
                            ContentType.COMMIT, Commit(pors, path))
    return protect(w, sender, content, wire_format=wire_format, signature_priv=signature_priv,
                   tag=bytes(g.suite.hash_length))


def protect(w: World, sender: bytes, content: FramedContent, *, wire_format: int = PUBLIC,
            signature_priv: bytes | None = None, tag: bytes | None = None) -> bytes:
    """Sign ``content`` (with ``signature_priv`` or the sender's key) and protect it with
    the sender's current epoch keys."""
    c = w.members[sender]
    st = c.g._state
    key = signature_priv if signature_priv is not None else c.signature_priv
    signed = sign_content(st.suite, key, wire_format, content, st.context, tag)
    if wire_format == PUBLIC:
        return MLSMessage.of(to_public_message(st.suite, signed, st.context,
                                               st.secrets.membership_key)).encode()
    ratchet_key = st.secret_tree.next(st.own_leaf, content.content_type)
    return MLSMessage.of(to_private_message(st.suite, signed, st.secrets.sender_data_secret,
                                            ratchet_key)).encode()


def retag(w: World, sender: bytes, data: bytes,
          change: Callable[[AuthenticatedContent], AuthenticatedContent]) -> bytes:
    """Re-encode a member's PublicMessage after ``change``, with a valid membership tag
    (any member knows the membership key)."""
    msg = MLSMessage.decode(data).public_message
    assert msg is not None
    st = w.members[sender].g._state
    content = change(AuthenticatedContent(PUBLIC, msg.content, msg.auth))
    return MLSMessage.of(to_public_message(st.suite, content, st.context,
                                           st.secrets.membership_key)).encode()


def undelivered(w: World, sender: bytes, body: Any, *, wire_format: int | None = None) -> bytes:
    """A valid proposal message from ``sender`` that the sender does not store."""
    g = w.members[sender].g
    wf = w.members[sender].config.handshake_wire_format if wire_format is None else wire_format
    content = FramedContent(g.group_id, g.epoch, Sender.member(g.own_leaf_index), b"",
                            ContentType.PROPOSAL, Proposal.of(body))
    return protect(w, sender, content, wire_format=wf)


def psk(w: World, psk_id: bytes = b"psk", nonce: bytes | None = None) -> PreSharedKey:
    w.psks.setdefault(psk_id, b"k" * 32)
    nonce = os.urandom(w.suite.hash_length) if nonce is None else nonce
    return PreSharedKey(PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(psk_id), nonce))


def update_of(c: Client, group: Group, encryption_key: bytes | None = None) -> Update:
    old = group.tree.leaf(group.own_leaf_index)
    assert old is not None
    if encryption_key is None:
        _, encryption_key = group.suite.generate_key_pair()
    return Update(sign_leaf_node(group.suite, c.signature_priv, LeafNodeTBS(
        encryption_key, old.signature_key, old.credential, old.capabilities,
        LeafNodeSource.UPDATE, None, old.extensions,
        LeafNodeTBSContext(group.group_id, group.own_leaf_index))))


def key_package_with(c: Client, *, encryption_key: bytes | None = None,
                     credential: Credential | None = None,
                     credentials: Sequence[int] | None = None) -> KeyPackage:
    """A correctly signed KeyPackage of ``c`` with chosen leaf fields."""
    from mls_core.ciphersuite import get_suite

    suite = get_suite(c.suite_id)
    _, init_pub = suite.generate_key_pair()
    if encryption_key is None:
        _, encryption_key = suite.generate_key_pair()
    caps = default_capabilities() if credentials is None else default_capabilities(
        credentials=credentials)
    leaf = sign_leaf_node(suite, c.signature_priv, LeafNodeTBS(
        encryption_key, suite.signature_public_key(c.signature_priv),
        credential or c.credential, caps, LeafNodeSource.KEY_PACKAGE,
        Lifetime(NOW - 10, NOW + 1000), (), None))
    tbs = KeyPackageTBS(1, suite.id, init_pub, leaf, ())
    return tbs.signed(suite.sign_with_label(c.signature_priv, b"KeyPackageTBS", tbs.encode()))


# --------------------------------------------------------------------------- §12.2 member


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_rule_invalid_individual_proposal_psk_nonce(world: World,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """§12.2 "an individual proposal that is invalid": a PSK nonce not KDF.Nh long."""
    bad = psk(world, nonce=b"short")
    committer_refuses(world, b"c1", [bad], "12.1.4")
    data = forged(world, b"c1", [bad], monkeypatch)
    rejects(world, b"c2", data, ValidationError, "§12.1.4")


def test_rule_invalid_individual_proposal_remove_blank(world: World) -> None:
    """§12.2/§12.1.3: a Remove of a leaf that is not a member."""
    committer_refuses(world, b"m0", [Remove(9)], "12.1.3")
    data = raw_commit(world, b"m0", [Proposal.of(Remove(9))])
    rejects(world, b"c1", data, ValidationError, "§12.1.3")


def test_rule_invalid_individual_proposal_gce_unsupported(world: World,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    """§12.2/§12.1.7: GroupContextExtensions with an extension not every member supports."""
    gce = GroupContextExtensions((Extension(0xFF0A, b"x"),))
    committer_refuses(world, b"m0", [gce], "12.1.7")
    data = forged(world, b"m0", [gce], monkeypatch)
    rejects(world, b"c1", data, ValidationError, "§12.1.7")


def test_rule_invalid_individual_proposal_add_with_bad_key_package(world: World) -> None:
    """§12.2/§12.1.1/§10.1: an Add whose KeyPackage signature does not verify."""
    kp, _ = world.client().key_package()
    bad = dataclasses.replace(kp, signature=bytes(len(kp.signature)))
    committer_refuses_any(world, b"m0", [Add(bad)])
    data = raw_commit(world, b"m0", [Proposal.of(Add(bad))])
    rejects(world, b"c1", data, VerificationError, "KeyPackage")


def test_an_add_proposal_with_a_bad_key_package_is_refused_on_receipt(world: World) -> None:
    """§7.3, §12.1.1: a received Add is validated before it is stored (found by the
    process_public fuzz target: an invalid proposal used to be stored and only left
    out when a Commit covered it)."""
    kp, _ = world.client().key_package()
    bad = dataclasses.replace(kp, signature=bytes(len(kp.signature)))
    data = world.members[b"c2"].g.propose(Add(bad))
    rejects(world, b"c1", data, VerificationError, "KeyPackage")


def committer_refuses_any(w: World, sender: bytes, proposals: Sequence[Any]) -> None:
    g = w.members[sender].g
    before = snapshot(g)
    with pytest.raises(MLSError):
        g.commit(list(proposals), now=NOW)
    assert snapshot(g) == before


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_rule_update_generated_by_committer(world: World,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    c1 = world.members[b"c1"]
    update = update_of(c1, c1.g)
    committer_refuses(world, b"c1", [update], "Update proposal generated by the committer")
    data = forged(world, b"c1", [update], monkeypatch)
    rejects(world, b"c2", data, ValidationError, "§12.2: Update proposal generated by the "
                                                 "committer")


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_rule_remove_of_the_committer(world: World) -> None:
    committer_refuses(world, b"c1", [Remove(1)], "Remove proposal removing the committer")
    data = raw_commit(world, b"c1", [Proposal.of(Remove(1))],
                      wire_format=world.members[b"c1"].config.handshake_wire_format)
    rejects(world, b"c2", data, ValidationError, "§12.2: Remove proposal removing the "
                                                 "committer")


def test_rule_two_removes_of_one_leaf(world: World) -> None:
    committer_refuses(world, b"m0", [Remove(2), Remove(2)], "several Update/Remove")
    data = raw_commit(world, b"m0", [Proposal.of(Remove(2))] * 2)
    rejects(world, b"c1", data, ValidationError, "§12.2: several Update/Remove proposals")


def test_rule_update_and_remove_of_one_leaf(world: World,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An Update proposal of c2 (by reference) and a Remove of c2 in one Commit."""
    c2 = world.members[b"c2"]
    world.propose(b"c2", update_of(c2, c2.g))
    data = forged(world, b"m0", [Remove(2)], monkeypatch)
    rejects(world, b"c1", data, ValidationError, "§12.2: several Update/Remove proposals")


def test_committer_prefers_remove_over_update(world: World) -> None:
    """§12.2 SHOULD: with an Update and a Remove for one leaf, the committer keeps the
    Remove and leaves the Update out."""
    c2 = world.members[b"c2"]
    world.propose(b"c2", update_of(c2, c2.g))
    result = world.commit(b"m0", [Remove(2)])
    assert b"c2" in world.former
    world.check()
    del result


def test_rule_two_adds_for_the_same_client(world: World) -> None:
    j = world.client()
    kp1, _ = j.key_package()
    kp2, _ = j.key_package()
    committer_refuses_any(world, b"m0", [Add(kp1), Add(kp2)])
    data = raw_commit(world, b"m0", [Proposal.of(Add(kp1)), Proposal.of(Add(kp2))])
    rejects(world, b"c1", data, ValidationError, "§12.2: two Adds for the same client")


def test_rule_add_of_a_client_already_in_the_group(world: World) -> None:
    c2 = world.members[b"c2"]
    kp, _ = c2.key_package()
    committer_refuses(world, b"m0", [Add(kp)], "already in the group")
    data = raw_commit(world, b"m0", [Proposal.of(Add(kp))])
    rejects(world, b"c1", data, ValidationError, "§12.2: Add of a client already in the group")


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_rule_two_psks_with_the_same_id(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    p = psk(world)
    committer_refuses(world, b"m0", [p, p], "two PreSharedKey proposals with the same ID")
    data = forged(world, b"m0", [p, p], monkeypatch)
    rejects(world, b"c1", data, ValidationError, "§12.2: two PreSharedKey proposals")


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_rule_two_group_context_extensions(world: World,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a = GroupContextExtensions((Extension(ExtensionType.APPLICATION_ID, b"a"),))
    b = GroupContextExtensions((Extension(ExtensionType.APPLICATION_ID, b"b"),))
    committer_refuses(world, b"m0", [a, b], "more than one GroupContextExtensions")
    data = forged(world, b"m0", [a, b], monkeypatch)
    rejects(world, b"c1", data, ValidationError, "§12.2: more than one GroupContextExtensions")


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_rule_reinit_with_other_proposals(world: World,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    reinit = ReInit(b"new group", 1, 1, ())
    committer_refuses(world, b"m0", [reinit, Remove(2)], "ReInit together with other")
    data = forged(world, b"m0", [reinit, Remove(2)], monkeypatch)
    rejects(world, b"c1", data, ValidationError, "§12.2: ReInit together with other")


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_rule_external_init_in_member_commit(world: World,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _, kem_output = world.suite.generate_key_pair()
    init = ExternalInit(kem_output)
    committer_refuses(world, b"m0", [init], "ExternalInit in a member Commit")
    data = forged(world, b"m0", [init], monkeypatch)
    rejects(world, b"c1", data, ValidationError, "§12.2: ExternalInit in a member Commit")


def test_rule_unsupported_non_default_proposal_type(world: World) -> None:
    """§12.2: a non-default proposal type some member does not support. Such a type
    cannot even be decoded (§13.5: no GREASE in Proposal), so the list check is
    exercised directly, and the wire form is refused by the decoder."""
    g = world.members[b"m0"].g
    odd = Proposal(0x0A0A, Remove(2))
    ctx = ValidationContext(g.suite, g.group_id, 1, g.context.extensions,
                            world.members[b"m0"].config.validator, NOW)
    with pytest.raises(ValidationError, match=r"§12\.2: proposal type not supported"):
        validate_member_commit([CommittedProposal(odd, Sender.member(0))], 0, ctx, g.tree)
    data = raw_commit(world, b"m0", [Proposal.of(Remove(2))])
    encoded_type = Proposal.of(Remove(2)).encode()[:2]
    tampered = data.replace(encoded_type + Remove(2).encode(),
                            b"\x0a\x0a" + Remove(2).encode(), 1)
    assert tampered != data
    rejects(world, b"c1", tampered, DecodeError)


def test_rule_tree_invalid_after_commit_duplicate_encryption_key(world: World) -> None:
    """§12.2 "the ratchet tree is invalid" after the Commit: a new leaf reuses the HPKE
    key of a member (§7.3)."""
    taken = world.members[b"m0"].g.tree.leaf(1)
    assert taken is not None
    kp = key_package_with(world.client(), encryption_key=taken.encryption_key)
    committer_refuses(world, b"m0", [Add(kp)], "§7.3")
    data = raw_commit(world, b"m0", [Proposal.of(Add(kp))])
    rejects(world, b"c1", data, ValidationError, "§7.3: encryption_key already appears")


def test_rule_tree_invalid_after_commit_credential_type(world: World) -> None:
    """§12.2/§7.3: a new member that does not support the credential type in use."""
    kp = key_package_with(world.client(), credential=Credential.x509([b"cert"]),
                          credentials=[2])
    committer_refuses(world, b"m0", [Add(kp)], "§7.3")
    data = raw_commit(world, b"m0", [Proposal.of(Add(kp))])
    rejects(world, b"c1", data, ValidationError, "§7.3")


def test_path_required(world: World) -> None:
    """§12.4: a Commit with a Remove (or an empty one) must carry a path."""
    data = raw_commit(world, b"m0", [Proposal.of(Remove(2))])
    rejects(world, b"c1", data, ValidationError, "§12.4: this Commit requires a path")
    rejects(world, b"c1", raw_commit(world, b"m0", []), ValidationError, "requires a path")


# --------------------------------------------------------------------------- §12.2 external


def _external_ctx(g: Group) -> ValidationContext:
    from mls_core.authentication import DEFAULT_VALIDATOR

    return ValidationContext(g.suite, g.group_id, 1, g.context.extensions, DEFAULT_VALIDATOR,
                             NOW)


@pytest.mark.parametrize(("kinds", "match"), [
    ((), "exactly one ExternalInit"),
    (("init", "init"), "exactly one ExternalInit"),
    (("init", "remove", "remove1"), "more than one Remove"),
    (("init", "add"), "disallowed proposal type"),
    (("init", "gce"), "disallowed proposal type"),
    (("init", "psk", "psk"), "two PreSharedKey proposals"),
], ids=["no-init", "two-inits", "two-removes", "add", "gce", "dup-psk"])
def test_rule_external_commit_list(world: World, kinds: tuple[str, ...], match: str) -> None:
    g = world.members[b"m0"].g
    _, kem = g.suite.generate_key_pair()
    p = psk(world)
    kp, _ = world.client().key_package()
    bodies: dict[str, Any] = {
        "init": ExternalInit(kem), "remove": Remove(1), "remove1": Remove(2), "add": Add(kp),
        "psk": p, "gce": GroupContextExtensions(()),
    }
    sender = Sender.new_member_commit()
    proposals = [CommittedProposal(Proposal.of(bodies[k]), sender) for k in kinds]
    with pytest.raises(ValidationError, match=r"§12\.2: .*" + re.escape(match)):
        validate_external_commit(proposals, _external_ctx(g), g.tree)


def test_external_commit_list_valid(world: World) -> None:
    g = world.members[b"m0"].g
    _, kem = g.suite.generate_key_pair()
    sender = Sender.new_member_commit()
    proposals = [CommittedProposal(Proposal.of(b), sender)
                 for b in (psk(world), ExternalInit(kem), Remove(2), psk(world, b"other"))]
    assert validate_external_commit(proposals, _external_ctx(g), g.tree) == 2


def test_rule_external_commit_removing_someone_else(world: World) -> None:
    """§12.2: the Remove of an external Commit may only remove an old version of the
    joiner (same identity for the application)."""
    j = world.client()
    info = world.members[b"m0"].g.group_info()
    _, commit = Group.join_external(info, j.credential, j.signature_priv, remove_leaf=2,
                                    config=j.config, now=NOW)
    rejects(world, b"c1", commit, ValidationError, "§12.2: resync external Commit")


def test_external_commit_with_bad_signature(world: World) -> None:
    j = world.client()
    info = world.members[b"m0"].g.group_info()
    _, commit = Group.join_external(info, j.credential, j.signature_priv, config=j.config,
                                    now=NOW)
    msg = MLSMessage.decode(commit).public_message
    assert msg is not None
    sig = bytearray(msg.auth.signature)
    sig[-1] ^= 1
    bad = MLSMessage.of(PublicMessage(msg.content, FramedContentAuthData(
        bytes(sig), msg.auth.confirmation_tag), None)).encode()
    rejects(world, b"c1", bad, VerificationError, "FramedContentTBS")


def test_external_commit_for_an_old_epoch(world: World) -> None:
    j = world.client()
    info = world.members[b"m0"].g.group_info()
    _, commit = Group.join_external(info, j.credential, j.signature_priv, config=j.config,
                                    now=NOW)
    world.commit(b"c2")
    rejects(world, b"c1", commit, EpochError)


# --------------------------------------------------------------------------- tree checks


def test_bad_parent_hash(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    original = getattr(treekem, "path_parent_hashes")  # noqa: B009 (not re-exported)

    def wrong(*args: Any) -> tuple[list[bytes], bytes]:
        fields, leaf_hash = original(*args)
        return fields, bytes(len(leaf_hash))

    data = forged(world, b"c1", [], monkeypatch,
                  patches=[(treekem, "path_parent_hashes", wrong)])
    rejects(world, b"c2", data, VerificationError, "§7.9.2")


def test_bad_leaf_signature(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    original = getattr(treekem, "sign_leaf_node")  # noqa: B009 (not re-exported)
    other, _ = world.suite.generate_signature_key_pair()

    def sign_with_other_key(suite: Any, priv: bytes, tbs: LeafNodeTBS) -> Any:
        return original(suite, other, tbs)

    data = forged(world, b"c1", [], monkeypatch,
                  patches=[(treekem, "sign_leaf_node", sign_with_other_key)])
    rejects(world, b"c2", data, VerificationError, "LeafNode")


def test_bad_leaf_signature_in_update_proposal(world: World) -> None:
    c2 = world.members[b"c2"]
    update = update_of(c2, c2.g)
    bad = Update(dataclasses.replace(update.leaf_node,
                                     signature=bytes(len(update.leaf_node.signature))))
    proposal = c2.g.propose(bad)
    # a receiver refuses it on receipt and stores nothing (§7.3: a LeafNode is
    # validated when received in an Update) ...
    m0 = world.members[b"m0"].g
    with pytest.raises(VerificationError, match="LeafNode"):
        m0.process(proposal, now=NOW)
    # ... so a committer has nothing to cover ...
    result = m0.commit(now=NOW)
    m0.discard_pending_commit()
    msg = MLSMessage.decode(result.commit).public_message
    assert msg is not None and msg.content.commit is not None
    assert msg.content.commit.proposals == ()
    # ... and every receiver refuses it the same way, its state unchanged
    rejects(world, b"c1", proposal, VerificationError, "LeafNode")


def ref_of(w: World, data: bytes) -> bytes:
    """The ProposalRef of a proposal sent as a PublicMessage (§5.2)."""
    msg = MLSMessage.decode(data).public_message
    assert msg is not None
    return w.suite.make_proposal_ref(AuthenticatedContent(PUBLIC, msg.content,
                                                          msg.auth).encode())


def test_update_reusing_encryption_key(world: World) -> None:
    """§7.3: an Update must change the leaf's encryption key; it is refused on receipt."""
    c2 = world.members[b"c2"]
    same = c2.g.tree.leaf(2)
    assert same is not None
    data = c2.g.propose(update_of(c2, c2.g, encryption_key=same.encryption_key))
    rejects(world, b"c1", data, ValidationError, "§7.3: Update must change")


# --------------------------------------------------------------------------- framing


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_bad_framed_content_signature(world: World) -> None:
    other, _ = world.suite.generate_signature_key_pair()
    wf = world.members[b"m0"].config.handshake_wire_format
    content = FramedContent(world.any.g.group_id, world.any.g.epoch, Sender.member(0), b"",
                            ContentType.PROPOSAL, Proposal.of(Remove(2)))
    data = protect(world, b"m0", content, wire_format=wf, signature_priv=other)
    rejects(world, b"c1", data, VerificationError, "FramedContentTBS")


def test_bad_signature_on_application_message(world: World) -> None:
    other, _ = world.suite.generate_signature_key_pair()
    content = FramedContent(world.any.g.group_id, world.any.g.epoch, Sender.member(0), b"",
                            ContentType.APPLICATION, b"forged")
    data = protect(world, b"m0", content, wire_format=PRIVATE, signature_priv=other)
    rejects(world, b"c1", data, VerificationError, "FramedContentTBS")


def test_signature_by_another_member(world: World) -> None:
    """A member cannot send in another member's name: sender index 2, c1's signature."""
    data = undelivered(world, b"c1", Remove(0))
    forged_sender = retag(world, b"c1", data, lambda c: dataclasses.replace(
        c, content=dataclasses.replace(c.content, sender=Sender.member(2))))
    rejects(world, b"m0", forged_sender, VerificationError, "FramedContentTBS")


def test_sender_outside_the_tree(world: World) -> None:
    for index in (7, 2**32 - 1):
        data = undelivered(world, b"c1", Remove(0))
        def move(c: AuthenticatedContent, i: int = index) -> AuthenticatedContent:
            return dataclasses.replace(c, content=dataclasses.replace(
                c.content, sender=Sender.member(i)))

        bad = retag(world, b"c1", data, move)
        rejects(world, b"m0", bad, ValidationError, "§6.1: message from a blank leaf")


def test_bad_membership_tag(world: World) -> None:
    data = undelivered(world, b"c1", Remove(0))
    msg = MLSMessage.decode(data).public_message
    assert msg is not None and msg.membership_tag is not None
    tag = bytearray(msg.membership_tag)
    tag[0] ^= 0x80
    bad = MLSMessage.of(dataclasses.replace(msg, membership_tag=bytes(tag))).encode()
    rejects(world, b"m0", bad, VerificationError, "membership_tag")


def test_bad_confirmation_tag(world: World) -> None:
    """A tampered confirmation_tag (membership tag recomputed) is rejected; the genuine
    Commit still applies afterwards."""
    c1 = world.members[b"c1"]
    result = c1.g.commit(now=NOW)
    bad = retag(world, b"c1", result.commit, lambda c: dataclasses.replace(
        c, auth=FramedContentAuthData(c.auth.signature, os.urandom(len(
            c.auth.confirmation_tag or b"")))))
    m0 = world.members[b"m0"].g
    before = snapshot(m0)
    with pytest.raises(VerificationError, match="confirmation_tag"):
        m0.process(bad, now=NOW)
    assert snapshot(m0) == before
    assert world.ds.submit(b"c1", result.commit)
    c1.g.merge_pending_commit()
    world.sync_all()
    world.check()
    still_works(world)


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_wrong_epoch(world: World) -> None:
    old = undelivered(world, b"c1", Remove(0))
    world.commit(b"c2")
    rejects(world, b"m0", old, EpochError, "epoch")
    if world.members[b"m0"].config.handshake_wire_format == PUBLIC:
        future = undelivered(world, b"c1", Remove(0))
        msg = MLSMessage.decode(future).public_message
        assert msg is not None
        bumped = dataclasses.replace(msg, content=dataclasses.replace(
            msg.content, epoch=msg.content.epoch + 1))
        rejects(world, b"m0", MLSMessage.of(bumped).encode(), EpochError, "epoch")


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_wrong_group_id(world: World) -> None:
    data = undelivered(world, b"c1", Remove(0))
    msg = MLSMessage.decode(data)
    if msg.public_message is not None:
        body: Any = dataclasses.replace(msg.public_message, content=dataclasses.replace(
            msg.public_message.content, group_id=b"another group"))
    else:
        assert msg.private_message is not None
        body = dataclasses.replace(msg.private_message, group_id=b"another group")
    rejects(world, b"m0", MLSMessage.of(body).encode(), ProtocolError, "group_id")
    app = world.members[b"c1"].g.encrypt(b"x")
    pm = MLSMessage.decode(app).private_message
    assert pm is not None
    rejects(world, b"m0", MLSMessage.of(dataclasses.replace(pm, group_id=b"other")).encode(),
            ProtocolError, "group_id")


def test_replayed_application_message(world: World) -> None:
    data = world.send(b"c1", b"once")
    rejects(world, b"m0", data, ReplayError, "§9.2")


def test_replayed_private_proposal() -> None:
    w = World(1, wire_format=PRIVATE)
    w.add(b"m0", 2)
    data = w.propose(b"c1", Remove(2))
    g = w.members[b"m0"].g
    before = snapshot(g)
    with pytest.raises(ReplayError):
        g.process(data, now=NOW)
    assert snapshot(g) == before
    w.commit(b"m0")
    w.check()


def test_replayed_commit_is_for_an_old_epoch(world: World) -> None:
    result = world.commit(b"c1")
    rejects(world, b"m0", result.commit, EpochError)


def test_tampered_private_message_ciphertext() -> None:
    w = World(1, wire_format=PRIVATE)
    w.add(b"m0", 1)
    data = w.members[b"c1"].g.encrypt(b"hello")
    pm = MLSMessage.decode(data).private_message
    assert pm is not None
    ct = bytearray(pm.ciphertext)
    ct[3] ^= 1
    bad = MLSMessage.of(dataclasses.replace(pm, ciphertext=bytes(ct))).encode()
    rejects(w, b"m0", bad, MLSError)
    # the genuine message (same generation) is still readable afterwards
    event = w.members[b"m0"].g.process(data, now=NOW)
    assert getattr(event, "data", None) == b"hello"


def _frames(w: World) -> Iterator[bytes]:
    yield w.members[b"c1"].g.encrypt(b"application data")
    yield undelivered(w, b"c1", Remove(0))


@pytest.mark.parametrize("world", [PUBLIC, PRIVATE], indirect=True, ids=["public", "private"])
def test_truncated_messages(world: World) -> None:
    g = world.members[b"m0"].g
    before = snapshot(g)
    for data in _frames(world):
        for cut in sorted({1, 2, 4, 5, len(data) // 2, len(data) - 1}):
            with pytest.raises(DecodeError):
                g.process(data[:cut], now=NOW)
            with pytest.raises(DecodeError):
                g.process(data + b"\x00", now=NOW)  # trailing bytes
        assert snapshot(g) == before
    still_works(world)


@pytest.mark.parametrize("junk", [b"", b"\x00", b"\x00\x01\x00\x01", b"\xff" * 40,
                                  b"\x00\x01\x00\x09abc", os.urandom(200)],
                         ids=["empty", "one", "header", "ff", "wire-format", "random"])
def test_malformed_bytes(world: World, junk: bytes) -> None:
    rejects(world, b"m0", junk, MLSError)


def test_wrong_protocol_version(world: World) -> None:
    data = undelivered(world, b"c1", Remove(0))
    rejects(world, b"m0", b"\x00\x02" + data[2:], ProtocolError)


def test_not_a_handshake_message(world: World) -> None:
    info = world.members[b"c1"].g.group_info()
    rejects(world, b"m0", info, ProtocolError, "PublicMessage or PrivateMessage")
    kp, _ = world.client().key_package()
    rejects(world, b"m0", MLSMessage.of(kp).encode(), ProtocolError)


def test_unknown_proposal_reference(world: World) -> None:
    """The committer references a proposal the receiver never got (§12.4.2)."""
    c1 = world.members[b"c1"]
    c1.g.propose(Remove(2))  # not delivered
    result = c1.g.commit(now=NOW)
    c1.g.discard_pending_commit()
    rejects(world, b"m0", result.commit, ValidationError,
            "§12.4.2: Commit references an unknown proposal")


def test_external_proposal_from_unknown_sender(world: World) -> None:
    """§12.1.8.1: an ``external`` sender must be listed in external_senders."""
    g = world.members[b"m0"].g
    other, _ = world.suite.generate_signature_key_pair()
    content = FramedContent(g.group_id, g.epoch, Sender.external(0), b"",
                            ContentType.PROPOSAL, Proposal.of(Remove(1)))
    signed = sign_content(g.suite, other, PUBLIC, content, g.context)
    data = MLSMessage.of(to_public_message(g.suite, signed, g.context, None)).encode()
    rejects(world, b"m0", data, ValidationError, "§12.1.8.1")


def test_new_member_proposal_must_be_add(world: World) -> None:
    g = world.members[b"m0"].g
    j = world.client()
    content = FramedContent(g.group_id, g.epoch, Sender.new_member_proposal(), b"",
                            ContentType.PROPOSAL, Proposal.of(Remove(1)))
    signed = sign_content(g.suite, j.signature_priv, PUBLIC, content, None)
    data = MLSMessage.of(to_public_message(g.suite, signed, None, None)).encode()
    rejects(world, b"m0", data, ValidationError, "new_member_proposal")


def test_new_member_proposal_add_is_accepted(world: World) -> None:
    """The positive counterpart: a joiner's own Add (§12.1.8) is stored."""
    g = world.members[b"m0"].g
    j = world.client()
    kp, _ = j.key_package()
    content = FramedContent(g.group_id, g.epoch, Sender.new_member_proposal(), b"",
                            ContentType.PROPOSAL, Proposal.of(Add(kp)))
    signed = sign_content(g.suite, j.signature_priv, PUBLIC, content, None)
    data = MLSMessage.of(to_public_message(g.suite, signed, None, None)).encode()
    event = g.process(data, now=NOW)
    assert isinstance(event, ProposalReceived)


def test_processing_own_pending_commit_is_a_usage_error(world: World) -> None:
    from mls_core.errors import UsageError

    g = world.members[b"m0"].g
    result = g.commit(now=NOW)
    with pytest.raises(UsageError):
        g.process(result.commit, now=NOW)
    assert g.has_pending_commit
    g.discard_pending_commit()
    with pytest.raises(UsageError):
        g.merge_pending_commit()
    with pytest.raises(UsageError):
        g.discard_pending_commit()



# --------------------------------------------------------------------------- joins


def test_welcome_for_another_key_package(world: World) -> None:
    j, other = world.client(), world.client()
    kp, _ = j.key_package()
    other_kp, other_priv = other.key_package()
    result = world.members[b"m0"].g.commit([Add(kp)], now=NOW)
    assert result.welcome is not None
    with pytest.raises(MLSError):
        Group.join(result.welcome, other_kp, other_priv, config=other.config, now=NOW)


def test_tampered_welcome(world: World) -> None:
    j = world.client()
    kp, priv = j.key_package()
    result = world.members[b"m0"].g.commit([Add(kp)], now=NOW)
    assert result.welcome is not None
    welcome = bytearray(result.welcome)
    welcome[-5] ^= 1  # inside encrypted_group_info
    with pytest.raises(MLSError):
        Group.join(bytes(welcome), kp, priv, config=j.config, now=NOW)
    for cut in (3, len(welcome) // 2, len(welcome) - 1):
        with pytest.raises(DecodeError):
            Group.join(result.welcome[:cut], kp, priv, config=j.config, now=NOW)
    # the genuine Welcome still works once the Commit is accepted
    world.members[b"m0"].g.merge_pending_commit()
    g = Group.join(result.welcome, kp, priv, config=j.config, now=NOW)
    assert g.epoch_authenticator == world.members[b"m0"].g.epoch_authenticator


def test_group_info_with_bad_signature(world: World) -> None:
    j = world.client()
    info = MLSMessage.decode(world.members[b"m0"].g.group_info()).group_info
    assert info is not None
    sig = bytearray(info.signature)
    sig[0] ^= 1
    bad = MLSMessage.of(dataclasses.replace(info, signature=bytes(sig))).encode()
    with pytest.raises(VerificationError):
        Group.join_external(bad, j.credential, j.signature_priv, config=j.config, now=NOW)


def test_group_info_with_wrong_tree(world: World) -> None:
    """§12.4.3.1: the tree supplied out of band must match the GroupInfo's tree hash."""
    j = world.client()
    stale_tree = world.members[b"m0"].g.ratchet_tree_bytes()
    world.commit(b"c1")
    fresh = world.members[b"m0"].g.group_info(with_ratchet_tree=False)
    with pytest.raises(ValidationError, match="tree hash"):
        Group.join_external(fresh, j.credential, j.signature_priv, ratchet_tree=stale_tree,
                            config=j.config, now=NOW)
