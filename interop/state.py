"""Per-server bookkeeping of the interop client: group states, transactions (key packages
waiting for a Welcome), ReInit hand-overs and external signers, all named by uint32 IDs.

One counter serves every kind of ID, so the IDs never collide: ``StorePSK`` receives a
state ID or a transaction ID in the same field. IDs start at 1 (the runner sends 0 for
"unknown") and are never reused during the server's lifetime.

A state ID names one member's view of one epoch. Operations that move to a new epoch
(``HandleCommit``, ``HandlePendingCommit``, the ReInit hand-overs) return a new ID and
retire the old one: retired IDs stay valid for ``Free`` and name their successor in the
error other RPCs get. The group object moves rather than being copied, so a run costs
no more memory than its live members.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from mls_core.config import GroupConfig
from mls_core.framing import WireFormat
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate
from mls_core.messages import ExternalSender, KeyPackage

from .errors import FailedPrecondition, NotFound

#: uint32 IDs; 0 means "none" to the runner.
MAX_ID = 0xFFFF_FFFF


def group_config(encrypt_handshake: bool, psks: dict[bytes, bytes] | None = None
                 ) -> GroupConfig:
    """A GroupConfig for a member: handshake wire format per the encrypt flag, and the
    given external PSK store (shared, not copied, so later StorePSK calls are seen)."""
    wire_format = (WireFormat.MLS_PRIVATE_MESSAGE if encrypt_handshake
                   else WireFormat.MLS_PUBLIC_MESSAGE)
    return GroupConfig(handshake_wire_format=wire_format,
                       external_psks={} if psks is None else psks)


@dataclass
class MemberState:
    """One member's group at one epoch."""

    group: Group
    config: GroupConfig
    identity: bytes
    signature_priv: bytes
    #: our own proposal messages of this epoch: we cannot decrypt our own PrivateMessages,
    #: so by-reference lists are matched against these first
    sent_proposals: set[bytes] = field(default_factory=set)
    #: the Commit message of our pending commit, if any
    pending_commit: bytes | None = None

    @property
    def encrypt_handshake(self) -> bool:
        return self.config.handshake_wire_format == WireFormat.MLS_PRIVATE_MESSAGE

    def successor(self, group: Group) -> MemberState:
        """The state for the next epoch of the same member, on ``group``."""
        return MemberState(group, self.config, self.identity, self.signature_priv)


@dataclass(frozen=True)
class Retired:
    """A state ID whose group moved on: to ``successor`` (a state, reinit or nothing)."""

    successor: int
    kind: str


@dataclass
class Transaction:
    """A KeyPackage we made and its private keys, waiting for a Welcome."""

    key_package: KeyPackage
    private: KeyPackagePrivate
    identity: bytes
    psks: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class ReInitHandOver:
    """A group closed by a ReInit Commit (§11.2), our KeyPackage for the new group and
    the signature key that goes with it."""

    old: MemberState
    key_package: KeyPackage
    private: KeyPackagePrivate


@dataclass(frozen=True)
class Signer:
    """An external sender (§12.1.8.1) we can sign proposals as."""

    cipher_suite: int
    signature_priv: bytes
    sender: ExternalSender


Entry = MemberState | Retired | Transaction | ReInitHandOver | Signer


class Registry:
    """ID -> object tables behind one counter. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._entries: dict[int, Entry] = {}

    def add(self, entry: Entry) -> int:
        """Store ``entry`` under a fresh ID."""
        with self._lock:
            if self._last >= MAX_ID:
                raise FailedPrecondition("uint32 ID space exhausted")
            self._last += 1
            self._entries[self._last] = entry
            return self._last

    def retire(self, old: int, successor: int, kind: str) -> None:
        """Mark state ``old`` as moved on to ``successor``."""
        with self._lock:
            self._entries[old] = Retired(successor, kind)

    def free(self, ident: int) -> None:
        """Forget ``ident``. Freeing an ID we issued twice is fine; one never issued is
        an error."""
        with self._lock:
            if not 0 < ident <= self._last:
                raise NotFound(f"no state with id {ident}")
            self._entries.pop(ident, None)

    def _get(self, ident: int, what: str) -> Entry:
        entry = self._entries.get(ident)
        if entry is None:
            raise NotFound(f"no {what} with id {ident}")
        return entry

    def state(self, ident: int) -> MemberState:
        entry = self._get(ident, "state")
        if isinstance(entry, Retired):
            raise FailedPrecondition(f"state {ident} is retired: it moved on to "
                                     f"{entry.kind} {entry.successor}")
        if not isinstance(entry, MemberState):
            raise NotFound(f"id {ident} is not a state")
        return entry

    def transaction(self, ident: int) -> Transaction:
        entry = self._get(ident, "transaction")
        if not isinstance(entry, Transaction):
            raise NotFound(f"id {ident} is not a transaction")
        return entry

    def reinit(self, ident: int) -> ReInitHandOver:
        entry = self._get(ident, "reinit")
        if not isinstance(entry, ReInitHandOver):
            raise NotFound(f"id {ident} is not a reinit")
        return entry

    def signer(self, ident: int) -> Signer:
        entry = self._get(ident, "signer")
        if not isinstance(entry, Signer):
            raise NotFound(f"id {ident} is not an external signer")
        return entry

    def psk_store(self, ident: int) -> dict[bytes, bytes]:
        """The external PSK store of a state or transaction (StorePSK)."""
        entry = self._get(ident, "state or transaction")
        if isinstance(entry, MemberState):
            return entry.config.external_psks
        if isinstance(entry, Transaction):
            return entry.psks
        if isinstance(entry, Retired):
            raise FailedPrecondition(f"state {ident} is retired")
        raise NotFound(f"id {ident} is neither a state nor a transaction")
