"""The MIMI content container (draft-ietf-mimi-content, "MIMI Content Container Message
Semantics", "Message Bodies", "External content") and its limits ("Security
Considerations: General handling", "Depth restrictions").

A message is ``MimiContent``; :func:`decode` checks everything the draft lets a receiver
check without context (schema, deterministic encoding, depth and size limits) and
:func:`encode` gives the one deterministic encoding. What needs context (whether a
referenced message exists, who may edit it, expiry against the clock) is the client's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from . import cbor
from .errors import ContentValidationError
from .schema import (
    Bool,
    Bstr,
    Enum,
    Nullable,
    Struct,
    Tstr,
    Uint,
    dump_fields,
    load_fields,
    refuse,
    wire,
)

#: the media type of MIMI content ("IANA Considerations")
MEDIA_TYPE = "application/mimi-content"
#: NestedParts nest at most this deep ("Depth restrictions")
MAX_PART_DEPTH = 4
#: more body parts than this is nonsensical ("General handling")
MAX_PARTS = 1024
#: a longer topicId is nonsensical ("General handling")
MAX_TOPIC_ID = 4096
#: extension values nest at most this deep, the extensions map being level 1
MAX_EXTENSION_DEPTH = 4
#: encoded size of one extension value (``value = any .size (0..4095)``)
MAX_EXTENSION_VALUE = 4095
#: local policy on a whole message ("is too large (according to local policy)")
DEFAULT_MAX_SIZE = 1 << 20
#: the hash algorithm of message ids: sha-256 in the Named Information registry
SHA256 = 1
#: AES-128-GCM in the IANA AEAD registry, which implementations MUST support
AES_128_GCM = 1

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
MEDIA_TYPE_RE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:\s*;\s*{_TOKEN}=(?:{_TOKEN}|\"[^\"]*\"))*")
_LANGUAGE_TAG = r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*"
LANGUAGE_RE = re.compile(rf"(?:{_LANGUAGE_TAG}(?:,{_LANGUAGE_TAG})*)?")
URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
#: hash algorithm -> digest length (Named Information Hash Algorithm registry)
HASH_LENGTHS = {1: 32, 2: 16, 3: 15, 4: 12, 5: 8, 6: 4, 7: 48, 8: 64, 9: 28, 10: 32,
                11: 48, 12: 64}


class Disposition(IntEnum):
    """``baseDispos`` (MIMI Content Disposition registry); 9-255 are unknown ones, which a
    receiver treats as ``RENDER``."""

    UNSPECIFIED = 0
    RENDER = 1
    REACTION = 2
    PROFILE = 3
    INLINE = 4
    ICON = 5
    ATTACHMENT = 6
    SESSION = 7
    PREVIEW = 8


class Cardinality(IntEnum):
    NULLPART = 0
    SINGLE = 1
    EXTERNAL = 2
    MULTI = 3


class PartSemantics(IntEnum):
    """How a receiver treats the parts of a MultiPart ({9})."""

    CHOOSE_ONE = 0
    SINGLE_UNIT = 1
    PROCESS_ALL = 2


class MessageIdSpec:
    """``MessageId = bstr .size 32`` whose first octet names a known hash algorithm."""

    def load(self, value: Any, where: str) -> bytes:
        data: bytes = Bstr(size=32).load(value, where)
        if data[0] != SHA256:
            raise refuse(where, f"message id of unknown hash algorithm {data[0]}")
        return data

    def dump(self, value: bytes) -> bytes:
        return self.load(value, "message id")


MESSAGE_ID = MessageIdSpec()
MEDIA = Tstr(max_len=255, pattern=MEDIA_TYPE_RE, meaning="a media type")
URI = Tstr(pattern=URI_RE, meaning="a URI")


class ExtensionsSpec:
    """``extensions = { ? 1 => tstr, ? 2 => tstr, * name => value }`` with the data model
    and depth restrictions on every value ("Extension Fields", "Data model
    restrictions", "Depth restrictions")."""

    def load(self, value: Any, where: str) -> dict[int | str, Any]:
        if not isinstance(value, dict):
            raise refuse(where, "a map is required")
        for key, item in value.items():
            self._check(key, item, where)
        return dict(value)

    def dump(self, value: dict[int | str, Any]) -> dict[int | str, Any]:
        return self.load(value, "mimiExtensions")

    @staticmethod
    def _check(key: Any, item: Any, where: str) -> None:
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise refuse(where, f"extension key {key!r} is not an integer or text")
        if isinstance(key, str) and not 1 <= len(key.encode()) <= 255:
            raise refuse(where, "a text extension key must have 1 to 255 octets")
        if key == 0:
            raise refuse(where, "extension key 0 is reserved")
        cbor.check_key(key, where)
        if key in (1, 2):
            URI.load(item, f"{where}[{key}]")
        cbor.check_value(item, f"{where}[{key!r}]", depth=2, max_depth=MAX_EXTENSION_DEPTH)
        if len(cbor.dumps(item)) > MAX_EXTENSION_VALUE:
            raise refuse(where, f"extension {key!r}: value larger than "
                                f"{MAX_EXTENSION_VALUE} octets")


@dataclass(frozen=True)
class Expiration:
    """``Expiration = [relative: bool, time: uint .size 4]`` ({3})."""

    relative: bool = wire(Bool())
    time: int = wire(Uint(4))


@dataclass(frozen=True)
class NullPart:
    """No content (deleting or unliking)."""

    CARDINALITY: ClassVar[Cardinality] = Cardinality.NULLPART


@dataclass(frozen=True)
class SinglePart:
    """One inline part ({8})."""

    CARDINALITY: ClassVar[Cardinality] = Cardinality.SINGLE
    content_type: str = wire(MEDIA)
    content: bytes = wire(Bstr(), secret=True)


@dataclass(frozen=True)
class ExternalPart:
    """Content at a URL, usually AEAD-encrypted with a key that travels only here
    ("External content")."""

    CARDINALITY: ClassVar[Cardinality] = Cardinality.EXTERNAL
    content_type: str = wire(MEDIA)
    url: str = wire(URI)
    expires: int = wire(Uint(4))
    size: int = wire(Uint(8))
    enc_alg: int = wire(Uint(2))
    key: bytes = wire(Bstr(max_len=64), secret=True)
    nonce: bytes = wire(Bstr(max_len=64), secret=True)
    aad: bytes = wire(Bstr(max_len=4096))
    hash_alg: int = wire(Uint(1))
    content_hash: bytes = wire(Bstr(max_len=64))
    description: str = wire(Tstr(max_len=4096))
    filename: str = wire(Tstr(max_len=255))

    def __post_init__(self) -> None:
        if self.enc_alg == 0 and (self.key or self.nonce or self.aad):
            raise ContentValidationError("external part: no encryption (encAlg 0) but a "
                                         "key, nonce or aad")
        if self.enc_alg == AES_128_GCM and (len(self.key), len(self.nonce)) != (16, 12):
            raise ContentValidationError("external part: AES-128-GCM needs a 16-octet key "
                                         "and a 12-octet nonce")
        expected = HASH_LENGTHS.get(self.hash_alg)
        if expected is not None and len(self.content_hash) != expected:
            raise ContentValidationError(f"external part: a hash of algorithm "
                                         f"{self.hash_alg} has {expected} octets, not "
                                         f"{len(self.content_hash)}")
        if "/" in self.filename or "\\" in self.filename or "\0" in self.filename:
            raise ContentValidationError("external part: a file name must not hold a path")


@dataclass(frozen=True)
class MultiPart:
    """``parts: [2* NestedPart]`` with their relation ({9})."""

    CARDINALITY: ClassVar[Cardinality] = Cardinality.MULTI
    semantics: PartSemantics
    parts: tuple[NestedPart, ...]


Part = NullPart | SinglePart | ExternalPart | MultiPart


@dataclass(frozen=True)
class NestedPart:
    """``NestedPart = [disposition, language, (NullPart // SinglePart // ExternalPart //
    MultiPart)]`` ({10}, {11}); ``disposition`` is an int so unknown values (9-255)
    survive a round trip."""

    disposition: int
    language: str
    part: Part

    def __post_init__(self) -> None:
        Uint(1).load(self.disposition, "disposition")
        _LANGUAGE.load(self.language, "language")

    def walk(self) -> list[NestedPart]:
        """This part and every part inside it, depth-first: list index = partIndex."""
        out = [self]
        if isinstance(self.part, MultiPart):
            for child in self.part.parts:
                out.extend(child.walk())
        return out


_LANGUAGE = Tstr(max_len=255, pattern=LANGUAGE_RE, meaning="a list of language tags")
_VARIANTS: dict[int, type[NullPart | SinglePart | ExternalPart]] = {
    Cardinality.NULLPART: NullPart, Cardinality.SINGLE: SinglePart,
    Cardinality.EXTERNAL: ExternalPart}


class NestedPartSpec:
    """Loads a NestedPart tree, enforcing the depth and part-count limits."""

    def load(self, value: Any, where: str) -> NestedPart:
        count = [0]
        return self._load(value, where, 1, count)

    def _load(self, value: Any, where: str, depth: int, count: list[int]) -> NestedPart:
        if depth > MAX_PART_DEPTH:
            raise refuse(where, f"body parts nest more than {MAX_PART_DEPTH} levels deep")
        count[0] += 1
        if count[0] > MAX_PARTS:
            raise refuse(where, f"more than {MAX_PARTS} body parts")
        if not isinstance(value, list) or len(value) < 3:
            raise refuse(where, "a NestedPart array [disposition, language, cardinality, "
                                "...] is required")
        disposition = Uint(1).load(value[0], f"{where}.disposition")
        language = _LANGUAGE.load(value[1], f"{where}.language")
        cardinality = Enum(Cardinality).load(value[2], f"{where}.cardinality")
        rest = value[3:]
        part: Part
        if cardinality == Cardinality.MULTI:
            part = self._multi(rest, where, depth, count)
        else:
            part = load_fields(_VARIANTS[Cardinality(cardinality)], rest, where)
        return NestedPart(disposition, language, part)

    def _multi(self, rest: list[Any], where: str, depth: int, count: list[int]) -> MultiPart:
        if len(rest) != 2:
            raise refuse(where, "a MultiPart needs partSemantics and parts")
        semantics = Enum(PartSemantics).load(rest[0], f"{where}.partSemantics")
        if not isinstance(rest[1], list) or len(rest[1]) < 2:
            raise refuse(where, "a MultiPart holds an array of at least 2 parts")
        parts = tuple(self._load(item, f"{where}.parts[{i}]", depth + 1, count)
                      for i, item in enumerate(rest[1]))
        return MultiPart(PartSemantics(semantics), parts)

    def dump(self, value: NestedPart) -> list[Any]:
        head = [value.disposition, value.language, int(value.part.CARDINALITY)]
        if isinstance(value.part, MultiPart):
            return [*head, int(value.part.semantics),
                    [self.dump(child) for child in value.part.parts]]
        return [*head, *dump_fields(value.part)]


@dataclass(frozen=True)
class MimiContent:
    """``mimiContent`` ("Message Behavior Fields"): one instant message."""

    salt: bytes = wire(Bstr(size=16))
    replaces: bytes | None = wire(Nullable(MESSAGE_ID))
    topic_id: bytes = wire(Bstr(max_len=MAX_TOPIC_ID))
    expires: Expiration | None = wire(Nullable(Struct(Expiration)))
    in_reply_to: bytes | None = wire(Nullable(MESSAGE_ID))
    extensions: dict[int | str, Any] = wire(ExtensionsSpec())
    body: NestedPart = wire(NestedPartSpec())

    @property
    def sender_uri(self) -> str | None:
        """Extension 1: the sender as a MIMI participant."""
        value = self.extensions.get(1)
        return value if isinstance(value, str) else None

    @property
    def room_uri(self) -> str | None:
        """Extension 2: the MIMI room."""
        value = self.extensions.get(2)
        return value if isinstance(value, str) else None


def decode(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> MimiContent:
    """Parse and validate one ``application/mimi-content`` message."""
    if len(data) > max_size:
        raise ContentValidationError(f"content of {len(data)} octets exceeds the limit of "
                                     f"{max_size}")
    value = cbor.loads(data)
    return Struct(MimiContent).load(value, "mimiContent")  # type: ignore[no-any-return]


def encode(content: MimiContent) -> bytes:
    """The deterministic encoding of ``content`` (validated as :func:`decode` would)."""
    data = cbor.dumps(dump_fields(content))
    decode(data, max_size=max(len(data), DEFAULT_MAX_SIZE))  # one rule set both ways
    return data

