"""deserialization vectors: MLS variable-length vector headers (RFC 9420 §2.1.2)."""

from __future__ import annotations

from typing import Any

from ..codec import Reader, decode_varint, encode_varint
from ._check import expect, h


def check(v: dict[str, Any]) -> None:
    header = h(v["vlbytes_header"])
    r = Reader(header)
    expect("length", decode_varint(r, "vlbytes_header"), v["length"])
    expect("header bytes consumed", r.pos, len(header))
    out = bytearray()
    encode_varint(v["length"], out)
    expect("re-encoded header", bytes(out), header)
