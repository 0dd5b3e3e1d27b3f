"""The stanza elements of the MLS-over-XMPP mapping (see ``docs/xmpp.md``).

Every MLS item travels in one element ``<mls/>`` of namespace
``https://mlsbridge.org/protocol/xmpp/0`` whose text is the base64 (RFC 4648 §4) of the
bytes and whose attributes say what it is:

========== ================================================================ ===========
``kind``   ``group`` (an MLSMessage in the room's total order), ``welcome``,  always
           ``group-info`` (GroupInfo + optional ratchet tree, in the room),
           ``claim`` (a KeyPackage was claimed; to its owner), ``control`` (a
           bridge control body, direct to an account)
``group``  the MLS group_id, base64url without padding                       not claim,
                                                                              control
``epoch``  decimal epoch of the message / GroupInfo                           group,
                                                                              group-info
``device`` the sending device (XMPP resource) for group items and          always
           ``control``; the target device for ``welcome`` and ``claim``
``after``  archive id of the Commit that added the recipient (welcome)       optional
``ref``    KeyPackageRef hex (claim)                                          claim
``msg``    message id shared by the chunks of one payload                    always
``part``,  chunk index (0-based) and chunk count                             always
``parts``
``sha256`` hex SHA-256 of the whole payload, checked after reassembly        always
``relay-`` a bridge's hub item (docs/bridge.md): ``relay-seq`` the hub sequence  group,
``seq``,   number (decimal, < 2^63), ``relay-for`` the origin identity        optional,
``relay-`` (e.g. ``matrix:@bob:hs``), ``relay-sender`` the origin client id   seq and
``for``,   (optional); on every chunk                                         for
``relay-``                                                                    together
``sender``
========== ================================================================ ===========

The namespace belongs to this project (``urn:xmpp:`` is reserved for XSF specifications).
Payloads larger than one stanza may carry are split into ``parts`` chunks of at most
``chunk_size`` raw bytes, each in its own stanza, and reassembled by ``msg`` id
(:class:`Reassembler`); servers refuse stanzas above their size limit (Prosody:
``c2s_stanza_size_limit``, 256 KiB by default) and close the sender's stream.

This module is pure: it builds and parses :mod:`xml.etree` elements, so it is testable
without a connection. :class:`MLSElement` declares the element to slixmpp.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import ClassVar

from slixmpp.xmlstream import ElementBase

from transports.base import InvalidRequestError, TransportError

NS = "https://mlsbridge.org/protocol/xmpp/0"
TAG = f"{{{NS}}}mls"
#: XEP-0334 message processing hints: archive body-less messages (servers.md)
HINTS_NS = "urn:xmpp:hints"
#: XEP-0380 explicit message encryption
EME_NS = "urn:xmpp:eme:0"
#: XEP-0359 unique and stable stanza ids
SID_NS = "urn:xmpp:sid:0"
#: the fallback body legacy clients show
FALLBACK_BODY = "[MLS-encrypted message]"
#: raw bytes per chunk: 96 KiB is 128 KiB of base64, well below a 256 KiB stanza limit
DEFAULT_CHUNK_SIZE = 96 * 1024
#: the largest payload accepted (sent or reassembled)
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
MAX_PARTS = 1024

_ID = re.compile(r"[0-9A-Za-z_.:-]{1,128}")
_HEX = re.compile(r"[0-9a-f]{2,256}")
_B64URL = re.compile(r"[0-9A-Za-z_-]{1,600}")
_INT = re.compile(r"[0-9]{1,20}")
#: relay fields: an identity has no whitespace or control character, a client id (an
#: XMPP resource may hold spaces) no control character; both at most 512 characters
_IDENTITY = re.compile(r"[^\s\x00-\x1f\x7f]{1,512}")
_CLIENT = re.compile(r"[^\x00-\x1f\x7f]{1,512}")
MAX_SEQ = 2**63 - 1


class StanzaError(TransportError):
    """A received ``<mls/>`` element is malformed (bad attribute, base64, hash, size)."""


class Kind(StrEnum):
    GROUP = "group"
    WELCOME = "welcome"
    GROUP_INFO = "group-info"
    CLAIM = "claim"
    #: a bridge control body (docs/bridge.md) sent directly to an account
    CONTROL = "control"


class MLSElement(ElementBase):
    """The ``<mls/>`` element for slixmpp's stanza registry (``msg['mls']``)."""

    name = "mls"
    namespace = NS
    plugin_attrib = "mls"
    interfaces: ClassVar[set[str]] = {"kind", "group", "epoch", "device", "after", "ref",
                                      "msg", "part", "parts", "sha256", "relay-seq",
                                      "relay-for", "relay-sender"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Decode a base64url attribute (RFC 4648 §5, no padding); StanzaError when it is
    not one (e.g. a length of 1 mod 4, which no byte string encodes to)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise StanzaError("bad base64url attribute")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise StanzaError("bad base64url attribute") from None


@dataclass(frozen=True)
class Relay:
    """The hub fields a bridge adds to a group message it relays: the hub's sequence
    number, the network identity of the member who offered it and that member's
    client id (None when unknown)."""

    seq: int
    relayed_for: str
    sender: str | None = None

    def __post_init__(self) -> None:
        check_relay(self.seq, self.relayed_for, self.sender, InvalidRequestError)


def check_relay(seq: object, relayed_for: object, sender: object,
                error: type[TransportError]) -> None:
    """Raise ``error`` unless ``seq`` is an int in [0, 2^63), ``relayed_for`` an identity
    and ``sender`` None or a client id of sane length and characters."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise error(f"relay seq must be an int in [0, {MAX_SEQ}]")
    if not isinstance(relayed_for, str) or not _IDENTITY.fullmatch(relayed_for):
        raise error("relayed identity must be 1-512 characters without whitespace or "
                    "control characters")
    if sender is not None and (not isinstance(sender, str) or not _CLIENT.fullmatch(sender)):
        raise error("relayed sender must be None or 1-512 characters without control "
                    "characters")


@dataclass(frozen=True)
class Envelope:
    """One logical item (before chunking / after reassembly)."""

    kind: Kind
    payload: bytes
    device: str
    group_id: bytes | None = None
    epoch: int | None = None
    after: str | None = None
    ref: str | None = None
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: hub item fields of a relayed group message (docs/bridge.md), None otherwise
    relay: Relay | None = None

    def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE,
               max_payload: int = DEFAULT_MAX_PAYLOAD) -> list[ET.Element]:
        """The ``<mls/>`` elements carrying this envelope, in order."""
        if chunk_size < 1:
            raise InvalidRequestError("chunk_size must be positive")
        if len(self.payload) > max_payload:
            raise InvalidRequestError(f"payload of {len(self.payload)} bytes exceeds the "
                                      f"limit of {max_payload}")
        pieces = [self.payload[i:i + chunk_size]
                  for i in range(0, len(self.payload), chunk_size)] or [b""]
        if len(pieces) > MAX_PARTS:
            raise InvalidRequestError("payload needs too many chunks")
        digest = hashlib.sha256(self.payload).hexdigest()
        return [self._element(i, len(pieces), digest, piece) for i, piece in enumerate(pieces)]

    def _element(self, part: int, parts: int, digest: str, piece: bytes) -> ET.Element:
        el = ET.Element(TAG, {"kind": self.kind.value, "device": self.device,
                              "msg": self.msg_id, "part": str(part), "parts": str(parts),
                              "sha256": digest})
        if self.group_id is not None:
            el.set("group", b64url(self.group_id))
        if self.epoch is not None:
            el.set("epoch", str(self.epoch))
        if self.after is not None:
            el.set("after", self.after)
        if self.ref is not None:
            el.set("ref", self.ref)
        if self.relay is not None:
            el.set("relay-seq", str(self.relay.seq))
            el.set("relay-for", self.relay.relayed_for)
            if self.relay.sender is not None:
                el.set("relay-sender", self.relay.sender)
        el.text = base64.b64encode(piece).decode("ascii")
        return el


@dataclass(frozen=True)
class Chunk:
    """One parsed ``<mls/>`` element."""

    envelope: Envelope  # payload = this chunk's bytes only
    part: int
    parts: int
    sha256: str


def _attr(el: ET.Element, name: str, pattern: re.Pattern[str], *,
          required: bool = True) -> str | None:
    value = el.get(name)
    if value is None:
        if required:
            raise StanzaError(f"<mls/> lacks the {name!r} attribute")
        return None
    if not pattern.fullmatch(value):
        raise StanzaError(f"<mls/> has a malformed {name!r} attribute")
    return value


def parse_element(el: ET.Element, max_chunk: int = 2 * DEFAULT_CHUNK_SIZE) -> Chunk:
    """Parse one received ``<mls/>`` element; StanzaError when anything is off."""
    if el.tag != TAG:
        raise StanzaError("not an <mls/> element")
    try:
        kind = Kind(el.get("kind", ""))
    except ValueError:
        raise StanzaError("<mls/> has an unknown kind") from None
    device = _attr(el, "device", _ID)
    msg_id = _attr(el, "msg", _ID)
    digest = _attr(el, "sha256", _HEX)
    part, parts = (int(_attr(el, a, _INT) or 0) for a in ("part", "parts"))
    if not 0 <= part < parts <= MAX_PARTS:
        raise StanzaError("<mls/> has an inconsistent part/parts")
    group = _attr(el, "group", _B64URL, required=kind not in (Kind.CLAIM, Kind.CONTROL))
    epoch = _attr(el, "epoch", _INT, required=kind in (Kind.GROUP, Kind.GROUP_INFO))
    text = (el.text or "").strip()
    if len(text) > (max_chunk * 4) // 3 + 4:
        raise StanzaError("<mls/> chunk is larger than allowed")
    try:
        piece = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise StanzaError("<mls/> text is not base64") from None
    env = Envelope(kind=kind, payload=piece, device=device or "",
                   group_id=None if group is None else unb64url(group),
                   epoch=None if epoch is None else int(epoch),
                   after=_attr(el, "after", _ID, required=False),
                   ref=_attr(el, "ref", _HEX, required=kind is Kind.CLAIM),
                   msg_id=msg_id or "", relay=_relay(el, kind))
    return Chunk(env, part, parts, digest or "")


def _relay(el: ET.Element, kind: Kind) -> Relay | None:
    """The relay fields of a chunk: absent, or ``relay-seq`` and ``relay-for`` (with an
    optional ``relay-sender``) on a ``group`` item; anything else is malformed."""
    seq, relayed_for, sender = (el.get(f"relay-{n}") for n in ("seq", "for", "sender"))
    if seq is None and relayed_for is None and sender is None:
        return None
    if kind is not Kind.GROUP:
        raise StanzaError(f"relay fields on a {kind.value!r} item")
    if seq is None or relayed_for is None:
        raise StanzaError("relay fields need both relay-seq and relay-for")
    if not _INT.fullmatch(seq):
        raise StanzaError("<mls/> has a malformed 'relay-seq' attribute")
    check_relay(int(seq), relayed_for, sender, StanzaError)
    return Relay(int(seq), relayed_for, sender)


@dataclass
class _Pending:
    first: int  # caller's index of the first chunk seen (for safe cursors)
    parts: int
    sha256: str
    relay: Relay | None
    pieces: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    """Reassembles chunked envelopes of one source (a room or an account archive).

    Keyed by (sending identity, msg id), so one sender cannot complete or spoil another
    sender's message. ``index`` is the caller's ordinal of the chunk in its source;
    :meth:`oldest_pending` tells the earliest index a resume must restart from so no
    half-received message is skipped."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD, max_pending: int = 64,
                 max_total: int | None = None) -> None:
        self.max_payload = max_payload
        self._max_pending = max_pending
        #: bytes held by all unfinished messages together (default: 4 whole payloads),
        #: so senders that never finish cannot make us hold max_pending * max_payload
        self.max_total = 4 * max_payload if max_total is None else max_total
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._held = 0

    def add(self, sender: str, chunk: Chunk, index: int) -> Envelope | None:
        """The whole envelope once its last chunk arrived, else None. StanzaError on a
        chunk that disagrees with earlier ones, an oversized or corrupt payload."""
        if chunk.parts == 1:
            return self._finish(chunk, {0: chunk.envelope.payload})
        key = (sender, chunk.envelope.msg_id)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self._max_pending:
                self._drop(min(self._pending, key=lambda k: self._pending[k].first))
            pending = self._pending[key] = _Pending(index, chunk.parts, chunk.sha256,
                                                    chunk.envelope.relay)
        elif (pending.parts, pending.sha256, pending.relay) != (
                chunk.parts, chunk.sha256, chunk.envelope.relay):
            self._drop(key)
            raise StanzaError("chunks of one message disagree on parts/sha256/relay")
        old = pending.pieces.get(chunk.part, b"")
        pending.pieces[chunk.part] = chunk.envelope.payload
        self._held += len(chunk.envelope.payload) - len(old)
        if sum(len(p) for p in pending.pieces.values()) > self.max_payload:
            self._drop(key)
            raise StanzaError("chunked payload exceeds the size limit")
        while self._held > self.max_total and len(self._pending) > 1:
            self._drop(min((k for k in self._pending if k != key),
                           key=lambda k: self._pending[k].first))
        if len(pending.pieces) < pending.parts:
            return None
        self._drop(key)
        return self._finish(chunk, pending.pieces)

    def _drop(self, key: tuple[str, str]) -> None:
        pending = self._pending.pop(key)
        self._held -= sum(len(p) for p in pending.pieces.values())

    @staticmethod
    def _finish(chunk: Chunk, pieces: dict[int, bytes]) -> Envelope:
        payload = b"".join(pieces[i] for i in range(chunk.parts))
        if hashlib.sha256(payload).hexdigest() != chunk.sha256:
            raise StanzaError("reassembled payload does not match its sha256")
        return replace(chunk.envelope, payload=payload)

    def oldest_pending(self) -> int | None:
        return min((p.first for p in self._pending.values()), default=None)

    def clear(self) -> None:
        self._pending.clear()
        self._held = 0


