"""The wire mapping of MLS onto Matrix (see ``docs/matrix.md``).

Pure functions, no I/O: event types, content builders and strict parsers. Shapes follow
MSC4256 ("MLS mode") where they work on an unmodified homeserver: the MLSMessage travels
as unpadded URL-safe base64 in the event content, under event types of the project's own
unstable prefix ``org.mlsbridge``. Payloads too large for an event (the homeserver refuses
events and to-device messages over 65,536 bytes) go through the media repository and the
event carries a :class:`MediaRef` (``mxc://`` URI, size, SHA-256) instead.

Identifiers: a Matrix device is the MLS client ``<user id>/<device id>``; the MLS
credential identity of a user is ``matrix:<user id>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transports.base import InvalidRequestError, TransportError

PREFIX = "org.mlsbridge.mls"
#: room event carrying a group message (Commit, proposal or application message)
MESSAGE_EVENT = f"{PREFIX}.message"
#: to-device message carrying a Welcome
WELCOME_EVENT = f"{PREFIX}.welcome"
#: to-device message carrying a bridge control body (docs/bridge.md)
CONTROL_EVENT = "org.mlsbridge.control"
#: room state binding the room to one MLS group (state_key "")
GROUP_STATE = f"{PREFIX}.group"
#: room state holding a writer's latest GroupInfo for external joins; the state key is
#: the writer's own user id (the room auth rules refuse a state key that starts with
#: ``@`` and is not the sender's), older clients wrote state key ``""``
GROUP_INFO_STATE = f"{PREFIX}.group_info"
#: the state key of GroupInfo written by clients before per-writer keys
LEGACY_GROUP_INFO_KEY = ""
#: power levels our event types need (``m.room.power_levels`` ``events``): every member
#: sends messages and publishes its GroupInfo at level 0, the binding needs 100
MLS_EVENT_LEVELS: Mapping[str, int] = {MESSAGE_EVENT: 0, GROUP_INFO_STATE: 0,
                                       GROUP_STATE: 100}
#: the ``algorithm`` field of our contents (our prefix instead of MSC4256's ``m.*`` names)
ALGORITHM = "org.mlsbridge.mls.v1"
#: what ordinary clients show instead of the ciphertext
FALLBACK_BODY = "[MLS-encrypted message]"
IDENTITY_PREFIX = "matrix:"

#: the homeserver's limit on a whole event / to-device message (Synapse, spec §"Size limits")
EVENT_SIZE_LIMIT = 65_536
#: raw payloads up to this size travel inline: base64 makes them 4/3 larger, and the rest
#: of the event (ids, signatures, hashes, unsigned) must still fit under the limit
INLINE_LIMIT = 45_000
#: longest relayed identity / client id accepted in relay fields
MAX_RELAY_ID = 512
#: largest hub sequence number (SQLite's signed 64-bit integers)
MAX_RELAY_SEQ = 2**63 - 1
#: largest media payload a receiver downloads (a hostile sender cannot exhaust memory)
DEFAULT_MAX_MEDIA = 16 * 1024 * 1024

_USER_ID = re.compile(r"^@[^:\s]+:[^/\s]+$")
_DEVICE_ID = re.compile(r"^[^\s/]{1,255}$")
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MXC = re.compile(r"^mxc://([A-Za-z0-9.\-:\[\]]+)/([A-Za-z0-9_\-]+)$")
_KEY_ID = re.compile(r"^mls\.v1\.([0-9]{1,5}):([0-9a-f]{2,256})$")


class MalformedEventError(InvalidRequestError):
    """An event, to-device message or state content does not follow the wire mapping."""


class PayloadTooLargeError(InvalidRequestError):
    """A payload exceeds what may be sent or accepted (HTTP 413 ``M_TOO_LARGE``, or a
    media reference above the receiver's limit)."""


class MediaIntegrityError(TransportError):
    """Downloaded media does not match the SHA-256 or size its event announced."""


# ------------------------------------------------------------------------ base64


def b64encode(data: bytes) -> str:
    """Unpadded URL-safe base64 (RFC 4648 §5), as MSC4256 uses for MLS messages."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: object, what: str = "field") -> bytes:
    """Strict inverse of :func:`b64encode`: no padding, no other alphabet, no junk."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_\-]*", text):
        raise MalformedEventError(f"{what} is not unpadded URL-safe base64")
    if len(text) % 4 == 1:
        raise MalformedEventError(f"{what} has an impossible base64 length")
    try:
        out = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedEventError(f"{what} is not valid base64") from None
    if b64encode(out) != text:
        raise MalformedEventError(f"{what} is not canonical base64")
    return out


