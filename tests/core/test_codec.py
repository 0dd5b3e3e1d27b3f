"""Codec edge cases (RFC 9420 §2.1) and the select/optional rules of the wire structs."""

from __future__ import annotations

import pytest

from mls_core.codec import (
    U16,
    U32,
    VAR_BYTES,
    Opt,
    Reader,
    Vec,
    decode_value,
    decode_varint,
    encode_value,
    encode_varint,
)
from mls_core.commit import Commit
from mls_core.credentials import Credential, CredentialType
from mls_core.errors import DecodeError, UsageError, ValidationError
from mls_core.extensions import Extension
from mls_core.framing import (
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    WireFormat,
)
from mls_core.messages import GroupSecrets, KeyPackage, PathSecret
from mls_core.nodes import (
    RATCHET_TREE,
    Capabilities,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    Node,
    ParentNode,
    decode_ratchet_tree,
    encode_ratchet_tree,
)
from mls_core.proposals import Proposal, ProposalOrRef, Remove


def varint(n: int) -> bytes:
    out = bytearray()
    encode_varint(n, out)
    return bytes(out)


def read_varint(data: bytes) -> int:
    return decode_varint(Reader(data))


# ------------------------------------------------------------------------- varints


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "00"),
        (37, "25"),
        (63, "3f"),
        (64, "4040"),
        (15293, "7bbd"),
        (16383, "7fff"),
        (16384, "80004000"),
        (494878333, "9d7f3e7d"),
        ((1 << 30) - 1, "bfffffff"),
    ],
)
def test_varint_minimal_encoding_round_trips(n: int, encoded: str) -> None:
    assert varint(n).hex() == encoded
    assert read_varint(bytes.fromhex(encoded)) == n


def test_varint_too_large_to_encode() -> None:
    with pytest.raises(UsageError):
        varint(1 << 30)


@pytest.mark.parametrize("encoded", ["4025", "403f", "80000025", "80003fff", "40 00", "80000000"])
def test_varint_non_minimal_rejected(encoded: str) -> None:
    with pytest.raises(DecodeError, match="non-minimal"):
        read_varint(bytes.fromhex(encoded.replace(" ", "")))


@pytest.mark.parametrize("encoded", ["c0", "c000000000000000", "ff", "c1020304"])
def test_varint_prefix_0b11_rejected(encoded: str) -> None:
    with pytest.raises(DecodeError, match="0b11"):
        read_varint(bytes.fromhex(encoded))


@pytest.mark.parametrize("encoded", ["", "40", "80", "80ffff", "bf"])
def test_varint_truncated(encoded: str) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        read_varint(bytes.fromhex(encoded))


def test_opaque_truncated_and_trailing() -> None:
    assert decode_value(VAR_BYTES, b"\x03abc") == b"abc"
    with pytest.raises(DecodeError, match="truncated"):
        decode_value(VAR_BYTES, b"\x03ab")
    with pytest.raises(DecodeError, match="trailing"):
        decode_value(VAR_BYTES, b"\x03abcd")


def test_vector_must_hold_whole_elements() -> None:
    vec = Vec(U16)
    assert decode_value(vec, b"\x04\x00\x01\x00\x02") == (1, 2)
    with pytest.raises(DecodeError):
        decode_value(vec, b"\x03\x00\x01\x00")
    with pytest.raises(DecodeError, match="truncated"):
        decode_value(vec, b"\x04\x00\x01")


def test_long_vector_uses_two_byte_header() -> None:
    data = encode_value(Vec(U32), tuple(range(20)))
    assert data[:2] == b"\x40\x50"
    assert decode_value(Vec(U32), data) == tuple(range(20))


# ------------------------------------------------------------------------ optional


def test_optional_presence_byte() -> None:
    opt = Opt(VAR_BYTES)
    assert decode_value(opt, b"\x00") is None
    assert decode_value(opt, b"\x01\x01x") == b"x"
    for bad in (2, 0x80, 0xFF):
        with pytest.raises(DecodeError, match="presence byte"):
            decode_value(opt, bytes([bad]) + b"\x01x")


def test_group_secrets_optional_path_secret() -> None:
    gs = GroupSecrets(b"j" * 4, PathSecret(b"p"), ())
    data = gs.encode()
    assert GroupSecrets.decode(data) == gs
    bad = bytearray(data)
    bad[5] = 2  # the presence byte of path_secret
    with pytest.raises(DecodeError, match=r"GroupSecrets\.path_secret.*presence byte 2"):
        GroupSecrets.decode(bytes(bad))


# ------------------------------------------------------------------- struct errors


def _leaf(source: int = LeafNodeSource.KEY_PACKAGE) -> LeafNode:
    data: Lifetime | bytes | None = {
        LeafNodeSource.KEY_PACKAGE: Lifetime(1, 2),
        LeafNodeSource.UPDATE: None,
        LeafNodeSource.COMMIT: b"ph",
    }[LeafNodeSource(source)]
    return LeafNode(
        encryption_key=b"e" * 32,
        signature_key=b"s" * 32,
        credential=Credential.basic(b"alice"),
        capabilities=Capabilities((1,), (1, 0x0A0A), (0x1A1A,), (0x2A2A,), (1, 0x3A3A)),
        leaf_node_source=source,
        source_data=data,
        extensions=(Extension(0x0A0A, b"grease"),),
        signature=b"g" * 64,
    )


