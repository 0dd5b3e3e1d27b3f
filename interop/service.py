"""The ``MLSClient`` interop service (mls_client.proto of mlswg/mls-implementations) on
top of ``mls_core``: one method per RPC, taking and returning the generated protobuf
messages. Transport concerns (gRPC status codes, locking, the server) live in
:mod:`interop.client`; conventions follow ``RUNNER.md`` §4 (de-facto client conventions):

* every message field is a complete MLSMessage; ``ratchet_tree`` is the bare
  ``optional<Node> ratchet_tree<V>`` and empty bytes mean "none";
* members are named by the identity of their basic credential, never by leaf index;
* by-reference proposal lists carry proposal messages, which the committer and the
  members process first; our own proposals are recognised from a cache, since we cannot
  decrypt our own PrivateMessages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from mls_core.ciphersuite import get_suite, supported_suites
from mls_core.commit_flow import CommitResult
from mls_core.credentials import Credential
from mls_core.events import ApplicationMessage, CommitApplied, ProposalReceived
from mls_core.extensions import Extension
from mls_core.external import external_proposal, join_proposal
from mls_core.framing import ContentType, MLSMessage
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.key_schedule import PROTOCOL_VERSION_MLS10
from mls_core.messages import ExternalSender, KeyPackage, with_external_sender
from mls_core.proposals import (
    Add,
    GroupContextExtensions,
    Proposal,
    ProposalBody,
    ReInit,
    Remove,
)
from mls_core.psk import ResumptionPSKUsage

from .errors import FailedPrecondition, InvalidArgument
from .generated import mls_client_pb2 as pb
from .mls_ops import (
    decode_group_info,
    decode_key_package,
    external_psk,
    external_sender_index,
    member_of_identity,
    require_content_type,
    resumption_psk,
    tree_after_pending,
    tree_member_of_identity,
    tree_of,
)
from .state import (
    MemberState,
    Registry,
    ReInitHandOver,
    Signer,
    Transaction,
    group_config,
)

#: the name the runner shows in its results
DEFAULT_NAME = "mls_core (Python)"


def _now() -> int:
    return int(time.time())


def _extensions(items: Iterable[pb.Extension]) -> tuple[Extension, ...]:
    out = []
    for e in items:
        if e.extension_type > 0xFFFF:
            raise InvalidArgument(f"extension_type {e.extension_type} exceeds uint16")
        out.append(Extension(e.extension_type, e.extension_data))
    return tuple(out)


def _suite_id(value: int) -> int:
    return get_suite(value).id  # UnsupportedError for unknown suites


class InteropService:
    """Implements every RPC of ``mls_client.MLSClient``. Not thread-safe: the server
    serialises calls."""

    def __init__(self, name: str = DEFAULT_NAME, clock: Callable[[], int] = _now) -> None:
        self.name = name
        self._clock = clock
        self._ids = Registry()

    # ------------------------------------------------------------------ about us

    def Name(self, request: pb.NameRequest) -> pb.NameResponse:
        return pb.NameResponse(name=self.name)

    def SupportedCiphersuites(self, request: pb.SupportedCiphersuitesRequest,
                              ) -> pb.SupportedCiphersuitesResponse:
        return pb.SupportedCiphersuitesResponse(ciphersuites=list(supported_suites()))

    # ------------------------------------------------------------------ becoming a member

    def CreateGroup(self, request: pb.CreateGroupRequest) -> pb.CreateGroupResponse:
        suite = get_suite(request.cipher_suite)
        signature_priv, _ = suite.generate_signature_key_pair()
        config = group_config(request.encrypt_handshake)
        group = Group.create(suite.id, Credential.basic(request.identity), signature_priv,
                             group_id=request.group_id or None, now=self._clock(),
                             config=config)
        state = MemberState(group, config, request.identity, signature_priv)
        return pb.CreateGroupResponse(state_id=self._ids.add(state))

    def _new_key_package(self, suite_id: int, identity: bytes) -> Transaction:
        suite = get_suite(suite_id)
        signature_priv, _ = suite.generate_signature_key_pair()
        kp, private = create_key_package(suite, Credential.basic(identity), signature_priv,
                                         now=self._clock())
        return Transaction(kp, private, identity)

    def CreateKeyPackage(self, request: pb.CreateKeyPackageRequest,
                         ) -> pb.CreateKeyPackageResponse:
        tx = self._new_key_package(request.cipher_suite, request.identity)
        return pb.CreateKeyPackageResponse(
            transaction_id=self._ids.add(tx),
            key_package=MLSMessage.of(tx.key_package).encode(),
            init_priv=tx.private.init_priv,
            encryption_priv=tx.private.encryption_priv,
            signature_priv=tx.private.signature_priv)

    def JoinGroup(self, request: pb.JoinGroupRequest) -> pb.JoinGroupResponse:
        tx = self._ids.transaction(request.transaction_id)
        config = group_config(request.encrypt_handshake, tx.psks)
        group = Group.join(request.welcome, tx.key_package, tx.private,
                           ratchet_tree=request.ratchet_tree or None, config=config,
                           now=self._clock())
        state = MemberState(group, config, tx.identity, tx.private.signature_priv)
        return pb.JoinGroupResponse(state_id=self._ids.add(state),
                                    epoch_authenticator=group.epoch_authenticator)

    def ExternalJoin(self, request: pb.ExternalJoinRequest) -> pb.ExternalJoinResponse:
        info = decode_group_info(request.group_info)
        suite = get_suite(info.group_context.cipher_suite)
        signature_priv, _ = suite.generate_signature_key_pair()
        credential = Credential.basic(request.identity)
        remove_leaf = None
        if request.remove_prior:
            remove_leaf = tree_member_of_identity(tree_of(info, request.ratchet_tree),
                                                  request.identity)
        psks = {p.psk_id: p.psk_secret for p in request.psks}
        config = group_config(request.encrypt_handshake, dict(psks))
        tree = request.ratchet_tree or None
        group, commit = Group.join_external(
            request.group_info, credential, signature_priv, ratchet_tree=tree,
            remove_leaf=remove_leaf, config=config, psk_ids=list(dict(psks)),
            now=self._clock())
        state = MemberState(group, config, request.identity, signature_priv)
        return pb.ExternalJoinResponse(state_id=self._ids.add(state), commit=commit,
                                       epoch_authenticator=group.epoch_authenticator)

    # ------------------------------------------------------------------ reading a state

    def GroupInfo(self, request: pb.GroupInfoRequest) -> pb.GroupInfoResponse:
        group = self._ids.state(request.state_id).group
        info = group.group_info(with_ratchet_tree=not request.external_tree,
                                with_external_pub=True)
        tree = group.ratchet_tree_bytes() if request.external_tree else b""
        return pb.GroupInfoResponse(group_info=info, ratchet_tree=tree)

    def StateAuth(self, request: pb.StateAuthRequest) -> pb.StateAuthResponse:
        group = self._ids.state(request.state_id).group
        return pb.StateAuthResponse(state_auth_secret=group.epoch_authenticator)

    def Export(self, request: pb.ExportRequest) -> pb.ExportResponse:
        group = self._ids.state(request.state_id).group
        secret = group.export_secret(request.label, request.context, request.key_length)
        return pb.ExportResponse(exported_secret=secret)

    def Protect(self, request: pb.ProtectRequest) -> pb.ProtectResponse:
        group = self._ids.state(request.state_id).group
        return pb.ProtectResponse(ciphertext=group.encrypt(request.plaintext,
                                                           request.authenticated_data))

    def Unprotect(self, request: pb.UnprotectRequest) -> pb.UnprotectResponse:
        group = self._ids.state(request.state_id).group
        msg = MLSMessage.decode(request.ciphertext).private_message
        if msg is None or msg.content_type != ContentType.APPLICATION:
            raise InvalidArgument("ciphertext is not an application PrivateMessage")
        event = group.process(request.ciphertext, now=self._clock())
        assert isinstance(event, ApplicationMessage)  # checked above
        return pb.UnprotectResponse(authenticated_data=event.authenticated_data,
                                    plaintext=event.data)

    def StorePSK(self, request: pb.StorePSKRequest) -> pb.StorePSKResponse:
        self._ids.psk_store(request.state_or_transaction_id)[request.psk_id] = \
            request.psk_secret
        return pb.StorePSKResponse()

    # ------------------------------------------------------------------ proposals

    def _propose(self, state: MemberState, body: ProposalBody | None = None,
                 ) -> pb.ProposalResponse:
        data = state.group.propose_update(now=self._clock()) if body is None else \
            state.group.propose(body)
        state.sent_proposals.add(data)
        return pb.ProposalResponse(proposal=data)

    def AddProposal(self, request: pb.AddProposalRequest) -> pb.ProposalResponse:
        state = self._ids.state(request.state_id)
        return self._propose(state, Add(decode_key_package(request.key_package)))

    def UpdateProposal(self, request: pb.UpdateProposalRequest) -> pb.ProposalResponse:
        return self._propose(self._ids.state(request.state_id))

    def RemoveProposal(self, request: pb.RemoveProposalRequest) -> pb.ProposalResponse:
        state = self._ids.state(request.state_id)
        return self._propose(state, Remove(member_of_identity(state.group,
                                                              request.removed_id)))

    def ExternalPSKProposal(self, request: pb.ExternalPSKProposalRequest,
                            ) -> pb.ProposalResponse:
        state = self._ids.state(request.state_id)
        return self._propose(state, external_psk(request.psk_id,
                                                 state.group.suite.hash_length))

    def ResumptionPSKProposal(self, request: pb.ResumptionPSKProposalRequest,
                              ) -> pb.ProposalResponse:
        state = self._ids.state(request.state_id)
        group = state.group
        return self._propose(state, resumption_psk(group.group_id, request.epoch_id,
                                                   group.suite.hash_length))

    def GroupContextExtensionsProposal(self, request: pb.GroupContextExtensionsProposalRequest,
                                       ) -> pb.ProposalResponse:
        state = self._ids.state(request.state_id)
        return self._propose(state, GroupContextExtensions(_extensions(request.extensions)))

    def ReInitProposal(self, request: pb.ReInitProposalRequest) -> pb.ProposalResponse:
        state = self._ids.state(request.state_id)
        body = ReInit(request.group_id, PROTOCOL_VERSION_MLS10,
                      _suite_id(request.cipher_suite), _extensions(request.extensions))
        return self._propose(state, body)

    def _described(self, d: pb.ProposalDescription, *, group_id: bytes, hash_length: int,
                   member: Callable[[bytes], int]) -> ProposalBody:
        """The proposal a runner ``ProposalDescription`` stands for."""
        kind = d.proposal_type
        if kind == b"add":
            return Add(decode_key_package(d.key_package))
        if kind == b"remove":
            return Remove(member(d.removed_id))
        if kind == b"externalPSK":
            return external_psk(d.psk_id, hash_length)
        if kind == b"resumptionPSK":
            return resumption_psk(group_id, d.epoch_id, hash_length)
        if kind == b"groupContextExtensions":
            return GroupContextExtensions(_extensions(d.extensions))
        if kind == b"reinit":
            return ReInit(d.group_id, PROTOCOL_VERSION_MLS10, _suite_id(d.cipher_suite),
                          _extensions(d.extensions))
        raise InvalidArgument(f"unknown proposal type {kind!r}")

    # ------------------------------------------------------------------ commits

    def _receive_proposals(self, state: MemberState, messages: Iterable[bytes]) -> None:
        """Process the by-reference proposal messages, skipping our own (already stored:
        we could not decrypt them anyway)."""
        for data in messages:
            if data in state.sent_proposals:
                continue
            require_content_type(data, ContentType.PROPOSAL, "by-reference proposal")
            event = state.group.process(data, now=self._clock())
            assert isinstance(event, ProposalReceived)  # checked above

    def Commit(self, request: pb.CommitRequest) -> pb.CommitResponse:
        state = self._ids.state(request.state_id)
        group = state.group
        self._receive_proposals(state, request.by_reference)

        def member(identity: bytes) -> int:
            return member_of_identity(group, identity)

        by_value = [Proposal.of(self._described(d, group_id=group.group_id,
                                                hash_length=group.suite.hash_length,
                                                member=member))
                    for d in request.by_value]
        # Every stored proposal is committed: the by-reference ones just processed and
        # our own of this epoch (RFC 9420 §12.4: "SHOULD include all valid proposals").
        result = group.commit(by_value, include_pending=True, force_path=request.force_path,
                              ratchet_tree_in_welcome=not request.external_tree,
                              now=self._clock())
        state.pending_commit = result.commit
        tree = tree_after_pending(group, state.config) if request.external_tree else b""
        return pb.CommitResponse(commit=result.commit, welcome=result.welcome or b"",
                                 ratchet_tree=tree)

    def _apply_commit(self, request: pb.HandleCommitRequest) -> tuple[MemberState,
                                                                        CommitApplied]:
        state = self._ids.state(request.state_id)
        require_content_type(request.commit, ContentType.COMMIT, "commit")
        self._receive_proposals(state, request.proposal)
        group = state.group
        if group.has_pending_commit and request.commit == state.pending_commit:
            return state, group.merge_pending_commit()  # our own Commit came back
        event = group.process(request.commit, now=self._clock())
        assert isinstance(event, CommitApplied)  # checked above
        return state, event

    def _next_epoch(self, old_id: int, state: MemberState) -> pb.HandleCommitResponse:
        new_id = self._ids.add(state.successor(state.group))
        self._ids.retire(old_id, new_id, "state")
        return pb.HandleCommitResponse(state_id=new_id,
                                       epoch_authenticator=state.group.epoch_authenticator)

    def HandleCommit(self, request: pb.HandleCommitRequest) -> pb.HandleCommitResponse:
        state, _ = self._apply_commit(request)
        return self._next_epoch(request.state_id, state)

    def HandlePendingCommit(self, request: pb.HandlePendingCommitRequest,
                            ) -> pb.HandleCommitResponse:
        state = self._ids.state(request.state_id)
        state.group.merge_pending_commit()
        return self._next_epoch(request.state_id, state)

    # ------------------------------------------------------------------ ReInit (§11.2)

    def ReInitCommit(self, request: pb.CommitRequest) -> pb.CommitResponse:
        return self.Commit(request)

    def _hand_over(self, old_id: int, state: MemberState, event: CommitApplied,
                   ) -> pb.HandleReInitCommitResponse:
        """After a ReInit Commit: our KeyPackage for the new group, same identity, the new
        cipher suite and a fresh signature key."""
        if event.reinit is None:
            raise FailedPrecondition("the Commit carries no ReInit proposal")
        tx = self._new_key_package(event.reinit.cipher_suite, state.identity)
        reinit_id = self._ids.add(ReInitHandOver(state, tx.key_package, tx.private))
        self._ids.retire(old_id, reinit_id, "reinit")
        return pb.HandleReInitCommitResponse(
            reinit_id=reinit_id, key_package=MLSMessage.of(tx.key_package).encode(),
            epoch_authenticator=state.group.epoch_authenticator)

    def HandlePendingReInitCommit(self, request: pb.HandlePendingCommitRequest,
                                  ) -> pb.HandleReInitCommitResponse:
        state = self._ids.state(request.state_id)
        event = state.group.merge_pending_commit()
        return self._hand_over(request.state_id, state, event)

    def HandleReInitCommit(self, request: pb.HandleCommitRequest,
                           ) -> pb.HandleReInitCommitResponse:
        state, event = self._apply_commit(request)
        return self._hand_over(request.state_id, state, event)

    def ReInitWelcome(self, request: pb.ReInitWelcomeRequest) -> pb.CreateSubgroupResponse:
        hand_over = self._ids.reinit(request.reinit_id)
        old = hand_over.old
        config = group_config(old.encrypt_handshake, old.config.external_psks)
        signature_priv = hand_over.private.signature_priv
        kps = [decode_key_package(kp) for kp in request.key_package]
        new, result = old.group.reinit(Credential.basic(old.identity), signature_priv, kps,
                                       now=self._clock(), config=config)
        result = _relink(new, old.group, ResumptionPSKUsage.REINIT, kps, result,
                         request.force_path, request.external_tree, self._clock())
        return self._subgroup(new, MemberState(new, config, old.identity, signature_priv),
                              result, request.external_tree)

    def HandleReInitWelcome(self, request: pb.HandleReInitWelcomeRequest,
                            ) -> pb.JoinGroupResponse:
        hand_over = self._ids.reinit(request.reinit_id)
        old = hand_over.old
        config = group_config(old.encrypt_handshake, old.config.external_psks)
        group = Group.join(request.welcome, hand_over.key_package, hand_over.private,
                           ratchet_tree=request.ratchet_tree or None, config=config,
                           linked_group=old.group, now=self._clock())
        state = MemberState(group, config, old.identity, hand_over.private.signature_priv)
        return pb.JoinGroupResponse(state_id=self._ids.add(state),
                                    epoch_authenticator=group.epoch_authenticator)

    def _subgroup(self, group: Group, state: MemberState, result: CommitResult,
                  external_tree: bool) -> pb.CreateSubgroupResponse:
        """Merge the first Commit of a reinitialized group or branch and register it."""
        group.merge_pending_commit()
        return pb.CreateSubgroupResponse(
            state_id=self._ids.add(state), welcome=result.welcome or b"",
            ratchet_tree=group.ratchet_tree_bytes() if external_tree else b"",
            epoch_authenticator=group.epoch_authenticator)

    # ------------------------------------------------------------------ branch (§11.3)

    def CreateBranch(self, request: pb.CreateBranchRequest) -> pb.CreateSubgroupResponse:
        parent = self._ids.state(request.state_id)
        config = group_config(parent.encrypt_handshake, parent.config.external_psks)
        kps = [decode_key_package(kp) for kp in request.key_packages]
        new, result = parent.group.branch(kps, group_id=request.group_id or None,
                                          extensions=_extensions(request.extensions),
                                          now=self._clock(), config=config)
        result = _relink(new, parent.group, ResumptionPSKUsage.BRANCH, kps, result,
                         request.force_path, request.external_tree, self._clock())
        state = MemberState(new, config, parent.identity, parent.signature_priv)
        return self._subgroup(new, state, result, request.external_tree)

    def HandleBranch(self, request: pb.HandleBranchRequest) -> pb.HandleBranchResponse:
        parent = self._ids.state(request.state_id)
        tx = self._ids.transaction(request.transaction_id)
        config = group_config(parent.encrypt_handshake, parent.config.external_psks)
        group = Group.join(request.welcome, tx.key_package, tx.private,
                           ratchet_tree=request.ratchet_tree or None, config=config,
                           linked_group=parent.group, now=self._clock())
        state = MemberState(group, config, tx.identity, tx.private.signature_priv)
        return pb.HandleBranchResponse(state_id=self._ids.add(state),
                                       epoch_authenticator=group.epoch_authenticator)

    # ------------------------------------------------------------------ external proposals

    def NewMemberAddProposal(self, request: pb.NewMemberAddProposalRequest,
                             ) -> pb.NewMemberAddProposalResponse:
        info = decode_group_info(request.group_info)
        tx = self._new_key_package(info.group_context.cipher_suite, request.identity)
        proposal = join_proposal(request.group_info, tx.key_package, tx.private.signature_priv)
        return pb.NewMemberAddProposalResponse(
            transaction_id=self._ids.add(tx), proposal=proposal,
            init_priv=tx.private.init_priv, encryption_priv=tx.private.encryption_priv,
            signature_priv=tx.private.signature_priv)

    def CreateExternalSigner(self, request: pb.CreateExternalSignerRequest,
                             ) -> pb.CreateExternalSignerResponse:
        suite = get_suite(request.cipher_suite)
        signature_priv, signature_pub = suite.generate_signature_key_pair()
        sender = ExternalSender(signature_pub, Credential.basic(request.identity))
        signer_id = self._ids.add(Signer(suite.id, signature_priv, sender))
        return pb.CreateExternalSignerResponse(signer_id=signer_id,
                                               external_sender=sender.encode())

    def AddExternalSigner(self, request: pb.AddExternalSignerRequest) -> pb.ProposalResponse:
        state = self._ids.state(request.state_id)
        sender = ExternalSender.decode(request.external_sender)
        extensions = with_external_sender(state.group.context.extensions, sender)
        return self._propose(state, GroupContextExtensions(extensions))

    def ExternalSignerProposal(self, request: pb.ExternalSignerProposalRequest,
                               ) -> pb.ProposalResponse:
        signer = self._ids.signer(request.signer_id)
        info = decode_group_info(request.group_info)
        gc = info.group_context
        if gc.cipher_suite != signer.cipher_suite:
            raise FailedPrecondition("the external signer's key is for another cipher suite")
        index = external_sender_index(gc.extensions, signer.sender.signature_key,
                                      request.signer_index)

        def member(identity: bytes) -> int:
            return tree_member_of_identity(tree_of(info, request.ratchet_tree), identity)

        body = self._described(request.description, group_id=gc.group_id,
                               hash_length=get_suite(gc.cipher_suite).hash_length,
                               member=member)
        data = external_proposal(gc.cipher_suite, gc.group_id, gc.epoch, index,
                                 signer.signature_priv, Proposal.of(body))
        return pb.ProposalResponse(proposal=data)

    # ------------------------------------------------------------------ cleanup

    def Free(self, request: pb.FreeRequest) -> pb.FreeResponse:
        self._ids.free(request.state_id)
        return pb.FreeResponse()


def _relink(new: Group, old: Group, usage: int, key_packages: list[KeyPackage],
            result: CommitResult, force_path: bool, external_tree: bool, now: int,
            ) -> CommitResult:
    """Redo the first Commit of a reinitialized group or branch when the runner asks for
    other options than ``Group.reinit``/``Group.branch`` use (a path, the tree in the
    Welcome). The discarded Commit was never sent; the new one carries the same Adds and
    a fresh resumption PSK of the same kind (§11.2, §11.3)."""
    if force_path and not external_tree:
        return result
    new.discard_pending_commit()
    psk = resumption_psk(old.group_id, old.epoch, new.suite.hash_length, usage)
    return new.commit([*(Add(kp) for kp in key_packages), psk], force_path=force_path,
                      ratchet_tree_in_welcome=not external_tree, now=now,
                      _resumption_usage=usage)
