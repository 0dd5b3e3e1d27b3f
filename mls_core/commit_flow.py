"""Creating and processing Commits (RFC 9420 §12.4.1, §12.4.2) and GroupInfo (§12.4.3).

Pure functions from the current :class:`~mls_core.epoch.EpochState` to the next one; the
current state is never modified, except that sending a Commit as a PrivateMessage uses
(and so consumes) one generation of our handshake ratchet, as it must (§9.2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from .ciphersuite import CipherSuite
from .commit import Commit
from .config import GroupConfig
from .credentials import Credential
from .epoch import EpochState
from .errors import MLSError, ValidationError
from .events import CommitApplied, Member
from .framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
    SenderType,
    WireFormat,
)
from .key_schedule import (
    EXTERNAL_INIT_LABEL,
    EpochTransition,
    GroupContext,
    confirmation_tag,
    external_key_pair,
    next_epoch,
    verify_confirmation_tag,
)
from .messages import GroupInfo, GroupInfoTBS, external_pub_extension, ratchet_tree_extension
from .policy import PolicyReview
from .proposal_list import (
    CommittedProposal,
    ValidationContext,
    path_required,
    required_capabilities,
    validate_external_commit,
    validate_member_commit,
)
from .proposals import Add, Proposal, ProposalOrRef
from .protection import sign_content, to_private_message, to_public_message
from .psk import PreSharedKeyID, ResumptionPSKUsage
from .staging import StagedProposals, apply_proposals, compute_psk_secret
from .transcript import confirmed_transcript_hash, interim_transcript_hash
from .treekem import (
    PreparedPath,
    apply_update_path,
    decrypt_update_path,
    prepare_update_path,
)
from .welcome import WelcomeRecipient, encrypt_welcome, sign_group_info

PskLookup = Callable[[PreSharedKeyID], bytes]


@dataclass(frozen=True)
class CommitResult:
    """The Commit MLSMessage for the group, an optional Welcome MLSMessage for the new
    members and the new epoch's signed GroupInfo MLSMessage (§12.4.1)."""

    commit: bytes
    welcome: bytes | None
    group_info: bytes


@dataclass(frozen=True)
class PendingCommit:
    """A Commit we sent and the state it leads to, until the DS accepts it."""

    result: CommitResult
    state: EpochState
    event: CommitApplied


@dataclass
class CommitPlan:
    """What to put in a Commit we create."""

    by_value: list[Proposal]
    by_reference: list[tuple[bytes, Proposal, Sender]]
    force_path: bool = True
    ratchet_tree_in_welcome: bool = True
    authenticated_data: bytes = b""
    wire_format: int = WireFormat.MLS_PRIVATE_MESSAGE
    padding_block: int = 0
    #: ResumptionPSKUsage allowed in this Commit (reinit/branch start a linked group)
    resumption_usage: int | None = None


def validation_context(state: EpochState, config: GroupConfig, now: int | None,
                        resumption_usage: int | None = None) -> ValidationContext:
    gc = state.context
    return ValidationContext(state.suite, gc.group_id, gc.version, gc.extensions,
                             config.validator, now,
                             reinit_allowed=resumption_usage == ResumptionPSKUsage.REINIT,
                             branch_allowed=resumption_usage == ResumptionPSKUsage.BRANCH)


def _provisional_context(state: EpochState, staged: StagedProposals) -> GroupContext:
    """Provisional GroupContext for UpdatePath encryption: new epoch, new tree hash and
    extensions, old confirmed transcript hash (§12.4.1)."""
    gc = state.context
    return GroupContext(gc.version, gc.cipher_suite, gc.group_id, gc.epoch + 1,
                        staged.tree.tree_hash(), gc.confirmed_transcript_hash,
                        staged.extensions)


def _next_state(state: EpochState, staged: StagedProposals, content: AuthenticatedContent,
                transition_inputs: tuple[bytes, bytes | None, bytes | None],
                ) -> tuple[GroupContext, EpochTransition, bytes]:
    """Transcript hashes, new GroupContext and key schedule (§8, §8.2, §12.4)."""
    suite = state.suite
    confirmed = confirmed_transcript_hash(suite, state.interim_transcript_hash, content)
    gc = state.context
    new_ctx = GroupContext(gc.version, gc.cipher_suite, gc.group_id, gc.epoch + 1,
                           staged.tree.tree_hash(), confirmed, staged.extensions)
    init_secret, commit_secret, psk = transition_inputs
    transition = next_epoch(suite, init_secret, commit_secret, psk, new_ctx.encode())
    return new_ctx, transition, confirmed