# ------------------------------------------------------------------------ identifiers


def identity_of(user_id: str) -> str:
    """The MLS credential identity of a Matrix user: ``matrix:<user id>``."""
    return IDENTITY_PREFIX + user_id


def user_of_identity(identity: str) -> str:
    """``matrix:@u:hs`` → ``@u:hs`` (a bare user id is accepted as well)."""
    user = identity.removeprefix(IDENTITY_PREFIX) if isinstance(identity, str) else ""
    if not _USER_ID.fullmatch(user):
        raise InvalidRequestError(f"{identity!r} is not matrix:<user id>")
    return user


def client_id_of(user_id: str, device_id: str) -> str:
    """The MLS client id of a device: ``<user id>/<device id>``."""
    return f"{user_id}/{device_id}"


def split_client_id(client_id: object) -> tuple[str, str]:
    """``@u:hs/DEVICE`` → (``@u:hs``, ``DEVICE``). The server name holds no ``/``, so the
    first ``/`` after the first ``:`` ends the user id (localparts may contain ``/``)."""
    if not isinstance(client_id, str) or ":" not in client_id:
        raise InvalidRequestError(f"{client_id!r} is not <user id>/<device id>")
    slash = client_id.find("/", client_id.index(":"))
    user, device = client_id[:slash], client_id[slash + 1:]
    if slash < 0 or not _USER_ID.fullmatch(user) or not _DEVICE_ID.fullmatch(device):
        raise InvalidRequestError(f"{client_id!r} is not <user id>/<device id>")
    return user, device


def key_algorithm(suite: int) -> str:
    """The one-time-key algorithm under which KeyPackages of ``suite`` are published
    (MSC4256: ``mls.v1.<cipher suite>``)."""
    return f"mls.v1.{suite}"


def key_id(suite: int, ref: bytes) -> str:
    """``mls.v1.<suite>:<KeyPackageRef hex>`` (Synapse wants exactly one colon)."""
    return f"{key_algorithm(suite)}:{ref.hex()}"


def parse_key_id(value: str) -> tuple[int, bytes]:
    match = _KEY_ID.fullmatch(value)
    if match is None or len(match.group(2)) % 2:
        raise MalformedEventError(f"{value!r} is not an MLS one-time key id")
    return int(match.group(1)), bytes.fromhex(match.group(2))


def key_package_suite(key_package: bytes) -> int:
    """The cipher suite of a serialized ``MLSMessage(KeyPackage)`` (RFC 9420 §6, §10:
    version, wire_format = mls_key_package (5), then KeyPackage.version, cipher_suite)."""
    if len(key_package) < 8 or key_package[:4] != b"\x00\x01\x00\x05":
        raise InvalidRequestError("not a serialized MLSMessage(KeyPackage)")
    return int.from_bytes(key_package[6:8], "big")


def key_object(key_package: bytes, *, last_resort: bool) -> dict[str, Any]:
    """A one-time/fallback key object (the spec's ``KeyObject``; ``fallback`` marks the
    last-resort KeyPackage, as the spec marks fallback keys)."""
    obj: dict[str, Any] = {"key": b64encode(key_package), "signatures": {}}
    if last_resort:
        obj["fallback"] = True
    return obj


def parse_key_object(value: object) -> tuple[bytes, bool]:
    """(KeyPackage bytes, last_resort) from a claimed key object."""
    if not isinstance(value, Mapping):
        raise MalformedEventError("a claimed MLS key is not a key object")
    return b64decode(value.get("key"), "key"), value.get("fallback") is True


# ------------------------------------------------------------------------ media


