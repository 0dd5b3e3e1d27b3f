"""Proposal list validation (RFC 9420 §12.1, §12.2) and the path rule of §12.4.

Each rule raises :class:`~mls_core.errors.ValidationError` whose message names the RFC
section it enforces. Checks of a new leaf against the other members (§7.3 uniqueness and
credential support) run while the proposals are applied, against the tree as it then
is (see ``mls_core.staging``), so an Add may reuse the key of a member removed in the
same Commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .authentication import CredentialValidator
from .ciphersuite import CipherSuite
from .errors import ValidationError
from .extensions import Extension, ExtensionType
from .framing import Sender, SenderType
from .key_package import DEFAULT_EXTENSIONS, key_package_signatures_ok, validate_key_package
from .messages import RequiredCapabilities
from .nodes import LeafNode, LeafNodeSource
from .proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalType,
    ReInit,
    Remove,
    Update,
)
from .psk import PSKType, ResumptionPSKUsage
from .ratchet_tree import RatchetTree
from .tree_validation import check_leaf_node

#: Proposal types every implementation supports without listing them (§7.2).
DEFAULT_PROPOSALS = frozenset(int(p) for p in ProposalType if p != ProposalType.RESERVED)
#: Proposal types whose presence makes the Commit's path mandatory (§12.4).
PATH_REQUIRED = frozenset({ProposalType.UPDATE, ProposalType.REMOVE,
                           ProposalType.EXTERNAL_INIT, ProposalType.GROUP_CONTEXT_EXTENSIONS})
#: Proposal types an ``external`` sender may send (§12.1.8).
EXTERNAL_SENDER_TYPES = frozenset({ProposalType.ADD, ProposalType.REMOVE, ProposalType.PSK,
                                   ProposalType.REINIT, ProposalType.GROUP_CONTEXT_EXTENSIONS})


@dataclass(frozen=True)
class CommittedProposal:
    """A proposal covered by a Commit, with who proposed it (§12.4), and, while a
    received proposal is being stored, its ``authenticated_data`` (§6.1)."""

    proposal: Proposal
    sender: Sender
    authenticated_data: bytes | None = None


@dataclass(frozen=True)
class ValidationContext:
    suite: CipherSuite
    group_id: bytes
    version: int
    extensions: tuple[Extension, ...]
    validator: CredentialValidator
    now: int | None = None
    reinit_allowed: bool = False
    branch_allowed: bool = False


def required_capabilities(extensions: Sequence[Extension]) -> RequiredCapabilities | None:
    """The ``required_capabilities`` GroupContext extension, if present (§11.1)."""
    for ext in extensions:
        if ext.extension_type == ExtensionType.REQUIRED_CAPABILITIES:
            return RequiredCapabilities.decode(ext.extension_data)
    return None


def leaf_supports(leaf: LeafNode, required: RequiredCapabilities | None,
                  group_extensions: Sequence[Extension]) -> bool:
    """§7.3/§11.1/§13.4: the leaf lists every required extension, proposal and credential
    type, and every non-default GroupContext extension in use."""
    caps = leaf.capabilities
    exts = set(caps.extensions) | DEFAULT_EXTENSIONS
    if any(e.extension_type not in exts for e in group_extensions):
        return False
    if required is None:
        return True
    return (all(e in exts for e in required.extension_types)
            and all(p in set(caps.proposals) | DEFAULT_PROPOSALS
                    for p in required.proposal_types)
            and all(c in caps.credentials for c in required.credential_types))


def _check_update(p: Update, sender: Sender, ctx: ValidationContext,
                  view: RatchetTree) -> None:
    index = sender.leaf_index
    if index is None:
        raise ValidationError("§12.1.2: Update proposals must come from members")
    old = view.leaf(index)
    if old is None:
        raise ValidationError("§12.1.2: Update from a blank leaf")
    leaf = p.leaf_node
    if leaf.leaf_node_source != LeafNodeSource.UPDATE:
        raise ValidationError("§7.3: Update leaf_node_source must be update")
    if leaf.encryption_key == old.encryption_key:
        raise ValidationError("§7.3: Update must change the encryption_key")
    ctx.validator.validate(leaf.credential, leaf.signature_key)
    if not ctx.validator.may_replace(old.credential, leaf.credential):
        raise ValidationError("§5.3.1: Update changes the member's identity")
    check_leaf_node(ctx.suite, leaf, group_id=ctx.group_id, leaf_index=index,
                    source=LeafNodeSource.UPDATE, now=ctx.now, validator=ctx.validator,
                    required_capabilities=required_capabilities(ctx.extensions))
    if not leaf_supports(leaf, required_capabilities(ctx.extensions), ctx.extensions):
        raise ValidationError("§7.3: Update leaf does not support the group's extensions")


def _check_psk(p: PreSharedKey, ctx: ValidationContext) -> None:
    psk = p.psk
    if len(psk.psk_nonce) != ctx.suite.hash_length:
        raise ValidationError("§12.1.4: psk_nonce must be KDF.Nh bytes")
    if psk.psktype == PSKType.RESUMPTION:
        usage = getattr(psk.psk, "usage", None)
        if usage == ResumptionPSKUsage.REINIT and not ctx.reinit_allowed:
            raise ValidationError("§12.1.4: reinit resumption PSK outside a reinitialization")
        if usage == ResumptionPSKUsage.BRANCH and not ctx.branch_allowed:
            raise ValidationError("§12.1.4: branch resumption PSK outside a branch")
        if usage != ResumptionPSKUsage.APPLICATION and not (ctx.reinit_allowed
                                                            or ctx.branch_allowed):
            raise ValidationError(f"§8.4: resumption PSK usage {usage} not allowed here")
    elif psk.psktype != PSKType.EXTERNAL:
        raise ValidationError(f"§8.4: unknown PSK type {psk.psktype}")


def _check_single(cp: CommittedProposal, ctx: ValidationContext, view: RatchetTree,
                  signatures_ok: tuple[bool, bool] | None = None) -> None:
    """Validity of one proposal on its own (§12.1.x); ``signatures_ok``: the batch
    verdicts of an Add's KeyPackage signatures (:func:`_add_signature_verdicts`)."""
    body = cp.proposal.body
    if cp.sender.sender_type == SenderType.EXTERNAL and \
            cp.proposal.proposal_type not in EXTERNAL_SENDER_TYPES:
        raise ValidationError("§12.1.8: proposal type not allowed from external senders")
    if isinstance(body, Add):
        validate_key_package(ctx.suite, body.key_package, now=ctx.now, validator=ctx.validator,
                             signatures_ok=signatures_ok)
        if body.key_package.version < ctx.version:
            raise ValidationError("§10.1: KeyPackage version below the group's")
        leaf = body.key_package.leaf_node
        required = required_capabilities(ctx.extensions)
        if not leaf_supports(leaf, required, ctx.extensions):
            raise ValidationError("§7.3, §11.1: the new member does not support the group's "
                                  "required capabilities or extensions")
    elif isinstance(body, Update):
        _check_update(body, cp.sender, ctx, view)
    elif isinstance(body, Remove):
        if body.removed >= view.n_leaves or view.leaf(body.removed) is None:
            raise ValidationError("§12.1.3: Remove of a blank or absent leaf")
    elif isinstance(body, PreSharedKey):
        _check_psk(body, ctx)
    elif isinstance(body, ReInit):
        if body.version < ctx.version:
            raise ValidationError("§12.1.5: ReInit to a lower protocol version")
    elif isinstance(body, GroupContextExtensions):
        _check_unique_types(body.extensions)


