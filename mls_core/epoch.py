"""The state of one epoch of a group (RFC 9420 §8, §9) and of recent past epochs (§14, §15.3).

An :class:`EpochState` is replaced wholesale when a Commit is applied; the only thing
mutated in place is its secret tree (ratchets advance as messages are sent and
received), and every receive is wrapped in a checkpoint so a message that fails
verification leaves the ratchets as they were. A :class:`PastEpoch` also collects the
leaves that later Commits removed, whose late messages it then refuses (§15.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ciphersuite import CipherSuite
from .errors import RemovedSenderError, ValidationError
from .events import ApplicationMessage
from .extensions import ExtensionType
from .framing import PrivateMessage
from .key_schedule import EpochSecrets, GroupContext
from .messages import parse_external_senders
from .protection import from_private_message, verify_content
from .ratchet_tree import RatchetTree
from .secret_tree import RatchetKey, SecretTree, SecretTreeCheckpoint
from .treekem import TreeKEMPrivate


def decrypt_application(suite: CipherSuite, context: GroupContext, tree: RatchetTree,
                        secret_tree: SecretTree, sender_data_secret: bytes,
                        pm: PrivateMessage,
                        refused_senders: frozenset[int] = frozenset()) -> ApplicationMessage:
    """Decrypt and verify an application PrivateMessage (§6.3, §15); the sender's ratchet
    advances only if every check passes (its key is then deleted, §9.2). An authentic
    message from a leaf in ``refused_senders`` raises RemovedSenderError."""
    checkpoints: list[SecretTreeCheckpoint] = []

    def key_source(leaf: int, content_type: int, generation: int) -> RatchetKey:
        if tree.leaf(leaf) is None:
            raise ValidationError("§6.3.2: sender data names a blank leaf")
        checkpoints.append(secret_tree.checkpoint(leaf))
        return secret_tree.get(leaf, content_type, generation)

    try:
        content, sender_data = from_private_message(suite, pm, sender_data_secret, key_source)
        leaf = tree.leaf(sender_data.leaf_index)
        assert leaf is not None  # checked in key_source
        verify_content(suite, leaf.signature_key, content, context)
        if sender_data.leaf_index in refused_senders:
            raise RemovedSenderError(
                f"§15.3: application message of epoch {context.epoch} from leaf "
                f"{sender_data.leaf_index}, which a later Commit removed")
    except BaseException:
        for cp in reversed(checkpoints):
            secret_tree.restore(cp)
        raise
    data = content.content.application_data
    assert data is not None
    return ApplicationMessage(sender_data.leaf_index, context.epoch, data,
                              content.content.authenticated_data)


@dataclass
class PastEpoch:
    """What is kept of an old epoch to read late application messages (§14, §15.3)."""

    suite: CipherSuite
    context: GroupContext
    tree: RatchetTree
    secret_tree: SecretTree
    sender_data_secret: bytes = field(repr=False)
    #: leaves that Commits processed since this epoch (this one's included) removed
    removed: frozenset[int] = frozenset()

    def decrypt_application(self, pm: PrivateMessage,
                            refuse_removed: bool = True) -> ApplicationMessage:
        """Read a late message (§15.3); one from a leaf in :attr:`removed` raises
        RemovedSenderError unless ``refuse_removed`` is False."""
        refused = self.removed if refuse_removed else frozenset()
        return decrypt_application(self.suite, self.context, self.tree, self.secret_tree,
                                   self.sender_data_secret, pm, refused)


@dataclass
class EpochState:
    """Everything a member holds for the current epoch."""

    suite: CipherSuite
    context: GroupContext
    tree: RatchetTree
    own_leaf: int
    signature_priv: bytes = field(repr=False)
    private: TreeKEMPrivate
    secrets: EpochSecrets
    secret_tree: SecretTree
    interim_transcript_hash: bytes
    confirmation_tag: bytes
    checkpoints: list[SecretTreeCheckpoint] = field(default_factory=list, repr=False)

    @classmethod
    def build(cls, suite: CipherSuite, context: GroupContext, tree: RatchetTree,
              own_leaf: int, signature_priv: bytes, private: TreeKEMPrivate,
              secrets: EpochSecrets, interim_transcript_hash: bytes, confirmation_tag: bytes,
              max_retained: int, max_forward: int) -> EpochState:
        """A new epoch's state with a fresh secret tree over the tree's leaves (§9)."""
        secret_tree = SecretTree(suite, secrets.encryption_secret, tree.n_leaves,
                                 max_retained=max_retained, max_forward=max_forward)
        return cls(suite, context, tree, own_leaf, signature_priv, private, secrets,
                   secret_tree, interim_transcript_hash, confirmation_tag)

    def decrypt_application(self, pm: PrivateMessage) -> ApplicationMessage:
        return decrypt_application(self.suite, self.context, self.tree, self.secret_tree,
                                   self.secrets.sender_data_secret, pm)

    def rollback_checkpoints(self) -> None:
        for cp in reversed(self.checkpoints):
            self.secret_tree.restore(cp)
        self.checkpoints.clear()

    def external_sender_key(self, index: int) -> bytes:
        """Signature key of ``external_senders[index]`` (§12.1.8.1)."""
        for ext in self.context.extensions:
            if ext.extension_type == ExtensionType.EXTERNAL_SENDERS:
                senders = parse_external_senders(ext.extension_data)
                if index < len(senders):
                    return senders[index].signature_key
                break
        raise ValidationError(f"§12.1.8.1: no external sender with index {index}")

    def as_past(self) -> PastEpoch:
        return PastEpoch(self.suite, self.context, self.tree, self.secret_tree,
                         self.secrets.sender_data_secret)
