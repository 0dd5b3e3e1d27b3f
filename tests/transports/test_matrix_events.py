"""Unit tests of the Matrix wire mapping (transports/matrix/events.py) and error mapping."""

from __future__ import annotations

import hashlib

import pytest

from transports.base import InvalidRequestError
from transports.matrix import events as ev
from transports.matrix.api import MatrixApiError, _error, _retry_after


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", bytes(range(256)), b"a" * 1000])
def test_base64_roundtrip_is_unpadded_url_safe(data: bytes) -> None:
    text = ev.b64encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert ev.b64decode(text) == data


@pytest.mark.parametrize("text", ["AAA=", "A+/A", "A", "AB!C", 5, None, "AB"])
def test_base64_rejects_padding_other_alphabets_and_junk(text: object) -> None:
    if text == "AB":  # "AB" is not canonical (its last char carries unused bits)
        with pytest.raises(ev.MalformedEventError, match="canonical"):
            ev.b64decode(text)
        return
    with pytest.raises(ev.MalformedEventError):
        ev.b64decode(text)


def test_client_ids_and_identities() -> None:
    assert ev.client_id_of("@a/b:hs.org", "DEV") == "@a/b:hs.org/DEV"
    assert ev.split_client_id("@a/b:hs.org:8448/DEV") == ("@a/b:hs.org:8448", "DEV")
    assert ev.identity_of("@a:hs") == "matrix:@a:hs"
    assert ev.user_of_identity("matrix:@a:hs") == "@a:hs"
    for bad in ("@a:hs", "alice/DEV", "@a:hs/", "@a:hs/D EV", 3):
        with pytest.raises(InvalidRequestError):
            ev.split_client_id(bad)
    for bad_identity in ("xmpp:a@hs", "matrix:alice", "matrix:@a:hs/x"):
        with pytest.raises(InvalidRequestError):
            ev.user_of_identity(bad_identity)


def test_key_ids_have_exactly_one_colon() -> None:
    ref = bytes(range(32))
    kid = ev.key_id(1, ref)
    assert kid.count(":") == 1 and kid.startswith("mls.v1.1:")
    assert ev.parse_key_id(kid) == (1, ref)
    for bad in ("mls.v1.1:abc", "mls.v1.x:00", "signed_curve25519:AAAA", "mls.v1.1:0:0"):
        with pytest.raises(ev.MalformedEventError):
            ev.parse_key_id(bad)


def test_key_objects_mark_the_last_resort() -> None:
    kp = b"\x00\x01\x00\x05\x00\x01\x00\x03rest"
    assert ev.key_package_suite(kp) == 3
    assert ev.parse_key_object(ev.key_object(kp, last_resort=True)) == (kp, True)
    assert ev.parse_key_object(ev.key_object(kp, last_resort=False)) == (kp, False)
    with pytest.raises(InvalidRequestError):
        ev.key_package_suite(b"\x00\x01\x00\x02\x00\x01\x00\x01")
    with pytest.raises(ev.MalformedEventError):
        ev.parse_key_object("AAAA")


def test_message_content_inline_and_media() -> None:
    inline = ev.message_content(ev.Carried(inline=b"mls"), "DEV")
    assert inline["body"] == ev.FALLBACK_BODY and inline["ciphertext"] == "bWxz"
    assert ev.parse_message_content(inline) == ev.ParsedMessage("DEV", ev.Carried(inline=b"mls"))
    data = b"x" * 100_000
    ref = ev.media_ref("mxc://hs.org/abcDEF_1-2", data)
    media = ev.message_content(ev.Carried(media=ref), "DEV")
    assert "ciphertext" not in media
    parsed = ev.parse_message_content(media)
    assert parsed.carried.media == ref
    assert ref.verify(data) == data
    assert ref.server_and_id() == ("hs.org", "abcDEF_1-2")


