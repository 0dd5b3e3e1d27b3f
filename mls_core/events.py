"""Typed events returned by :meth:`mls_core.group.Group.process` (sans-I/O, like h11's
events): the caller learns what a message did without inspecting protocol state."""

from __future__ import annotations

from dataclasses import dataclass, field

from .credentials import Credential
from .framing import Sender
from .proposals import Proposal, ReInit


@dataclass(frozen=True)
class Member:
    """A current member: leaf index, credential and signature key."""

    index: int
    credential: Credential
    signature_key: bytes


@dataclass(frozen=True)
class ApplicationMessage:
    """Decrypted application data (§15) from ``sender`` in ``epoch``."""

    sender: int
    epoch: int
    data: bytes = field(repr=False)
    authenticated_data: bytes = b""


@dataclass(frozen=True)
class ProposalReceived:
    """A valid proposal was stored for the next Commit, under ``ref`` (§12.1)."""

    ref: bytes
    proposal: Proposal
    sender: Sender


@dataclass(frozen=True)
class CommitApplied:
    """A Commit moved the group to ``epoch`` (§12.4.2); membership changes listed."""

    epoch: int
    committer: Sender
    added: tuple[Member, ...] = ()
    removed: tuple[Member, ...] = ()
    updated: tuple[int, ...] = ()
    extensions_changed: bool = False
    psks: int = 0
    reinit: ReInit | None = None
    removed_self: bool = False


Event = ApplicationMessage | ProposalReceived | CommitApplied
