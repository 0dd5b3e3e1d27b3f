"""Deterministic CBOR for MIMI content (draft-ietf-mimi-content, "CBOR Data Model and
Encoding Restrictions"; RFC 8949 §4.2.1).

Scalars are encoded and every item is decoded by ``cbor2``. Containers are framed here
because ``cbor2``'s ``canonical`` mode sorts map keys length-first (RFC 7049 §3.9), the
order the draft forbids; RFC 8949 §4.2.1 sorts them by the bytes of their deterministic
encodings. Decoding is strict: definite lengths only, no duplicate map keys, a bounded
nesting depth, tags kept as :class:`cbor2.CBORTag` (never turned into dates or big
integers), and the input must be exactly the deterministic encoding of what it decodes
to, so one content has one encoding and one message id.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import cbor2

from .errors import ContentDecodeError, ContentValidationError

#: deepest nesting of arrays, maps and tags the decoder reads at all (the schema's own
#: limits, checked afterwards, are lower: 4 levels of parts, 4 of extension values)
MAX_CBOR_DEPTH = 16
#: integers a map key may hold: exactly representable as an IEEE double (draft §"Data
#: model restrictions")
MAX_SAFE_INTEGER = 2**53 - 1
#: the only NaN the draft permits: the half-width quiet NaN
CANONICAL_NAN = bytes.fromhex("f97e00")


class _RawTags(Mapping[int, Callable[[Any, bool], Any]]):
    """Semantic decoders for every tag that keep the tag as it is (``cbor2`` would turn
    tag 1 into a datetime, tag 2 into an int, ...), so re-encoding gives the same bytes."""

    def __getitem__(self, tag: int) -> Callable[[Any, bool], Any]:
        return lambda value, _immutable: cbor2.CBORTag(tag, value)

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, int)

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_RAW_TAGS = _RawTags()


def loads(data: bytes) -> Any:
    """One CBOR data item, which must be all of ``data`` and in deterministic encoding."""
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(stream, semantic_decoders=_RAW_TAGS,
                                    allow_indefinite=False, allow_duplicate_keys=False,
                                    max_depth=MAX_CBOR_DEPTH)
        value = decoder.decode()
    except (cbor2.CBORDecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise ContentDecodeError(f"not a CBOR data item: {_clip(exc)}") from None
    if stream.tell() != len(data):
        raise ContentDecodeError(f"{len(data) - stream.tell()} bytes after the CBOR item")
    if dumps(value) != data:
        raise ContentDecodeError("not the deterministic CBOR encoding (RFC 8949 §4.2.1): "
                                 "shortest lengths and integers, map keys sorted by "
                                 "their encodings, NaN only as f97e00")
    return value


def dumps(value: Any) -> bytes:
    """The deterministic encoding of ``value`` (RFC 8949 §4.2.1)."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value: Any, out: bytearray) -> None:
    if isinstance(value, list | tuple):
        out += _head(4, len(value))
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        pairs = sorted((dumps(k), v) for k, v in value.items())
        out += _head(5, len(pairs))
        for key, item in pairs:
            out += key
            _encode(item, out)
    elif isinstance(value, cbor2.CBORTag):
        out += _head(6, value.tag)
        _encode(value.value, out)
    elif isinstance(value, float) and math.isnan(value):
        out += CANONICAL_NAN
    else:
        out += cbor2.dumps(value, canonical=True)


def _head(major: int, argument: int) -> bytes:
    """An item head with the shortest argument (RFC 8949 §3, §4.2.1)."""
    if argument < 24:
        return bytes([major << 5 | argument])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * size):
            return bytes([major << 5 | extra]) + argument.to_bytes(size, "big")
    raise ContentValidationError(f"a CBOR length or tag of {argument} does not fit 64 bits")


def check_value(value: Any, where: str, *, depth: int, max_depth: int) -> None:
    """The draft's data model restrictions on an extension value: nesting of arrays,
    maps and tags at most ``max_depth`` levels, map keys only integers that fit a
    double, text or byte strings, and big integers only where they must be."""
    if isinstance(value, list | dict | cbor2.CBORTag) and depth > max_depth:
        raise ContentValidationError(f"{where}: arrays, maps and tags nest more than "
                                     f"{max_depth} levels deep")
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_value(item, f"{where}[{i}]", depth=depth + 1, max_depth=max_depth)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_key(key, where)
            check_value(item, f"{where}[{key!r}]", depth=depth + 1, max_depth=max_depth)
    elif isinstance(value, cbor2.CBORTag):
        if value.tag in (2, 3) and isinstance(value.value, bytes) \
                and (len(value.value) <= 8 or value.value[:1] == b"\0"):
            raise ContentValidationError(f"{where}: a big integer that fits a plain "
                                         "integer, or with leading zero bytes")
        check_value(value.value, f"{where}<tag {value.tag}>", depth=depth + 1,
                    max_depth=max_depth)


def check_key(key: Any, where: str) -> None:
    """A map key inside an extension: an integer a double holds exactly, text or bytes."""
    if isinstance(key, bool) or not isinstance(key, int | str | bytes):
        raise ContentValidationError(f"{where}: map key {_clip(key)} is not an integer, "
                                     "text or byte string")
    if isinstance(key, int) and not -MAX_SAFE_INTEGER <= key <= MAX_SAFE_INTEGER:
        raise ContentValidationError(f"{where}: integer map key {key} is not exactly "
                                     "representable as a double")


def _clip(value: object, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, Exception) else str(value)
    return text if len(text) <= limit else text[:limit] + "..."
