"""Application policy over proposals and Commits: the hook every client runs.

RFC 9420 leaves to the application which members may propose or commit what (§12.1:
"the application ... MAY impose further restrictions"; RFC 9750 "Access control"). A
:class:`CommitPolicy` in :class:`~mls_core.config.GroupConfig` sees every proposal as it
is stored and every Commit before it is applied (ours when we build it, others' when we
process them), always against the GroupContext extensions *in force*, i.e. before the
Commit. It raises :class:`~mls_core.errors.PolicyError` to refuse; the group state is
then unchanged, exactly as for any other invalid message, so every client that runs the
same policy over the same group state rejects the same Commit with the same error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .credentials import Credential
from .errors import MLSError
from .extensions import Extension, ExtensionType
from .framing import Sender, SenderType
from .messages import parse_external_senders
from .proposal_list import CommittedProposal
from .proposals import Add
from .ratchet_tree import RatchetTree


@dataclass(frozen=True)
class PolicyReview:
    """What a policy decides on: the proposals (with who proposed each), the committer
    (None while a lone proposal is being stored) and the group as it is now."""

    extensions: tuple[Extension, ...]
    tree: RatchetTree
    proposals: Sequence[CommittedProposal]
    committer: Sender | None = None
    #: the credential of an external joiner (its UpdatePath leaf, §12.4.3.2)
    joiner: Credential | None = None

    def credential_at(self, leaf_index: int) -> Credential | None:
        """The credential of the member at ``leaf_index`` (None for a blank leaf)."""
        if leaf_index < 0 or leaf_index >= self.tree.n_leaves:
            return None
        leaf = self.tree.leaf(leaf_index)
        return None if leaf is None else leaf.credential

    def sender_credential(self, sender: Sender, proposal: CommittedProposal | None = None
                          ) -> Credential | None:
        """Who ``sender`` is (§6.1): a member's leaf credential, an external sender's
        credential (§12.1.8.1), a new member's KeyPackage or UpdatePath credential."""
        kind = sender.sender_type
        if kind == SenderType.MEMBER and sender.index is not None:
            return self.credential_at(sender.index)
        if kind == SenderType.EXTERNAL and sender.index is not None:
            return self._external_sender(sender.index)
        if kind == SenderType.NEW_MEMBER_PROPOSAL and proposal is not None \
                and isinstance(proposal.proposal.body, Add):
            return proposal.proposal.body.key_package.leaf_node.credential
        if kind == SenderType.NEW_MEMBER_COMMIT:
            return self.joiner
        return None

    def _external_sender(self, index: int) -> Credential | None:
        for ext in self.extensions:
            if ext.extension_type == ExtensionType.EXTERNAL_SENDERS:
                try:
                    senders = parse_external_senders(ext.extension_data)
                except MLSError:
                    return None
                return senders[index].credential if index < len(senders) else None
        return None


class CommitPolicy(Protocol):
    """Decides whether proposals and Commits are allowed (see the module docstring)."""

    def check(self, review: PolicyReview) -> None:
        """Raise :class:`~mls_core.errors.PolicyError` to refuse."""
        ...