def _check_unique_types(extensions: Sequence[Extension]) -> None:
    types = [e.extension_type for e in extensions]
    if len(types) != len(set(types)):
        raise ValidationError("§13.4: extension list has an extension type twice")


def _check_gce_support(gce: GroupContextExtensions, view: RatchetTree,
                       removed: frozenset[int], added: Sequence[LeafNode]) -> None:
    """§12.1.7: every remaining and new member supports the new GroupContext extensions
    and required capabilities."""
    required = required_capabilities(gce.extensions)
    remaining = [leaf for i, leaf in view.leaves() if i not in removed]
    for leaf in [*remaining, *added]:
        if not leaf_supports(leaf, required, gce.extensions):
            raise ValidationError("§12.1.7: a member does not support the new "
                                  "GroupContext extensions")


def validate_received_proposal(cp: CommittedProposal, ctx: ValidationContext,
                               view: RatchetTree) -> None:
    """A proposal received on its own is checked as far as it can be before a Commit
    covers it (§12.1; a LeafNode is validated "when received ... in an Add, Update, or
    Commit message", §7.3): an invalid one is refused, never stored."""
    _check_single(cp, ctx, view)


def validate_member_commit(proposals: Sequence[CommittedProposal], committer: int,
                           ctx: ValidationContext, view: RatchetTree) -> None:
    """§12.2: validity of the proposal list of a regular (member) Commit."""
    kinds = [cp.proposal.proposal_type for cp in proposals]
    if ProposalType.REINIT in kinds and len(kinds) > 1:
        raise ValidationError("§12.2: ReInit together with other proposals")
    if ProposalType.EXTERNAL_INIT in kinds:
        raise ValidationError("§12.2: ExternalInit in a member Commit")
    if kinds.count(ProposalType.GROUP_CONTEXT_EXTENSIONS) > 1:
        raise ValidationError("§12.2: more than one GroupContextExtensions proposal")
    removed = frozenset(cp.proposal.body.removed for cp in proposals
                        if isinstance(cp.proposal.body, Remove))
    touched: set[int] = set()
    for cp in proposals:
        body = cp.proposal.body
        target = body.removed if isinstance(body, Remove) else (
            cp.sender.leaf_index if isinstance(body, Update) else None)
        if target is None:
            continue
        if isinstance(body, Update) and target == committer:
            raise ValidationError("§12.2: Update proposal generated by the committer")
        if isinstance(body, Remove) and target == committer:
            raise ValidationError("§12.2: Remove proposal removing the committer")
        if target in touched:
            raise ValidationError("§12.2: several Update/Remove proposals for one leaf")
        touched.add(target)
    _check_adds_and_psks(proposals, view, removed)
    gce = [cp.proposal.body for cp in proposals
           if isinstance(cp.proposal.body, GroupContextExtensions)]
    new_ctx = ctx
    if gce:
        new_ctx = ValidationContext(ctx.suite, ctx.group_id, ctx.version, gce[0].extensions,
                                    ctx.validator, ctx.now, ctx.reinit_allowed,
                                    ctx.branch_allowed)
    verdicts = _add_signature_verdicts(proposals, ctx.suite)
    for i, cp in enumerate(proposals):
        if cp.proposal.proposal_type not in DEFAULT_PROPOSALS and \
                not _all_support_proposal(cp.proposal.proposal_type, view, removed):
            raise ValidationError("§12.2: proposal type not supported by every member")
        _check_single(cp, new_ctx, view, verdicts.get(i))
    if gce:
        added = [cp.proposal.body.key_package.leaf_node for cp in proposals
                 if isinstance(cp.proposal.body, Add)]
        _check_gce_support(gce[0], view, removed, added)


