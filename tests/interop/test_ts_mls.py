"""Smoke test of the ts-mls interop client (interop/ts-mls/server.mjs): starts the Node gRPC
server on a free port and drives it through the generated Python stub the way the MLS WG
test runner would (RUNNER.md §2.6 createGroup, §4 conventions). Skipped when Node or the
npm dependencies (``bash interop/ts-mls/install.sh``) are missing."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from interop.generated import mls_client_pb2 as pb
from interop.generated import mls_client_pb2_grpc as pb_grpc
from mls_core.framing import MLSMessage

ROOT = Path(__file__).resolve().parents[2]
SERVER_DIR = ROOT / "interop" / "ts-mls"
NODE = shutil.which("node")
# Suite IDs ts-mls 1.6 knows at all (RFC 9420 suites 1-7 plus its post-quantum suites).
KNOWN_TS_MLS_SUITES = {*range(1, 8), *range(77, 89)}
KEY_PACKAGE, WELCOME = b"\x00\x01\x00\x05", b"\x00\x01\x00\x03"
PUBLIC, PRIVATE = b"\x00\x01\x00\x01", b"\x00\x01\x00\x02"

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (SERVER_DIR / "node_modules" / "ts-mls").is_dir(),
        reason="ts-mls npm dependencies missing: run `bash interop/ts-mls/install.sh`",
    ),
]


def _read_lines(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


@pytest.fixture(scope="module")
def stub() -> Iterator[pb_grpc.MLSClientStub]:
    assert NODE is not None
    proc = subprocess.Popen(
        [NODE, str(SERVER_DIR / "server.mjs"), "--port", "0", "--host", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        port = _wait_for_port(proc, lines)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield pb_grpc.MLSClientStub(channel)  # type: ignore[no-untyped-call]
        channel.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_port(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> int:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            pytest.fail(f"ts-mls server did not start; output: {''.join(seen)}")
        seen.append(line)
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            pytest.fail(f"ts-mls server exited: {''.join(seen)}")


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    code: grpc.StatusCode = info.value.code()
    return code


def create_two_member_group(
    stub: pb_grpc.MLSClientStub, encrypt: bool, suite: int = 1
) -> tuple[int, int, pb.CommitResponse, bytes]:
    """RUNNER.md createGroup with members [bob]: returns alice's and bob's state IDs."""
    alice = stub.CreateGroup(pb.CreateGroupRequest(
        group_id=os.urandom(16), cipher_suite=suite, encrypt_handshake=encrypt,
        identity=b"alice")).state_id
    kp = stub.CreateKeyPackage(pb.CreateKeyPackageRequest(cipher_suite=suite, identity=b"bob"))
    commit = stub.Commit(pb.CommitRequest(state_id=alice, by_value=[
        pb.ProposalDescription(proposal_type=b"add", key_package=kp.key_package)]))
    done = stub.HandlePendingCommit(pb.HandlePendingCommitRequest(state_id=alice))
    joined = stub.JoinGroup(pb.JoinGroupRequest(
        transaction_id=kp.transaction_id, welcome=commit.welcome, encrypt_handshake=encrypt,
        identity=b"bob"))
    assert joined.epoch_authenticator == done.epoch_authenticator
    return done.state_id, joined.state_id, commit, kp.key_package


def test_name_and_suites(stub: pb_grpc.MLSClientStub) -> None:
    assert stub.Name(pb.NameRequest()).name.startswith("ts-mls ")
    suites = set(stub.SupportedCiphersuites(pb.SupportedCiphersuitesRequest()).ciphersuites)
    assert 1 in suites
    assert suites <= KNOWN_TS_MLS_SUITES


@pytest.mark.parametrize("encrypt", [True, False], ids=["private", "public"])
def test_create_join_round_trip(stub: pb_grpc.MLSClientStub, encrypt: bool) -> None:
    alice, bob, commit, key_package = create_two_member_group(stub, encrypt)
    assert key_package.startswith(KEY_PACKAGE)
    assert commit.welcome.startswith(WELCOME)
    assert commit.commit.startswith(PRIVATE if encrypt else PUBLIC)
    assert commit.ratchet_tree == b""  # external_tree was not requested
    # Our own codec must accept ts-mls's wire bytes (strict decode, no trailing bytes).
    assert MLSMessage.decode(key_package).key_package is not None
    assert MLSMessage.decode(commit.welcome).welcome is not None

    # Bob commits (empty commit: carries an UpdatePath); alice follows.
    empty = stub.Commit(pb.CommitRequest(state_id=bob))
    bob2 = stub.HandlePendingCommit(pb.HandlePendingCommitRequest(state_id=bob))
    alice2 = stub.HandleCommit(pb.HandleCommitRequest(state_id=alice, commit=empty.commit))
    assert alice2.epoch_authenticator == bob2.epoch_authenticator
    assert alice2.state_id not in (alice, bob, bob2.state_id)

    sealed = stub.Protect(pb.ProtectRequest(
        state_id=alice2.state_id, authenticated_data=b"ad", plaintext=b"hello"))
    assert sealed.ciphertext.startswith(PRIVATE)
    opened = stub.Unprotect(pb.UnprotectRequest(
        state_id=bob2.state_id, ciphertext=sealed.ciphertext))
    assert (opened.authenticated_data, opened.plaintext) == (b"ad", b"hello")
    for state_id in (alice, bob, alice2.state_id, bob2.state_id):
        stub.Free(pb.FreeRequest(state_id=state_id))


def test_group_info_carries_tree_unless_external(stub: pb_grpc.MLSClientStub) -> None:
    alice, _bob, _commit, _kp = create_two_member_group(stub, encrypt=True)
    inline = stub.GroupInfo(pb.GroupInfoRequest(state_id=alice))
    external = stub.GroupInfo(pb.GroupInfoRequest(state_id=alice, external_tree=True))
    assert inline.ratchet_tree == b""
    assert external.ratchet_tree != b""
    inline_info = MLSMessage.decode(inline.group_info).group_info
    external_info = MLSMessage.decode(external.group_info).group_info
    assert inline_info is not None and external_info is not None
    inline_types = {e.extension_type for e in inline_info.extensions}
    external_types = {e.extension_type for e in external_info.extensions}
    assert {2, 4} <= inline_types  # ratchet_tree, external_pub
    assert 4 in external_types and 2 not in external_types


def test_bad_input_is_an_error_status(stub: pb_grpc.MLSClientStub) -> None:
    assert code_of(lambda: stub.Protect(pb.ProtectRequest(state_id=999_999_999))) \
        == grpc.StatusCode.NOT_FOUND
    kp = stub.CreateKeyPackage(pb.CreateKeyPackageRequest(cipher_suite=1, identity=b"x"))
    assert code_of(lambda: stub.JoinGroup(pb.JoinGroupRequest(
        transaction_id=kp.transaction_id, welcome=b"\x00\x01\x00\x03garbage"))) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: stub.CreateGroup(pb.CreateGroupRequest(
        group_id=b"g", cipher_suite=0xBEEF, identity=b"x"))) == grpc.StatusCode.INVALID_ARGUMENT
    # The server survived all of that.
    assert stub.Name(pb.NameRequest()).name


def test_unsupported_operations_are_unimplemented(stub: pb_grpc.MLSClientStub) -> None:
    alice, _bob, _commit, _kp = create_two_member_group(stub, encrypt=True)
    kp = stub.CreateKeyPackage(pb.CreateKeyPackageRequest(cipher_suite=1, identity=b"carol"))
    # ts-mls cannot force an UpdatePath onto an Add-only commit.
    assert code_of(lambda: stub.Commit(pb.CommitRequest(
        state_id=alice, force_path=True,
        by_value=[pb.ProposalDescription(proposal_type=b"add", key_package=kp.key_package)],
    ))) == grpc.StatusCode.UNIMPLEMENTED
    # ts-mls cannot put PSK proposals into an external commit.
    info = stub.GroupInfo(pb.GroupInfoRequest(state_id=alice)).group_info
    assert code_of(lambda: stub.ExternalJoin(pb.ExternalJoinRequest(
        group_info=info, identity=b"dave",
        psks=[pb.PreSharedKey(psk_id=b"id", psk_secret=b"s")],
    ))) == grpc.StatusCode.UNIMPLEMENTED
