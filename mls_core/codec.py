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
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
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
        decode_item = self.item.decode
        items = []
        try:
            while r.pos < stop:
                items.append(decode_item(r))
        finally:
            r.end = outer_end
        return tuple(items)


def _opaque_field_count(codec: Codec[Any]) -> int | None:
    """How many ``opaque<V>`` fields, and nothing else, make up the wire form of
    ``codec`` (nested structs flattened), or None if it holds anything else."""
    if codec is VAR_BYTES:
        return 1
    if not isinstance(codec, _StructCodec):
        return None
    total = 0
    for _, field in codec.fields:
        count = _opaque_field_count(field)
        if count is None:
            return None
        total += count
    return total


def _uniform_starts(data: bytes, p: int, stop: int, per_item: int) -> range | None:
    """The element offsets if every element has the same field lengths as the first,
    each below 64 (one-byte lengths): the usual case, since all HPKECiphertexts of one
    suite have the same size. Checked at C speed with strided slices: if every
    element's length bytes match, element k starts at ``p + k * size`` by induction."""
    lengths = []
    q = p
    for _ in range(per_item):
        if q >= stop or data[q] >= 64:
            return None
        lengths.append(data[q])
        q += 1 + data[q]
    size = q - p
    if (stop - p) % size:
        return None
    count = (stop - p) // size
    offset = 0
    for n in lengths:
        if data[p + offset:stop:size].count(n) != count:
            return None
        offset += 1 + n
    return range(p, stop, size)


def _scan_opaques(data: bytes, p: int, stop: int, per_item: int,
                  name: str) -> Sequence[int]:
    """Check that ``data[p:stop]`` is a whole number of elements of ``per_item``
    ``opaque<V>`` fields each (minimal varints, no truncation, §2.1.2) and return each
    element's start offset, without building any object."""
    uniform = _uniform_starts(data, p, stop, per_item)
    if uniform is not None:
        return uniform
    starts: list[int] = []
    append = starts.append
    while p < stop:
        append(p)
        for _ in range(per_item):
            if p < stop and (n := data[p]) < 64:
                p += 1 + n
            else:  # a longer or malformed length: the strict reader's checks and errors
                r = Reader(data, p, stop)
                n = decode_varint(r, name)
                p = r.pos + n
            if p > stop:
                raise DecodeError(f"{name}: element at offset {starts[-1]} truncated")
    return starts