@dataclass(frozen=True)
class MediaRef:
    """A payload stored in the media repository: its URI, size and SHA-256."""

    url: str
    size: int
    sha256: bytes

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "size": self.size, "sha256": b64encode(self.sha256)}

    @classmethod
    def from_json(cls, value: object, max_size: int = DEFAULT_MAX_MEDIA) -> MediaRef:
        if not isinstance(value, Mapping):
            raise MalformedEventError("file is not an object")
        url, size = value.get("url"), value.get("size")
        if not isinstance(url, str) or _MXC.fullmatch(url) is None:
            raise MalformedEventError("file.url is not an mxc:// URI")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise MalformedEventError("file.size is not a positive integer")
        if size > max_size:
            raise PayloadTooLargeError(f"referenced media of {size} bytes exceeds "
                                       f"the limit of {max_size}")
        digest = b64decode(value.get("sha256"), "file.sha256")
        if len(digest) != 32:
            raise MalformedEventError("file.sha256 is not a SHA-256 digest")
        return cls(url, size, digest)

    def server_and_id(self) -> tuple[str, str]:
        match = _MXC.fullmatch(self.url)
        assert match is not None  # checked in from_json / made by media_ref
        return match.group(1), match.group(2)

    def verify(self, data: bytes) -> bytes:
        """``data`` if it is exactly what the reference announced."""
        if len(data) != self.size or hashlib.sha256(data).digest() != self.sha256:
            raise MediaIntegrityError(f"media {self.url} does not match its SHA-256/size")
        return data


def media_ref(url: str, data: bytes) -> MediaRef:
    if _MXC.fullmatch(url) is None:
        raise MalformedEventError(f"the media repository returned a bad URI {url!r}")
    return MediaRef(url, len(data), hashlib.sha256(data).digest())


@dataclass(frozen=True)
class Carried:
    """A payload as an event carries it: inline bytes or a media reference."""

    inline: bytes | None = None
    media: MediaRef | None = None


def carry_json(carried: Carried, field: str) -> dict[str, Any]:
    """``{field: base64}`` or ``{field + "_file": MediaRef}``."""
    if carried.media is not None:
        return {f"{field}_file": carried.media.to_json()}
    assert carried.inline is not None
    return {field: b64encode(carried.inline)}


def parse_carried(content: Mapping[str, Any], field: str,
                  max_media: int = DEFAULT_MAX_MEDIA) -> Carried:
    if f"{field}_file" in content:
        return Carried(media=MediaRef.from_json(content[f"{field}_file"], max_media))
    data = b64decode(content.get(field), field)
    if not data:
        raise MalformedEventError(f"{field} is empty")
    return Carried(inline=data)


# ------------------------------------------------------------------------ contents


def message_content(carried: Carried, device_id: str,
                    relay: Relay | None = None,
                    message_id: str | None = None) -> dict[str, Any]:
    """Content of a :data:`MESSAGE_EVENT` (MSC4256 shape: ``algorithm`` + base64
    ``ciphertext``; ``device_id`` names the sending device, ``body`` is the fallback).
    A bridge's hub item adds ``relay`` (:meth:`Relay.to_json`); a submission with a
    message id adds ``msg_id`` (receivers deliver once per sender and id)."""
    out = {"algorithm": ALGORITHM, "body": FALLBACK_BODY, "device_id": device_id,
           **carry_json(carried, "ciphertext")}
    if message_id is not None:
        out["msg_id"] = message_id
    if relay is not None:
        out["relay"] = relay.to_json()
    return out


@dataclass(frozen=True)
class Relay:
    """The relay fields of a hub item (docs/bridge.md): the hub's sequence number, the
    identity of the member who offered it and its client id, as the poster wrote them."""

    seq: int
    sender_identity: str
    sender: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "sender_identity": self.sender_identity}
        if self.sender is not None:
            out["sender"] = self.sender
        return out

    @classmethod
    def from_json(cls, value: object) -> Relay:
        """Strict: ``seq`` a non-negative integer, ``sender_identity`` (and the optional
        ``sender``) a non-empty string of at most :data:`MAX_RELAY_ID` characters."""
        if not isinstance(value, Mapping) or set(value) - {"seq", "sender_identity",
                                                          "sender"}:
            raise MalformedEventError("relay is not a relay object")
        seq = value.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_RELAY_SEQ:
            raise MalformedEventError("relay.seq is not a non-negative integer")
        sender = value.get("sender")
        return cls(seq, _relay_id(value.get("sender_identity"), "relay.sender_identity"),
                   None if sender is None else _relay_id(sender, "relay.sender"))