def _event(state: EpochState, staged: StagedProposals, committer: Sender, epoch: int,
           own_leaf: int) -> CommitApplied:
    added = []
    for index in staged.added:
        leaf = staged.tree.leaf(index)
        assert leaf is not None
        added.append(Member(index, leaf.credential, leaf.signature_key))
    return CommitApplied(epoch=epoch, committer=committer, added=tuple(added),
                         removed=tuple(staged.removed), updated=tuple(staged.updated),
                         extensions_changed=staged.extensions_changed,
                         psks=len(staged.psk_ids), reinit=staged.reinit,
                         removed_self=any(m.index == own_leaf for m in staged.removed))


# --------------------------------------------------------------------------- creating


def check_policy(config: GroupConfig, state: EpochState,
                 proposals: Sequence[CommittedProposal], committer: Sender | None, *,
                 joiner: Credential | None = None) -> None:
    """Run the application's :class:`~mls_core.policy.CommitPolicy`, if any, against the
    GroupContext in force (raises PolicyError)."""
    if config.commit_policy is not None:
        config.commit_policy.check(PolicyReview(state.context.extensions, state.tree,
                                                tuple(proposals), committer, joiner))


def _choose_proposals(state: EpochState, config: GroupConfig, plan: CommitPlan, now: int | None,
                      ) -> tuple[list[CommittedProposal], list[ProposalOrRef], StagedProposals]:
    """Our by-value proposals plus every stored proposal that keeps the list valid
    (§12.4: "SHOULD include all valid proposals"), greedily in arrival order, and the
    result of applying the chosen list (§12.3), so that each list is validated (its
    KeyPackage signatures checked, §12.2) and applied once."""
    me = Sender.member(state.own_leaf)
    ctx = validation_context(state, config, now, plan.resumption_usage)
    chosen = [CommittedProposal(p, me) for p in plan.by_value]
    refs = [ProposalOrRef.by_value(p) for p in plan.by_value]
    validate_member_commit(chosen, state.own_leaf, ctx, state.tree)
    check_policy(config, state, chosen, me)
    if not plan.by_reference:  # nothing stored: the list just validated is the Commit's
        return chosen, refs, apply_proposals(state.tree, state.context.extensions, chosen)
    everything = [*chosen, *(CommittedProposal(p, s) for _, p, s in plan.by_reference)]
    try:  # the usual case: every stored proposal fits; one pass, O(k)
        validate_member_commit(everything, state.own_leaf, ctx, state.tree)
        check_policy(config, state, everything, me)
        staged = apply_proposals(state.tree, state.context.extensions, everything)
    except MLSError:
        pass
    else:
        return everything, [*refs, *(ProposalOrRef.by_reference(r)
                                     for r, _, _ in plan.by_reference)], staged
    staged = apply_proposals(state.tree, state.context.extensions, chosen)
    for ref, proposal, sender in plan.by_reference:
        trial = [*chosen, CommittedProposal(proposal, sender)]
        try:
            validate_member_commit(trial, state.own_leaf, ctx, state.tree)
            check_policy(config, state, trial, me)
            trial_staged = apply_proposals(state.tree, state.context.extensions, trial)
        except MLSError:
            continue  # e.g. superseded or conflicting: leave it out (§12.2 SHOULDs)
        chosen, staged = trial, trial_staged
        refs.append(ProposalOrRef.by_reference(ref))
    return chosen, refs, staged


