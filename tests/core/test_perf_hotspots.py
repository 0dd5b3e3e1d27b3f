"""Structural checks of the hot-spot fixes of issue 6 (counts, never timings): the
signature key is loaded once, a Commit is encoded once, a received UpdatePath decodes
only the ciphertext its receiver needs, a joiner decodes only its own Welcome entry,
and a Commit of k Adds checks each KeyPackage's two signatures once (RFC 9420 §6.1,
§7.6, §10.1, §12.2, §12.4.3.1). Malformed encodings stay DecodeErrors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from mls_core import commit_flow, staging
from mls_core.ciphersuite import CipherSuite, get_suite
from mls_core.codec import (
    _WIRE,
    LazyVector,
    Reader,
    Struct,
    _compile_decoder,
    _compile_encoder,
    _StructCodec,
    encode_varint,
)
from mls_core.commit import Commit, UpdatePath, UpdatePathNode
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.errors import DecodeError, ValidationError, VerificationError
from mls_core.events import ApplicationMessage
from mls_core.framing import MLSMessage, WireFormat
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate, create_key_package
from mls_core.key_schedule import GroupContext
from mls_core.messages import EncryptedGroupSecrets, KeyPackage, Welcome
from mls_core.nodes import HPKECiphertext, LeafNodeSource
from mls_core.proposal_list import _BATCH_ADDS
from mls_core.proposals import Add

NOW = 1_800_000_000
SUITE = 1


def _config() -> GroupConfig:
    return GroupConfig(handshake_wire_format=WireFormat.MLS_PUBLIC_MESSAGE)


@dataclass
class _Built:
    """A group of ``n`` members built with one Commit of Adds, as in the benchmarks."""

    creator: Group
    welcome: bytes
    joiners: list[tuple[KeyPackage, KeyPackagePrivate]] = field(default_factory=list)

    def join(self, i: int) -> Group:
        kp, private = self.joiners[i]
        return Group.join(self.welcome, kp, private, config=_config(), now=NOW)


def _key_packages(n: int) -> list[tuple[KeyPackage, KeyPackagePrivate]]:
    suite = get_suite(SUITE)
    out = []
    for i in range(n):
        sig, _ = suite.generate_signature_key_pair()
        out.append(create_key_package(suite, Credential.basic(b"m%d" % i), sig, now=NOW))
    return out


def _build(n: int) -> _Built:
    suite = get_suite(SUITE)
    sig, _ = suite.generate_signature_key_pair()
    creator = Group.create(SUITE, Credential.basic(b"creator"), sig, now=NOW, config=_config())
    joiners = _key_packages(n - 1)
    result = creator.commit([Add(kp) for kp, _ in joiners], force_path=False, now=NOW)
    creator.merge_pending_commit()
    assert result.welcome is not None
    return _Built(creator, result.welcome, joiners)


@pytest.fixture(scope="module")
def built() -> _Built:
    return _build(12)


class _Counter:
    """Wrap a callable and count its calls (and, for encoders, the calls that had to
    encode because the value carried no memoised wire form)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.calls = 0
        self.fresh = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if args and isinstance(args[0], Struct) and _WIRE not in args[0].__dict__:
            self.fresh += 1
        return self.fn(*args, **kwargs)


def _count_struct(monkeypatch: pytest.MonkeyPatch, cls: type[Struct], op: str) -> _Counter:
    """Count ``op`` ("decode"/"encode") calls of ``cls``'s generated struct codec."""
    codec = cls.codec()
    assert isinstance(codec, _StructCodec)
    original = codec.__dict__.get(op)
    if original is None:
        original = _compile_decoder(codec) if op == "decode" else _compile_encoder(codec)
    counter = _Counter(original)
    monkeypatch.setitem(codec.__dict__, op, counter)
    return counter


# --------------------------------------------------------------------- 1. app messages


def test_signature_key_loaded_once_for_many_messages(
        built: _Built, monkeypatch: pytest.MonkeyPatch) -> None:
    signer = get_suite(SUITE)._signer
    loads = _Counter(signer._load_uncached)  # type: ignore[attr-defined]
    monkeypatch.setattr(signer, "_load_uncached", loads)
    signer._priv_cache.clear()  # type: ignore[attr-defined]
    member = built.join(0)
    for i in range(5):
        event = member.process(built.creator.encrypt(b"msg %d" % i), now=NOW)
        assert isinstance(event, ApplicationMessage) and event.data == b"msg %d" % i
    assert loads.calls == 1


