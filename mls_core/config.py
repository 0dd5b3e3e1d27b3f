"""Per-group configuration of the MLS state machine (policy knobs, not protocol state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .authentication import DEFAULT_VALIDATOR, CredentialValidator
from .framing import WireFormat

if TYPE_CHECKING:
    from .policy import CommitPolicy


@dataclass
class GroupConfig:
    """Defaults follow RFC 9420 / RFC 9750 recommendations."""

    #: wire format of our proposals and commits (application data is always private)
    handshake_wire_format: int = WireFormat.MLS_PRIVATE_MESSAGE
    #: pad PrivateMessage plaintexts to a multiple of this many bytes (§6.3, §16.4)
    padding_block: int = 32
    #: past epochs whose keys are kept to decrypt late application messages (§14)
    max_past_epochs: int = 2
    #: read such a late message even if a Commit we processed since removed its sender;
    #: by default it is refused with RemovedSenderError (§15.3, docs/security.md)
    accept_removed_senders: bool = False
    #: out-of-order window and forward bound of every sender ratchet (§9.2)
    max_retained_keys: int = 128
    max_forward_distance: int = 1024
    #: epochs of resumption PSKs kept for PSK proposals and ReInit/branch (§8.6)
    resumption_psk_epochs: int = 16
    #: external PSKs known to this client: psk_id -> psk (§8.4)
    external_psks: dict[bytes, bytes] = field(default_factory=dict)
    #: the application's Authentication Service (§5.3.1)
    validator: CredentialValidator = DEFAULT_VALIDATOR
    #: the application's access-control policy over proposals and Commits (§12.1,
    #: :mod:`mls_core.policy`); None allows everything RFC 9420 allows
    commit_policy: CommitPolicy | None = None
