"""Joining a group: from a Welcome (RFC 9420 §12.4.3.1) or by external Commit
(§12.4.3.2). Both end in a fully verified :class:`~mls_core.epoch.EpochState`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .ciphersuite import CipherSuite, get_suite
from .commit import Commit
from .config import GroupConfig, InputLimits
from .credentials import Credential
from .epoch import EpochState
from .errors import (
    LimitError,
    MLSError,
    ProtocolError,
    UsageError,
    ValidationError,
    VersionError,
)
from .extensions import Extension, ExtensionType
from .framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    Sender,
    WireFormat,
)
from .key_package import DEFAULT_EXTENSIONS, KeyPackagePrivate, default_capabilities
from .key_schedule import (
    EXTERNAL_INIT_LABEL,
    PROTOCOL_VERSION_MLS10,
    GroupContext,
    confirmation_tag,
    derive_epoch_secrets,
    next_epoch,
    verify_confirmation_tag,
)
from .messages import ExternalPub, GroupInfo, KeyPackage
from .nodes import Capabilities, LeafNode, LeafNodeSource, RatchetTreeReader
from .proposal_list import CommittedProposal, required_capabilities
from .proposals import ExternalInit, PreSharedKey, Proposal, ProposalOrRef, Remove
from .protection import sign_content
from .psk import ExternalPSK, PreSharedKeyID, PSKType, ResumptionPSKUsage
from .ratchet_tree import RatchetTree, gc_paused
from .staging import apply_proposals, compute_psk_secret
from .transcript import confirmed_transcript_hash, interim_transcript_hash
from .tree_math import common_ancestor
from .tree_validation import validate_tree
from .treekem import TreeKEMPrivate, prepare_update_path
from .welcome import decrypt_group_info, decrypt_group_secrets, verify_group_info


def _check_message_size(data: bytes, what: str, limits: InputLimits,
                        suite: CipherSuite | None) -> None:
    bound = limits.message_bytes(suite)
    if len(data) > bound:
        raise LimitError(f"{what} of {len(data)} bytes exceeds InputLimits.max_message_bytes "
                         f"({bound})")


def _group_info_suite(data: bytes) -> CipherSuite | None:
    """The cipher suite an encoded MLSMessage(GroupInfo) names, read before anything is
    decoded (version, wire_format, then GroupContext.version and .cipher_suite, §6, §8.1),
    to size its bounds; None if it names no suite we support (decoding refuses it)."""
    try:
        return get_suite(int.from_bytes(data[6:8], "big")) if len(data) >= 8 else None
    except MLSError:
        return None


def _check_version(context: GroupContext) -> None:
    if context.version != PROTOCOL_VERSION_MLS10:
        raise VersionError(f"§6, §8.1: GroupContext version {context.version:#06x} is not "
                           "mls10 (0x0001)")


def _tree_bytes(info: GroupInfo, ratchet_tree: bytes | None, limits: InputLimits) -> bytes:
    """The tree from the ``ratchet_tree`` extension, else the one supplied out of band,
    within ``limits.max_tree_bytes``."""
    data = ratchet_tree
    for ext in info.extensions:
        if ext.extension_type == ExtensionType.RATCHET_TREE:
            data = ext.extension_data
    if data is None:
        raise UsageError("§12.4.3.1: no ratchet_tree extension: supply the tree out of band")
    bound = limits.tree_bytes(get_suite(info.group_context.cipher_suite))
    if len(data) > bound:
        raise LimitError(f"ratchet tree of {len(data)} bytes exceeds "
                         f"InputLimits.max_tree_bytes ({bound})")
    return data


def unverified_tree(info: GroupInfo, ratchet_tree: bytes | None,
                    limits: InputLimits | None = None) -> RatchetTree:
    """The tree of ``info`` (its ``ratchet_tree`` extension, else ``ratchet_tree``)
    decoded within ``limits`` (LimitError beyond them) but *not verified*: for looking
    into a GroupInfo before :func:`join_external` verifies it (e.g. for our own old
    leaf), never for trusting it."""
    limits = limits or InputLimits()
    suite = get_suite(info.group_context.cipher_suite)
    return RatchetTree.decode(suite, _tree_bytes(info, ratchet_tree, limits),
                              limits.max_tree_leaves)


def _tree_of(suite: CipherSuite, info: GroupInfo, ratchet_tree: bytes | None) -> RatchetTree:
    """:func:`unverified_tree` with the default limits (the interop service's name)."""
    return unverified_tree(info, ratchet_tree)


def _verified_tree(suite: CipherSuite, info: GroupInfo, ratchet_tree: bytes | None,
                   config: GroupConfig, now: int | None) -> RatchetTree:
    """The group's tree, checked as §12.4.3.1 requires (signature, tree hash, tree
    validity) in the order that bounds the work: the tree's bytes, then the GroupInfo
    signature by the signer's leaf with the tree decoded only up to that leaf (and never
    past ``max_tree_leaves``), then the rest of the tree, its hash, and its validity."""
    gc = info.group_context
    _check_version(gc)
    reader = RatchetTreeReader(_tree_bytes(info, ratchet_tree, config.limits),
                               config.limits.max_tree_leaves)
    signer = reader.node_at(2 * info.signer)
    if signer is None or signer.leaf_node is None:
        raise ValidationError("§12.4.3.1: GroupInfo signer is a blank leaf")
    verify_group_info(suite, info, signer.leaf_node.signature_key)
    tree = RatchetTree.from_decoded(suite, reader.finish())
    if tree.tree_hash() != gc.tree_hash:
        raise ValidationError("§12.4.3.1: tree hash does not match the GroupInfo")
    validate_tree(tree, gc.group_id, now=now, validator=config.validator,
                  required_capabilities=required_capabilities(gc.extensions))
    return tree


def _check_supported(leaf: LeafNode, context: GroupContext) -> None:
    """§12.4.3.1/§13.4: we must support every GroupContext extension."""
    supported = set(leaf.capabilities.extensions) | DEFAULT_EXTENSIONS
    for ext in context.extensions:
        if ext.extension_type not in supported:
            raise ValidationError(f"§13.4: unsupported GroupContext extension "
                                  f"{ext.extension_type}")


def _welcome_psks(suite: CipherSuite, psks: tuple[PreSharedKeyID, ...], config: GroupConfig,
                  resumption: Mapping[tuple[bytes, int], bytes]) -> bytes | None:
    special = [p for p in psks if p.psktype == PSKType.RESUMPTION
               and getattr(p.psk, "usage", None) in (ResumptionPSKUsage.REINIT,
                                                     ResumptionPSKUsage.BRANCH)]
    if len(special) > 1:
        raise ValidationError("§12.4.3.1: more than one reinit/branch resumption PSK")

    def lookup(pid: PreSharedKeyID) -> bytes:
        body = pid.psk
        if pid.psktype == PSKType.EXTERNAL:
            value = config.external_psks.get(getattr(body, "psk_id", b""))
        else:
            value = resumption.get((getattr(body, "psk_group_id", b""),
                                    getattr(body, "psk_epoch", -1)))
        if value is None:
            raise ValidationError("§12.4.3.1: the Welcome needs a PSK we do not have")
        return value

    return compute_psk_secret(suite, psks, lookup)


def join_welcome(welcome: bytes, key_package: KeyPackage, private: KeyPackagePrivate,
                 ratchet_tree: bytes | None, config: GroupConfig,
                 resumption: Mapping[tuple[bytes, int], bytes],
                 now: int | None) -> tuple[EpochState, tuple[PreSharedKeyID, ...]]:
    """Process a Welcome (§12.4.3.1) into the state of the epoch it welcomes us to, and
    the PSKs it used (the caller checks ReInit/branch linkage, §11.2, §11.3)."""
    _check_message_size(welcome, "Welcome", config.limits,
                        get_suite(key_package.cipher_suite))
    w = MLSMessage.decode(welcome).welcome
    if w is None:
        raise ProtocolError("expected an MLSMessage(Welcome)")
    suite = get_suite(w.cipher_suite)
    secrets = decrypt_group_secrets(suite, w, key_package, private.init_priv)
    psk_secret = _welcome_psks(suite, secrets.psks, config, resumption)
    info = decrypt_group_info(suite, w, secrets.joiner_secret, psk_secret)
    gc = info.group_context
    if gc.cipher_suite != key_package.cipher_suite:
        raise ValidationError("§12.4.3.1: GroupInfo cipher suite differs from KeyPackage's")
    with gc_paused():
        tree = _verified_tree(suite, info, ratchet_tree, config, now)
    me = tree.find_leaf(key_package.leaf_node)
    if me is None:
        raise ValidationError("§12.4.3.1: our KeyPackage's leaf is not in the tree")
    _check_supported(key_package.leaf_node, gc)
    tree_private = TreeKEMPrivate.for_leaf(me, private.encryption_priv)
    if secrets.path_secret is not None:
        node = common_ancestor(2 * me, 2 * info.signer)
        tree_private = tree_private.with_path_from(tree, node, secrets.path_secret.path_secret)
    epoch = derive_epoch_secrets(suite, secrets.joiner_secret, psk_secret, gc.encode())
    verify_confirmation_tag(suite, epoch.confirmation_key, gc.confirmed_transcript_hash,
                            info.confirmation_tag)
    interim = interim_transcript_hash(suite, gc.confirmed_transcript_hash,
                                      info.confirmation_tag)
    return EpochState.build(suite, gc, tree, me, private.signature_priv, tree_private, epoch,
                            interim, info.confirmation_tag, config.max_retained_keys,
                            config.max_forward_distance), secrets.psks


def _external_pub(info: GroupInfo) -> bytes:
    for ext in info.extensions:
        if ext.extension_type == ExtensionType.EXTERNAL_PUB:
            return ExternalPub.decode(ext.extension_data).external_pub
    raise ValidationError("§12.4.3.2: GroupInfo has no external_pub extension")


def verified_group_info(group_info: bytes, ratchet_tree: bytes | None, config: GroupConfig,
                        now: int | None) -> tuple[GroupInfo, RatchetTree]:
    """An MLSMessage(GroupInfo) and its tree (its ``ratchet_tree`` extension, else
    ``ratchet_tree``), checked as §12.4.3.1 requires of a joiner: the signature by the
    signer's leaf, the tree hash against the GroupContext, and the tree's validity.
    Non-members use it too (a bridge finding a banned user's leaves)."""
    _check_message_size(group_info, "GroupInfo", config.limits,
                        _group_info_suite(group_info))
    info = MLSMessage.decode(group_info).group_info
    if info is None:
        raise ProtocolError("expected an MLSMessage(GroupInfo)")
    suite = get_suite(info.group_context.cipher_suite)
    with gc_paused():
        tree = _verified_tree(suite, info, ratchet_tree, config, now)
    return info, tree


def join_external(group_info: bytes, credential: Credential, signature_priv: bytes,
                  ratchet_tree: bytes | None, remove_leaf: int | None, config: GroupConfig,
                  authenticated_data: bytes, now: int | None,
                  psk_ids: Sequence[bytes] = (), *,
                  leaf_extensions: Sequence[Extension] = (),
                  capabilities: Capabilities | None = None) -> tuple[EpochState, bytes]:
    """Build an external Commit from a GroupInfo (§12.4.3.2) and the state it leads to.
    ``psk_ids`` adds one PreSharedKey proposal per external PSK (in
    ``config.external_psks``), as §12.2 allows in an external Commit;
    ``leaf_extensions`` and ``capabilities`` (default: the group's extension types) go
    into the joiner's LeafNode."""
    info, tree = verified_group_info(group_info, ratchet_tree, config, now)
    gc = info.group_context
    suite = get_suite(gc.cipher_suite)
    kem_output, hpke_ctx = suite.hpke.setup_base_s(_external_pub(info), b"")
    init_secret = hpke_ctx.export(EXTERNAL_INIT_LABEL, suite.hash_length)
    proposals = [Proposal.of(ExternalInit(kem_output))]
    if remove_leaf is not None:
        proposals.append(Proposal.of(Remove(remove_leaf)))
    for psk_id in psk_ids:
        pid = PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(psk_id), os.urandom(suite.hash_length))
        proposals.append(Proposal.of(PreSharedKey(pid)))
    sender = Sender.new_member_commit()
    staged = apply_proposals(tree, gc.extensions,
                             [CommittedProposal(p, sender) for p in proposals])
    me = staged.tree.reserve_leaf()
    template = LeafNode(b"", suite.signature_public_key(signature_priv), credential,
                        capabilities or default_capabilities(extensions=[
                            e.extension_type for e in gc.extensions
                            if e.extension_type not in DEFAULT_EXTENSIONS]),
                        LeafNodeSource.COMMIT, b"", tuple(leaf_extensions), b"")
    _check_supported(template, gc)
    prepared = prepare_update_path(staged.tree, me, signature_priv, gc.group_id, leaf=template)
    provisional = GroupContext(gc.version, gc.cipher_suite, gc.group_id, gc.epoch + 1,
                               staged.tree.tree_hash(), gc.confirmed_transcript_hash,
                               staged.extensions)
    path = prepared.encrypt(staged.tree, provisional, ())
    commit = Commit(tuple(ProposalOrRef.by_value(p) for p in proposals), path)
    content = FramedContent(gc.group_id, gc.epoch, sender, authenticated_data,
                            ContentType.COMMIT, commit)
    signed = sign_content(suite, signature_priv, WireFormat.MLS_PUBLIC_MESSAGE, content, gc,
                          b"")
    interim_before = interim_transcript_hash(suite, gc.confirmed_transcript_hash,
                                             info.confirmation_tag)
    confirmed = confirmed_transcript_hash(suite, interim_before, signed)
    new_ctx = GroupContext(gc.version, gc.cipher_suite, gc.group_id, gc.epoch + 1,
                           staged.tree.tree_hash(), confirmed, staged.extensions)
    psk_secret = _welcome_psks(suite, tuple(staged.psk_ids), config, {})
    transition = next_epoch(suite, init_secret, prepared.commit_secret, psk_secret,
                            new_ctx.encode())
    tag = confirmation_tag(suite, transition.secrets.confirmation_key, confirmed)
    signed = AuthenticatedContent(signed.wire_format, signed.content,
                                  FramedContentAuthData(signed.auth.signature, tag))
    state = EpochState.build(suite, new_ctx, staged.tree, me, signature_priv,
                             prepared.private, transition.secrets,
                             interim_transcript_hash(suite, confirmed, tag), tag,
                             config.max_retained_keys, config.max_forward_distance)
    from .commit_flow import external_commit_message

    return state, external_commit_message(signed)