def create_commit(state: EpochState, config: GroupConfig, plan: CommitPlan,
                  lookup_psk: PskLookup, now: int | None) -> PendingCommit:
    """Build a Commit, its Welcome and GroupInfo, and the state it leads to (§12.4.1)."""
    suite = state.suite
    proposals, refs, staged = _choose_proposals(state, config, plan, now)
    prepared: PreparedPath | None = None
    update_path = None
    private = state.private.pruned(staged.tree)
    if plan.force_path or path_required(proposals):
        prepared = prepare_update_path(staged.tree, state.own_leaf, state.signature_priv,
                                       state.context.group_id)
        update_path = prepared.encrypt(staged.tree, _provisional_context(state, staged),
                                       staged.added)
        private = prepared.private
    commit = Commit(tuple(refs), update_path)
    psk_secret = compute_psk_secret(suite, staged.psk_ids, lookup_psk)
    gc = state.context
    content = FramedContent(gc.group_id, gc.epoch, Sender.member(state.own_leaf),
                            plan.authenticated_data, ContentType.COMMIT, commit)
    signed = sign_content(suite, state.signature_priv, plan.wire_format, content, gc,
                          b"")  # the signature does not cover the tag (§6.1)
    commit_secret = prepared.commit_secret if prepared else None
    new_ctx, transition, confirmed = _next_state(
        state, staged, signed, (state.secrets.init_secret, commit_secret, psk_secret))
    tag = confirmation_tag(suite, transition.secrets.confirmation_key, confirmed)
    signed = replace(signed, auth=FramedContentAuthData(signed.auth.signature, tag))
    new_state = EpochState.build(suite, new_ctx, staged.tree, state.own_leaf,
                                 state.signature_priv, private, transition.secrets,
                                 interim_transcript_hash(suite, confirmed, tag), tag,
                                 config.max_retained_keys, config.max_forward_distance)
    wire = _protect(state, signed, plan.padding_block)
    welcome = _welcome(new_state, staged, proposals, prepared, transition, psk_secret,
                       plan.ratchet_tree_in_welcome)
    # The tree is left out of this GroupInfo (O(n) bytes per commit); external joiners
    # take it from group_info(with_ratchet_tree=True) or out of band (§12.4.3.2).
    info = make_group_info(new_state, False, True)
    event = _event(state, staged, Sender.member(state.own_leaf), new_ctx.epoch, state.own_leaf)
    return PendingCommit(CommitResult(wire, welcome, MLSMessage.of(info).encode()), new_state,
                         event)


def _protect(state: EpochState, signed: AuthenticatedContent, padding_block: int) -> bytes:
    """Protect with the *old* epoch's keys (§12.4.1)."""
    if signed.wire_format == WireFormat.MLS_PUBLIC_MESSAGE:
        msg = MLSMessage.of(to_public_message(state.suite, signed, state.context,
                                              state.secrets.membership_key))
    else:
        key = state.secret_tree.next(state.own_leaf, ContentType.COMMIT)
        msg = MLSMessage.of(to_private_message(state.suite, signed,
                                               state.secrets.sender_data_secret, key,
                                               padding_block=padding_block))
    return msg.encode()


def _welcome(new_state: EpochState, staged: StagedProposals,
             proposals: Sequence[CommittedProposal], prepared: PreparedPath | None,
             transition: EpochTransition, psk_secret: bytes | None,
             with_tree: bool) -> bytes | None:
    adds = [cp.proposal.body for cp in proposals if isinstance(cp.proposal.body, Add)]
    if not adds:
        return None
    recipients = [
        WelcomeRecipient(add.key_package,
                         prepared.path_secret_for(index) if prepared else None)
        for add, index in zip(adds, staged.added, strict=True)
    ]
    info = make_group_info(new_state, with_tree, False)
    welcome = encrypt_welcome(new_state.suite, info, transition.joiner_secret, psk_secret,
                              staged.psk_ids, recipients)
    return MLSMessage.of(welcome).encode()


def make_group_info(state: EpochState, with_tree: bool, with_external_pub: bool) -> GroupInfo:
    """Signed GroupInfo of ``state``'s epoch (§12.4.3)."""
    extensions = []
    if with_tree:
        extensions.append(ratchet_tree_extension(state.tree.nodes()))
    if with_external_pub:
        _, external_pub = external_key_pair(state.suite, state.secrets.external_secret)
        extensions.append(external_pub_extension(external_pub))
    tbs = GroupInfoTBS(state.context, tuple(extensions), state.confirmation_tag,
                       state.own_leaf)
    return sign_group_info(state.suite, state.signature_priv, tbs)


# --------------------------------------------------------------------------- processing


def _resolve(commit: Commit, committer: Sender,
             stored: Mapping[bytes, tuple[Proposal, Sender]]) -> list[CommittedProposal]:
    """Proposals of a Commit, by value (from the committer) or by reference (§12.4)."""
    out = []
    for por in commit.proposals:
        if por.proposal is not None:
            out.append(CommittedProposal(por.proposal, committer))
            continue
        assert por.reference is not None
        found = stored.get(por.reference)
        if found is None:
            raise ValidationError("§12.4.2: Commit references an unknown proposal")
        out.append(CommittedProposal(*found))
    return out


