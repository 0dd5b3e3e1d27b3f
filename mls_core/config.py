"""Per-group configuration of the MLS state machine (policy knobs, not protocol state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .authentication import DEFAULT_VALIDATOR, CredentialValidator
from .errors import UsageError
from .framing import WireFormat

if TYPE_CHECKING:
    from .ciphersuite import CipherSuite
    from .policy import CommitPolicy


#: the byte bounds for suite 1 (see :class:`InputLimits`): 4 MiB holds ~15,000 members
#: with basic credentials (a steady-state 10,000-member tree is 2.5-2.7 MiB); the whole
#: message gets 1 MiB more (one EncryptedGroupSecrets per new member, extensions)
DEFAULT_TREE_BYTES = 4 << 20
DEFAULT_MESSAGE_EXTRA = 1 << 20


@dataclass(frozen=True)
class InputLimits:
    """Bounds on what a joiner decodes: a Welcome (§12.4.3.1), a GroupInfo (§12.4.3.2)
    and the ratchet tree they carry or that comes out of band (§12.4.3.3). Each is
    checked before the work it bounds, so that anything over it is refused
    (:class:`~mls_core.errors.LimitError`) in time linear in the bound, not in the
    input. See docs/security.md, "Bounds".

    A byte bound left at None follows the group's cipher suite: the suite-1 default
    times :attr:`CipherSuite.leaf_scale <mls_core.ciphersuite.CipherSuite.leaf_scale>`
    (an ML-DSA-87 leaf is ~45 times a suite-1 leaf), so the defaults admit groups of
    the same size in every suite. A number is used as it is, whatever the suite."""

    #: leaves of a ratchet tree, counted while decoding (before a node is built): 2^16
    #: leaves hold a 10,000-member group 6 times over; a tree is refused at its
    #: 2^17-th node, whatever its claimed size
    max_tree_leaves: int = 1 << 16
    #: bytes of an encoded ratchet tree, in the ``ratchet_tree`` extension or out of
    #: band (None: :data:`DEFAULT_TREE_BYTES` x the suite's leaf scale); raise it for
    #: larger groups or X.509 chains
    max_tree_bytes: int | None = None
    #: bytes of a whole MLSMessage(Welcome) or MLSMessage(GroupInfo) (None: the tree's
    #: bound plus :data:`DEFAULT_MESSAGE_EXTRA`)
    max_message_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_tree_leaves", "max_tree_bytes", "max_message_bytes"):
            value = getattr(self, name)
            if value is None and name != "max_tree_leaves":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"InputLimits.{name} must be a positive int, not {value!r}")

    def tree_bytes(self, suite: CipherSuite | None) -> int:
        """The tree byte bound for ``suite`` (None: an unknown suite, scale 1)."""
        if self.max_tree_bytes is not None:
            return self.max_tree_bytes
        return DEFAULT_TREE_BYTES * (1 if suite is None else suite.leaf_scale)

    def message_bytes(self, suite: CipherSuite | None) -> int:
        """The Welcome/GroupInfo byte bound for ``suite`` (None: scale 1)."""
        if self.max_message_bytes is not None:
            return self.max_message_bytes
        return self.tree_bytes(suite) + DEFAULT_MESSAGE_EXTRA


@dataclass
class GroupConfig:
    """Defaults follow RFC 9420 / RFC 9750 recommendations."""

    #: wire format of our proposals and commits (application data is always private)
    handshake_wire_format: int = WireFormat.MLS_PRIVATE_MESSAGE
    #: pad PrivateMessage plaintexts to a multiple of this many bytes (§6.3, §16.4)
    padding_block: int = 32
    #: past epochs whose keys are kept to decrypt late application messages (§14, §15.3)
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
    #: bounds on Welcome, GroupInfo and ratchet tree inputs when joining
    limits: InputLimits = field(default_factory=InputLimits)