def room_localpart(group_id: bytes) -> str:
    """The room bound to ``group_id``: ``mls-<hex>`` (``mls-h<SHA-256 hex>`` for ids over
    128 bytes). The name itself binds room and group: every member derives it."""
    if len(group_id) <= 128:
        return f"mls-{group_id.hex()}"
    return f"mls-h{hashlib.sha256(group_id).hexdigest()}"


def group_of_room(localpart: str) -> bytes | None:
    """The group_id a room's localpart names (None for hashed or foreign names)."""
    if not localpart.startswith("mls-") or localpart.startswith("mls-h"):
        return None
    try:
        return bytes.fromhex(localpart[4:]) or None
    except ValueError:
        return None


def iter_elements(xml: ET.Element) -> Iterator[ET.Element]:
    """The ``<mls/>`` children of a message element."""
    yield from xml.findall(TAG)


def encode_group_info(group_info: bytes, ratchet_tree: bytes | None) -> bytes:
    """GroupInfo item payload: ``uint32 len(group_info) || group_info || tree?``."""
    return len(group_info).to_bytes(4, "big") + group_info + (ratchet_tree or b"")


def decode_group_info(data: bytes) -> tuple[bytes, bytes | None]:
    if len(data) < 4:
        raise StanzaError("group-info payload too short")
    n = int.from_bytes(data[:4], "big")
    if n == 0 or 4 + n > len(data):
        raise StanzaError("group-info payload has a bad length")
    tree = data[4 + n:]
    return data[4:4 + n], tree or None
