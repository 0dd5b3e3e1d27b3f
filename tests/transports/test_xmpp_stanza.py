"""Unit tests of the XMPP wire mapping: <mls/> codec, chunking, reassembly, cursors."""

from __future__ import annotations

import base64
import hashlib
import os
import xml.etree.ElementTree as ET

import pytest
from pydantic import SecretStr

from transports.base import InvalidRequestError
from transports.xmpp.settings import XmppSettings
from transports.xmpp.stanza import (
    NS,
    TAG,
    Envelope,
    Kind,
    Reassembler,
    Relay,
    StanzaError,
    b64url,
    decode_group_info,
    encode_group_info,
    parse_element,
    unb64url,
)
from transports.xmpp.transport import decode_cursor, encode_cursor, room_localpart

GID = bytes(range(16))


def _roundtrip(env: Envelope, chunk_size: int) -> Envelope:
    asm = Reassembler()
    out = None
    for i, el in enumerate(env.chunks(chunk_size)):
        wire = ET.fromstring(ET.tostring(el))  # through serialized XML
        got = asm.add("bob@example.org", parse_element(wire), i)
        assert (got is None) == (i < len(env.chunks(chunk_size)) - 1)
        out = got
    assert out is not None
    return out


def test_namespace_is_the_projects_not_the_xsf() -> None:
    assert not NS.startswith("urn:xmpp:")
    assert f"{{{NS}}}mls" == TAG