def _relay_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_RELAY_ID \
            or not value.isprintable():
        raise MalformedEventError(f"{what} is not a string of 1 to {MAX_RELAY_ID} "
                                  "printable characters")
    return value


@dataclass(frozen=True)
class ParsedMessage:
    device_id: str
    carried: Carried
    relay: Relay | None = None
    message_id: str | None = None


def parse_message_content(content: object,
                          max_media: int = DEFAULT_MAX_MEDIA) -> ParsedMessage:
    if not isinstance(content, Mapping) or content.get("algorithm") != ALGORITHM:
        raise MalformedEventError("not an MLS message content (algorithm)")
    device = content.get("device_id")
    if not isinstance(device, str) or not _DEVICE_ID.fullmatch(device):
        raise MalformedEventError("device_id is missing or invalid")
    relay = Relay.from_json(content["relay"]) if "relay" in content else None
    msg_id = content.get("msg_id")  # optional: a malformed one is ignored
    if not isinstance(msg_id, str) or not _MESSAGE_ID.fullmatch(msg_id):
        msg_id = None
    return ParsedMessage(device, parse_carried(content, "ciphertext", max_media), relay,
                         msg_id)


def welcome_content(carried: Carried, group_id: bytes, room_id: str,
                    after_event: str | None) -> dict[str, Any]:
    """Content of a :data:`WELCOME_EVENT` to-device message. ``after_event`` is the
    Commit that added the recipient: room events after it follow the Welcome."""
    out = {"algorithm": ALGORITHM, "group_id": b64encode(group_id), "room_id": room_id,
           **carry_json(carried, "welcome")}
    if after_event is not None:
        out["after_event"] = after_event
    return out


@dataclass(frozen=True)
class ParsedWelcome:
    group_id: bytes
    room_id: str
    after_event: str | None
    carried: Carried


def parse_welcome_content(content: object,
                          max_media: int = DEFAULT_MAX_MEDIA) -> ParsedWelcome:
    if not isinstance(content, Mapping) or content.get("algorithm") != ALGORITHM:
        raise MalformedEventError("not an MLS Welcome content (algorithm)")
    room_id, after = content.get("room_id"), content.get("after_event")
    if not isinstance(room_id, str) or not room_id.startswith("!"):
        raise MalformedEventError("room_id is missing or invalid")
    if after is not None and (not isinstance(after, str) or not after.startswith("$")):
        raise MalformedEventError("after_event is not an event id")
    group_id = b64decode(content.get("group_id"), "group_id")
    if not group_id:
        raise MalformedEventError("group_id is empty")
    return ParsedWelcome(group_id, room_id, after,
                         parse_carried(content, "welcome", max_media))


def control_content(carried: Carried, device_id: str) -> dict[str, Any]:
    """Content of a :data:`CONTROL_EVENT` to-device message: the body (``control`` or
    ``control_file``) and the sending device."""
    return {"algorithm": ALGORITHM, "device_id": device_id, **carry_json(carried, "control")}


@dataclass(frozen=True)
class ParsedControl:
    device_id: str
    carried: Carried


def parse_control_content(content: object,
                          max_media: int = DEFAULT_MAX_MEDIA) -> ParsedControl:
    if not isinstance(content, Mapping) or content.get("algorithm") != ALGORITHM:
        raise MalformedEventError("not an MLS control content (algorithm)")
    device = content.get("device_id")
    if not isinstance(device, str) or not _DEVICE_ID.fullmatch(device):
        raise MalformedEventError("device_id is missing or invalid")
    return ParsedControl(device, parse_carried(content, "control", max_media))


