"""TLS presentation language codec with MLS variable-length vectors (RFC 9420 §2.1).

Wire structs are frozen dataclasses that inherit :class:`Struct`. Each field's wire type
is declared once, in its annotation, with ``typing.Annotated``; encoding and decoding are
both derived from that declaration (compiled once per class into a list of field codecs)::

    @dataclass(frozen=True)
    class Extension(Struct):
        '''struct { ExtensionType extension_type; opaque extension_data<V>; } Extension;'''
        extension_type: Uint16
        extension_data: VarBytes

Nested structs need no annotation metadata: a field whose type is a ``Struct`` subclass is
encoded as that struct. The building blocks:

* ``Uint8``/``Uint16``/``Uint32``/``Uint64``: fixed-width big-endian integers;
* ``VarBytes``: ``opaque x<V>``; ``Fixed(n)``: ``opaque x[n]``;
* ``Vec(T)``: ``T x<V>`` (a tuple); ``Opt(T)``: ``optional<T>`` (§2.1.1);
* ``Select(on, {tag: T, ...})``: a ``select`` on an earlier field of the same struct;
* ``Depends(fn)``: a codec chosen by a function of the earlier fields (for selects on a
  field of a sibling struct, such as ``FramedContentAuthData``);
* ``Empty``: ``struct {}``.

Decoding is strict: lengths must be minimal varints (§2.1.2), vectors must hold whole
elements, and :meth:`Struct.decode` rejects trailing bytes. Every failure is a
:class:`~mls_core.errors.DecodeError` naming the struct and the byte offset.
"""

from __future__ import annotations

import dataclasses
import struct as _struct
from collections.abc import Callable, Mapping
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Self,
    TypeVar,
    get_args,
    get_origin,
    get_type_hints,
)

from .errors import DecodeError, UsageError

T = TypeVar("T")

MAX_VARINT = (1 << 30) - 1