def _key_package() -> KeyPackage:
    return KeyPackage(1, 1, b"i" * 32, _leaf(), (), b"k" * 64)


def test_struct_trailing_bytes_rejected() -> None:
    data = _key_package().encode()
    assert KeyPackage.decode(data) == _key_package()
    with pytest.raises(DecodeError, match=rf"KeyPackage: 1 trailing bytes at offset {len(data)}"):
        KeyPackage.decode(data + b"\x00")


def test_nested_error_names_struct_field_and_offset() -> None:
    data = bytearray(_key_package().encode())
    # KeyPackage: version(2) cipher_suite(2) init_key(1+32), then LeafNode:
    # encryption_key(1+32) signature_key(1+32) credential(2+1+5), then Capabilities.
    caps_at = 4 + 33 + 33 + 33 + 8
    assert data[caps_at] == 2  # versions<V> holds one uint16
    data[caps_at] = 3  # a vector of 3 bytes cannot hold whole uint16 elements
    with pytest.raises(DecodeError) as info:
        KeyPackage.decode(bytes(data))
    msg = str(info.value)
    assert msg.startswith("Capabilities.versions:")
    assert f"offset {caps_at + 3}" in msg


def test_truncated_struct_names_innermost_struct() -> None:
    data = _key_package().encode()
    with pytest.raises(DecodeError, match=r"^KeyPackage\.signature: .*truncated"):
        KeyPackage.decode(data[:-1])
    with pytest.raises(DecodeError, match=r"^Credential\.body: .*truncated at offset 106"):
        KeyPackage.decode(data[:108])


def test_grease_values_decode_in_capabilities_and_extensions() -> None:
    leaf = LeafNode.decode(_leaf().encode())
    assert 0x0A0A in leaf.capabilities.cipher_suites
    assert leaf.extensions[0].extension_type == 0x0A0A


def test_unknown_credential_type_decodes_as_opaque() -> None:
    """Application-defined credential types carry an opaque<V> body (as in the official
    passive-client vectors); accepting them is the Authentication Service's call."""
    data = bytearray(Credential.basic(b"bob").encode())
    data[0:2] = (0x0A0A).to_bytes(2, "big")
    cred = Credential.decode(bytes(data))
    assert cred.credential_type == 0x0A0A and cred.body == b"bob"
    assert cred.encode() == bytes(data)
    with pytest.raises(DecodeError, match="truncated"):
        Credential.decode(bytes(data[:-1]))


def test_credential_cases() -> None:
    basic = Credential.basic(b"bob")
    assert basic.identity == b"bob" and basic.certificates is None
    x509 = Credential.decode(Credential.x509([b"leaf", b"ca"]).encode())
    assert x509.credential_type == CredentialType.X509
    assert x509.certificates is not None
    assert [c.cert_data for c in x509.certificates] == [b"leaf", b"ca"]


def test_unknown_proposal_and_wire_format_rejected() -> None:
    data = bytearray(Proposal.of(Remove(3)).encode())
    assert data.hex() == "000300000003"
    data[0:2] = b"\x0a\x0a"
    with pytest.raises(DecodeError, match="unknown proposal_type"):
        Proposal.decode(bytes(data))
    msg = MLSMessage.of(_key_package()).encode()
    assert msg[:4] == b"\x00\x01\x00\x05"
    with pytest.raises(DecodeError, match="unknown wire_format 6"):
        MLSMessage.decode(msg[:3] + b"\x06" + msg[4:])


def test_proposal_or_ref_cases() -> None:
    by_ref = ProposalOrRef.decode(ProposalOrRef.by_reference(b"r" * 32).encode())
    assert by_ref.reference == b"r" * 32 and by_ref.proposal is None
    by_val = ProposalOrRef.decode(ProposalOrRef.by_value(Proposal.of(Remove(1))).encode())
    assert by_val.proposal == Proposal.of(Remove(1))


def test_leaf_node_tbs_needs_group_for_update_and_commit() -> None:
    assert _leaf().to_be_signed().group_context is None
    for source in (LeafNodeSource.UPDATE, LeafNodeSource.COMMIT):
        with pytest.raises(UsageError):
            _leaf(source).to_be_signed()
        tbs = _leaf(source).to_be_signed(b"group", 7)
        # the TBS is the leaf minus its signature, plus group_id<V> and leaf_index
        leaf_bytes = _leaf(source).encode()
        assert tbs.encode() == leaf_bytes[: -(64 + 2)] + b"\x05group" + (7).to_bytes(4, "big")
        assert tbs.signed(b"g" * 64) == _leaf(source)


# --------------------------------------------------------------------- ratchet tree