@pytest.mark.parametrize("content, error", [
    ({"algorithm": "m.megolm.v1", "device_id": "D", "ciphertext": "AA"}, "algorithm"),
    ({"algorithm": ev.ALGORITHM, "ciphertext": "AAAA"}, "device_id"),
    ({"algorithm": ev.ALGORITHM, "device_id": "D"}, "base64"),
    ({"algorithm": ev.ALGORITHM, "device_id": "D", "ciphertext": ""}, "empty"),
    ({"algorithm": ev.ALGORITHM, "device_id": "D", "ciphertext_file": {
        "url": "https://evil", "size": 1, "sha256": ev.b64encode(b"\0" * 32)}}, "mxc"),
    ({"algorithm": ev.ALGORITHM, "device_id": "D", "ciphertext_file": {
        "url": "mxc://hs/x", "size": True, "sha256": ev.b64encode(b"\0" * 32)}}, "size"),
    ({"algorithm": ev.ALGORITHM, "device_id": "D", "ciphertext_file": {
        "url": "mxc://hs/x", "size": 5, "sha256": ev.b64encode(b"\0" * 31)}}, "SHA-256"),
    ("not an object", "algorithm"),
])
def test_malformed_message_contents_are_typed_errors(content: object, error: str) -> None:
    with pytest.raises(ev.MalformedEventError, match=error):
        ev.parse_message_content(content)


def test_oversized_media_reference_is_refused_before_download() -> None:
    ref = ev.MediaRef("mxc://hs/x", 1 << 30, hashlib.sha256(b"").digest()).to_json()
    with pytest.raises(ev.PayloadTooLargeError):
        ev.MediaRef.from_json(ref, max_size=1 << 20)


def test_media_integrity_is_checked() -> None:
    ref = ev.media_ref("mxc://hs/x", b"expected")
    with pytest.raises(ev.MediaIntegrityError):
        ref.verify(b"tampered")
    with pytest.raises(ev.MediaIntegrityError):
        ref.verify(b"expected!")


def test_welcome_and_group_state_contents() -> None:
    w = ev.welcome_content(ev.Carried(inline=b"welcome"), b"gid", "!r:hs", "$e")
    parsed = ev.parse_welcome_content(w)
    assert (parsed.group_id, parsed.room_id, parsed.after_event) == (b"gid", "!r:hs", "$e")
    with pytest.raises(ev.MalformedEventError, match="room_id"):
        ev.parse_welcome_content({**w, "room_id": "#alias:hs"})
    with pytest.raises(ev.MalformedEventError, match="after_event"):
        ev.parse_welcome_content({**w, "after_event": 7})
    assert ev.parse_group_state(ev.group_state_content(b"\x01\x02")) == b"\x01\x02"
    with pytest.raises(ev.MalformedEventError):
        ev.parse_group_state({"algorithm": ev.ALGORITHM, "group_id": ""})
    info = ev.group_info_content(3, ev.Carried(inline=b"gi"), None)
    assert ev.parse_group_info_content(info) == ev.ParsedGroupInfo(
        3, ev.Carried(inline=b"gi"), None)
    with pytest.raises(ev.MalformedEventError, match="epoch"):
        ev.parse_group_info_content({**info, "epoch": -1})


def test_sync_filter_asks_for_a_high_timeline_limit() -> None:
    flt = ev.sync_filter(500)
    assert flt["room"]["timeline"]["limit"] == 500
    assert ev.MESSAGE_EVENT in flt["room"]["timeline"]["types"]


def test_http_errors_are_typed() -> None:
    assert isinstance(_error(413, {"errcode": "M_TOO_LARGE", "error": "event too large"}),
                      ev.PayloadTooLargeError)
    err = _error(403, {"errcode": "M_FORBIDDEN", "error": "no"})
    assert isinstance(err, MatrixApiError) and err.errcode == "M_FORBIDDEN"
    assert isinstance(_error(500, None), MatrixApiError)
    assert _retry_after({"retry_after_ms": 250}) == 0.25
    assert _retry_after({"retry_after_ms": 10**9}) == 10.0
    assert _retry_after(None) == 1.0


# ------------------------------------------------------------------ bridge support


def test_relay_fields_roundtrip_in_message_content() -> None:
    relay = ev.Relay(5, "xmpp:carol@x", "xmpp:carol@x/phone")
    content = ev.message_content(ev.Carried(inline=b"mls"), "DEV", relay)
    assert content["relay"] == {"seq": 5, "sender_identity": "xmpp:carol@x",
                                "sender": "xmpp:carol@x/phone"}
    assert ev.parse_message_content(content).relay == relay
    no_client = ev.message_content(ev.Carried(inline=b"mls"), "DEV", ev.Relay(0, "m:x"))
    assert "sender" not in no_client["relay"]
    assert ev.parse_message_content(no_client).relay == ev.Relay(0, "m:x")
    plain = ev.message_content(ev.Carried(inline=b"mls"), "DEV")
    assert "relay" not in plain and ev.parse_message_content(plain).relay is None


