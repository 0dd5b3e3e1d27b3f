"""Versioned serialization of a whole :class:`~mls_core.group.Group` (for storage).

This is a storage format, not a wire format: one byte string holding the current epoch
(context, tree, our private keys, epoch secrets, secret tree with its ratchet positions,
transcript hashes), stored proposals, recent past epochs (with the leaves removed since
each, new in version 2; version 1 states still load), resumption PSKs and a pending
commit. Writing it and the processed message's effects in one transaction (the client
layer's job) makes processing crash-safe. Loading re-checks every component and raises
:class:`~mls_core.errors.DecodeError` on anything malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from .ciphersuite import get_suite
from .codec import U32, VAR_BYTES, Opt, Struct, Uint8, Uint16, Uint32, Uint64, VarBytes, Vec
from .commit_flow import CommitResult, PendingCommit
from .config import GroupConfig
from .credentials import Credential
from .epoch import EpochState, PastEpoch
from .errors import DecodeError, MLSError
from .events import CommitApplied, Member
from .framing import Sender
from .key_schedule import EpochSecrets, GroupContext
from .proposals import Proposal, ReInit
from .ratchet_tree import RatchetTree
from .secret_tree import SecretTree
from .treekem import TreeKEMPrivate

if TYPE_CHECKING:
    from .group import Group

STORAGE_VERSION = 2


@dataclass(frozen=True)
class _StoredEpoch(Struct):
    context: GroupContext
    tree: VarBytes
    own_leaf: Uint32
    signature_priv: VarBytes
    private: VarBytes
    secrets: VarBytes
    secret_tree: VarBytes
    interim_transcript_hash: VarBytes
    confirmation_tag: VarBytes


@dataclass(frozen=True)
class _StoredPast(Struct):
    context: GroupContext
    tree: VarBytes
    secret_tree: VarBytes
    sender_data_secret: VarBytes


@dataclass(frozen=True)
class _StoredProposal(Struct):
    ref: VarBytes
    proposal: Proposal
    sender: Sender


@dataclass(frozen=True)
class _StoredPsk(Struct):
    epoch: Uint64
    psk: VarBytes


@dataclass(frozen=True)
class _StoredMember(Struct):
    index: Uint32
    credential: Credential
    signature_key: VarBytes


@dataclass(frozen=True)
class _StoredEvent(Struct):
    epoch: Uint64
    committer: Sender
    added: Annotated[tuple[_StoredMember, ...], Vec(_StoredMember)]
    removed: Annotated[tuple[_StoredMember, ...], Vec(_StoredMember)]
    updated: Annotated[tuple[int, ...], Vec(U32)]
    extensions_changed: Uint8
    psks: Uint32
    reinit: Annotated[ReInit | None, Opt(ReInit)]
    removed_self: Uint8


@dataclass(frozen=True)
class _StoredPending(Struct):
    commit: VarBytes
    welcome: Annotated[bytes | None, Opt(VAR_BYTES)]
    group_info: VarBytes
    state: _StoredEpoch
    event: _StoredEvent


@dataclass(frozen=True)
class _StoredRemoved(Struct):
    epoch: Uint64
    leaves: Annotated[tuple[int, ...], Vec(U32)]


@dataclass(frozen=True)
class _StoredGroupV1(Struct):
    version: Uint16
    active: Uint8
    current: _StoredEpoch
    proposals: Annotated[tuple[_StoredProposal, ...], Vec(_StoredProposal)]
    past: Annotated[tuple[_StoredPast, ...], Vec(_StoredPast)]
    resumption_psks: Annotated[tuple[_StoredPsk, ...], Vec(_StoredPsk)]
    pending: Annotated[_StoredPending | None, Opt(_StoredPending)]


@dataclass(frozen=True)
class _StoredGroup(_StoredGroupV1):
    """Version 2 appends, per past epoch, the leaves removed since (RemovedSenderError)."""

    removed: Annotated[tuple[_StoredRemoved, ...], Vec(_StoredRemoved)]


# --------------------------------------------------------------------------- dump


def _dump_epoch(st: EpochState) -> _StoredEpoch:
    return _StoredEpoch(st.context, st.tree.encode(), st.own_leaf, st.signature_priv,
                        st.private.to_bytes(), st.secrets.to_bytes(), st.secret_tree.to_bytes(),
                        st.interim_transcript_hash, st.confirmation_tag)


def _member(m: Member) -> _StoredMember:
    return _StoredMember(m.index, m.credential, m.signature_key)


def _dump_event(e: CommitApplied) -> _StoredEvent:
    return _StoredEvent(e.epoch, e.committer, tuple(map(_member, e.added)),
                        tuple(map(_member, e.removed)), e.updated, int(e.extensions_changed),
                        e.psks, e.reinit, int(e.removed_self))


def dump_group(group: Group) -> bytes:
    pending = None
    p = group._pending
    if p is not None:
        pending = _StoredPending(p.result.commit, p.result.welcome, p.result.group_info,
                                 _dump_epoch(p.state), _dump_event(p.event))
    stored = _StoredGroup(
        STORAGE_VERSION, int(group._active), _dump_epoch(group._state),
        tuple(_StoredProposal(ref, sp.proposal, sp.sender)
              for ref, sp in group._proposals.items()),
        tuple(_StoredPast(pe.context, pe.tree.encode(), pe.secret_tree.to_bytes(),
                          pe.sender_data_secret) for pe in group._past.values()),
        tuple(_StoredPsk(e, psk) for e, psk in group._resumption_psks.items()),
        pending,
        tuple(_StoredRemoved(pe.context.epoch, tuple(sorted(pe.removed)))
              for pe in group._past.values() if pe.removed),
    )
    return stored.encode()


# --------------------------------------------------------------------------- load


def _load_epoch(s: _StoredEpoch) -> EpochState:
    suite = get_suite(s.context.cipher_suite)
    tree = RatchetTree.decode(suite, s.tree)
    secret_tree = SecretTree.from_bytes(s.secret_tree)
    private = TreeKEMPrivate.from_bytes(s.private)
    if private.leaf_index != s.own_leaf or tree.leaf(s.own_leaf) is None:
        raise DecodeError("stored group: own leaf does not match the tree")
    if tree.tree_hash() != s.context.tree_hash:
        raise DecodeError("stored group: tree does not match its GroupContext")
    return EpochState(suite, s.context, tree, s.own_leaf, s.signature_priv, private,
                      EpochSecrets.from_bytes(s.secrets), secret_tree,
                      s.interim_transcript_hash, s.confirmation_tag)


def _unmember(m: _StoredMember) -> Member:
    return Member(m.index, m.credential, m.signature_key)


def _load_event(e: _StoredEvent) -> CommitApplied:
    return CommitApplied(e.epoch, e.committer, tuple(map(_unmember, e.added)),
                         tuple(map(_unmember, e.removed)), e.updated,
                         bool(e.extensions_changed), e.psks, e.reinit, bool(e.removed_self))


def load_group(cls: type[Group], data: bytes, config: GroupConfig) -> Group:
    version = int.from_bytes(data[:2], "big")
    stored: _StoredGroupV1
    if version == 1:  # before RemovedSenderError: nobody counts as removed
        stored = _StoredGroupV1.decode(data)
    elif version == STORAGE_VERSION:
        stored = _StoredGroup.decode(data)
    else:
        raise DecodeError(f"stored group: unknown storage version {version}")
    stored_removed = stored.removed if isinstance(stored, _StoredGroup) else ()
    removed = {r.epoch: frozenset(r.leaves) for r in stored_removed}
    if len(removed) != len(stored_removed):
        raise DecodeError("stored group: removed leaves listed twice for one epoch")
    try:
        group = cls(_load_epoch(stored.current), config)
        for sp in stored.proposals:
            group._store_raw_proposal(sp.ref, sp.proposal, sp.sender)
        for past in stored.past:
            suite = get_suite(past.context.cipher_suite)
            group._past[past.context.epoch] = PastEpoch(
                suite, past.context, RatchetTree.decode(suite, past.tree),
                SecretTree.from_bytes(past.secret_tree), past.sender_data_secret,
                removed.pop(past.context.epoch, frozenset()))
        if removed:
            raise DecodeError("stored group: removed leaves of an epoch that is not kept")
        group._resumption_psks.clear()
        for psk in stored.resumption_psks:
            group._resumption_psks[psk.epoch] = psk.psk
        if stored.pending is not None:
            p = stored.pending
            group._pending = PendingCommit(CommitResult(p.commit, p.welcome, p.group_info),
                                           _load_epoch(p.state), _load_event(p.event))
        group._active = bool(stored.active)
    except DecodeError:
        raise
    except MLSError as e:
        raise DecodeError(f"stored group: {e}") from None
    return group
