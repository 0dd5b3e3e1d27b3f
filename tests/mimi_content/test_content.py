"""MIMI content: what the draft forbids is refused with a typed error naming the field,
and what we encode is the one deterministic encoding."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimi_content import (
    ContentDecodeError,
    ContentError,
    ContentValidationError,
    Disposition,
    Expiration,
    ExternalPart,
    MimiContent,
    MultiPart,
    NestedPart,
    NullPart,
    PartSemantics,
    SinglePart,
    decode,
    encode,
    message_id,
    new_salt,
)
from mimi_content.cbor import dumps
from mls_core.errors import DecodeError, MLSError

SENDER, ROOM = "mimi://example.com/u/alice", "mimi://example.com/r/team"


def text(words: str = "hi", **fields: Any) -> MimiContent:
    values: dict[str, Any] = {
        "salt": bytes(range(16)), "replaces": None, "topic_id": b"", "expires": None,
        "in_reply_to": None, "extensions": {1: SENDER, 2: ROOM},
        "body": NestedPart(Disposition.RENDER, "",
                           SinglePart("text/plain;charset=utf-8", words.encode()))}
    values.update(fields)
    return MimiContent(**values)


def raw(content: MimiContent) -> list[Any]:
    """The content as a CBOR data model tree, to be mutated before encoding."""
    return cbor2.loads(encode(content))  # type: ignore[no-any-return]


def nested(depth: int) -> list[Any]:
    part: list[Any] = [1, "", 1, "text/plain", b"x"]
    for _ in range(depth - 1):
        part = [1, "", 3, 2, [part, [1, "", 0]]]
    return part


def test_errors_belong_to_the_one_hierarchy() -> None:
    assert issubclass(ContentDecodeError, DecodeError)
    assert issubclass(ContentValidationError, ContentError)
    assert issubclass(ContentError, MLSError)


def test_a_message_round_trips_and_its_id_binds_sender_and_room() -> None:
    content = text()
    data = encode(content)
    assert decode(data) == content
    ids = {message_id(data, SENDER, ROOM), message_id(data, SENDER + "x", ROOM),
           message_id(data, SENDER, ROOM + "x"),
           message_id(encode(text(salt=new_salt())), SENDER, ROOM)}
    assert len(ids) == 4 and all(len(i) == 32 and i[0] == 1 for i in ids)


@pytest.mark.parametrize("mutate", [
    lambda d: d[:-1] + bytes([d[-1]]) + b"\x00",           # trailing byte
    lambda d: d.replace(b"\x87", b"\x9f", 1) + b"\xff",    # indefinite-length array
    lambda d: d.replace(b"\x87\x50", b"\x98\x07\x50", 1),  # non-shortest array length
])
def test_non_deterministic_encodings_are_refused(mutate: Any) -> None:
    with pytest.raises(ContentDecodeError):
        decode(mutate(encode(text())))


def test_map_keys_sort_by_their_encodings_not_length_first() -> None:
    """RFC 8949 §4.2.1 (24 = 0x1818 before -1 = 0x20); the draft forbids RFC 7049's
    length-first order, which cbor2's canonical mode produces."""
    content = text(extensions={1: SENDER, 2: ROOM, -1: 0, 24: 0})
    data = encode(content)
    assert data.index(b"\x18\x18") < data.index(b"\x20\x00")
    length_first = data.replace(b"\x18\x18\x00\x20\x00", b"\x20\x00\x18\x18\x00")
    assert length_first != data
    with pytest.raises(ContentDecodeError, match="deterministic"):
        decode(length_first)


def test_duplicate_keys_and_invalid_utf8_are_refused() -> None:
    data = encode(text(extensions={1: SENDER}))
    twice = data.replace(b"\xa1\x01", b"\xa2\x01", 1).replace(
        SENDER.encode(), SENDER.encode() + b"\x01" + bytes([0x60 + 0]), 1)
    with pytest.raises(ContentDecodeError):
        decode(twice)
    with pytest.raises(ContentDecodeError):
        decode(data.replace(SENDER.encode()[:2], b"\xc3\x28", 1))


@pytest.mark.parametrize("change, field", [
    (lambda v: v.__setitem__(0, b"short"), "salt"),
    (lambda v: v.__setitem__(1, b"\x02" + bytes(31)), "replaces"),   # unknown hash alg
    (lambda v: v.__setitem__(2, bytes(4097)), "topic_id"),
    (lambda v: v.__setitem__(3, [True, 1 << 32]), "expires"),
    (lambda v: v.__setitem__(3, [1, 5]), "expires"),                 # not a bool
    (lambda v: v.__setitem__(4, bytes(32)), "in_reply_to"),          # hash alg 0
    (lambda v: v.__setitem__(5, {0: "x"}), "extensions"),            # reserved key
    (lambda v: v.__setitem__(5, {1: 5}), "extensions"),              # senderUri not text
    (lambda v: v.__setitem__(5, {"": 1}), "extensions"),             # empty text key
    (lambda v: v.__setitem__(5, {7: [[[[1]]]]}), "extensions"),      # 5 levels deep
    (lambda v: v.__setitem__(5, {7: {1.5: 1}}), "extensions"),       # float map key
    (lambda v: v.__setitem__(5, {7: {2**53: 1}}), "extensions"),     # not a double
    (lambda v: v.__setitem__(5, {7: cbor2.CBORTag(2, b"\x01")}), "extensions"),
    (lambda v: v.__setitem__(5, {7: bytes(4093)}), "extensions"),    # value > 4095 octets
    (lambda v: v.__setitem__(6, [1, "", 4, "text/plain", b""]), "cardinality"),
    (lambda v: v.__setitem__(6, [256, "", 0]), "disposition"),
    (lambda v: v.__setitem__(6, [1, "not a tag!", 0]), "language"),
    (lambda v: v.__setitem__(6, [1, "", 1, "no media type", b""]), "content_type"),
    (lambda v: v.__setitem__(6, [1, "", 3, 3, [[1, "", 0], [1, "", 0]]]), "partSemantics"),
    (lambda v: v.__setitem__(6, [1, "", 3, 2, [[1, "", 0]]]), "2 parts"),
    (lambda v: v.__setitem__(6, nested(5)), "levels deep"),
    (lambda v: v.__setitem__(6, [1, "", 3, 2, [[1, "", 0]] * 1024]), "1024 body parts"),
    (lambda v: v.__setitem__(6, [1, "", 1, "text/plain", b"x", b"extra"]), "items"),
    (lambda v: v.__setitem__(6, [True, "", 0]), "disposition"),
    (lambda v: v.append(None), "items"),
])
def test_schema_violations_are_refused_naming_the_field(change: Any, field: str) -> None:
    value = raw(text())
    change(value)
    with pytest.raises(ContentValidationError, match=field):
        decode(dumps(value))