def check_linkage(state: EpochState, psks: tuple[PreSharedKeyID, ...],
                  linked: object | None) -> None:
    """§11.2/§11.3: a Welcome with a ``reinit`` or ``branch`` resumption PSK must start
    epoch 1 of a group that matches the old one (``linked``, a Group)."""
    from .group import Group

    special = [p for p in psks if p.psktype == PSKType.RESUMPTION and
               getattr(p.psk, "usage", None) in (ResumptionPSKUsage.REINIT,
                                                 ResumptionPSKUsage.BRANCH)]
    if not special:
        return
    gc = state.context
    if gc.epoch != 1:
        raise ValidationError("§11.2/§11.3: a reinit/branch Welcome must be for epoch 1")
    if not isinstance(linked, Group):
        raise UsageError("§11.2/§11.3: pass the old group as linked_group to join")
    usage = getattr(special[0].psk, "usage", None)
    if usage == ResumptionPSKUsage.REINIT:
        r = linked.reinit_proposal
        if r is None or (r.group_id, r.version, r.cipher_suite, r.extensions) != (
                gc.group_id, gc.version, gc.cipher_suite, gc.extensions):
            raise ValidationError("§11.2: new group does not match the ReInit proposal")
        new_ids = {leaf.credential for _, leaf in state.tree.leaves()}
        if any(m.credential not in new_ids for m in linked.members):
            raise ValidationError("§12.4.3.1: a member of the old group is missing from the "
                                  "reinitialized group")
        return
    if (gc.version, gc.cipher_suite) != (linked.context.version, linked.context.cipher_suite):
        raise ValidationError("§11.3: branch must keep the version and cipher suite")
    old_ids = {m.credential for m in linked.members}
    for _, leaf in state.tree.leaves():
        if leaf.credential not in old_ids:
            raise ValidationError("§11.3: branch member not in the original group")