def process_commit(state: EpochState, config: GroupConfig, content: AuthenticatedContent,
                   stored: Mapping[bytes, tuple[Proposal, Sender]], lookup_psk: PskLookup,
                   now: int | None, update_keys: Mapping[bytes, bytes] | None = None,
                   ) -> tuple[EpochState, CommitApplied]:
    """Validate and apply someone else's Commit (§12.4.2); returns the new state.
    ``update_keys`` maps encryption keys of our own proposed Update leaves to their
    private keys, for a Commit that covers one of them (§12.1.2)."""
    suite = state.suite
    commit = content.content.commit
    sender = content.content.sender
    assert commit is not None
    if content.auth.confirmation_tag is None:
        raise ValidationError("§6.1: Commit without confirmation_tag")
    proposals = _resolve(commit, sender, stored)
    ctx = validation_context(state, config, now)
    init_secret = state.secrets.init_secret
    if sender.sender_type == SenderType.MEMBER:
        committer = sender.index
        assert committer is not None
        validate_member_commit(proposals, committer, ctx, state.tree)
        check_policy(config, state, proposals, sender)
        staged = apply_proposals(state.tree, state.context.extensions, proposals)
    elif sender.sender_type == SenderType.NEW_MEMBER_COMMIT:
        if content.wire_format != WireFormat.MLS_PUBLIC_MESSAGE:
            raise ValidationError("§12.4.3.2: external Commits are PublicMessages")
        if any(por.reference is not None for por in commit.proposals):
            raise ValidationError("§12.4.3.2: external Commits carry no proposal references")
        if commit.path is None:
            raise ValidationError("§12.4.3.2: external Commits must have a path")
        resynced = validate_external_commit(proposals, ctx, state.tree)
        if resynced is not None:
            old = state.tree.leaf(resynced)
            assert old is not None  # validated: Remove names a member
            if not config.validator.may_replace(old.credential, commit.path.leaf_node.credential):
                raise ValidationError("§12.2: resync external Commit must keep the removed "
                                      "member's identity")
        check_policy(config, state, proposals, sender, joiner=commit.path.leaf_node.credential)
        staged = apply_proposals(state.tree, state.context.extensions, proposals)
        assert staged.external_init is not None
        init_secret = _external_init_secret(suite, state, staged.external_init.kem_output)
        committer = staged.tree.reserve_leaf()
    else:
        raise ValidationError("§12.4: Commits come from members or new members")
    if commit.path is None and path_required(proposals):
        raise ValidationError("§12.4: this Commit requires a path")
    event = _event(state, staged, sender, state.context.epoch + 1, state.own_leaf)
    if event.removed_self:
        return state, event  # we cannot (and need not) follow the group any further
    commit_secret = None
    private = state.private.pruned(staged.tree)
    if state.own_leaf in staged.updated:
        own = staged.tree.leaf(state.own_leaf)
        assert own is not None
        key = (update_keys or {}).get(own.encryption_key)
        if key is None:
            raise ValidationError("§12.1.2: Commit applies an Update of our leaf that we "
                                  "did not propose")
        private = private.with_keys({2 * state.own_leaf: key})
    if commit.path is not None:
        apply_update_path(staged.tree, committer, commit.path, state.context.group_id,
                          new_leaves=staged.added, now=now, validator=config.validator,
                          required_capabilities=required_capabilities(staged.extensions))
        received = decrypt_update_path(staged.tree, committer, commit.path, private,
                                       _provisional_context(state, staged),
                                       new_leaves=staged.added)
        commit_secret, private = received.commit_secret, received.private
    if sender.sender_type == SenderType.NEW_MEMBER_COMMIT:
        assert commit.path is not None  # checked above
        joiner = commit.path.leaf_node
        event = replace(event, added=(*event.added, Member(committer, joiner.credential,
                                                           joiner.signature_key)))
    psk_secret = compute_psk_secret(suite, staged.psk_ids, lookup_psk)
    new_ctx, transition, confirmed = _next_state(
        state, staged, content, (init_secret, commit_secret, psk_secret))
    verify_confirmation_tag(suite, transition.secrets.confirmation_key, confirmed,
                            content.auth.confirmation_tag)
    tag = content.auth.confirmation_tag
    new_state = EpochState.build(suite, new_ctx, staged.tree, state.own_leaf,
                                 state.signature_priv, private, transition.secrets,
                                 interim_transcript_hash(suite, confirmed, tag), tag,
                                 config.max_retained_keys, config.max_forward_distance)
    return new_state, event


def _external_init_secret(suite: CipherSuite, state: EpochState, kem_output: bytes) -> bytes:
    """init_secret from an ExternalInit, with the epoch's external key pair (§8.3)."""
    external_priv, _ = external_key_pair(suite, state.secrets.external_secret)
    context = suite.hpke.setup_base_r(kem_output, external_priv, b"")
    return context.export(EXTERNAL_INIT_LABEL, suite.hash_length)


def external_commit_message(signed: AuthenticatedContent) -> bytes:
    """An external Commit is a PublicMessage without membership tag (§12.4.3.2)."""
    return MLSMessage.of(PublicMessage(signed.content, signed.auth, None)).encode()


