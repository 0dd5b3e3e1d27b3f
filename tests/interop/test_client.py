"""The interop gRPC client (interop/client.py) driven through its generated stub, the way
the MLS WG test runner drives it: the test plays the runner, passing the opaque
KeyPackage/Welcome/Commit/proposal bytes between members whose states live in one
server (as when two ``-client`` flags name the same server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from interop.client import serve
from interop.generated import mls_client_pb2 as pb
from interop.generated import mls_client_pb2_grpc as pb_grpc

SUITE = 1
RC = pb.Extension(extension_type=3, extension_data=b"\x00\x00\x00")  # required_capabilities
ES = pb.Extension(extension_type=5, extension_data=b"\x00")  # empty external_senders


@pytest.fixture(scope="module")
def stub() -> Iterator[pb_grpc.MLSClientStub]:
    server, port = serve("127.0.0.1", 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield pb_grpc.MLSClientStub(channel)
    finally:
        channel.close()
        server.stop(grace=None)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    """The status code of a call that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    error = info.value
    assert isinstance(error, grpc.Call)
    return error.code()


@dataclass
class Run:
    """A miniature runner: actor -> state ID, transaction table, one encrypt flag."""

    stub: pb_grpc.MLSClientStub
    encrypt: bool
    suite: int = SUITE
    sid: dict[str, int] = field(default_factory=dict)
    tx: dict[str, int] = field(default_factory=dict)

    def create_group(self, actor: str, members: tuple[str, ...] = ()) -> bytes:
        group_id = os.urandom(16)
        self.sid[actor] = self.stub.CreateGroup(pb.CreateGroupRequest(
            group_id=group_id, cipher_suite=self.suite, encrypt_handshake=self.encrypt,
            identity=actor.encode())).state_id
        if members:
            kps = [self.key_package(m) for m in members]
            self.full_commit(actor, by_value=[pb.ProposalDescription(
                proposal_type=b"add", key_package=kp) for kp in kps], joiners=members)
        return group_id

    def key_package(self, actor: str) -> bytes:
        resp = self.stub.CreateKeyPackage(pb.CreateKeyPackageRequest(
            cipher_suite=self.suite, identity=actor.encode()))
        self.tx[actor] = resp.transaction_id
        assert resp.key_package[:4] == bytes.fromhex("00010005")
        return resp.key_package

    def full_commit(self, actor: str, *, by_reference: tuple[bytes, ...] = (),
                    by_value: list[pb.ProposalDescription] | None = None,
                    members: tuple[str, ...] = (), joiners: tuple[str, ...] = (),
                    force_path: bool = False, external_tree: bool = False,
                    ) -> pb.CommitResponse:
        resp = self.stub.Commit(pb.CommitRequest(
            state_id=self.sid[actor], by_reference=list(by_reference),
            by_value=by_value or [], force_path=force_path, external_tree=external_tree))
        assert resp.commit[:4] == bytes.fromhex("0001000" + ("2" if self.encrypt else "1"))
        assert bool(resp.ratchet_tree) == external_tree
        done = self.stub.HandlePendingCommit(
            pb.HandlePendingCommitRequest(state_id=self.sid[actor]))
        self.sid[actor] = done.state_id
        for m in members:
            self.handle(m, resp.commit, by_reference, done.epoch_authenticator)
        for j in joiners:
            joined = self.stub.JoinGroup(pb.JoinGroupRequest(
                transaction_id=self.tx[j], welcome=resp.welcome,
                encrypt_handshake=self.encrypt, identity=j.encode(),
                ratchet_tree=resp.ratchet_tree if external_tree else b""))
            assert joined.epoch_authenticator == done.epoch_authenticator, j
            self.sid[j] = joined.state_id
        return resp

    def handle(self, member: str, commit: bytes, proposals: tuple[bytes, ...] = (),
               expected_ea: bytes | None = None) -> None:
        resp = self.stub.HandleCommit(pb.HandleCommitRequest(
            state_id=self.sid[member], proposal=list(proposals), commit=commit))
        if expected_ea is not None:
            assert resp.epoch_authenticator == expected_ea, member
        self.sid[member] = resp.state_id

    def protect_unprotect(self, sender: str, receiver: str, text: bytes) -> None:
        ct = self.stub.Protect(pb.ProtectRequest(
            state_id=self.sid[sender], authenticated_data=b"ad-" + text,
            plaintext=text)).ciphertext
        assert ct[:4] == bytes.fromhex("00010002")
        pt = self.stub.Unprotect(pb.UnprotectRequest(state_id=self.sid[receiver],
                                                     ciphertext=ct))
        assert (pt.plaintext, pt.authenticated_data) == (text, b"ad-" + text)

    def ea(self, actor: str) -> bytes:
        return self.stub.StateAuth(pb.StateAuthRequest(
            state_id=self.sid[actor])).state_auth_secret

    def store_psk(self, psk_id: bytes, secret: bytes, *actors: str) -> None:
        for a in actors:
            ident = self.sid.get(a) or self.tx[a]
            self.stub.StorePSK(pb.StorePSKRequest(state_or_transaction_id=ident,
                                                  psk_id=psk_id, psk_secret=secret))

    def free_all(self) -> None:
        for ident in self.sid.values():
            self.stub.Free(pb.FreeRequest(state_id=ident))