@pytest.mark.parametrize("relay, error", [
    ({"seq": -1, "sender_identity": "m:x"}, "seq"),
    ({"seq": True, "sender_identity": "m:x"}, "seq"),
    ({"seq": "1", "sender_identity": "m:x"}, "seq"),
    ({"seq": 2**63, "sender_identity": "m:x"}, "seq"),
    ({"seq": 1.0, "sender_identity": "m:x"}, "seq"),
    ({"sender_identity": "m:x"}, "seq"),
    ({"seq": 1}, "sender_identity"),
    ({"seq": 1, "sender_identity": ""}, "sender_identity"),
    ({"seq": 1, "sender_identity": "x" * (ev.MAX_RELAY_ID + 1)}, "sender_identity"),
    ({"seq": 1, "sender_identity": "m:x\n"}, "sender_identity"),
    ({"seq": 1, "sender_identity": 7}, "sender_identity"),
    ({"seq": 1, "sender_identity": "m:x", "sender": ["d"]}, "relay.sender"),
    ({"seq": 1, "sender_identity": "m:x", "sender": ""}, "relay.sender"),
    ({"seq": 1, "sender_identity": "m:x", "extra": 1}, "relay object"),
    ("seq=1", "relay object"),
])
def test_malformed_relay_fields_make_the_message_malformed(relay: object, error: str) -> None:
    content = {**ev.message_content(ev.Carried(inline=b"mls"), "DEV"), "relay": relay}
    with pytest.raises(ev.MalformedEventError, match=error):
        ev.parse_message_content(content)


def test_control_contents_inline_and_media() -> None:
    inline = ev.control_content(ev.Carried(inline=b'{"op": "x"}'), "DEV")
    assert set(inline) == {"algorithm", "device_id", "control"}
    assert ev.parse_control_content(inline) == ev.ParsedControl(
        "DEV", ev.Carried(inline=b'{"op": "x"}'))
    ref = ev.media_ref("mxc://hs/abc", b"y" * 100_000)
    media = ev.control_content(ev.Carried(media=ref), "DEV")
    assert "control" not in media and ev.parse_control_content(media).carried.media == ref
    for bad, error in (({**inline, "algorithm": "other"}, "algorithm"),
                       ({**inline, "device_id": "a b"}, "device_id"),
                       ({**inline, "control": ""}, "empty"),
                       ({**inline, "control": "A=="}, "base64")):
        with pytest.raises(ev.MalformedEventError, match=error):
            ev.parse_control_content(bad)
    # a control body is not a Welcome, and a Welcome is not a control body
    with pytest.raises(ev.MalformedEventError):
        ev.parse_welcome_content(inline)
    welcome = ev.welcome_content(ev.Carried(inline=b"w"), b"gid", "!r:hs", None)
    with pytest.raises(ev.MalformedEventError):
        ev.parse_control_content(welcome)
    assert ev.CONTROL_EVENT not in (ev.WELCOME_EVENT, ev.MESSAGE_EVENT)


def test_control_recipients_must_be_matrix_identities() -> None:
    assert ev.require_identity("matrix:@b:hs") == "@b:hs"
    for bad in ("xmpp:b@hs", "@b:hs", "matrix:b", None):
        with pytest.raises(InvalidRequestError):
            ev.require_identity(bad)


def test_group_hints_of_invites() -> None:
    gid = bytes(range(16))
    assert ev.parse_group_hint(ev.group_hint(gid)) == gid
    assert ev.parse_group_hint(f"please join: {ev.group_hint(gid)}") == gid
    for bad in (None, 5, "MLS group", "MLS group abc", "hello"):
        assert ev.parse_group_hint(bad) is None


def test_a_message_id_travels_in_the_content_and_a_malformed_one_is_ignored() -> None:
    content = ev.message_content(ev.Carried(inline=b"mls"), "DEV", message_id="m-1")
    assert ev.parse_message_content(content).message_id == "m-1"
    assert ev.parse_message_content({**content, "msg_id": "bad id"}).message_id is None
    assert ev.parse_message_content({**content, "msg_id": 7}).message_id is None
    assert "msg_id" not in ev.message_content(ev.Carried(inline=b"mls"), "DEV")