#: Adds in one Commit from which their KeyPackage signatures are checked as one batch
_BATCH_ADDS = 64


def _add_signature_verdicts(proposals: Sequence[CommittedProposal], suite: CipherSuite,
                            ) -> dict[int, tuple[bool, bool]]:
    """For a Commit with many Adds, the verdicts of every KeyPackage's two signatures
    (§7.3, §10.1) by proposal index, verified as a batch (on several threads where
    there are cores); empty for a few Adds, which are verified one by one."""
    adds = [(i, cp.proposal.body.key_package) for i, cp in enumerate(proposals)
            if isinstance(cp.proposal.body, Add)]
    if len(adds) < _BATCH_ADDS:
        return {}
    # A KeyPackage of another suite fails validation before its signatures are read.
    verdicts = key_package_signatures_ok(
        suite, [kp for _, kp in adds if kp.cipher_suite == suite.id])
    it = iter(verdicts)
    return {i: next(it) for i, kp in adds if kp.cipher_suite == suite.id}


def _all_support_proposal(ptype: int, view: RatchetTree, removed: frozenset[int]) -> bool:
    return all(ptype in leaf.capabilities.proposals
               for i, leaf in view.leaves() if i not in removed)


def _check_adds_and_psks(proposals: Sequence[CommittedProposal], view: RatchetTree,
                         removed: frozenset[int]) -> None:
    added_keys: set[bytes] = set()
    psk_ids: set[bytes] = set()
    for cp in proposals:
        body = cp.proposal.body
        if isinstance(body, Add):
            key = body.key_package.leaf_node.signature_key
            if key in added_keys:
                raise ValidationError("§12.2: two Adds for the same client")
            added_keys.add(key)
            if view.signature_key_uses(key) and not any(
                    (leaf := view.leaf(r)) is not None and leaf.signature_key == key
                    for r in removed):
                raise ValidationError("§12.2: Add of a client already in the group")
        elif isinstance(body, PreSharedKey):
            encoded = body.psk.encode()
            if encoded in psk_ids:
                raise ValidationError("§12.2: two PreSharedKey proposals with the same ID")
            psk_ids.add(encoded)


def validate_external_commit(proposals: Sequence[CommittedProposal],
                             ctx: ValidationContext, view: RatchetTree) -> int | None:
    """§12.2: an external Commit holds exactly one ExternalInit, at most one Remove and
    any number of PreSharedKey proposals, nothing else. Returns the removed leaf."""
    kinds = [cp.proposal.proposal_type for cp in proposals]
    if kinds.count(ProposalType.EXTERNAL_INIT) != 1:
        raise ValidationError("§12.2: external Commit needs exactly one ExternalInit")
    if kinds.count(ProposalType.REMOVE) > 1:
        raise ValidationError("§12.2: external Commit with more than one Remove")
    allowed = {ProposalType.EXTERNAL_INIT, ProposalType.REMOVE, ProposalType.PSK}
    if any(k not in allowed for k in kinds):
        raise ValidationError("§12.2: external Commit with a disallowed proposal type")
    _check_adds_and_psks(proposals, view, frozenset())
    removed: int | None = None
    for cp in proposals:
        body = cp.proposal.body
        if isinstance(body, ExternalInit | Remove | PreSharedKey):
            _check_single(cp, ctx, view)
        if isinstance(body, Remove):
            removed = body.removed
    return removed


def path_required(proposals: Sequence[CommittedProposal]) -> bool:
    """§12.4: the path is mandatory for an empty Commit or one with a path-required type."""
    return not proposals or any(cp.proposal.proposal_type in PATH_REQUIRED
                                for cp in proposals)
