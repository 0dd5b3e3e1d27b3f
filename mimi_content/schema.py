"""Declarative CBOR-array structs: each wire struct of the draft is a frozen dataclass
whose fields carry their CDDL type (:func:`wire`); :func:`load_fields` and
:func:`dump_fields` derive decoding, validation and encoding from that one declaration.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol, TypeVar

from .errors import ContentValidationError

T = TypeVar("T")


class Spec(Protocol):
    """One CDDL type: checks a decoded CBOR value and converts it both ways."""

    def load(self, value: Any, where: str) -> Any: ...

    def dump(self, value: Any) -> Any: ...


def wire(spec: Spec, *, secret: bool = False) -> Any:
    """Declare a struct field with its CDDL type (the field's position is its order);
    ``secret``: left out of ``repr`` (key material, content: never logged)."""
    return dataclasses.field(metadata={"wire": spec}, repr=not secret)


def fields_of(cls: type) -> list[tuple[str, Spec]]:
    return [(f.name, f.metadata["wire"]) for f in dataclasses.fields(cls)
            if "wire" in f.metadata]


def load_fields(cls: type[T], items: Sequence[Any], where: str) -> T:
    """The struct ``cls`` from its CBOR array items (exactly one per declared field)."""
    declared = fields_of(cls)
    if len(items) != len(declared):
        raise ContentValidationError(f"{where}: {len(items)} items where "
                                     f"{len(declared)} are required")
    return cls(**{name: spec.load(item, f"{where}.{name}")
                  for (name, spec), item in zip(declared, items, strict=True)})


def dump_fields(obj: Any) -> list[Any]:
    return [spec.dump(getattr(obj, name)) for name, spec in fields_of(type(obj))]


def refuse(where: str, why: str) -> ContentValidationError:
    return ContentValidationError(f"{where}: {why}")


@dataclass(frozen=True)
class Bstr:
    """``bstr``, optionally ``.size N`` or at most ``max_len`` octets."""

    size: int | None = None
    max_len: int | None = None

    def load(self, value: Any, where: str) -> bytes:
        if not isinstance(value, bytes):
            raise refuse(where, "a byte string is required")
        if self.size is not None and len(value) != self.size:
            raise refuse(where, f"{len(value)} octets where {self.size} are required")
        if self.max_len is not None and len(value) > self.max_len:
            raise refuse(where, f"{len(value)} octets, more than {self.max_len}")
        return value

    def dump(self, value: bytes) -> bytes:
        return self.load(value, "value")


@dataclass(frozen=True)
class Tstr:
    """``tstr`` (valid UTF-8 by construction), optionally matching ``pattern``."""

    max_len: int | None = None
    pattern: re.Pattern[str] | None = None
    meaning: str = ""

    def load(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise refuse(where, "a text string is required")
        if self.max_len is not None and len(value.encode()) > self.max_len:
            raise refuse(where, f"longer than {self.max_len} octets")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise refuse(where, f"{value[:60]!r} is not {self.meaning}")
        return value

    def dump(self, value: str) -> str:
        return self.load(value, "value")


@dataclass(frozen=True)
class Uint:
    """``uint .size N``: an unsigned integer of at most ``octets`` octets."""

    octets: int

    def load(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise refuse(where, "an unsigned integer is required")
        if value >= 1 << (8 * self.octets):
            raise refuse(where, f"{value} does not fit {self.octets} octets")
        return value

    def dump(self, value: int) -> int:
        return self.load(value, "value")


@dataclass(frozen=True)
class Bool:
    def load(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise refuse(where, "true or false is required")
        return value

    def dump(self, value: bool) -> bool:
        return self.load(value, "value")


@dataclass(frozen=True)
class Enum:
    """An unsigned integer that must be one of ``kind``'s values."""

    kind: type[IntEnum]

    def load(self, value: Any, where: str) -> IntEnum:
        number = Uint(8).load(value, where)
        try:
            return self.kind(number)
        except ValueError:
            raise refuse(where, f"unknown {self.kind.__name__} {number}") from None

    def dump(self, value: IntEnum) -> int:
        return int(self.load(int(value), "value"))


@dataclass(frozen=True)
class Nullable:
    """``null / inner``."""

    inner: Spec

    def load(self, value: Any, where: str) -> Any:
        return None if value is None else self.inner.load(value, where)

    def dump(self, value: Any) -> Any:
        return None if value is None else self.inner.dump(value)


@dataclass(frozen=True)
class Struct:
    """A nested struct encoded as a CBOR array of its declared fields."""

    cls: type

    def load(self, value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise refuse(where, "an array is required")
        return load_fields(self.cls, value, where)

    def dump(self, value: Any) -> list[Any]:
        return dump_fields(value)