class Reader:
    """A cursor over immutable bytes; every read is bounds-checked."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def take(self, n: int, what: str) -> bytes:
        """Return the next ``n`` bytes or raise DecodeError naming ``what``."""
        start = self.pos
        stop = start + n
        if stop > self.end:
            raise DecodeError(
                f"{what}: truncated at offset {start}: need {n} bytes, {self.end - start} left"
            )
        self.pos = stop
        return self.data[start:stop]

    def remaining(self) -> int:
        return self.end - self.pos


class Codec(Generic[T]):
    """Encodes values of one wire type into a bytearray and decodes them from a Reader."""

    name: str = "value"

    def encode(self, value: T, out: bytearray) -> None:
        raise NotImplementedError

    def decode(self, r: Reader) -> T:
        raise NotImplementedError


# --------------------------------------------------------------------------- integers


class _Uint(Codec[int]):
    __slots__ = ("_max", "_st", "name", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.name = f"uint{8 * size}"
        self._st = _struct.Struct({1: ">B", 2: ">H", 4: ">I", 8: ">Q"}[size])
        self._max = (1 << (8 * size)) - 1

    def encode(self, value: int, out: bytearray) -> None:
        if not 0 <= value <= self._max:
            raise UsageError(f"{self.name}: value {value} out of range")
        out += self._st.pack(value)

    def decode(self, r: Reader) -> int:
        pos = r.pos
        if pos + self.size > r.end:
            r.take(self.size, self.name)  # raises the DecodeError naming the offset
        r.pos = pos + self.size
        return int(self._st.unpack_from(r.data, pos)[0])


U8: Codec[int] = _Uint(1)
U16: Codec[int] = _Uint(2)
U32: Codec[int] = _Uint(4)
U64: Codec[int] = _Uint(8)


def encode_varint(n: int, out: bytearray) -> None:
    """Append ``n`` as an MLS variable-length integer (§2.1.2), minimal encoding."""
    if n < 0x40:
        out.append(n)
    elif n < 0x4000:
        out += (0x4000 | n).to_bytes(2, "big")
    elif n <= MAX_VARINT:
        out += (0x80000000 | n).to_bytes(4, "big")
    else:
        raise UsageError(f"vector length {n} exceeds 2^30-1")


def decode_varint(r: Reader, what: str = "varint") -> int:
    """Read an MLS variable-length integer, rejecting prefix 0b11 and non-minimal forms."""
    start = r.pos
    first = r.take(1, what)[0]
    prefix = first >> 6
    if prefix == 3:
        raise DecodeError(f"{what}: invalid varint prefix 0b11 at offset {start}")
    length = 1 << prefix
    v = first & 0x3F
    if length > 1:
        for b in r.take(length - 1, what):
            v = (v << 8) | b
        if v < (1 << (8 * (length // 2) - 2)):
            raise DecodeError(f"{what}: non-minimal varint at offset {start}")
    return v


class _VarInt(Codec[int]):
    name = "varint"

    def encode(self, value: int, out: bytearray) -> None:
        encode_varint(value, out)

    def decode(self, r: Reader) -> int:
        return decode_varint(r)


VARINT: Codec[int] = _VarInt()


# --------------------------------------------------------------------------- opaque


class _VarBytes(Codec[bytes]):
    name = "opaque<V>"

    def encode(self, value: bytes, out: bytearray) -> None:
        encode_varint(len(value), out)
        out += value

    def decode(self, r: Reader) -> bytes:
        n = decode_varint(r, self.name)
        return r.take(n, self.name)


VAR_BYTES: Codec[bytes] = _VarBytes()


class Fixed(Codec[bytes]):
    """``opaque x[n]``: exactly ``n`` bytes, no length prefix."""

    __slots__ = ("name", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.name = f"opaque[{size}]"

    def encode(self, value: bytes, out: bytearray) -> None:
        if len(value) != self.size:
            raise UsageError(f"{self.name}: got {len(value)} bytes")
        out += value

    def decode(self, r: Reader) -> bytes:
        return r.take(self.size, self.name)


class _Empty(Codec[None]):
    name = "struct{}"

    def encode(self, value: None, out: bytearray) -> None:
        return None

    def decode(self, r: Reader) -> None:
        return None


EMPTY: Codec[None] = _Empty()


# --------------------------------------------------------------------------- composites

CodecLike = Any  # a Codec instance or a Struct subclass, resolved lazily


def as_codec(spec: CodecLike) -> Codec[Any]:
    """Turn a Struct subclass or Codec into a Codec."""
    if isinstance(spec, Codec):
        return spec
    if isinstance(spec, type) and issubclass(spec, Struct):
        return spec.codec()
    raise TypeError(f"not a wire type: {spec!r}")


class Vec(Codec[tuple[Any, ...]]):
    """``T x<V>``: a varint byte length, then whole elements (§2.1.2)."""

    __slots__ = ("_item", "_spec", "name")

    def __init__(self, item: CodecLike) -> None:
        self._spec = item
        self._item: Codec[Any] | None = None
        self.name = f"{getattr(item, '__name__', getattr(item, 'name', 'T'))}<V>"

    @property
    def item(self) -> Codec[Any]:
        if self._item is None:
            self._item = as_codec(self._spec)
        return self._item

    def encode(self, value: tuple[Any, ...], out: bytearray) -> None:
        body = bytearray()
        item = self.item
        for v in value:
            item.encode(v, body)
        encode_varint(len(body), out)
        out += body

    def decode(self, r: Reader) -> tuple[Any, ...]:
        n = decode_varint(r, self.name)
        start = r.pos
        stop = start + n
        if stop > r.end:
            raise DecodeError(f"{self.name}: vector of {n} bytes truncated at offset {start}")
        outer_end = r.end
        r.end = stop
        item = self.item
        items = []
        try:
            while r.pos < stop:
                items.append(item.decode(r))
        finally:
            r.end = outer_end
        return tuple(items)


class Opt(Codec[Any]):
    """``optional<T>`` (§2.1.1): a presence byte 0 or 1, then T if present."""

    __slots__ = ("_item", "_spec", "name")

    def __init__(self, item: CodecLike) -> None:
        self._spec = item
        self._item: Codec[Any] | None = None
        self.name = f"optional<{getattr(item, '__name__', getattr(item, 'name', 'T'))}>"

    def encode(self, value: Any, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            if self._item is None:
                self._item = as_codec(self._spec)
            self._item.encode(value, out)

    def decode(self, r: Reader) -> Any:
        start = r.pos
        present = r.take(1, self.name)[0]
        if present == 0:
            return None
        if present != 1:
            raise DecodeError(f"{self.name}: presence byte {present} at offset {start}")
        if self._item is None:
            self._item = as_codec(self._spec)
        return self._item.decode(r)


class Select(Codec[Any]):
    """``select (on) { case tag: T; ... }`` on an earlier field ``on`` of the same struct.

    ``default`` decodes tags not listed (for extensible selects whose unknown cases are
    length-prefixed by convention, e.g. application-defined credential types)."""

    def __init__(self, on: str, cases: Mapping[int, CodecLike],
                 default: CodecLike | None = None) -> None:
        self.on = on
        self._cases = dict(cases)
        self._default = default
        self._resolved: dict[int, Codec[Any]] = {}
        self.name = f"select({on})"

    def case(self, tag: int) -> Codec[Any]:
        c = self._resolved.get(tag)
        if c is not None:
            return c
        spec = self._cases.get(tag, self._default)
        if spec is None:
            raise DecodeError(f"{self.name}: unknown {self.on} {tag}")
        c = as_codec(spec)
        self._resolved[tag] = c
        return c


class Depends(Codec[Any]):
    """A field codec chosen from the values of earlier fields (e.g. ``auth`` of
    AuthenticatedContent, whose layout depends on ``content.content_type``)."""

    def __init__(self, choose: Callable[[Mapping[str, Any]], CodecLike], name: str) -> None:
        self.choose = choose
        self.name = name


# --------------------------------------------------------------------------- structs

Uint8 = Annotated[int, U8]
Uint16 = Annotated[int, U16]
Uint32 = Annotated[int, U32]
Uint64 = Annotated[int, U64]
VarBytes = Annotated[bytes, VAR_BYTES]


#: instance attribute holding the wire encoding of a struct whose class sets
#: ``_memoize_wire = True`` (large immutable structs that are encoded repeatedly, such as
#: LeafNode: once for its signature check, again for every tree hash over it)
_WIRE = "_mls_wire"


class _StructCodec(Codec[Any]):
    """Compiled codec of one Struct subclass: an ordered list of (field, codec)."""

    def __init__(self, cls: type[Struct]) -> None:
        self.cls = cls
        self.name = cls.__name__
        hints = get_type_hints(cls, include_extras=True)
        self.fields: list[tuple[str, Codec[Any]]] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            self.fields.append((f.name, _field_codec(cls, f.name, hints[f.name])))
        self._plain = not any(isinstance(c, (Select, Depends)) for _, c in self.fields)
        self._memo = bool(cls.__dict__.get("_memoize_wire", False))

    def encode(self, value: Any, out: bytearray) -> None:
        if self._memo:
            wire = value.__dict__.get(_WIRE)
            if wire is not None:
                out += wire
                return
            start = len(out)
            self._encode_fields(value, out)
            object.__setattr__(value, _WIRE, bytes(out[start:]))
            return
        self._encode_fields(value, out)

    def _encode_fields(self, value: Any, out: bytearray) -> None:
        try:
            if self._plain:
                for fname, c in self.fields:
                    c.encode(getattr(value, fname), out)
                return
            seen: dict[str, Any] = {}
            for fname, c in self.fields:
                v = getattr(value, fname)
                self._resolve(c, seen).encode(v, out)
                seen[fname] = v
        except (TypeError, AttributeError, ValueError, OverflowError) as e:
            # A hand-built value that does not match its declaration: our caller's bug.
            raise UsageError(f"{self.name}: cannot encode: {e}") from None

    def decode(self, r: Reader) -> Any:
        values: dict[str, Any] = {}
        fname = ""
        start = r.pos
        try:
            for fname, c in self.fields:
                if not self._plain:
                    c = self._resolve(c, values)
                values[fname] = c.decode(r)
        except DecodeError as e:
            if getattr(e, "_mls_path", None) is None:
                e._mls_path = True  # type: ignore[attr-defined]
                e.args = (f"{self.name}.{fname}: {e.args[0]}",)
            raise
        obj = self.cls(**values)
        if self._memo:
            object.__setattr__(obj, _WIRE, r.data[start:r.pos])
        return obj

    @staticmethod
    def _resolve(c: Codec[Any], seen: Mapping[str, Any]) -> Codec[Any]:
        if isinstance(c, Select):
            return c.case(seen[c.on])
        if isinstance(c, Depends):
            return as_codec(c.choose(seen))
        return c


def _field_codec(cls: type, fname: str, hint: Any) -> Codec[Any]:
    if get_origin(hint) is Annotated:
        for meta in get_args(hint)[1:]:
            if isinstance(meta, Codec):
                return meta
    if isinstance(hint, type) and issubclass(hint, Struct):
        return hint.codec()
    raise TypeError(f"{cls.__name__}.{fname}: no wire type declared")


class Struct:
    """Base of wire structs: subclasses are frozen dataclasses whose field annotations
    declare the wire layout. Provides :meth:`encode` and :meth:`decode`."""

    _codec: ClassVar[_StructCodec | None] = None

    @classmethod
    def codec(cls) -> Codec[Any]:
        c = cls.__dict__.get("_codec")
        if c is None:
            c = _StructCodec(cls)
            cls._codec = c
        return c

    def encode(self) -> bytes:
        out = bytearray()
        self.codec().encode(self, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode exactly one ``cls`` from ``data``; trailing bytes are an error."""
        r = Reader(bytes(data))
        value = cls.codec().decode(r)
        if r.pos != r.end:
            raise DecodeError(f"{cls.__name__}: {r.end - r.pos} trailing bytes at offset {r.pos}")
        return value  # type: ignore[no-any-return]

    @classmethod
    def decode_prefix(cls, r: Reader) -> Self:
        """Decode one ``cls`` from the reader's position (for concatenated structs)."""
        return cls.codec().decode(r)  # type: ignore[no-any-return]


def encode_value(codec: Codec[T], value: T) -> bytes:
    """Encode a bare value (not a Struct) with ``codec``."""
    out = bytearray()
    codec.encode(value, out)
    return bytes(out)


def decode_value(codec: Codec[T], data: bytes, what: str | None = None) -> T:
    """Decode exactly one value with ``codec``; trailing bytes are an error."""
    r = Reader(bytes(data))
    value = codec.decode(r)
    if r.pos != r.end:
        raise DecodeError(f"{what or codec.name}: {r.end - r.pos} trailing bytes at offset {r.pos}")
    return value
