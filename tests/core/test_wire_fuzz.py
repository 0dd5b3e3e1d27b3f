"""Property tests of the RFC 9420 wire structs.

1. Randomly generated instances of the main structs round-trip through encode/decode.
2. Mutated, truncated and extended bytes taken from the official ``messages.json`` vectors
   never make any decoder raise anything but an MLSError subclass.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mls_core.codec import Struct, decode_value, encode_value
from mls_core.commit import Commit, HPKECiphertext, UpdatePath, UpdatePathNode
from mls_core.credentials import Credential
from mls_core.errors import DecodeError, MLSError
from mls_core.extensions import Extension
from mls_core.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderType,
    WireFormat,
    content_type_of,
)
from mls_core.key_schedule import GroupContext
from mls_core.messages import (
    EncryptedGroupSecrets,
    ExternalSender,
    GroupInfo,
    GroupSecrets,
    KeyPackage,
    PathSecret,
    RequiredCapabilities,
    Welcome,
    parse_external_senders,
)
from mls_core.nodes import (
    RATCHET_TREE,
    Capabilities,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    Node,
    ParentNode,
    decode_ratchet_tree,
)
from mls_core.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalBody,
    ProposalOrRef,
    ReInit,
    Remove,
    Update,
)
from mls_core.psk import ExternalPSK, PreSharedKeyID, PSKType, ResumptionPSK

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------ strategies

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
# mostly short, sometimes past 63 bytes so two-byte length headers are exercised too
blob = st.one_of(st.binary(max_size=12), st.binary(min_size=60, max_size=80))


def tuples(elem: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(elem, max_size=max_size).map(tuple)


extensions = tuples(st.builds(Extension, u16, blob))
credentials = st.one_of(
    st.builds(Credential.basic, blob),
    st.builds(Credential.x509, st.lists(blob, max_size=3)),
)
capabilities = st.builds(Capabilities, tuples(u16), tuples(u16), tuples(u16), tuples(u16),
                         tuples(u16))
source_data = st.one_of(
    st.tuples(st.just(LeafNodeSource.KEY_PACKAGE), st.builds(Lifetime, u64, u64)),
    st.tuples(st.just(LeafNodeSource.UPDATE), st.none()),
    st.tuples(st.just(LeafNodeSource.COMMIT), blob),
)


@st.composite
def leaf_nodes(draw: st.DrawFn) -> LeafNode:
    source, data = draw(source_data)
    return LeafNode(draw(blob), draw(blob), draw(credentials), draw(capabilities), source,
                    data, draw(extensions), draw(blob))


parent_nodes = st.builds(ParentNode, blob, blob, tuples(u32))
nodes = st.one_of(leaf_nodes().map(Node.of), parent_nodes.map(Node.of))
ratchet_trees = tuples(st.one_of(st.none(), nodes), max_size=6)
key_packages = st.builds(KeyPackage, u16, u16, blob, leaf_nodes(), extensions, blob)
psk_ids = st.one_of(
    st.builds(PreSharedKeyID, st.just(PSKType.EXTERNAL), st.builds(ExternalPSK, blob), blob),
    st.builds(PreSharedKeyID, st.just(PSKType.RESUMPTION),
              st.builds(ResumptionPSK, u8, blob, u64), blob),
)
proposal_bodies = st.one_of(
    st.builds(Add, key_packages),
    st.builds(Update, leaf_nodes()),
    st.builds(Remove, u32),
    st.builds(PreSharedKey, psk_ids),
    st.builds(ReInit, blob, u16, u16, extensions),
    st.builds(ExternalInit, blob),
    st.builds(GroupContextExtensions, extensions),
)
proposals = proposal_bodies.map(Proposal.of)
proposal_or_refs = st.one_of(proposals.map(ProposalOrRef.by_value),
                             blob.map(ProposalOrRef.by_reference))
hpke_ciphertexts = st.builds(HPKECiphertext, blob, blob)
update_paths = st.builds(UpdatePath, leaf_nodes(),
                         tuples(st.builds(UpdatePathNode, blob, tuples(hpke_ciphertexts))))
commits = st.builds(Commit, tuples(proposal_or_refs), st.one_of(st.none(), update_paths))
group_contexts = st.builds(GroupContext, u16, u16, blob, u64, blob, blob, extensions)
group_infos = st.builds(GroupInfo, group_contexts, extensions, blob, u32, blob)
welcomes = st.builds(Welcome, u16,
                     tuples(st.builds(EncryptedGroupSecrets, blob, hpke_ciphertexts)), blob)
group_secrets = st.builds(GroupSecrets, blob, st.one_of(st.none(), st.builds(PathSecret, blob)),
                          tuples(psk_ids))
senders = st.one_of(st.builds(Sender.member, u32), st.builds(Sender.external, u32),
                    st.just(Sender.new_member_proposal()), st.just(Sender.new_member_commit()))
bodies: st.SearchStrategy[bytes | Proposal | Commit] = st.one_of(blob, proposals, commits)


@st.composite
def framed_contents(draw: st.DrawFn) -> FramedContent:
    body = draw(bodies)
    return FramedContent(draw(blob), draw(u64), draw(senders), draw(blob),
                         content_type_of(body), body)


def auth_for(content_type: int) -> st.SearchStrategy[FramedContentAuthData]:
    tag = blob if content_type == ContentType.COMMIT else st.none()
    return st.builds(FramedContentAuthData, blob, tag)


@st.composite
def public_messages(draw: st.DrawFn) -> PublicMessage:
    content = draw(framed_contents())
    is_member = content.sender.sender_type == SenderType.MEMBER
    return PublicMessage(content, draw(auth_for(content.content_type)),
                         draw(blob) if is_member else None)


@st.composite
def authenticated_contents(draw: st.DrawFn) -> AuthenticatedContent:
    content = draw(framed_contents())
    return AuthenticatedContent(draw(st.sampled_from(list(WireFormat))), content,
                                draw(auth_for(content.content_type)))


@st.composite
def private_message_contents(draw: st.DrawFn) -> PrivateMessageContent:
    body = draw(bodies)
    ct = content_type_of(body)
    return PrivateMessageContent(ct, body, draw(auth_for(ct)), draw(st.integers(0, 40)))


private_messages = st.builds(PrivateMessage, blob, u64, st.sampled_from([1, 2, 3]), blob, blob,
                             blob)
mls_messages = st.one_of(public_messages(), private_messages, welcomes, group_infos,
                         key_packages).map(MLSMessage.of)

STRUCT_CASES: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("KeyPackage", key_packages),
    ("LeafNode", leaf_nodes()),
    ("Node", nodes),
    ("Proposal", proposals),
    ("Commit", commits),
    ("Welcome", welcomes),
    ("GroupInfo", group_infos),
    ("GroupSecrets", group_secrets),
    ("PublicMessage", public_messages()),
    ("PrivateMessage", private_messages),
    ("AuthenticatedContent", authenticated_contents()),
    ("MLSMessage", mls_messages),
    ("RequiredCapabilities", st.builds(RequiredCapabilities, tuples(u16), tuples(u16),
                                       tuples(u16))),
    ("ExternalSender", st.builds(ExternalSender, blob, credentials)),
]


# ----------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("name", "strategy"), STRUCT_CASES, ids=[n for n, _ in STRUCT_CASES])
def test_struct_round_trip(name: str, strategy: st.SearchStrategy[Struct]) -> None:
    @FAST
    @given(strategy)
    def run(value: Struct) -> None:
        data = value.encode()
        decoded = type(value).decode(data)
        assert decoded == value, name
        assert decoded.encode() == data

    run()


@FAST
@given(proposal_bodies)
def test_each_proposal_body_round_trips_alone_and_wrapped(body: ProposalBody) -> None:
    assert type(body).decode(body.encode()) == body
    wrapped = Proposal.of(body)
    assert wrapped.encode()[2:] == body.encode()
    assert Proposal.decode(wrapped.encode()).body == body


@FAST
@given(ratchet_trees)
def test_ratchet_tree_round_trip(tree: tuple[Node | None, ...]) -> None:
    data = encode_value(RATCHET_TREE, tree)
    assert decode_value(RATCHET_TREE, data) == tree


@FAST
@given(private_message_contents())
def test_private_message_content_round_trip(pmc: PrivateMessageContent) -> None:
    data = pmc.encode()
    assert data.endswith(bytes(pmc.padding))
    assert PrivateMessageContent.decode(data, pmc.content_type) == pmc


# --------------------------------------------------------------- mutation robustness

VECTOR_FILE = Path(
    os.environ.get("MLS_TEST_VECTORS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "test-vectors"
) / "messages.json"


def _load_samples() -> list[bytes]:
    if not VECTOR_FILE.is_file():
        return []
    entries = json.loads(VECTOR_FILE.read_text())
    return [bytes.fromhex(v) for entry in entries[:40] for v in entry.values()]


SAMPLES = _load_samples()


def _decoders() -> list[Callable[[bytes], object]]:
    structs: list[type[Struct]] = [
        MLSMessage, KeyPackage, LeafNode, Node, Proposal, ProposalOrRef, Commit, UpdatePath,
        Welcome, GroupInfo, GroupSecrets, PublicMessage, PrivateMessage, AuthenticatedContent,
        FramedContent, Add, Update, Remove, PreSharedKey, ReInit, ExternalInit,
        GroupContextExtensions, GroupContext, Credential, Capabilities, ParentNode,
        RequiredCapabilities,
    ]
    decoders: list[Callable[[bytes], object]] = [cls.decode for cls in structs]
    decoders.append(lambda b: decode_value(RATCHET_TREE, b))
    decoders.append(decode_ratchet_tree)
    decoders.append(parse_external_senders)
    for ct in (0, 1, 2, 3, 4):
        decoders.append(functools.partial(PrivateMessageContent.decode, content_type=ct))
        decoders.append(functools.partial(FramedContentAuthData.decode, content_type=ct))
    return decoders


DECODERS = _decoders()


def _only_mls_errors(data: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(MLSError):
            decode(data)


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x3F, 0x40, 0x80, 0xC0, 0xFF]))
        elif op == "truncate":
            del data[pos:]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=8))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 4))]
    return bytes(data)


@pytest.mark.skipif(not SAMPLES, reason="messages.json not found")
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_samples())
def test_mutated_vectors_raise_only_mls_errors(data: bytes) -> None:
    _only_mls_errors(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_mls_errors(data: bytes) -> None:
    _only_mls_errors(data)


@pytest.mark.skipif(not SAMPLES, reason="messages.json not found")
def test_every_truncation_of_a_vector_is_a_decode_error() -> None:
    entry = json.loads(VECTOR_FILE.read_text())[0]
    data = bytes.fromhex(entry["mls_welcome"])
    assert MLSMessage.decode(data).encode() == data
    for name in ("mls_welcome", "mls_group_info", "mls_key_package", "public_message_commit",
                 "private_message"):
        data = bytes.fromhex(entry[name])
        for n in range(len(data)):
            with pytest.raises(DecodeError):
                MLSMessage.decode(data[:n])
        with pytest.raises(DecodeError, match="trailing"):
            MLSMessage.decode(data + b"\x00")
