"""The generated struct codecs (mls_core.codec, compiled from the declarations) accept
and reject exactly what the field codecs do (RFC 9420 §2.1): every inlined fast path
is exercised here at its boundaries, including the hand-off to the field codec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from mls_core import codec as codec_module
from mls_core.codec import (
    U16,
    U32,
    VAR_BYTES,
    Fixed,
    Opt,
    Reader,
    Select,
    Struct,
    Uint8,
    Uint16,
    Uint64,
    VarBytes,
    Vec,
)
from mls_core.errors import DecodeError, UsageError


@dataclass(frozen=True)
class _Inner(Struct):
    a: Uint8
    b: VarBytes


@dataclass(frozen=True)
class _Outer(Struct):
    kind: Uint16
    body: Annotated[bytes | _Inner | None,
                    Select("kind", {1: VAR_BYTES, 2: _Inner, 3: Opt(_Inner)})]
    ints: Annotated[tuple[int, ...], Vec(U16)]
    wide: Annotated[tuple[int, ...], Vec(U32)]
    fixed: Annotated[bytes, Fixed(3)]
    big: Uint64
    tail: VarBytes


@dataclass(frozen=True)
class _Checked(Struct):
    value: Uint8

    def __post_init__(self) -> None:
        if self.value == 0xFF:
            raise DecodeError("_Checked: 0xff is reserved")


def _sample(body_len: int = 5) -> _Outer:
    return _Outer(1, b"x" * body_len, (1, 2, 0xFFFF), (7, 1 << 31), b"abc", 1 << 63, b"t")


@pytest.mark.parametrize("body_len", [0, 63, 64, 16_383, 16_384])
def test_round_trip_every_length_class(body_len: int) -> None:
    value = _sample(body_len)
    wire = value.encode()
    decoded = _Outer.decode(wire)
    assert decoded == value
    assert hash(decoded) == hash(value)
    assert decoded.encode() == wire


def test_select_cases_round_trip() -> None:
    for value in (_Outer(2, _Inner(9, b"in"), (), (), b"xyz", 0, b""),
                  _Outer(3, None, (), (), b"xyz", 0, b""),
                  _Outer(3, _Inner(0, b""), (), (), b"xyz", 0, b"")):
        assert _Outer.decode(value.encode()) == value


def test_every_truncation_is_a_decode_error_naming_the_field() -> None:
    wire = _sample(70).encode()
    for cut in range(len(wire)):
        with pytest.raises(DecodeError, match=r"^_Outer\.\w+: "):
            _Outer.decode(wire[:cut])


def test_non_minimal_two_byte_length_is_rejected() -> None:
    wire = bytearray(_sample(5).encode())
    # body<V> of 5 bytes written with a two-byte length 0x4005
    bad = bytes(wire[:2]) + b"\x40\x05" + bytes(wire[3:])
    with pytest.raises(DecodeError, match=r"_Outer\.body: .*non-minimal"):
        _Outer.decode(bad)
    with pytest.raises(DecodeError, match="0b11"):
        _Outer.decode(bytes(wire[:2]) + b"\xc0" + bytes(wire[3:]))


def test_odd_integer_vector_is_rejected() -> None:
    value = _sample(0)
    wire = value.encode()
    at = wire.index(bytes([6, 0, 1, 0, 2, 0xFF, 0xFF]))
    bad = wire[:at] + bytes([5, 0, 1, 0, 2, 0xFF]) + wire[at + 7:]
    with pytest.raises(DecodeError, match=r"_Outer\.ints: .*uint16"):
        _Outer.decode(bad)


def test_unknown_select_tag_and_presence_byte() -> None:
    wire = _sample(0).encode()
    with pytest.raises(DecodeError, match=r"_Outer\.body: .*unknown kind 9"):
        _Outer.decode(b"\x00\x09" + wire[2:])
    opt = _Outer(3, None, (), (), b"xyz", 0, b"").encode()
    with pytest.raises(DecodeError, match="presence byte 2"):
        _Outer.decode(opt[:2] + b"\x02" + opt[3:])


def test_post_init_still_runs_on_decode() -> None:
    assert _Checked.decode(b"\x01") == _Checked(1)
    with pytest.raises(DecodeError, match="reserved"):
        _Checked.decode(b"\xff")


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(UsageError, match="uint64"):
        _Outer(1, b"", (), (), b"abc", 1 << 64, b"").encode()
    with pytest.raises(UsageError, match="uint16"):
        _Outer(1, b"", (1 << 16,), (), b"abc", 0, b"").encode()
    with pytest.raises(UsageError, match="cannot encode"):
        _Outer(1, None, (), (), b"abc", 0, b"").encode()
    with pytest.raises(UsageError, match=r"opaque\[3\]"):
        _Outer(1, b"", (), (), b"ab", 0, b"").encode()


def test_struct_codec_compiles_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bound ``decode`` taken before the first call (as Vec does) compiles once."""
    @dataclass(frozen=True)
    class Fresh(Struct):
        x: Uint8

    compiled: list[object] = []
    real = codec_module._compile_decoder

    def counting(sc: Any) -> Any:
        compiled.append(sc)
        return real(sc)

    monkeypatch.setattr(codec_module, "_compile_decoder", counting)
    codec = Fresh.codec()
    early = codec.decode
    assert Vec(Fresh).decode(Reader(b"\x03\x01\x02\x03")) == (Fresh(1), Fresh(2), Fresh(3))
    assert early(Reader(b"\x07")) == Fresh(7)
    assert codec.decode(Reader(b"\x08")) == Fresh(8)
    assert len(compiled) == 1
