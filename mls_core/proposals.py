"""Proposals (RFC 9420 §12.1, §12.4, §17.4): the seven proposal bodies, Proposal and
ProposalOrRef.

A Proposal with an unknown ``proposal_type`` raises DecodeError: its body has no length
prefix and cannot be skipped, and §13.5 forbids GREASE values in
``Proposal.proposal_type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any

from .codec import VAR_BYTES, Select, Struct, Uint8, Uint16, Uint32, VarBytes, Vec
from .errors import UsageError
from .extensions import Extension
from .messages import KeyPackage
from .nodes import LeafNode
from .psk import PreSharedKeyID


class ProposalType(IntEnum):
    """MLS Proposal Types registry (§17.4); the wire field stays a plain ``uint16``."""

    RESERVED = 0x0000
    ADD = 0x0001
    UPDATE = 0x0002
    REMOVE = 0x0003
    PSK = 0x0004
    REINIT = 0x0005
    EXTERNAL_INIT = 0x0006
    GROUP_CONTEXT_EXTENSIONS = 0x0007


class ProposalOrRefType(IntEnum):
    """How a Commit carries a proposal (§12.4)."""

    RESERVED = 0
    PROPOSAL = 1
    REFERENCE = 2


@dataclass(frozen=True)
class Add(Struct):
    """struct {
        KeyPackage key_package;
    } Add;                                                               (§12.1.1)"""

    key_package: KeyPackage


@dataclass(frozen=True)
class Update(Struct):
    """struct {
        LeafNode leaf_node;
    } Update;                                                            (§12.1.2)"""

    leaf_node: LeafNode


@dataclass(frozen=True)
class Remove(Struct):
    """struct {
        uint32 removed;
    } Remove;                                                            (§12.1.3)"""

    removed: Uint32


@dataclass(frozen=True)
class PreSharedKey(Struct):
    """struct {
        PreSharedKeyID psk;
    } PreSharedKey;                                                      (§12.1.4)"""

    psk: PreSharedKeyID


@dataclass(frozen=True)
class ReInit(Struct):
    """struct {
        opaque group_id<V>;
        ProtocolVersion version;
        CipherSuite cipher_suite;
        Extension extensions<V>;
    } ReInit;                                                            (§12.1.5)"""

    group_id: VarBytes
    version: Uint16
    cipher_suite: Uint16
    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]


@dataclass(frozen=True)
class ExternalInit(Struct):
    """struct {
      opaque kem_output<V>;
    } ExternalInit;                                                      (§12.1.6)"""

    kem_output: VarBytes


@dataclass(frozen=True)
class GroupContextExtensions(Struct):
    """struct {
      Extension extensions<V>;
    } GroupContextExtensions;                                            (§12.1.7)"""

    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]


ProposalBody = Add | Update | Remove | PreSharedKey | ReInit | ExternalInit | GroupContextExtensions

#: proposal body class -> proposal_type
PROPOSAL_TYPES: dict[type[Struct], ProposalType] = {
    Add: ProposalType.ADD,
    Update: ProposalType.UPDATE,
    Remove: ProposalType.REMOVE,
    PreSharedKey: ProposalType.PSK,
    ReInit: ProposalType.REINIT,
    ExternalInit: ProposalType.EXTERNAL_INIT,
    GroupContextExtensions: ProposalType.GROUP_CONTEXT_EXTENSIONS,
}

_PROPOSAL_CASES: dict[int, Any] = {t: cls for cls, t in PROPOSAL_TYPES.items()}


@dataclass(frozen=True)
class Proposal(Struct):
    """struct {
        ProposalType proposal_type;
        select (Proposal.proposal_type) {
            case add:                      Add;
            case update:                   Update;
            case remove:                   Remove;
            case psk:                      PreSharedKey;
            case reinit:                   ReInit;
            case external_init:            ExternalInit;
            case group_context_extensions: GroupContextExtensions;
        };
    } Proposal;                                                          (§12.1)

    Build with :meth:`of`, which sets ``proposal_type`` from the body's class."""

    proposal_type: Uint16
    body: Annotated[ProposalBody, Select("proposal_type", _PROPOSAL_CASES)]

    @classmethod
    def of(cls, body: ProposalBody) -> Proposal:
        """Wrap a proposal body with the matching ``proposal_type``."""
        try:
            return cls(PROPOSAL_TYPES[type(body)], body)
        except KeyError:
            raise UsageError(f"Proposal.of: not a proposal: {type(body).__name__}") from None


@dataclass(frozen=True)
class ProposalOrRef(Struct):
    """struct {
      ProposalOrRefType type;
      select (ProposalOrRef.type) {
        case proposal:  Proposal proposal;
        case reference: ProposalRef reference;
      };
    } ProposalOrRef;                                                     (§12.4)

    ``value`` is a :class:`Proposal` or the ``ProposalRef`` bytes (``opaque <V>``, §5.2).
    Build with :meth:`by_value` / :meth:`by_reference`."""

    type: Uint8
    value: Annotated[
        Proposal | bytes,
        Select("type", {ProposalOrRefType.PROPOSAL: Proposal,
                        ProposalOrRefType.REFERENCE: VAR_BYTES}),
    ]

    @classmethod
    def by_value(cls, proposal: Proposal) -> ProposalOrRef:
        return cls(ProposalOrRefType.PROPOSAL, proposal)

    @classmethod
    def by_reference(cls, ref: bytes) -> ProposalOrRef:
        return cls(ProposalOrRefType.REFERENCE, bytes(ref))

    @property
    def proposal(self) -> Proposal | None:
        """The inline proposal, or ``None`` for a reference."""
        return self.value if isinstance(self.value, Proposal) else None

    @property
    def reference(self) -> bytes | None:
        """The ProposalRef, or ``None`` for an inline proposal."""
        return self.value if isinstance(self.value, bytes) else None