def test_invalid_private_key_is_not_cached() -> None:
    suite = get_suite(SUITE)
    signer = suite._signer
    for _ in range(2):
        with pytest.raises(Exception, match="invalid EdDSA private key"):
            suite.sign_with_label(b"\x00" * 5, b"x", b"y")
    assert b"\x00" * 5 not in signer._priv_cache  # type: ignore[attr-defined]


def test_private_key_cache_is_bounded() -> None:
    suite = get_suite(SUITE)
    signer = suite._signer
    keys = [suite.generate_signature_key_pair() for _ in range(20)]
    for priv, pub in keys:
        sig = suite.sign_with_label(priv, b"L", b"content")
        assert suite.verify_with_label(pub, b"L", b"content", sig)
    assert len(signer._priv_cache) <= 8  # type: ignore[attr-defined]
    assert len(signer._pub_cache) <= 64  # type: ignore[attr-defined]
    # a cached key still signs for its own public key only
    priv, pub = keys[-1]
    other_pub = keys[0][1]
    sig = suite.sign_with_label(priv, b"L", b"c2")
    assert suite.verify_with_label(pub, b"L", b"c2", sig)
    assert not suite.verify_with_label(other_pub, b"L", b"c2", sig)


def test_group_context_encoding_is_kept(built: _Built,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    member = built.join(1)
    encodes = _count_struct(monkeypatch, GroupContext, "encode")
    for _ in range(4):
        member.process(built.creator.encrypt(b"hello"), now=NOW)
    # both contexts (sender's and receiver's) were already encoded by the key schedule
    assert encodes.calls >= 8  # FramedContentTBS at the sender and at the receiver
    assert encodes.fresh == 0


def test_group_context_memo_equals_fresh_encoding() -> None:
    gc = GroupContext(1, 1, b"gid", 7, b"t" * 32, b"c" * 32, ())
    first = gc.encode()
    assert gc.__dict__[_WIRE] == first
    assert gc.encode() is gc.encode()  # served from the memo
    decoded = GroupContext.decode(first)
    assert decoded == gc and decoded.encode() == first


# ------------------------------------------------------------- 2. process a big commit


def test_process_decodes_one_ciphertext_and_encodes_none(
        built: _Built, monkeypatch: pytest.MonkeyPatch) -> None:
    member = built.join(2)
    commit = built.creator.commit(now=NOW)  # full UpdatePath to the 11 others
    built.creator.merge_pending_commit()
    decodes = _count_struct(monkeypatch, HPKECiphertext, "decode")
    encodes = _count_struct(monkeypatch, HPKECiphertext, "encode")
    commit_encodes = _count_struct(monkeypatch, Commit, "encode")
    member.process(commit.commit, now=NOW)
    assert decodes.calls == 1
    assert encodes.calls == 0
    assert commit_encodes.calls == 3  # signature, membership tag, transcript hash ...
    assert commit_encodes.fresh == 0  # ... all from the received bytes
    assert member.export_secret(b"x", b"", 32) == built.creator.export_secret(b"x", b"", 32)


def test_update_path_vector_is_lazy_but_equal(built: _Built) -> None:
    commit = built.creator.commit(now=NOW)
    built.creator.discard_pending_commit()
    msg = MLSMessage.decode(commit.commit)
    assert msg.public_message is not None
    body = msg.public_message.content.body
    assert isinstance(body, Commit) and body.path is not None
    node = body.path.nodes[-1]
    cts = node.encrypted_path_secret
    assert isinstance(cts, LazyVector) and len(cts) >= 2
    eager = tuple(cts)
    assert cts == eager and eager == cts and hash(cts) == hash(eager)
    assert cts[-1] == eager[-1] and cts[0:2] == eager[0:2]
    with pytest.raises(IndexError):
        cts[len(eager)]
    rebuilt = UpdatePathNode(node.encryption_key, eager)
    assert rebuilt == node and rebuilt.encode() == node.encode()
    # re-encoding a decoded Commit (no memo) gives back the received bytes
    fresh = Commit(body.proposals, UpdatePath(body.path.leaf_node, body.path.nodes))
    assert fresh.encode() == body.encode()


def _vector(elements: list[bytes]) -> bytes:
    body = b"".join(elements)
    out = bytearray()
    encode_varint(len(body), out)
    return bytes(out) + body


def _opaque(data: bytes) -> bytes:
    out = bytearray()
    encode_varint(len(data), out)
    return bytes(out) + data


def _ct(kem: bytes, ct: bytes) -> bytes:
    return _opaque(kem) + _opaque(ct)


def _decode_node(vec: bytes) -> UpdatePathNode:
    return UpdatePathNode.decode(_opaque(b"k" * 32) + vec)


def test_lazy_vector_non_uniform_elements() -> None:
    elements = [_ct(b"a" * 32, b"b" * 48), _ct(b"c" * 3, b""), _ct(b"d" * 70, b"e" * 100)]
    node = _decode_node(_vector(elements))
    assert [c.kem_output for c in node.encrypted_path_secret] == [b"a" * 32, b"c" * 3,
                                                                   b"d" * 70]
    assert node.encrypted_path_secret[2].ciphertext == b"e" * 100
    assert node.encode() == _opaque(b"k" * 32) + _vector(elements)


@pytest.mark.parametrize("vec", [
    # a whole element short: the last element's second field is missing
    _vector([_ct(b"a" * 32, b"b" * 48), _opaque(b"a" * 32)]),
    # the vector's length runs past the end of the data
    _vector([_ct(b"a" * 32, b"b" * 48)] * 3)[:-1],
    # uniform elements but the vector ends inside the last one
    _vector([_ct(b"a" * 32, b"b" * 48)] * 2 + [_ct(b"a" * 32, b"b" * 48)[:-1]]),
    # inner length runs past the vector's end (the vector length itself is consistent)
    _vector([_ct(b"a" * 32, b"b" * 48), b"\x20" + b"a" * 32 + b"\x3f" + b"b" * 10]),
    # a non-minimal varint length inside an element
    _vector([_ct(b"a" * 32, b"b" * 48), b"\x40\x20" + b"a" * 32 + _opaque(b"b" * 48)]),
    # the reserved varint prefix 0b11
    _vector([_ct(b"a" * 32, b"b" * 48), b"\xc0" + b"a" * 40]),
])
def test_malformed_update_path_vector_is_a_decode_error(vec: bytes) -> None:
    with pytest.raises(DecodeError):
        _decode_node(vec)


def test_valid_irregular_vector_accepted() -> None:
    """Same total size as two uniform elements, different split: valid and decoded
    correctly by the slow path."""
    elements = [_ct(b"a" * 32, b"b" * 48), _ct(b"a" * 33, b"b" * 47)]
    node = _decode_node(_vector(elements))
    assert [len(c.kem_output) for c in node.encrypted_path_secret] == [32, 33]


def test_truncated_commit_message_is_a_decode_error(built: _Built) -> None:
    commit = built.creator.commit(now=NOW)
    built.creator.discard_pending_commit()
    data = commit.commit
    for cut in (len(data) // 2, len(data) - 200, len(data) - 1):
        with pytest.raises(DecodeError):
            MLSMessage.decode(data[:cut])


# ------------------------------------------------------------------ 3. build (Adds)


def test_commit_of_adds_verifies_each_key_package_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    suite = get_suite(SUITE)
    sig, _ = suite.generate_signature_key_pair()
    creator = Group.create(SUITE, Credential.basic(b"creator"), sig, now=NOW, config=_config())
    joiners = _key_packages(6)
    verifies = _Counter(CipherSuite.verify_with_label)
    monkeypatch.setattr(CipherSuite, "verify_with_label",
                        lambda self, *a: verifies(self, *a))
    applies = _Counter(staging.apply_proposals)
    monkeypatch.setattr(commit_flow, "apply_proposals", applies)
    result = creator.commit([Add(kp) for kp, _ in joiners], force_path=False, now=NOW)
    assert verifies.calls == 2 * len(joiners)  # KeyPackage + its LeafNode (§10.1, §7.3)
    assert applies.calls == 1
    assert result.welcome is not None


def test_stored_proposals_greedy_fallback_still_applies(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stored Adds of the same KeyPackage: the second is invalid (§12.2, duplicate
    leaf), so the greedy path keeps only the first; the commit still works."""
    suite = get_suite(SUITE)
    sig, _ = suite.generate_signature_key_pair()
    creator = Group.create(SUITE, Credential.basic(b"creator"), sig, now=NOW, config=_config())
    (kp, private), (kp2, _) = _key_packages(2)
    creator.propose_add(kp)
    creator.propose_add(kp)
    result = creator.commit([Add(kp2)], now=NOW)
    event = creator.merge_pending_commit()
    assert len(event.added) == 2
    assert result.welcome is not None
    joined = Group.join(result.welcome, kp, private, config=_config(), now=NOW)
    assert joined.export_secret(b"x", b"", 32) == creator.export_secret(b"x", b"", 32)


# --------------------------------------------------------------------------- 4. join


def test_join_decodes_only_its_own_welcome_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = _build(9)
    entries = _count_struct(monkeypatch, EncryptedGroupSecrets, "decode")
    member = fresh.join(5)
    assert entries.calls == 1
    assert member.export_secret(b"x", b"", 32) == fresh.creator.export_secret(b"x", b"", 32)


def _welcome(data: bytes) -> Welcome:
    msg = MLSMessage.decode(data)
    assert msg.welcome is not None
    return msg.welcome


def test_welcome_entry_found_even_if_ref_bytes_occur_elsewhere(built: _Built) -> None:
    """A KeyPackageRef's encoding appearing inside another entry's ciphertext must not
    be mistaken for an entry start."""
    from mls_core.welcome import _own_entry

    ref = b"r" * 32
    decoy = EncryptedGroupSecrets(b"x" * 32, HPKECiphertext(b"\x20" + ref, b"q" * 40))
    real = EncryptedGroupSecrets(ref, HPKECiphertext(b"k" * 32, b"c" * 40))
    welcome = Welcome(SUITE, (decoy, real), b"info")
    decoded = Welcome.decode(welcome.encode())
    assert isinstance(decoded.secrets, LazyVector)
    assert _own_entry(decoded.secrets, ref) == real
    assert _own_entry(decoded.secrets, b"z" * 32) is None
    assert _own_entry((decoy, real), ref) == real


def test_malformed_welcome_is_rejected(built: _Built) -> None:
    welcome = _welcome(built.welcome)
    raw = welcome.encode()
    # corrupt the length byte of the *last* entry's ciphertext: the joiner's own entry
    # is earlier, but the whole vector must still be validated
    entries = list(welcome.secrets)
    last = entries[-1].encode()
    offset = raw.rindex(last)
    bad_entry = bytearray(last)
    ct_len_pos = len(last) - len(entries[-1].encrypted_group_secrets.ciphertext) - 1
    bad_entry[ct_len_pos] = 0x3F  # claims 63 bytes where fewer remain
    bad = raw[:offset] + bytes(bad_entry) + raw[offset + len(last):]
    with pytest.raises(DecodeError):
        Welcome.decode(bad)
    kp, private = built.joiners[0]
    bad_msg = MLSMessage.of(welcome).encode().replace(raw, bad)
    with pytest.raises(DecodeError):
        Group.join(bad_msg, kp, private, config=_config(), now=NOW)


def test_welcome_without_our_entry_is_a_validation_error(built: _Built) -> None:
    (kp, private), = _key_packages(1)
    with pytest.raises(ValidationError, match="no entry for our KeyPackage"):
        Group.join(built.welcome, kp, private, config=_config(), now=NOW)


def test_reader_offsets_are_respected_inside_larger_buffers() -> None:
    """A LazyVec decoded from the middle of a buffer reads only its own bytes."""
    vec = _vector([_ct(b"a" * 32, b"b" * 48)] * 3)
    node_bytes = _opaque(b"k" * 32) + vec
    data = b"\xff" * 7 + node_bytes + b"\xee" * 5
    r = Reader(data, 7, 7 + len(node_bytes))
    node = UpdatePathNode.decode_prefix(r)
    assert r.pos == 7 + len(node_bytes)
    assert [c.ciphertext for c in node.encrypted_path_secret] == [b"b" * 48] * 3



@pytest.fixture(scope="module")
def batch_kps() -> list[tuple[KeyPackage, KeyPackagePrivate]]:
    return _key_packages(_BATCH_ADDS)


def _creator() -> Group:
    sig, _ = get_suite(SUITE).generate_signature_key_pair()
    return Group.create(SUITE, Credential.basic(b"creator"), sig, now=NOW, config=_config())


def test_many_adds_verify_signatures_as_two_batches(
        batch_kps: list[tuple[KeyPackage, KeyPackagePrivate]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[tuple[bytes | str, int]] = []
    original = CipherSuite.verify_many_with_label

    def many(self: CipherSuite, label: bytes | str, items: Any) -> list[bool]:
        batches.append((label, len(items)))
        return original(self, label, items)

    single = _Counter(CipherSuite.verify_with_label)
    monkeypatch.setattr(CipherSuite, "verify_many_with_label", many)
    monkeypatch.setattr(CipherSuite, "verify_with_label", lambda self, *a: single(self, *a))
    creator = _creator()
    creator.commit([Add(kp) for kp, _ in batch_kps], force_path=False, now=NOW)
    n = len(batch_kps)
    assert batches == [(b"LeafNodeTBS", n), (b"KeyPackageTBS", n)]
    assert single.calls == 0


def test_bad_signature_in_a_batch_is_still_a_verification_error(
        batch_kps: list[tuple[KeyPackage, KeyPackagePrivate]]) -> None:
    kps = [kp for kp, _ in batch_kps]
    kps[-3] = dataclasses.replace(kps[-3], signature=bytes(64))
    with pytest.raises(VerificationError, match="KeyPackage"):
        _creator().commit([Add(kp) for kp in kps], force_path=False, now=NOW)


def test_wrong_leaf_source_in_a_batch_is_still_a_validation_error(
        batch_kps: list[tuple[KeyPackage, KeyPackagePrivate]]) -> None:
    kps = [kp for kp, _ in batch_kps]
    leaf = dataclasses.replace(kps[5].leaf_node, leaf_node_source=LeafNodeSource.UPDATE)
    kps[5] = dataclasses.replace(kps[5], leaf_node=leaf)
    with pytest.raises(ValidationError, match="leaf_node_source"):
        _creator().commit([Add(kp) for kp in kps], force_path=False, now=NOW)


def test_first_resolution_of_a_large_subtree_pauses_the_collector(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first resolution of a big blank copath subtree fills thousands of cache
    entries; the cyclic collector is paused meanwhile (and re-enabled after)."""
    import gc

    from mls_core import ratchet_tree

    fresh = _build(12)
    member = fresh.join(3)
    pauses = _Counter(ratchet_tree.gc_paused)
    monkeypatch.setattr(ratchet_tree, "gc_paused", pauses)
    monkeypatch.setattr(ratchet_tree, "_GC_PAUSE_LEAVES", 2)
    commit = fresh.creator.commit(now=NOW)
    fresh.creator.merge_pending_commit()
    member.process(commit.commit, now=NOW)
    assert pauses.calls >= 1
    assert gc.isenabled()
    assert member.export_secret(b"x", b"", 32) == fresh.creator.export_secret(b"x", b"", 32)
    # the cached resolutions are those of an uncached computation
    tree = member._state.tree
    root = len(tree._nodes) // 2
    cached = tree.resolution(root)
    copy = tree.copy()
    copy._resolutions = ratchet_tree._CowList([None] * len(tree._nodes))
    assert copy.resolution(root) == cached


@pytest.mark.parametrize("authenticated_data", [b"", b"a" * 70])
def test_private_message_aads_equal_declared_structs(authenticated_data: bytes) -> None:
    """PrivateContentAAD and SenderDataAAD (§6.3.1, §6.3.2) from one encoding are the
    encodings of the declared structs."""
    from mls_core.framing import PrivateContentAAD, SenderDataAAD
    from mls_core.protection import _aads

    aad, sd_aad = _aads(b"group", 2**40 + 3, 1, authenticated_data)
    assert aad == PrivateContentAAD(b"group", 2**40 + 3, 1, authenticated_data).encode()
    assert sd_aad == SenderDataAAD(b"group", 2**40 + 3, 1).encode()


def test_application_message_plaintext_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a padding block (the default) the PrivateMessageContent plaintext (§6.3.1) is
    encoded once per message: the padding follows from that encoding's length."""
    from mls_core.framing import PrivateMessageContent

    fresh = _build(3)
    member = fresh.join(0)
    original = PrivateMessageContent.encode
    calls = [0]

    def encode(self: PrivateMessageContent) -> bytes:
        calls[0] += 1
        return original(self)

    monkeypatch.setattr(PrivateMessageContent, "encode", encode)
    assert fresh.creator._config.padding_block > 1
    wire = fresh.creator.encrypt(b"hello")
    assert calls[0] == 1
    event = member.process(wire, now=NOW)
    assert isinstance(event, ApplicationMessage) and event.data == b"hello"