MODES = [pytest.param(True, id="private"), pytest.param(False, id="public")]


def test_name_and_suites(stub: pb_grpc.MLSClientStub) -> None:
    assert stub.Name(pb.NameRequest()).name
    suites = stub.SupportedCiphersuites(pb.SupportedCiphersuitesRequest()).ciphersuites
    assert list(suites) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("encrypt", MODES)
def test_welcome_join_and_application_messages(stub: pb_grpc.MLSClientStub,
                                               encrypt: bool) -> None:
    run = Run(stub, encrypt)
    run.create_group("alice")
    kp = run.key_package("bob")
    add = stub.AddProposal(pb.AddProposalRequest(state_id=run.sid["alice"],
                                                 key_package=kp)).proposal
    resp = run.full_commit("alice", by_reference=(add,), joiners=("bob",), force_path=True)
    assert resp.welcome[:4] == bytes.fromhex("00010003")
    assert run.ea("alice") == run.ea("bob")
    run.protect_unprotect("alice", "bob", b"hello")
    run.protect_unprotect("bob", "alice", b"hi")
    # out of order within an epoch, then across epochs (application.json)
    cts = [stub.Protect(pb.ProtectRequest(state_id=run.sid["alice"], plaintext=b"m%d" % i))
           .ciphertext for i in range(3)]
    empty = run.full_commit("alice", members=("bob",))
    assert empty.welcome == b""
    later = stub.Protect(pb.ProtectRequest(state_id=run.sid["alice"], plaintext=b"new"))
    for ct, want in [(later.ciphertext, b"new"), (cts[2], b"m2"), (cts[0], b"m0"),
                     (cts[1], b"m1")]:
        got = stub.Unprotect(pb.UnprotectRequest(state_id=run.sid["bob"], ciphertext=ct))
        assert got.plaintext == want
    # a replayed message is refused, and the server goes on
    assert code_of(lambda: stub.Unprotect(pb.UnprotectRequest(
        state_id=run.sid["bob"], ciphertext=later.ciphertext))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    secret = stub.Export(pb.ExportRequest(state_id=run.sid["alice"], label="x",
                                          context=b"c", key_length=24)).exported_secret
    assert len(secret) == 24
    assert secret == stub.Export(pb.ExportRequest(state_id=run.sid["bob"], label="x",
                                                  context=b"c", key_length=24)).exported_secret
    run.free_all()


def test_welcome_with_external_tree(stub: pb_grpc.MLSClientStub) -> None:
    run = Run(stub, encrypt=True)
    run.create_group("alice", ("bob",))
    kp = run.key_package("charlie")
    resp = run.full_commit("alice", by_value=[pb.ProposalDescription(
        proposal_type=b"add", key_package=kp)], members=("bob",), joiners=("charlie",),
        external_tree=True)
    # a Welcome without the tree is useless without the out-of-band tree
    other = run.key_package("diana")
    resp2 = run.full_commit("alice", by_value=[pb.ProposalDescription(
        proposal_type=b"add", key_package=other)], members=("bob", "charlie"),
        external_tree=True)
    assert resp.ratchet_tree and resp2.ratchet_tree
    assert code_of(lambda: stub.JoinGroup(pb.JoinGroupRequest(
        transaction_id=run.tx["diana"], welcome=resp2.welcome))) == \
        grpc.StatusCode.FAILED_PRECONDITION
    run.free_all()


@pytest.mark.parametrize("encrypt", MODES)
def test_update_remove_and_extensions(stub: pb_grpc.MLSClientStub, encrypt: bool) -> None:
    run = Run(stub, encrypt)
    run.create_group("alice", ("bob", "charlie", "diana"))
    update = stub.UpdateProposal(pb.UpdateProposalRequest(state_id=run.sid["bob"])).proposal
    run.full_commit("alice", by_reference=(update,), members=("bob", "charlie", "diana"))
    # bob proposes removing charlie, alice adds removing diana by value
    remove = stub.RemoveProposal(pb.RemoveProposalRequest(
        state_id=run.sid["bob"], removed_id=b"charlie")).proposal
    run.full_commit("alice", by_reference=(remove,), by_value=[pb.ProposalDescription(
        proposal_type=b"remove", removed_id=b"diana")], members=("bob",))
    run.protect_unprotect("bob", "alice", b"two of us")
    gce = stub.GroupContextExtensionsProposal(pb.GroupContextExtensionsProposalRequest(
        state_id=run.sid["alice"], extensions=[RC, ES])).proposal
    run.full_commit("alice", by_reference=(gce,), members=("bob",))
    run.full_commit("alice", by_value=[pb.ProposalDescription(
        proposal_type=b"groupContextExtensions", extensions=[RC])], members=("bob",))
    # the removed members' states can still be freed
    run.free_all()


@pytest.mark.parametrize("encrypt", MODES)
def test_external_join(stub: pb_grpc.MLSClientStub, encrypt: bool) -> None:
    run = Run(stub, encrypt)
    run.create_group("alice", ("bob",))
    for external_tree, remove_prior in [(False, False), (True, False), (False, True)]:
        info = stub.GroupInfo(pb.GroupInfoRequest(state_id=run.sid["bob"],
                                                  external_tree=external_tree))
        assert info.group_info[:4] == bytes.fromhex("00010004")
        assert bool(info.ratchet_tree) == external_tree
        joined = stub.ExternalJoin(pb.ExternalJoinRequest(
            group_info=info.group_info, ratchet_tree=info.ratchet_tree,
            encrypt_handshake=encrypt, identity=b"charlie", remove_prior=remove_prior))
        assert joined.commit[:4] == bytes.fromhex("00010001")  # always a PublicMessage
        run.sid["charlie"] = joined.state_id
        for m in ("alice", "bob"):
            run.handle(m, joined.commit, expected_ea=joined.epoch_authenticator)
    run.protect_unprotect("charlie", "alice", b"rejoined")
    # external join with a PSK known to the members
    psk_id, secret = os.urandom(32), os.urandom(32)
    run.store_psk(psk_id, secret, "alice", "bob", "charlie")
    info = stub.GroupInfo(pb.GroupInfoRequest(state_id=run.sid["alice"]))
    joined = stub.ExternalJoin(pb.ExternalJoinRequest(
        group_info=info.group_info, encrypt_handshake=encrypt, identity=b"diana",
        psks=[pb.PreSharedKey(psk_id=psk_id, psk_secret=secret)]))
    run.sid["diana"] = joined.state_id
    for m in ("alice", "bob", "charlie"):
        run.handle(m, joined.commit, expected_ea=joined.epoch_authenticator)
    run.free_all()


@pytest.mark.parametrize("encrypt", MODES)
def test_psk_proposals(stub: pb_grpc.MLSClientStub, encrypt: bool) -> None:
    run = Run(stub, encrypt)
    run.create_group("alice")
    run.key_package("bob")
    psk_id, secret = os.urandom(32), os.urandom(32)
    run.store_psk(psk_id, secret, "alice", "bob")  # bob by transaction ID
    kp = run.key_package("bob")  # a new transaction: store again
    run.store_psk(psk_id, secret, "bob")
    add = stub.AddProposal(pb.AddProposalRequest(state_id=run.sid["alice"],
                                                 key_package=kp)).proposal
    psk = stub.ExternalPSKProposal(pb.ExternalPSKProposalRequest(
        state_id=run.sid["alice"], psk_id=psk_id)).proposal
    run.full_commit("alice", by_reference=(add, psk), joiners=("bob",))
    run.full_commit("alice", members=("bob",))  # epoch 2
    res = stub.ResumptionPSKProposal(pb.ResumptionPSKProposalRequest(
        state_id=run.sid["bob"], epoch_id=1)).proposal
    ext = stub.ExternalPSKProposal(pb.ExternalPSKProposalRequest(
        state_id=run.sid["bob"], psk_id=psk_id)).proposal
    run.full_commit("alice", by_reference=(res, ext), by_value=[
        pb.ProposalDescription(proposal_type=b"resumptionPSK", epoch_id=2),
        pb.ProposalDescription(proposal_type=b"externalPSK", psk_id=psk_id)],
        members=("bob",), force_path=True)
    assert run.ea("alice") == run.ea("bob")
    # an unknown PSK cannot be committed
    unknown = pb.ProposalDescription(proposal_type=b"externalPSK", psk_id=b"nope")
    assert code_of(lambda: stub.Commit(pb.CommitRequest(
        state_id=run.sid["alice"], by_value=[unknown]))) == grpc.StatusCode.INVALID_ARGUMENT
    run.free_all()


@pytest.mark.parametrize("encrypt", MODES)
def test_external_proposals(stub: pb_grpc.MLSClientStub, encrypt: bool) -> None:
    run = Run(stub, encrypt)
    run.create_group("alice", ("bob",))
    # joiner_signed_add
    info = stub.GroupInfo(pb.GroupInfoRequest(state_id=run.sid["alice"]))
    nm = stub.NewMemberAddProposal(pb.NewMemberAddProposalRequest(
        group_info=info.group_info, identity=b"charlie"))
    assert nm.proposal[:4] == bytes.fromhex("00010001")
    run.tx["charlie"] = nm.transaction_id
    run.full_commit("alice", by_reference=(nm.proposal,), members=("bob",),
                    joiners=("charlie",))
    # two external senders registered in two commits: the second appends
    signers = {}
    for name in ("ds1", "ds2"):
        created = stub.CreateExternalSigner(pb.CreateExternalSignerRequest(
            cipher_suite=SUITE, identity=name.encode()))
        signers[name] = created.signer_id
        gce = stub.AddExternalSigner(pb.AddExternalSignerRequest(
            state_id=run.sid["alice"], external_sender=created.external_sender)).proposal
        run.full_commit("alice", by_reference=(gce,), members=("bob", "charlie"))

    def external(signer: str, description: pb.ProposalDescription) -> bytes:
        gi = stub.GroupInfo(pb.GroupInfoRequest(state_id=run.sid["bob"], external_tree=True))
        return stub.ExternalSignerProposal(pb.ExternalSignerProposalRequest(
            signer_id=signers[signer], group_info=gi.group_info,
            ratchet_tree=gi.ratchet_tree, description=description)).proposal

    kp = run.key_package("diana")
    add = external("ds2", pb.ProposalDescription(proposal_type=b"add", key_package=kp))
    run.full_commit("alice", by_reference=(add,), members=("bob", "charlie"),
                    joiners=("diana",))
    remove = external("ds1", pb.ProposalDescription(proposal_type=b"remove",
                                                    removed_id=b"charlie"))
    res = external("ds1", pb.ProposalDescription(proposal_type=b"resumptionPSK",
                                                 epoch_id=5))
    run.full_commit("alice", by_reference=(remove, res), members=("bob", "diana"))
    run.protect_unprotect("diana", "bob", b"after external proposals")
    # an unknown proposal type is refused
    assert code_of(lambda: external("ds1", pb.ProposalDescription(
        proposal_type=b"update"))) == grpc.StatusCode.INVALID_ARGUMENT
    run.free_all()


@pytest.mark.parametrize("encrypt", MODES)
def test_reinit(stub: pb_grpc.MLSClientStub, encrypt: bool) -> None:
    run = Run(stub, encrypt)
    group_id = run.create_group("alice", ("bob", "charlie"))
    proposal = stub.ReInitProposal(pb.ReInitProposalRequest(
        state_id=run.sid["alice"], cipher_suite=3, group_id=group_id + b"++",
        extensions=[RC])).proposal
    commit = stub.ReInitCommit(pb.CommitRequest(state_id=run.sid["bob"],
                                                by_reference=[proposal])).commit
    bob = stub.HandlePendingReInitCommit(pb.HandlePendingCommitRequest(
        state_id=run.sid["bob"]))
    reinit = {"bob": bob.reinit_id}
    key_packages = {"bob": bob.key_package}
    for m in ("alice", "charlie"):  # the proposer handles its own proposal
        resp = stub.HandleReInitCommit(pb.HandleCommitRequest(
            state_id=run.sid[m], proposal=[proposal], commit=commit))
        assert resp.epoch_authenticator == bob.epoch_authenticator
        reinit[m], key_packages[m] = resp.reinit_id, resp.key_package
    welcome = stub.ReInitWelcome(pb.ReInitWelcomeRequest(
        reinit_id=reinit["charlie"], key_package=[key_packages["bob"], key_packages["alice"]],
        external_tree=True))
    assert welcome.ratchet_tree
    run.sid["charlie"] = welcome.state_id
    for m in ("alice", "bob"):
        joined = stub.HandleReInitWelcome(pb.HandleReInitWelcomeRequest(
            reinit_id=reinit[m], welcome=welcome.welcome, ratchet_tree=welcome.ratchet_tree))
        assert joined.epoch_authenticator == welcome.epoch_authenticator
        run.sid[m] = joined.state_id
    run.protect_unprotect("alice", "charlie", b"in the new group")
    run.free_all()


@pytest.mark.parametrize("encrypt", MODES)
def test_branch(stub: pb_grpc.MLSClientStub, encrypt: bool) -> None:
    run = Run(stub, encrypt)
    run.create_group("alice", ("bob", "charlie"))
    members = ("bob", "charlie")
    kps = [run.key_package(m) for m in members]
    old = dict(run.sid)
    branch = stub.CreateBranch(pb.CreateBranchRequest(
        state_id=run.sid["alice"], group_id=os.urandom(16), extensions=[RC, ES],
        key_packages=kps))
    run.sid["alice"] = branch.state_id
    for m in members:
        joined = stub.HandleBranch(pb.HandleBranchRequest(
            state_id=run.sid[m], transaction_id=run.tx[m], welcome=branch.welcome))
        assert joined.epoch_authenticator == branch.epoch_authenticator
        run.sid[m] = joined.state_id
        stub.Free(pb.FreeRequest(state_id=old[m]))
    run.protect_unprotect("charlie", "alice", b"in the branch")
    run.free_all()


def test_bad_input_never_stops_the_server(stub: pb_grpc.MLSClientStub) -> None:
    run = Run(stub, encrypt=False)
    run.create_group("alice", ("bob",))
    sid = run.sid["alice"]
    assert code_of(lambda: stub.Unprotect(pb.UnprotectRequest(
        state_id=sid, ciphertext=b"\x00\x01garbage"))) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: stub.HandleCommit(pb.HandleCommitRequest(
        state_id=sid, commit=b""))) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: stub.JoinGroup(pb.JoinGroupRequest(
        transaction_id=sid, welcome=b"x"))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stub.Protect(pb.ProtectRequest(state_id=0))) == \
        grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stub.RemoveProposal(pb.RemoveProposalRequest(
        state_id=sid, removed_id=b"nobody"))) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(lambda: stub.HandlePendingCommit(pb.HandlePendingCommitRequest(
        state_id=sid))) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(lambda: stub.AddProposal(pb.AddProposalRequest(
        state_id=sid, key_package=b"\x00\x01\x00\x05"))) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: stub.GroupContextExtensionsProposal(
        pb.GroupContextExtensionsProposalRequest(state_id=sid, extensions=[
            pb.Extension(extension_type=0x10000)]))) == grpc.StatusCode.INVALID_ARGUMENT
    # a retired state names its successor; it can still be freed
    before = run.sid["bob"]
    run.full_commit("alice", members=("bob",))
    assert code_of(lambda: stub.Protect(pb.ProtectRequest(state_id=before))) == \
        grpc.StatusCode.FAILED_PRECONDITION
    stub.Free(pb.FreeRequest(state_id=before))
    stub.Free(pb.FreeRequest(state_id=before))
    assert code_of(lambda: stub.Free(pb.FreeRequest(state_id=2**32 - 1))) == \
        grpc.StatusCode.NOT_FOUND
    run.protect_unprotect("alice", "bob", b"still fine")
    run.free_all()


def test_command_line_server_stops_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "interop.client", "--host", "127.0.0.1",
                             "--port", "0", "--name", "under test"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        with grpc.insecure_channel(line.split()[-1]) as channel:
            name = pb_grpc.MLSClientStub(channel).Name(pb.NameRequest(), timeout=10).name
        assert name == "under test"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