def test_ratchet_tree_shape_checks() -> None:
    leaf = Node.of(_leaf())
    parent = Node.of(ParentNode(b"p" * 32, b"", (1,)))
    data = encode_ratchet_tree([leaf, parent, leaf, None, None])
    assert decode_ratchet_tree(data) == (leaf, parent, leaf)
    with pytest.raises(ValidationError, match="non-blank"):
        decode_ratchet_tree(encode_value(RATCHET_TREE, (leaf, None)))
    with pytest.raises(ValidationError, match="non-blank"):
        decode_ratchet_tree(encode_value(RATCHET_TREE, ()))
    with pytest.raises(ValidationError, match="node index 1"):
        decode_ratchet_tree(encode_value(RATCHET_TREE, (leaf, leaf, leaf)))


def test_node_type_mismatch_is_a_decode_error() -> None:
    data = bytearray(Node.of(ParentNode(b"k", b"", ())).encode())
    data[0] = 3
    with pytest.raises(DecodeError, match="unknown node_type 3"):
        Node.decode(bytes(data))


# -------------------------------------------------------------------------- framing


def _content(body: bytes | Proposal | Commit, sender: Sender) -> FramedContent:
    ct = {bytes: ContentType.APPLICATION, Proposal: ContentType.PROPOSAL,
          Commit: ContentType.COMMIT}[type(body)]
    return FramedContent(b"gid", 5, sender, b"aad", ct, body)


def test_sender_layouts() -> None:
    assert Sender.member(7).encode().hex() == "0100000007"
    assert Sender.external(2).encode().hex() == "0200000002"
    assert Sender.new_member_proposal().encode().hex() == "03"
    assert Sender.new_member_commit().encode().hex() == "04"
    assert Sender.decode(bytes.fromhex("0100000007")).leaf_index == 7
    assert Sender.decode(bytes.fromhex("0200000002")).leaf_index is None
    with pytest.raises(DecodeError, match="unknown sender_type 0"):
        Sender.decode(b"\x00")


def test_public_message_membership_tag_only_for_members() -> None:
    commit = Commit((), None)
    member = PublicMessage(_content(commit, Sender.member(1)),
                           FramedContentAuthData(b"sig", b"tag"), b"mt")
    assert PublicMessage.decode(member.encode()) == member
    assert member.encode().endswith(b"\x03sig\x03tag\x02mt")
    ext = PublicMessage(_content(Proposal.of(Remove(0)), Sender.external(0)),
                        FramedContentAuthData(b"sig"), None)
    assert PublicMessage.decode(ext.encode()) == ext
    assert ext.encode().endswith(b"\x03sig")
    with pytest.raises(UsageError):
        PublicMessage(ext.content, ext.auth, b"mt")
    with pytest.raises(UsageError):
        PublicMessage(member.content, member.auth, None)


def test_auth_confirmation_tag_only_for_commits() -> None:
    app = PublicMessage(_content(b"hi", Sender.member(0)), FramedContentAuthData(b"s", b"t"),
                        b"m")
    with pytest.raises(UsageError, match="confirmation_tag"):
        app.encode()
    auth = FramedContentAuthData(b"s", b"t")
    assert FramedContentAuthData.decode(auth.encode(), ContentType.COMMIT) == auth
    with pytest.raises(DecodeError, match="trailing"):
        FramedContentAuthData.decode(auth.encode(), ContentType.APPLICATION)
    with pytest.raises(DecodeError):
        FramedContentAuthData.decode(b"\x01s", ContentType.COMMIT)


def test_private_message_content_padding() -> None:
    pmc = PrivateMessageContent(ContentType.APPLICATION, b"hello", FramedContentAuthData(b"sig"),
                                padding=10)
    data = pmc.encode()
    assert data == b"\x05hello\x03sig" + bytes(10)
    assert PrivateMessageContent.decode(data, ContentType.APPLICATION) == pmc
    assert PrivateMessageContent.decode(data[:-10], ContentType.APPLICATION).padding == 0
    for i in range(len(data) - 10, len(data)):
        bad = bytearray(data)
        bad[i] = 1
        with pytest.raises(DecodeError, match="padding"):
            PrivateMessageContent.decode(bytes(bad), ContentType.APPLICATION)
    with pytest.raises(DecodeError, match="unknown content_type"):
        PrivateMessageContent.decode(data, 9)


def test_private_message_content_commit_needs_tag() -> None:
    pmc = PrivateMessageContent(ContentType.COMMIT, Commit((), None),
                                FramedContentAuthData(b"sig", b"tag"), padding=3)
    assert PrivateMessageContent.decode(pmc.encode(), ContentType.COMMIT) == pmc
    with pytest.raises(DecodeError):
        PrivateMessageContent.decode(b"\x00\x00\x03sig", ContentType.COMMIT)


def test_mls_message_of_sets_wire_format() -> None:
    msg = MLSMessage.of(_key_package())
    assert msg.version == 1 and msg.wire_format == WireFormat.MLS_KEY_PACKAGE
    assert MLSMessage.decode(msg.encode()).key_package == _key_package()
