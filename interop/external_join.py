"""Joining by external Commit with PreSharedKey proposals (RFC 9420 §12.4.3.2).

§12.2 allows an external Commit to carry PreSharedKey proposals next to its ExternalInit
and optional Remove; ``Group.join_external`` does not offer them yet, so this module
builds such a Commit from the same ``mls_core`` pieces. Without PSKs the service uses
``Group.join_external`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mls_core.ciphersuite import get_suite
from mls_core.commit import Commit
from mls_core.commit_flow import external_commit_message
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.epoch import EpochState
from mls_core.errors import ValidationError
from mls_core.extensions import Extension
from mls_core.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    Sender,
    WireFormat,
)
from mls_core.group import Group
from mls_core.join_flow import (
    EXTERNAL_INIT_LABEL,
    _check_supported,
    _external_pub,
    _tree_of,
    _verify_group,
)
from mls_core.key_package import DEFAULT_EXTENSIONS, default_capabilities
from mls_core.key_schedule import GroupContext, confirmation_tag, next_epoch
from mls_core.nodes import LeafNode, LeafNodeSource
from mls_core.proposal_list import CommittedProposal
from mls_core.proposals import ExternalInit, Proposal, ProposalOrRef, Remove
from mls_core.protection import sign_content
from mls_core.psk import PreSharedKeyID
from mls_core.staging import apply_proposals, compute_psk_secret
from mls_core.transcript import confirmed_transcript_hash, interim_transcript_hash
from mls_core.treekem import prepare_update_path

from .mls_ops import decode_group_info, external_psk


def join_external_with_psks(group_info: bytes, credential: Credential, signature_priv: bytes,
                            *, ratchet_tree: bytes | None, remove_leaf: int | None,
                            psks: Mapping[bytes, bytes], config: GroupConfig,
                            now: int | None) -> tuple[Group, bytes]:
    """Like ``Group.join_external``, plus one PreSharedKey proposal per external PSK in
    ``psks`` (psk_id -> secret), in the given order (§8.4, §12.4.3.2)."""
    info = decode_group_info(group_info)
    gc = info.group_context
    suite = get_suite(gc.cipher_suite)
    tree = _tree_of(suite, info, ratchet_tree)
    _verify_group(suite, info, tree, config, now)
    kem_output, hpke_ctx = suite.hpke.setup_base_s(_external_pub(info), b"")
    init_secret = hpke_ctx.export(EXTERNAL_INIT_LABEL, suite.hash_length)
    proposals = [Proposal.of(ExternalInit(kem_output))]
    if remove_leaf is not None:
        proposals.append(Proposal.of(Remove(remove_leaf)))
    proposals += [Proposal.of(external_psk(psk_id, suite.hash_length)) for psk_id in psks]
    sender = Sender.new_member_commit()
    staged = apply_proposals(tree, gc.extensions,
                             [CommittedProposal(p, sender) for p in proposals])
    me = staged.tree.reserve_leaf()
    template = LeafNode(b"", suite.signature_public_key(signature_priv), credential,
                        default_capabilities(extensions=_non_default(gc.extensions)),
                        LeafNodeSource.COMMIT, b"", (), b"")
    _check_supported(template, gc)
    prepared = prepare_update_path(staged.tree, me, signature_priv, gc.group_id, leaf=template)
    provisional = GroupContext(gc.version, gc.cipher_suite, gc.group_id, gc.epoch + 1,
                               staged.tree.tree_hash(), gc.confirmed_transcript_hash,
                               staged.extensions)
    path = prepared.encrypt(staged.tree, provisional, ())
    commit = Commit(tuple(ProposalOrRef.by_value(p) for p in proposals), path)
    content = FramedContent(gc.group_id, gc.epoch, sender, b"", ContentType.COMMIT, commit)
    signed = sign_content(suite, signature_priv, WireFormat.MLS_PUBLIC_MESSAGE, content, gc,
                          b"")

    def lookup(pid: PreSharedKeyID) -> bytes:
        value = psks.get(getattr(pid.psk, "psk_id", b""))
        if value is None:
            raise ValidationError("§8.4: unknown external PSK")
        return value

    psk_secret = compute_psk_secret(suite, staged.psk_ids, lookup)
    interim_before = interim_transcript_hash(suite, gc.confirmed_transcript_hash,
                                             info.confirmation_tag)
    confirmed = confirmed_transcript_hash(suite, interim_before, signed)
    new_ctx = GroupContext(gc.version, gc.cipher_suite, gc.group_id, gc.epoch + 1,
                           staged.tree.tree_hash(), confirmed, staged.extensions)
    transition = next_epoch(suite, init_secret, prepared.commit_secret, psk_secret,
                            new_ctx.encode())
    tag = confirmation_tag(suite, transition.secrets.confirmation_key, confirmed)
    signed = AuthenticatedContent(signed.wire_format, signed.content,
                                  FramedContentAuthData(signed.auth.signature, tag))
    state = EpochState.build(suite, new_ctx, staged.tree, me, signature_priv,
                             prepared.private, transition.secrets,
                             interim_transcript_hash(suite, confirmed, tag), tag,
                             config.max_retained_keys, config.max_forward_distance)
    return Group(state, config), external_commit_message(signed)


def _non_default(extensions: Sequence[Extension]) -> list[int]:
    """Extension types a leaf must list in its capabilities: §7.2 forbids listing the
    default ones."""
    return [e.extension_type for e in extensions
            if e.extension_type not in DEFAULT_EXTENSIONS]