def test_the_limits_themselves_are_accepted() -> None:
    value = raw(text())
    value[6] = nested(4)
    value[5] = {1: SENDER, 7: [[[1]]], "k" * 255: bytes(4092)}
    value[2] = bytes(4096)
    decode(dumps(value))


def attachment(**fields: Any) -> ExternalPart:
    values: dict[str, Any] = {
        "content_type": "video/mp4", "url": "https://example.com/f", "expires": 0,
        "size": 10, "enc_alg": 1, "key": bytes(16), "nonce": bytes(12), "aad": b"",
        "hash_alg": 1, "content_hash": bytes(32), "description": "", "filename": "f.mp4"}
    values.update(fields)
    return ExternalPart(**values)


@pytest.mark.parametrize("fields, why", [
    ({"enc_alg": 0}, "encAlg 0"),
    ({"key": bytes(15)}, "16-octet key"),
    ({"nonce": bytes(16)}, "12-octet nonce"),
    ({"content_hash": bytes(20)}, "32 octets, not 20"),
    ({"filename": "../etc/passwd"}, "path"),
])
def test_external_parts_must_be_coherent(fields: dict[str, Any], why: str) -> None:
    with pytest.raises(ContentValidationError, match=why):
        attachment(**fields)
    assert attachment(enc_alg=0, key=b"", nonce=b"").enc_alg == 0


def test_size_limit_is_checked_before_decoding() -> None:
    data = encode(text("x" * 2000))
    with pytest.raises(ContentValidationError, match="exceeds"):
        decode(data, max_size=1000)


_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
_single = st.builds(SinglePart, st.sampled_from(["text/plain", "image/png",
                                                 "text/markdown;variant=GFM-MIMI"]),
                    st.binary(max_size=40))
_leaf = st.one_of(st.just(NullPart()), _single, st.builds(
    attachment, size=st.integers(0, 2**64 - 1), description=_names,
    expires=st.integers(0, 2**32 - 1)))


def _parts(children: st.SearchStrategy[NestedPart]) -> st.SearchStrategy[NestedPart]:
    multi = st.builds(MultiPart, st.sampled_from(PartSemantics),
                      st.lists(children, min_size=2, max_size=3).map(tuple))
    return st.builds(NestedPart, st.integers(0, 255), st.sampled_from(["", "en", "en-US,fr"]),
                     multi)


_bodies = st.recursive(st.builds(NestedPart, st.integers(0, 255), st.just(""), _leaf),
                       _parts, max_leaves=8).filter(lambda b: _depth(b) <= 4)
_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | _names
                       | st.binary(max_size=8),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.integers(-9, 9) | _names, inner, max_size=3),
                       max_leaves=6)


def _depth(part: NestedPart) -> int:
    if isinstance(part.part, MultiPart):
        return 1 + max(_depth(p) for p in part.part.parts)
    return 1


@settings(max_examples=200, deadline=None)
@given(body=_bodies, topic=st.binary(max_size=8),
       expires=st.none() | st.builds(Expiration, st.booleans(), st.integers(0, 2**32 - 1)),
       extra=st.dictionaries(st.integers(3, 1000) | _names.filter(bool), _values, max_size=3),
       reply=st.none() | st.binary(min_size=31, max_size=31).map(lambda b: b"\x01" + b))
def test_valid_content_round_trips(body: NestedPart, topic: bytes,
                                   expires: Expiration | None, extra: dict[Any, Any],
                                   reply: bytes | None) -> None:
    try:
        content = text(body=body, topic_id=topic, expires=expires, in_reply_to=reply,
                       extensions={1: SENDER, **extra})
        data = encode(content)
    except ContentValidationError as exc:  # refused on the way out as on the way in
        assert "levels deep" in str(exc)
        return
    assert decode(data) == content
    assert encode(decode(data)) == data
    assert len(body.walk()) == sum(1 for _ in body.walk())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_content_errors(data: bytes) -> None:
    with contextlib.suppress(ContentError):
        decode(data)


def test_dataclass_fields_declare_their_wire_types() -> None:
    declared = [f.name for f in dataclasses.fields(MimiContent) if "wire" in f.metadata]
    assert declared == ["salt", "replaces", "topic_id", "expires", "in_reply_to",
                        "extensions", "body"]