class LazyVector(Sequence[T]):
    """The value of a :class:`LazyVec` field: a read-only sequence over the received
    bytes, whose elements (already validated) are decoded when first accessed. Equal to
    (and hashes like) the tuple of its elements."""

    __slots__ = ("_cache", "_data", "_item", "_starts", "_stop")

    def __init__(self, data: bytes, starts: Sequence[int], stop: int, item: Codec[T]) -> None:
        self._data = data
        self._starts = starts
        self._stop = stop
        self._item = item
        self._cache: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._starts)

    def _at(self, i: int) -> T:
        value = self._cache.get(i)
        if value is None:
            starts = self._starts
            end = starts[i + 1] if i + 1 < len(starts) else self._stop
            r = Reader(self._data, starts[i], end)
            value = self._item.decode(r)
            if r.pos != end:  # unreachable after _scan_opaques; kept as a guard
                raise DecodeError(f"{self._item.name}: element {i} has trailing bytes")
            self._cache[i] = value
        return value

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return tuple(self._at(k) for k in range(*i.indices(len(self._starts))))
        n = len(self._starts)
        if not -n <= i < n:
            raise IndexError("LazyVector index out of range")
        return self._at(i % n)

    def __iter__(self) -> Iterator[T]:
        return (self._at(k) for k in range(len(self._starts)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, LazyVector)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"LazyVector({len(self._starts)} × {self._item.name})"

    @property
    def body(self) -> bytes:
        """The vector's content bytes as received (without the length prefix)."""
        start = self._starts[0] if self._starts else self._stop
        return self._data[start:self._stop]

    def index_of_first_field(self, value: bytes) -> int | None:
        """Index of the first element whose first ``opaque<V>`` field equals ``value``
        (e.g. the EncryptedGroupSecrets of one KeyPackageRef, §12.4.3.1), found in the
        bytes without decoding the other elements."""
        prefix = bytearray()
        encode_varint(len(value), prefix)
        needle = bytes(prefix) + value
        data, starts = self._data, self._starts
        if not starts:
            return None
        pos = data.find(needle, starts[0], self._stop)
        while pos != -1:
            k = bisect_left(starts, pos)
            if k < len(starts) and starts[k] == pos:
                return k
            pos = data.find(needle, pos + 1, self._stop)  # inside another element
        return None


class LazyVec(Vec):
    """``T x<V>`` for large vectors of which a reader needs few elements (one
    HPKECiphertext per UpdatePathNode, one EncryptedGroupSecrets per Welcome). The
    whole vector is validated on decode exactly as :class:`Vec` would (an element type
    made of ``opaque<V>`` fields accepts any content of the right shape), but it is
    returned as a :class:`LazyVector`; re-encoding one copies the received bytes."""

    __slots__ = ("_count",)

    def __init__(self, item: CodecLike) -> None:
        super().__init__(item)
        self._count: int | None = None

    def _per_item(self) -> int:
        if self._count is None:
            count = _opaque_field_count(self.item)
            if count is None:
                raise TypeError(f"{self.name}: LazyVec needs elements of opaque<V> fields")
            self._count = count
        return self._count

    def encode(self, value: tuple[Any, ...], out: bytearray) -> None:
        if isinstance(value, LazyVector):
            body = value.body
            encode_varint(len(body), out)
            out += body
        else:
            super().encode(value, out)

    def decode(self, r: Reader) -> Any:
        n = decode_varint(r, self.name)
        start = r.pos
        stop = start + n
        if stop > r.end:
            raise DecodeError(f"{self.name}: vector of {n} bytes truncated at offset {start}")
        starts = _scan_opaques(r.data, start, stop, self._per_item(), self.name)
        r.pos = stop
        return LazyVector(r.data, starts, stop, self.item)


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
        if start < r.end:  # the common cases without Reader.take
            flag = r.data[start]
            if flag == 0:
                r.pos = start + 1
                return None
            if flag == 1 and self._item is not None:
                r.pos = start + 1
                return self._item.decode(r)
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

    def cases(self) -> tuple[int, ...]:
        """The declared tags, in declaration order."""
        return tuple(self._cases)

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
    """Codec of one Struct subclass: its ordered (field, codec) list, compiled on first use
    into one generated decode and one generated encode function (see
    :func:`_compile_decoder`), so the declaration stays the single source of truth."""

    def __init__(self, cls: type[Struct]) -> None:
        self.cls = cls
        self.name = cls.__name__
        hints = get_type_hints(cls, include_extras=True)
        self.fields: list[tuple[str, Codec[Any]]] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            self.fields.append((f.name, _field_codec(cls, f.name, hints[f.name])))
        self.memo = bool(cls.__dict__.get("_memoize_wire", False))

    # The first call compiles and stores the generated function in the instance, where it
    # shadows these methods: every later ``codec.decode(r)`` calls it directly (a bound
    # method taken before that still works, through the lookup below).

    def decode(self, r: Reader) -> Any:
        fn = self.__dict__.get("decode")
        if fn is None:
            fn = self.__dict__["decode"] = _compile_decoder(self)
        return fn(r)

    def encode(self, value: Any, out: bytearray) -> None:
        fn = self.__dict__.get("encode")
        if fn is None:
            fn = self.__dict__["encode"] = _compile_encoder(self)
        fn(value, out)


# --------------------------------------------------------------------------- compilation
#
# Each struct's field list is turned, once, into straight-line Python source: the common
# cases (integers, ``opaque<V>`` with a one-byte length, blank optionals, vectors of
# integers) are inlined on local variables, everything else calls the field's codec.
# An inlined read that meets anything unusual (a longer varint, a short buffer) hands
# the field to its codec from the same offset, so the accepted encodings and every error
# message are exactly those of the codecs themselves.

_INT_VEC_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _annotate(e: DecodeError, struct_name: str, field: str) -> None:
    """Prefix the innermost struct and field to a DecodeError's message, once."""
    if getattr(e, "_mls_path", None) is None:
        e._mls_path = True  # type: ignore[attr-defined]
        e.args = (f"{struct_name}.{field}: {e.args[0]}",)


def _unpack_int_vec(fmt: str, count: int, data: bytes, offset: int) -> tuple[int, ...]:
    return _struct.unpack_from(f">{count}{fmt}", data, offset)


class _Source:
    """The lines and namespace of one generated function."""

    def __init__(self, **names: Any) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = dict(names)

    def const(self, value: Any) -> str:
        name = f"_k{len(self.ns)}"
        self.ns[name] = value
        return name

    def add(self, indent: int, *lines: str) -> None:
        self.lines.extend("    " * indent + line for line in lines)

    def build(self, fn: str, origin: str) -> Callable[..., Any]:
        code = compile("\n".join(self.lines), f"<mls codec {origin}>", "exec")
        exec(code, self.ns)  # the source is generated from our own declarations only
        built: Callable[..., Any] = self.ns[fn]
        return built


def _compile_decoder(sc: _StructCodec) -> Callable[[Reader], Any]:
    """``decode(r)`` for one struct: fields read on local variables ``data``/``p``/``end``,
    the reader's position synchronised around every call to another codec."""
    s = _Source(DecodeError=DecodeError, _annotate=_annotate, _new=object.__new__,
                _setattr=object.__setattr__, _cls=sc.cls, _as_codec=as_codec,
                _unpack_int_vec=_unpack_int_vec)
    s.add(0, "def decode(r):", "    data = r.data", "    p = start = r.pos", "    end = r.end",
          "    f = ''", "    try:")
    seen: dict[str, str] = {}
    for i, (fname, c) in enumerate(sc.fields):
        var = f"v{i}"
        s.add(2, f"f = {fname!r}")
        _decode_field(s, 2, c, var, seen)
        seen[fname] = var
    s.add(1, "except DecodeError as e:", f"    _annotate(e, {sc.name!r}, f)", "    raise",
          "r.pos = p")
    if "__post_init__" in dir(sc.cls) or not sc.cls.__dictoffset__:
        s.add(1, "o = _cls(" + ", ".join(f"{n}={v}" for n, v in seen.items()) + ")")
        if sc.memo:
            s.add(1, f"_setattr(o, {_WIRE!r}, data[start:p])")
    else:
        # Frozen dataclass without __post_init__: filling __dict__ is what __init__ does.
        s.add(1, "o = _new(_cls)", "d = o.__dict__", *(f"d[{n!r}] = {v}" for n, v in seen.items()))
        if sc.memo:
            s.add(1, f"d[{_WIRE!r}] = data[start:p]")
    s.add(1, "return o")
    return s.build("decode", f"decode {sc.name}")


def _decode_field(s: _Source, ind: int, c: Codec[Any], v: str, seen: Mapping[str, str]) -> None:
    """Emit the statements reading one field of codec ``c`` into variable ``v``."""
    k = s.const(c)
    slow = ("r.pos = p", f"{v} = {k}.decode(r)", "p = r.pos")
    if isinstance(c, _Uint):
        if c.size == 1:
            s.add(ind, "if p < end:", f"    {v} = data[p]", "    p += 1")
        else:
            unpack = s.const(c._st.unpack_from)
            s.add(ind, f"if p + {c.size} <= end:", f"    {v} = {unpack}(data, p)[0]",
                  f"    p += {c.size}")
        s.add(ind, "else:")
        s.add(ind + 1, *slow)
    elif c is VAR_BYTES:
        s.add(ind, "if p < end and (n := data[p]) < 64 and (q := p + 1 + n) <= end:",
              f"    {v} = data[p + 1:q]", "    p = q",
              # two-byte length, minimal (>= 64): signatures, hashes of SHA-512 suites
              "elif (p + 1 < end and 64 <= (n := data[p]) < 128"
              " and (n := ((n & 63) << 8) | data[p + 1]) >= 64 and (q := p + 2 + n) <= end):",
              f"    {v} = data[p + 2:q]", "    p = q", "else:")
        s.add(ind + 1, *slow)
    elif isinstance(c, Fixed):
        s.add(ind, f"if p + {c.size} <= end:", f"    {v} = data[p:p + {c.size}]",
              f"    p += {c.size}", "else:")
        s.add(ind + 1, *slow)
    elif c is EMPTY:
        s.add(ind, f"{v} = None")
    elif isinstance(c, Opt):
        s.add(ind, "if p < end and data[p] == 0:", f"    {v} = None", "    p += 1", "else:")
        s.add(ind + 1, *slow)
    elif isinstance(c, Vec) and isinstance(c.item, _Uint):
        size = c.item.size
        s.add(ind, "if p < end and (n := data[p]) < 64 and (q := p + 1 + n) <= end"
              f" and not n % {size}:",
              f"    {v} = _unpack_int_vec({_INT_VEC_FORMATS[size]!r}, n // {size}, data, p + 1)",
              "    p = q", "else:")
        s.add(ind + 1, *slow)
    elif isinstance(c, Select):
        # One branch per declared case, each inlined; other tags go to Select.case, which
        # decodes the default case or raises the "unknown" DecodeError.
        keyword = "if"
        for tag in c.cases():
            s.add(ind, f"{keyword} {seen[c.on]} == {int(tag)}:")
            _decode_field(s, ind + 1, c.case(tag), v, seen)
            keyword = "elif"
        s.add(ind, "else:" if keyword == "elif" else "if True:")
        s.add(ind + 1, "r.pos = p", f"{v} = {k}.case({seen[c.on]}).decode(r)", "p = r.pos")
    elif isinstance(c, Depends):
        earlier = "{" + ", ".join(f"{n!r}: {var}" for n, var in seen.items()) + "}"
        s.add(ind, "r.pos = p", f"{v} = _as_codec({k}.choose({earlier})).decode(r)",
              "p = r.pos")
    else:
        s.add(ind, *slow)


def _compile_encoder(sc: _StructCodec) -> Callable[[Any, bytearray], None]:
    """``encode(value, out)`` for one struct, with the memo of ``_memoize_wire`` structs.
    A value that does not match its declaration is our caller's bug: UsageError."""
    s = _Source(UsageError=UsageError, _setattr=object.__setattr__, _as_codec=as_codec,
                _encode_varint=encode_varint)
    s.add(0, "def encode(value, out):")
    if sc.memo:
        s.add(1, f"w = value.__dict__.get({_WIRE!r})", "if w is not None:", "    out += w",
              "    return", "start = len(out)")
    s.add(1, "try:")
    seen: dict[str, str] = {}
    for i, (fname, c) in enumerate(sc.fields):
        var = f"v{i}"
        s.add(2, f"{var} = value.{fname}")
        _encode_field(s, 2, c, var, seen)
        seen[fname] = var
    s.add(1, "except (TypeError, AttributeError, ValueError, OverflowError) as e:",
          f"    raise UsageError(f'{sc.name}: cannot encode: {{e}}') from None")
    if sc.memo:
        s.add(1, f"_setattr(value, {_WIRE!r}, bytes(out[start:]))")
    return s.build("encode", f"encode {sc.name}")


def _encode_field(s: _Source, ind: int, c: Codec[Any], v: str, seen: Mapping[str, str]) -> None:
    """Emit the statements appending field variable ``v`` of codec ``c`` to ``out``."""
    k = s.const(c)
    if isinstance(c, _Uint):
        pack = s.const(c._st.pack)
        s.add(ind, f"if 0 <= {v} <= {c._max}:", f"    out += {pack}({v})", "else:",
              f"    {k}.encode({v}, out)")
    elif c is VAR_BYTES:
        s.add(ind, f"n = len({v})", "if n < 64:", "    out.append(n)", "else:",
              "    _encode_varint(n, out)", f"out += {v}")
    elif c is EMPTY:
        pass
    elif isinstance(c, Select):
        s.add(ind, f"{k}.case({seen[c.on]}).encode({v}, out)")
    elif isinstance(c, Depends):
        earlier = "{" + ", ".join(f"{n!r}: {var}" for n, var in seen.items()) + "}"
        s.add(ind, f"_as_codec({k}.choose({earlier})).encode({v}, out)")
    else:
        s.add(ind, f"{k}.encode({v}, out)")


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
        wire: bytes | None = self.__dict__.get(_WIRE)  # memo of a _memoize_wire struct
        if wire is not None:
            return wire
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
