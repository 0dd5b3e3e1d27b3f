"""The MLS group state machine (RFC 9420 §11-§12), sans-I/O in the spirit of h11.

A :class:`Group` is fed bytes and returns bytes and typed events. Its life cycle::

    Group.create / Group.join / Group.join_external
      -> process(message) -> ApplicationMessage | ProposalReceived | CommitApplied
      -> commit(...) -> CommitResult  (state: PENDING)
           -> merge_pending_commit()   (the Delivery Service accepted it)
           -> discard_pending_commit() (another commit won the epoch)

Every state change is atomic: a message that fails any check raises an
:class:`~mls_core.errors.MLSError` and leaves the group exactly as it was. The core reads
no clock: pass ``now`` (seconds since the Unix epoch) where lifetimes matter.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from . import commit_flow, join_flow, storage
from .ciphersuite import CipherSuite, get_suite
from .commit import Commit
from .commit_flow import CommitResult, check_policy, validation_context
from .config import GroupConfig
from .credentials import Credential
from .epoch import EpochState, PastEpoch
from .errors import EpochError, ProtocolError, UsageError, ValidationError
from .events import CommitApplied, Event, Member, ProposalReceived
from .extensions import Extension
from .framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    SenderType,
    WireFormat,
)
from .key_package import (
    DEFAULT_EXTENSIONS,
    KeyPackagePrivate,
    default_capabilities,
    sign_leaf_node,
)
from .key_schedule import (
    PROTOCOL_VERSION_MLS10,
    GroupContext,
    confirmation_tag,
    mls_exporter,
    secrets_from_epoch_secret,
)
from .messages import KeyPackage
from .nodes import Capabilities, LeafNodeSource, LeafNodeTBS, LeafNodeTBSContext, Lifetime
from .proposal_list import CommittedProposal, validate_received_proposal
from .proposals import (
    Add,
    PreSharedKey,
    Proposal,
    ProposalBody,
    ProposalType,
    ReInit,
    Remove,
    Update,
)
from .protection import (
    from_private_message,
    from_public_message,
    sign_content,
    to_private_message,
    to_public_message,
    verify_content,
)
from .psk import ExternalPSK, PreSharedKeyID, PSKType, ResumptionPSK, ResumptionPSKUsage
from .ratchet_tree import RatchetTree
from .secret_tree import RatchetKey
from .transcript import INITIAL_TRANSCRIPT_HASH, interim_transcript_hash
from .treekem import TreeKEMPrivate

PUBLIC = WireFormat.MLS_PUBLIC_MESSAGE
PRIVATE = WireFormat.MLS_PRIVATE_MESSAGE


@dataclass(frozen=True)
class _StoredProposal:
    proposal: Proposal
    sender: Sender


class Group:
    """One member's view of one MLS group (RFC 9420). Not thread-safe."""

    def __init__(self, state: EpochState, config: GroupConfig) -> None:
        self._state = state
        self._config = config
        self._proposals: OrderedDict[bytes, _StoredProposal] = OrderedDict()
        self._pending: commit_flow.PendingCommit | None = None
        self._past: OrderedDict[int, PastEpoch] = OrderedDict()
        self._resumption_psks: OrderedDict[int, bytes] = OrderedDict()
        self._active = True
        #: the ReInit this group was closed with, and resumption PSKs of linked groups
        self._reinit: ReInit | None = None
        self._linked_psks: dict[tuple[bytes, int], bytes] = {}
        #: private keys of leaves we proposed in Update proposals this epoch (§12.1.2)
        self._update_keys: dict[bytes, bytes] = {}
        self._remember_resumption_psk()

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        suite_id: int,
        credential: Credential,
        signature_priv: bytes,
        *,
        group_id: bytes | None = None,
        extensions: Sequence[Extension] = (),
        capabilities: Capabilities | None = None,
        now: int = 0,
        config: GroupConfig | None = None,
        leaf_extensions: Sequence[Extension] = (),
    ) -> Group:
        """A new one-member group at epoch 0 (§11). ``leaf_extensions``: of our LeafNode
        (e.g. application_id, §5.3.3), each listed in ``capabilities`` unless default."""
        suite = get_suite(suite_id)
        group_id = os.urandom(suite.hash_length) if group_id is None else group_id
        enc_priv, enc_pub = suite.generate_key_pair()
        leaf = sign_leaf_node(suite, signature_priv, LeafNodeTBS(
            encryption_key=enc_pub,
            signature_key=suite.signature_public_key(signature_priv),
            credential=credential,
            capabilities=capabilities or default_capabilities(
                extensions=[e.extension_type for e in extensions
                            if e.extension_type not in DEFAULT_EXTENSIONS]),
            leaf_node_source=LeafNodeSource.KEY_PACKAGE,
            source_data=Lifetime(max(0, now - 3600), (now or 0) + 365 * 24 * 3600),
            extensions=tuple(leaf_extensions),
            group_context=None,
        ))
        tree = RatchetTree.create(suite, leaf)
        context = GroupContext(PROTOCOL_VERSION_MLS10, suite.id, group_id, 0, tree.tree_hash(),
                               INITIAL_TRANSCRIPT_HASH, tuple(extensions))
        secrets = secrets_from_epoch_secret(suite, os.urandom(suite.hash_length))
        tag = confirmation_tag(suite, secrets.confirmation_key, INITIAL_TRANSCRIPT_HASH)
        cfg = config or GroupConfig()
        state = EpochState.build(suite, context, tree, 0, signature_priv,
                                 TreeKEMPrivate.for_leaf(0, enc_priv), secrets,
                                 interim_transcript_hash(suite, INITIAL_TRANSCRIPT_HASH, tag),
                                 tag, cfg.max_retained_keys, cfg.max_forward_distance)
        return cls(state, cfg)

    # ------------------------------------------------------------------ accessors

    @property
    def suite(self) -> CipherSuite:
        return self._state.suite

    @property
    def group_id(self) -> bytes:
        return self._state.context.group_id

    @property
    def epoch(self) -> int:
        return self._state.context.epoch

    @property
    def context(self) -> GroupContext:
        return self._state.context

    @property
    def own_leaf_index(self) -> int:
        return self._state.own_leaf

    @property
    def active(self) -> bool:
        """False once we were removed or the group was reinitialized (§12.4.2)."""
        return self._active

    @property
    def epoch_authenticator(self) -> bytes:
        """The epoch authenticator (§8.7)."""
        return self._state.secrets.epoch_authenticator

    @property
    def tree(self) -> RatchetTree:
        """A copy of the current ratchet tree."""
        return self._state.tree.copy()

    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(Member(i, leaf.credential, leaf.signature_key)
                     for i, leaf in self._state.tree.leaves())

    def member(self, index: int) -> Member | None:
        """The member at leaf ``index``, or None for a blank or out-of-range leaf."""
        if index < 0 or index >= self._state.tree.n_leaves:
            return None
        leaf = self._state.tree.leaf(index)
        return None if leaf is None else Member(index, leaf.credential, leaf.signature_key)

    @property
    def has_pending_commit(self) -> bool:
        return self._pending is not None

    @property
    def pending_proposals(self) -> tuple[Proposal, ...]:
        return tuple(p.proposal for p in self._proposals.values())

    def export_secret(self, label: bytes | str, context: bytes, length: int) -> bytes:
        """MLS-Exporter(label, context, length) (§8.5)."""
        return mls_exporter(self.suite, self._state.secrets.exporter_secret, label, context,
                            length)

    def ratchet_tree_bytes(self) -> bytes:
        """The tree in ``ratchet_tree`` extension form, for out-of-band delivery."""
        return self._state.tree.encode()

    # ------------------------------------------------------------------ sending

    def encrypt(self, data: bytes, authenticated_data: bytes = b"") -> bytes:
        """Encrypt application data as an MLSMessage(PrivateMessage) (§6.3, §15)."""
        self._require_sendable()
        if self._proposals:
            raise UsageError("§12.4: commit the pending proposals before sending "
                             "application data")
        return self._protect(self._sign(ContentType.APPLICATION, bytes(data), PRIVATE,
                                        authenticated_data))

    def _sign(self, content_type: int, body: bytes | Proposal | Commit, wire_format: int,
              authenticated_data: bytes = b"", tag: bytes | None = None,
              ) -> AuthenticatedContent:
        st = self._state
        content = FramedContent(st.context.group_id, st.context.epoch,
                                Sender.member(st.own_leaf), authenticated_data, content_type,
                                body)
        return sign_content(st.suite, st.signature_priv, wire_format, content, st.context, tag)

    def _protect(self, signed: AuthenticatedContent) -> bytes:
        """Protect with the current epoch's keys (§6.2, §6.3)."""
        st = self._state
        content_type = signed.content.content_type
        if signed.wire_format == PUBLIC:
            msg: PublicMessage | PrivateMessage = to_public_message(
                st.suite, signed, st.context, st.secrets.membership_key)
        else:
            key = st.secret_tree.next(st.own_leaf, content_type)
            msg = to_private_message(st.suite, signed, st.secrets.sender_data_secret, key,
                                     padding_block=self._config.padding_block)
        return MLSMessage.of(msg).encode()

    def propose(self, proposal: Proposal | ProposalBody,
                *, authenticated_data: bytes = b"") -> bytes:
        """Send a proposal (§12.1); it is also stored so our next commit includes it."""
        self._require_sendable()
        if not isinstance(proposal, Proposal):
            proposal = Proposal.of(proposal)
        st = self._state
        check_policy(self._config, st, [CommittedProposal(proposal, Sender.member(st.own_leaf))],
                     None)
        wf = self._config.handshake_wire_format
        # Store the content as signed: our own PrivateMessage cannot be decrypted by us,
        # its generation is consumed (§9.2).
        signed = self._sign(ContentType.PROPOSAL, proposal, wf, authenticated_data)
        data = self._protect(signed)
        self._store_proposal(signed, validate=False)  # ours: built valid, policy checked
        return data

    def propose_update(self, *, now: int | None = None) -> bytes:
        """Propose a fresh leaf for ourselves (§12.1.2): new HPKE key, same credential.
        Its private key is kept until a Commit covers the Update or the epoch ends."""
        self._require_sendable()
        st = self._state
        old = st.tree.leaf(st.own_leaf)
        assert old is not None
        enc_priv, enc_pub = st.suite.generate_key_pair()
        leaf = sign_leaf_node(st.suite, st.signature_priv, LeafNodeTBS(
            encryption_key=enc_pub, signature_key=old.signature_key,
            credential=old.credential, capabilities=old.capabilities,
            leaf_node_source=LeafNodeSource.UPDATE, source_data=None,
            extensions=old.extensions,
            group_context=LeafNodeTBSContext(st.context.group_id, st.own_leaf)))
        data = self.propose(Update(leaf))
        self._update_keys[enc_pub] = enc_priv
        return data

    def propose_add(self, key_package: KeyPackage) -> bytes:
        return self.propose(Add(key_package))

    def propose_remove(self, leaf_index: int) -> bytes:
        return self.propose(Remove(leaf_index))

    def propose_external_psk(self, psk_id: bytes) -> bytes:
        nonce = os.urandom(self.suite.hash_length)
        return self.propose(PreSharedKey(PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(psk_id),
                                                        nonce)))

    def propose_resumption_psk(self, epoch: int) -> bytes:
        nonce = os.urandom(self.suite.hash_length)
        pid = PreSharedKeyID(PSKType.RESUMPTION,
                             ResumptionPSK(ResumptionPSKUsage.APPLICATION, self.group_id, epoch),
                             nonce)
        return self.propose(PreSharedKey(pid))

    def _require_sendable(self) -> None:
        if not self._active:
            raise UsageError("this group is no longer active (removed or reinitialized)")
        if self._pending is not None:
            raise UsageError("a commit is pending: merge or discard it first (RFC 9750)")

    # ------------------------------------------------------------------ receiving

    def process(self, data: bytes, *, now: int | None = None) -> Event:
        """Process one MLSMessage from the group (§6, §12.4.2) and return what it did.

        Raises an MLSError for anything invalid; the group state is then unchanged."""
        msg = MLSMessage.decode(data)
        if msg.version != PROTOCOL_VERSION_MLS10:
            raise ProtocolError(f"§6: unsupported protocol version {msg.version}")
        if msg.public_message is None and msg.private_message is None:
            raise ProtocolError("§6: expected a PublicMessage or PrivateMessage")
        body = msg.public_message or msg.private_message
        assert body is not None
        group_id = body.content.group_id if isinstance(body, PublicMessage) else body.group_id
        epoch = body.content.epoch if isinstance(body, PublicMessage) else body.epoch
        if group_id != self.group_id:
            raise ProtocolError("§6.2/§6.3: message for another group_id")
        if epoch != self.epoch:
            return self._process_past(msg, epoch)
        if isinstance(body, PrivateMessage) and body.content_type == ContentType.APPLICATION:
            return self._state.decrypt_application(body)
        st = self._state
        try:
            content = self._authenticated_content_of(msg)
            if content.content.content_type == ContentType.PROPOSAL:
                return self._store_proposal(content, now)
            if content.content.content_type == ContentType.COMMIT:
                return self._process_commit(content, now)
            raise ProtocolError("§6: application data must be sent as a PrivateMessage")
        except BaseException:
            # an authentic but invalid handshake message leaves the ratchet as it was
            st.rollback_checkpoints()
            raise
        finally:
            st.checkpoints.clear()

    def _process_past(self, msg: MLSMessage, epoch: int) -> Event:
        past = self._past.get(epoch)
        pm = msg.private_message
        if past is None or pm is None or pm.content_type != ContentType.APPLICATION:
            raise EpochError(f"§12.4.2: message for epoch {epoch}, group is at {self.epoch}")
        return past.decrypt_application(pm, not self._config.accept_removed_senders)

    def _authenticated_content_of(self, msg: MLSMessage) -> AuthenticatedContent:
        """Unprotect a handshake message of the current epoch and verify its signature
        (§6.1-§6.3). Our own messages come back from the DS as well; see process()."""
        st = self._state
        if msg.private_message is not None:
            pm = msg.private_message

            def key_source(leaf: int, content_type: int, generation: int) -> RatchetKey:
                if st.tree.leaf(leaf) is None:
                    raise ValidationError("§6.3.2: sender data names a blank leaf")
                st.checkpoints.append(st.secret_tree.checkpoint(leaf))
                return st.secret_tree.get(leaf, content_type, generation)

            try:
                content, _ = from_private_message(st.suite, pm, st.secrets.sender_data_secret,
                                                  key_source)
                self._verify_sender(content)
            except BaseException:
                st.rollback_checkpoints()
                raise
            return content  # process() keeps the checkpoints until the message is applied
        pub = msg.public_message
        assert pub is not None
        content = from_public_message(st.suite, pub, st.context, st.secrets.membership_key)
        self._verify_sender(content)
        return content

    def _verify_sender(self, content: AuthenticatedContent) -> None:
        """Signature check with the key §6.1 assigns to each sender type."""
        st = self._state
        sender = content.content.sender
        if sender.sender_type == SenderType.MEMBER:
            leaf = st.tree.leaf(sender.index or 0)
            if leaf is None:
                raise ValidationError("§6.1: message from a blank leaf")
            verify_content(st.suite, leaf.signature_key, content, st.context)
        elif sender.sender_type == SenderType.EXTERNAL:
            key = st.external_sender_key(sender.index or 0)
            if content.content.content_type != ContentType.PROPOSAL:
                raise ValidationError("§6.1: external senders may only send proposals")
            verify_content(st.suite, key, content, st.context)
        elif sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL:
            proposal = content.content.proposal
            if proposal is None or not isinstance(proposal.body, Add):
                raise ValidationError("§6.1: new_member_proposal must be an Add proposal")
            verify_content(st.suite, proposal.body.key_package.leaf_node.signature_key,
                           content, None)
        elif sender.sender_type == SenderType.NEW_MEMBER_COMMIT:
            commit = content.content.commit
            if commit is None or commit.path is None:
                raise ValidationError("§12.4.3.2: external commit without a path")
            verify_content(st.suite, commit.path.leaf_node.signature_key, content, st.context)
        else:
            raise ValidationError(f"§6: unknown sender type {sender.sender_type}")

    def _store_proposal(self, content: AuthenticatedContent, now: int | None = None, *,
                        validate: bool = True) -> ProposalReceived:
        proposal = content.content.proposal
        assert proposal is not None
        sender = content.content.sender
        if sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL and \
                content.wire_format != PUBLIC:
            raise ValidationError("§12.1.8: external proposals must be PublicMessages")
        if proposal.proposal_type == ProposalType.EXTERNAL_INIT:
            raise ValidationError("§12.1.6: ExternalInit only inside an external Commit")
        if proposal.proposal_type == ProposalType.UPDATE and \
                sender.sender_type != SenderType.MEMBER:
            raise ValidationError("§12.1.2: Update proposals come from members")
        received = CommittedProposal(proposal, sender, content.content.authenticated_data)
        if validate:
            validate_received_proposal(received, validation_context(self._state, self._config,
                                                                    now), self._state.tree)
        check_policy(self._config, self._state, [received], None)
        ref = self.suite.make_proposal_ref(content.encode())
        self._store_raw_proposal(ref, proposal, sender)
        return ProposalReceived(ref, proposal, sender)

    def _store_raw_proposal(self, ref: bytes, proposal: Proposal, sender: Sender) -> None:
        self._proposals[ref] = _StoredProposal(proposal, sender)

    # ------------------------------------------------------------------ resumption PSKs

    def _remember_resumption_psk(self) -> None:
        self._resumption_psks[self.epoch] = self._state.secrets.resumption_psk
        while len(self._resumption_psks) > self._config.resumption_psk_epochs:
            self._resumption_psks.popitem(last=False)

    def resumption_psk(self, epoch: int) -> bytes:
        """The resumption PSK of a recent epoch of this group (§8.6)."""
        try:
            return self._resumption_psks[epoch]
        except KeyError:
            raise ValidationError(f"§8.6: no resumption PSK for epoch {epoch}") from None

    def _lookup_psk(self, pid: PreSharedKeyID) -> bytes:
        body = pid.psk
        if isinstance(body, ExternalPSK):
            psk = self._config.external_psks.get(body.psk_id)
            if psk is None:
                raise ValidationError("§12.4.2: unknown external PSK")
            return psk
        linked = self._linked_psks.get((body.psk_group_id, body.psk_epoch))
        if linked is not None:
            return linked
        if body.psk_group_id != self.group_id:
            raise ValidationError("§8.6: resumption PSK of another group is not available")
        return self.resumption_psk(body.psk_epoch)

    # ------------------------------------------------------------------ commits

    def commit(
        self,
        proposals: Sequence[Proposal | ProposalBody] = (),
        *,
        include_pending: bool = True,
        force_path: bool = True,
        ratchet_tree_in_welcome: bool = True,
        authenticated_data: bytes = b"",
        now: int | None = None,
        _resumption_usage: int | None = None,
    ) -> CommitResult:
        """Create a Commit over ``proposals`` (by value) and, if ``include_pending``, every
        valid stored proposal (by reference) (§12.4.1). The group enters the PENDING state:
        call :meth:`merge_pending_commit` once the Delivery Service accepted the Commit, or
        :meth:`discard_pending_commit` if another Commit won the epoch (RFC 9750)."""
        self._require_sendable()
        by_value = [p if isinstance(p, Proposal) else Proposal.of(p) for p in proposals]
        refs = list(self._proposals.items()) if include_pending else []
        plan = commit_flow.CommitPlan(
            by_value=by_value,
            by_reference=[(ref, p.proposal, p.sender) for ref, p in refs],
            force_path=force_path,
            ratchet_tree_in_welcome=ratchet_tree_in_welcome,
            authenticated_data=authenticated_data,
            wire_format=self._config.handshake_wire_format,
            padding_block=self._config.padding_block,
            resumption_usage=_resumption_usage,
        )
        created = commit_flow.create_commit(self._state, self._config, plan, self._lookup_psk,
                                            now)
        self._pending = created
        return created.result

    def merge_pending_commit(self) -> CommitApplied:
        """Our Commit was accepted: move to the new epoch (§12.4.1)."""
        if self._pending is None:
            raise UsageError("no pending commit")
        pending, self._pending = self._pending, None
        self._advance(pending.state, pending.event)
        self._after_commit(pending.event)
        return pending.event

    def discard_pending_commit(self) -> None:
        """Another Commit won the epoch: forget ours (RFC 9750 §"Delivery Service")."""
        if self._pending is None:
            raise UsageError("no pending commit")
        self._pending = None

    def _process_commit(self, content: AuthenticatedContent, now: int | None) -> CommitApplied:
        if self._pending is not None and content.content.sender.leaf_index == self.own_leaf_index:
            raise UsageError("this is our own pending Commit: call merge_pending_commit()")
        stored = {ref: (p.proposal, p.sender) for ref, p in self._proposals.items()}
        state, event = commit_flow.process_commit(self._state, self._config, content, stored,
                                                  self._lookup_psk, now, self._update_keys)
        self._pending = None
        if not event.removed_self:
            self._advance(state, event)
        self._after_commit(event)
        return event

    def _after_commit(self, event: CommitApplied) -> None:
        """§12.4.2: after a Commit that removes us or carries a ReInit, the group must
        not be used to send messages any more."""
        if event.removed_self:
            self._active = False
        if event.reinit is not None:
            self._reinit = event.reinit
            self._active = False

    def _advance(self, state: EpochState, event: CommitApplied) -> None:
        """Enter the new epoch: keep the old one for late application messages (§14, §15.3),
        and note in every kept epoch whom the Commit removed."""
        old = self._state
        if self._config.max_past_epochs > 0:
            self._past[old.context.epoch] = old.as_past()
            while len(self._past) > self._config.max_past_epochs:
                self._past.popitem(last=False)
        removed = _removed_leaves(event)
        if removed:
            for past in self._past.values():
                past.removed |= removed
        self._state = state
        self._proposals.clear()
        self._update_keys.clear()  # unused Update keys die with their epoch (§9.2)
        self._remember_resumption_psk()

    # ------------------------------------------------------------------ GroupInfo, joins

    def group_info(self, *, with_ratchet_tree: bool = True,
                   with_external_pub: bool = True) -> bytes:
        """A signed MLSMessage(GroupInfo) for the current epoch (§12.4.3), e.g. to let
        others join by external commit (§12.4.3.2)."""
        return MLSMessage.of(commit_flow.make_group_info(self._state, with_ratchet_tree,
                                                         with_external_pub)).encode()

    @classmethod
    def join(cls, welcome: bytes, key_package: KeyPackage, private: KeyPackagePrivate, *,
             ratchet_tree: bytes | None = None, config: GroupConfig | None = None,
             linked_group: Group | None = None, now: int | None = None) -> Group:
        """Join from an MLSMessage(Welcome) (§12.4.3.1). ``ratchet_tree`` is needed if
        the Welcome does not carry the ``ratchet_tree`` extension. For a Welcome into a
        reinitialized group or a subgroup branch, pass the old group as ``linked_group``:
        it supplies the resumption PSK and the new group is checked against it (§11.2,
        §11.3)."""
        cfg = config or GroupConfig()
        resumption = {} if linked_group is None else {
            (linked_group.group_id, e): psk
            for e, psk in linked_group._resumption_psks.items()}
        state, psks = join_flow.join_welcome(welcome, key_package, private, ratchet_tree, cfg,
                                             resumption, now)
        join_flow.check_linkage(state, psks, linked_group)
        return cls(state, cfg)

    # ------------------------------------------------------------------ ReInit, branch

    @property
    def reinit_proposal(self) -> ReInit | None:
        """The ReInit this group was closed with, if any (§11.2)."""
        return self._reinit

    def reinit(self, credential: Credential, signature_priv: bytes,
               key_packages: Sequence[KeyPackage], *, now: int = 0,
               config: GroupConfig | None = None) -> tuple[Group, CommitResult]:
        """After a Commit with a ReInit (§11.2): create the new group the ReInit describes
        and a Commit adding ``key_packages`` (the other members' KeyPackages for the new
        cipher suite) with a ``reinit`` resumption PSK. Merge the result once accepted and
        send its Welcome."""
        if self._reinit is None:
            raise UsageError("§11.2: this group was not closed by a ReInit")
        r = self._reinit
        return self._linked_group(ResumptionPSKUsage.REINIT, r.cipher_suite, r.group_id,
                                  r.extensions, credential, signature_priv, key_packages,
                                  now, config)

    def branch(self, key_packages: Sequence[KeyPackage], *, group_id: bytes | None = None,
               extensions: Sequence[Extension] | None = None, now: int = 0,
               config: GroupConfig | None = None) -> tuple[Group, CommitResult]:
        """Start a subgroup of some members with the same parameters (§11.3): a new group
        whose first Commit adds ``key_packages`` with a ``branch`` resumption PSK."""
        self._require_sendable()
        own = self._state.tree.leaf(self.own_leaf_index)
        assert own is not None
        ext = self.context.extensions if extensions is None else tuple(extensions)
        return self._linked_group(ResumptionPSKUsage.BRANCH, self.suite.id, group_id, ext,
                                  own.credential, self._state.signature_priv, key_packages,
                                  now, config)

    def _linked_group(self, usage: int, suite_id: int, group_id: bytes | None,
                      extensions: Sequence[Extension], credential: Credential,
                      signature_priv: bytes, key_packages: Sequence[KeyPackage], now: int,
                      config: GroupConfig | None) -> tuple[Group, CommitResult]:
        new = Group.create(suite_id, credential, signature_priv, group_id=group_id,
                           extensions=extensions, now=now, config=config or self._config)
        key = (self.group_id, self.epoch)
        new._linked_psks[key] = self._state.secrets.resumption_psk
        pid = PreSharedKeyID(PSKType.RESUMPTION,
                             ResumptionPSK(usage, self.group_id, self.epoch),
                             os.urandom(new.suite.hash_length))
        result = new.commit([*(Add(kp) for kp in key_packages), PreSharedKey(pid)],
                            now=now, _resumption_usage=usage)
        return new, result

    @classmethod
    def join_external(cls, group_info: bytes, credential: Credential, signature_priv: bytes,
                      *, ratchet_tree: bytes | None = None, remove_leaf: int | None = None,
                      config: GroupConfig | None = None, authenticated_data: bytes = b"",
                      psk_ids: Sequence[bytes] = (),
                      now: int | None = None,
                      leaf_extensions: Sequence[Extension] = (),
                      capabilities: Capabilities | None = None) -> tuple[Group, bytes]:
        """Join by external Commit from a GroupInfo (§12.4.3.2). Returns the new group
        (already in the new epoch) and the Commit to send; if the Delivery Service rejects
        the Commit, drop the group and retry with a fresh GroupInfo. ``psk_ids`` adds
        external PSKs (known through ``config.external_psks``) to the Commit;
        ``leaf_extensions`` (e.g. application_id, §5.3.3) and ``capabilities`` (default:
        the group's extension types) go into our new LeafNode."""
        cfg = config or GroupConfig()
        state, commit_bytes = join_flow.join_external(
            group_info, credential, signature_priv, ratchet_tree, remove_leaf, cfg,
            authenticated_data, now, psk_ids, leaf_extensions=leaf_extensions,
            capabilities=capabilities)
        if cfg.commit_policy is not None:  # refuse locally what the members would refuse
            pub = MLSMessage.decode(commit_bytes).public_message
            assert pub is not None and pub.content.commit is not None
            sender = Sender.new_member_commit()
            proposals = [CommittedProposal(p.proposal, sender)
                         for p in pub.content.commit.proposals if p.proposal is not None]
            check_policy(cfg, state, proposals, sender, joiner=credential)
        return cls(state, cfg), commit_bytes

    # ------------------------------------------------------------------ storage

    def to_bytes(self) -> bytes:
        """Versioned serialization of the whole group state (see ``mls_core.storage``)."""
        return storage.dump_group(self)

    @classmethod
    def from_bytes(cls, data: bytes, config: GroupConfig | None = None) -> Group:
        """Inverse of :meth:`to_bytes`; DecodeError on malformed or foreign data."""
        return storage.load_group(cls, data, config or GroupConfig())


def _removed_leaves(event: CommitApplied) -> frozenset[int]:
    """The leaves whose member ``event``'s Commit removed (§12.1.3). The Remove of a
    resync external Commit (§12.4.3.2) does not count: the Authentication Service let
    the same identity take a new leaf, so that member is still in the group."""
    if event.committer.sender_type == SenderType.NEW_MEMBER_COMMIT:
        return frozenset()
    return frozenset(m.index for m in event.removed)