def require_identity(identity: object) -> str:
    """The Matrix user id of a network-qualified identity ``matrix:<user id>`` (the
    prefix is required: identities of other networks are refused)."""
    if not isinstance(identity, str) or not identity.startswith(IDENTITY_PREFIX):
        raise InvalidRequestError(f"{identity!r} is not an identity matrix:<user id>")
    return user_of_identity(identity)


#: how an invite names the group its room is bound to (the invite's ``reason``, shown
#: in the invitee's stripped state; the topic of our rooms says the same)
_GROUP_HINT = re.compile(r"MLS group ([0-9a-f]{2,512})")


def group_hint(group_id: bytes) -> str:
    """The invite reason / room topic that names ``group_id``."""
    return f"MLS group {group_id.hex()}"


def parse_group_hint(text: object) -> bytes | None:
    """The group an invite reason or room topic names, if any (only a hint: the room's
    binding is checked after joining)."""
    if not isinstance(text, str):
        return None
    match = _GROUP_HINT.search(text)
    if match is None or len(match.group(1)) % 2:
        return None
    return bytes.fromhex(match.group(1))


def group_state_content(group_id: bytes) -> dict[str, Any]:
    """The room ↔ group binding (state :data:`GROUP_STATE`, state_key "")."""
    return {"algorithm": ALGORITHM, "group_id": b64encode(group_id)}


def parse_group_state(content: object) -> bytes:
    if not isinstance(content, Mapping) or content.get("algorithm") != ALGORITHM:
        raise MalformedEventError("not an MLS group binding")
    group_id = b64decode(content.get("group_id"), "group_id")
    if not group_id:
        raise MalformedEventError("group_id is empty")
    return group_id


def group_info_content(epoch: int, info: Carried, tree: Carried | None) -> dict[str, Any]:
    """State :data:`GROUP_INFO_STATE`: the GroupInfo of ``epoch`` (and the tree)."""
    out = {"algorithm": ALGORITHM, "epoch": epoch, **carry_json(info, "group_info")}
    if tree is not None:
        out.update(carry_json(tree, "ratchet_tree"))
    return out


@dataclass(frozen=True)
class ParsedGroupInfo:
    epoch: int
    info: Carried
    tree: Carried | None


def parse_group_info_content(content: object,
                             max_media: int = DEFAULT_MAX_MEDIA) -> ParsedGroupInfo:
    if not isinstance(content, Mapping) or content.get("algorithm") != ALGORITHM:
        raise MalformedEventError("not an MLS GroupInfo content")
    epoch = content.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise MalformedEventError("epoch is not a non-negative integer")
    has_tree = "ratchet_tree" in content or "ratchet_tree_file" in content
    return ParsedGroupInfo(epoch, parse_carried(content, "group_info", max_media),
                           parse_carried(content, "ratchet_tree", max_media)
                           if has_tree else None)


def sync_filter(timeline_limit: int) -> dict[str, Any]:
    """A /sync filter: only our event types and memberships, a high timeline limit (the
    default of 10 marks busy timelines ``limited``), nothing else."""
    types = [MESSAGE_EVENT, GROUP_STATE, GROUP_INFO_STATE, "m.room.member"]
    return {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "timeline": {"limit": timeline_limit, "types": types},
            "state": {"types": [GROUP_STATE, "m.room.member"], "lazy_load_members": False},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    }


def room_event_filter() -> dict[str, Any]:
    """The RoomEventFilter for ``/messages`` backfill (same types as the timeline)."""
    return {"types": [MESSAGE_EVENT, GROUP_STATE, GROUP_INFO_STATE, "m.room.member"]}


def group_info_filter() -> dict[str, Any]:
    """The RoomEventFilter that reads a room's GroupInfo history with ``/messages``."""
    return {"types": [GROUP_INFO_STATE]}


def group_info_state_key(user_id: str) -> str:
    """Where ``user_id`` publishes its GroupInfo: under its own user id, which no other
    account may write (room versions spec, "Authorization rules": a state key starting
    with ``@`` must be the sender's)."""
    return user_id