@pytest.mark.parametrize("size", [1, 1023, 1024, 1025, 5000])
def test_chunked_roundtrip(size: int) -> None:
    env = Envelope(Kind.GROUP, os.urandom(size), "phone", GID, 7)
    got = _roundtrip(env, 1024)
    assert got == env
    assert len(env.chunks(1024)) == -(-size // 1024)


def test_welcome_attributes_roundtrip() -> None:
    env = Envelope(Kind.WELCOME, b"w" * 10, "laptop", GID, after="abc-123")
    el = env.chunks()[0]
    assert el.get("group") == b64url(GID) and el.get("after") == "abc-123"
    assert el.get("kind") == "welcome" and el.get("device") == "laptop"
    assert _roundtrip(env, 4) == env


def test_claim_needs_a_ref() -> None:
    el = Envelope(Kind.CLAIM, b"", "phone", ref="ab" * 16).chunks()[0]
    assert parse_element(el).envelope.ref == "ab" * 16
    del el.attrib["ref"]
    with pytest.raises(StanzaError, match="ref"):
        parse_element(el)


def test_payload_limits_are_enforced_on_send() -> None:
    with pytest.raises(InvalidRequestError):
        Envelope(Kind.GROUP, b"x" * 5000, "d", GID, 0).chunks(1024, max_payload=4096)
    with pytest.raises(InvalidRequestError):
        Envelope(Kind.GROUP, b"x", "d", GID, 0).chunks(0)


@pytest.mark.parametrize("mutate, match", [
    (lambda el: el.set("kind", "nope"), "unknown kind"),
    (lambda el: el.set("device", "bad device!"), "device"),
    (lambda el: el.set("epoch", "-1"), "epoch"),
    (lambda el: el.set("part", "3"), "part"),
    (lambda el: el.set("parts", "0"), "part"),
    (lambda el: el.set("group", "!!"), "group"),
    (lambda el: setattr(el, "text", "***"), "base64"),
    (lambda el: el.attrib.pop("sha256"), "sha256"),
    (lambda el: setattr(el, "tag", "{urn:other}mls"), "not an <mls/>"),
])
def test_malformed_elements_are_typed_errors(mutate: object, match: str) -> None:
    el = Envelope(Kind.GROUP, b"abc", "phone", GID, 1).chunks()[0]
    mutate(el)  # type: ignore[operator]
    with pytest.raises(StanzaError, match=match):
        parse_element(el)


def test_oversized_chunk_text_is_refused() -> None:
    el = Envelope(Kind.GROUP, b"a" * 4096, "phone", GID, 1).chunks()[0]
    with pytest.raises(StanzaError, match="larger"):
        parse_element(el, max_chunk=1024)


def test_reassembly_checks_the_hash() -> None:
    env = Envelope(Kind.GROUP, b"a" * 3000, "phone", GID, 1)
    els = env.chunks(1024)
    els[1].text = base64.b64encode(b"b" * 1024).decode()
    asm = Reassembler()
    assert asm.add("bob", parse_element(els[0]), 0) is None
    assert asm.add("bob", parse_element(els[1]), 1) is None
    with pytest.raises(StanzaError, match="sha256"):
        asm.add("bob", parse_element(els[2]), 2)


def test_reassembly_is_per_sender_and_tracks_the_oldest_pending() -> None:
    env = Envelope(Kind.GROUP, b"z" * 2048, "phone", GID, 1)
    first, second = env.chunks(1024)
    asm = Reassembler()
    assert asm.add("mallory", parse_element(first), 5) is None
    assert asm.add("bob", parse_element(first), 6) is None
    assert asm.oldest_pending() == 5
    # mallory's chunk cannot complete bob's message, only its own
    assert asm.add("mallory", parse_element(second), 7) == env
    assert asm.oldest_pending() == 6
    assert asm.add("bob", parse_element(second), 8) == env
    assert asm.oldest_pending() is None


def test_reassembly_rejects_disagreeing_chunks_and_size() -> None:
    a = Envelope(Kind.GROUP, b"a" * 2048, "phone", GID, 1, msg_id="m1").chunks(1024)
    b = Envelope(Kind.GROUP, b"b" * 4096, "phone", GID, 1, msg_id="m1").chunks(1024)
    asm = Reassembler()
    asm.add("bob", parse_element(a[0]), 0)
    with pytest.raises(StanzaError, match="disagree"):
        asm.add("bob", parse_element(b[1]), 1)
    small = Reassembler(max_payload=1500)
    small.add("bob", parse_element(a[0]), 0)
    with pytest.raises(StanzaError, match="size limit"):
        small.add("bob", parse_element(a[1]), 1)


def test_reassembler_bounds_pending_messages() -> None:
    asm = Reassembler(max_pending=2)
    for i in range(3):
        el = Envelope(Kind.GROUP, b"q" * 2048, "d", GID, 1, msg_id=f"m{i}").chunks(1024)[0]
        asm.add("bob", parse_element(el), i)
    assert asm.oldest_pending() == 1  # the oldest was evicted


def test_reassembler_bounds_the_bytes_held() -> None:
    asm = Reassembler(max_total=5000)
    for i in range(4):  # four unfinished 4 KiB messages, 2 KiB of each received
        el = Envelope(Kind.GROUP, b"q" * 4096, "d", GID, 1, msg_id=f"m{i}").chunks(2048)[0]
        asm.add("mallory", parse_element(el), i)
    assert asm._held <= 5000 and asm.oldest_pending() == 2
    whole = Envelope(Kind.GROUP, b"w" * 4096, "d", GID, 1, msg_id="ok").chunks(2048)
    assert asm.add("bob", parse_element(whole[0]), 10) is None
    done = asm.add("bob", parse_element(whole[1]), 11)
    assert done is not None and done.payload == b"w" * 4096
    assert asm._held == sum(len(p) for v in asm._pending.values() for p in v.pieces.values())


def test_group_info_payload() -> None:
    assert decode_group_info(encode_group_info(b"gi", b"tree")) == (b"gi", b"tree")
    assert decode_group_info(encode_group_info(b"gi", None)) == (b"gi", None)
    for bad in (b"", b"\x00\x00\x00\x05abc", b"\x00\x00\x00\x00"):
        with pytest.raises(StanzaError):
            decode_group_info(bad)


def test_b64url() -> None:
    assert unb64url(b64url(GID)) == GID
    with pytest.raises(StanzaError):
        unb64url("a+b")
    for n in range(1, 9):  # every length; 1 mod 4 encodes no byte string
        text = "A" * n
        if n % 4 == 1:
            with pytest.raises(StanzaError):
                unb64url(text)
        else:
            assert b64url(unb64url(text)) == text


def test_cursor_roundtrip_and_rejection() -> None:
    vector = {"": ("id-1", 0), "room@conference.example.org": (None, 3)}
    assert decode_cursor(encode_cursor(vector)) == vector
    for bad in ("12", "x1.!!!", "x1." + base64.urlsafe_b64encode(b"[1]").decode(),
                "x1." + base64.urlsafe_b64encode(b'{"a":[1,-1]}').decode(),
                "x1." + base64.urlsafe_b64encode(b'{"a":["x",true]}').decode()):
        with pytest.raises(InvalidRequestError):
            decode_cursor(bad)


def test_room_names() -> None:
    assert room_localpart(GID) == "mls-" + GID.hex()
    long_id = b"g" * 200
    assert room_localpart(long_id) == "mls-h" + hashlib.sha256(long_id).hexdigest()


def test_settings_identity() -> None:
    s = XmppSettings(jid="alice@example.org/phone", password=SecretStr("pw"))
    assert (s.bare_jid, s.full_jid, s.user_id) == (
        "alice@example.org", "alice@example.org/phone", "xmpp:alice@example.org")
    assert XmppSettings(jid="bob@example.org", password=SecretStr("pw"), device="tab").full_jid == \
        "bob@example.org/tab"
    with pytest.raises(ValueError):
        XmppSettings(jid="not-a-jid", password=SecretStr("pw"))


@pytest.mark.parametrize("relay", [Relay(0, "matrix:@bob:hs", "DEVICE"),
                                   Relay(2**63 - 1, "xmpp:bob@example.org", "bob@x/my tab"),
                                   Relay(5, "matrix:@bob:hs")])
def test_relay_fields_roundtrip_on_every_chunk(relay: Relay) -> None:
    env = Envelope(Kind.GROUP, os.urandom(3000), "bridge", GID, 4, relay=relay)
    els = env.chunks(1024)
    assert all(el.get("relay-seq") == str(relay.seq) and el.get("relay-for")
               == relay.relayed_for and el.get("relay-sender") == relay.sender for el in els)
    assert _roundtrip(env, 1024) == env
    plain = Envelope(Kind.GROUP, b"x", "phone", GID, 4).chunks()[0]
    assert not any(k.startswith("relay-") for k in plain.attrib)
    assert parse_element(plain).envelope.relay is None


@pytest.mark.parametrize("attrs, match", [
    ({"relay-seq": "-1", "relay-for": "x:y"}, "relay-seq"),
    ({"relay-seq": "1.5", "relay-for": "x:y"}, "relay-seq"),
    ({"relay-seq": str(2**63), "relay-for": "x:y"}, "relay seq"),
    ({"relay-seq": "1"}, "both"),
    ({"relay-for": "x:y"}, "both"),
    ({"relay-sender": "DEV"}, "both"),
    ({"relay-seq": "1", "relay-for": ""}, "identity"),
    ({"relay-seq": "1", "relay-for": "a b"}, "identity"),
    ({"relay-seq": "1", "relay-for": "x" * 513}, "identity"),
    ({"relay-seq": "1", "relay-for": "x:y", "relay-sender": "a\x01"}, "sender"),
    ({"relay-seq": "1", "relay-for": "x:y", "relay-sender": ""}, "sender"),
])
def test_malformed_relay_fields_are_typed_errors(attrs: dict[str, str], match: str) -> None:
    el = Envelope(Kind.GROUP, b"abc", "bridge", GID, 1).chunks()[0]
    for name, value in attrs.items():
        el.set(name, value)
    with pytest.raises(StanzaError, match=match):
        parse_element(el)


def test_relay_fields_only_on_group_items_and_checked_on_send() -> None:
    el = Envelope(Kind.WELCOME, b"w", "phone", GID).chunks()[0]
    el.set("relay-seq", "1")
    el.set("relay-for", "x:y")
    with pytest.raises(StanzaError, match="relay fields on a 'welcome'"):
        parse_element(el)
    for bad in ((-1, "x:y", None), (True, "x:y", None), (1, "", None), (1, "x:y", ""),
                (1, 5, None)):
        with pytest.raises(InvalidRequestError):
            Relay(*bad)


def test_relay_fields_must_agree_across_chunks() -> None:
    env = Envelope(Kind.GROUP, b"r" * 2048, "bridge", GID, 1, msg_id="m",
                   relay=Relay(1, "matrix:@a:hs"))
    first, second = env.chunks(1024)
    second.set("relay-seq", "2")
    asm = Reassembler()
    assert asm.add("bridge", parse_element(first), 0) is None
    with pytest.raises(StanzaError, match="disagree"):
        asm.add("bridge", parse_element(second), 1)


def test_control_items_carry_no_group() -> None:
    env = Envelope(Kind.CONTROL, b'{"op": "x"}' * 300, "bridge")
    els = env.chunks(1024)
    assert all(el.get("kind") == "control" and el.get("group") is None for el in els)
    assert _roundtrip(env, 1024) == env


def test_settings_bridge() -> None:
    s = XmppSettings(jid="alice@example.org/phone", password=SecretStr("pw"),
                     bridge="bridge@example.org")
    assert s.bridge == "bridge@example.org"
    assert XmppSettings(jid="a@b", password=SecretStr("pw")).bridge is None
    for bad in ("bridge", "bridge@example.org/res", "@example.org"):
        with pytest.raises(ValueError):
            XmppSettings(jid="a@b", password=SecretStr("pw"), bridge=bad)
