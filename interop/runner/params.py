"""Step parameters decoded the way Go ``encoding/json`` decodes them (RUNNER.md §2.2).

Keys match case-insensitively (``changeCiphersuite`` is ``changeCipherSuite``), missing
keys and ``null`` give Go zero values, unknown keys are ignored, and a wrong type is a step
error whose text follows Go's ``json: cannot unmarshal ...`` wording.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from interop.runner.config import lookup
from interop.runner.errors import StepError

_INT_RANGE = (-(2**63), 2**63 - 1)
_UINT64_RANGE = (0, 2**64 - 1)
_UINT32_RANGE = (0, 2**32 - 1)


@dataclass(frozen=True)
class Extension:
    """One ``{"extension_type": n, "extension_data": "<base64>"}`` entry."""

    extension_type: int
    extension_data: bytes


class Params:
    """Typed, Go-compatible access to the keys of one JSON object."""

    def __init__(self, where: str, fields: Mapping[str, object]) -> None:
        self._where = where
        self._fields = fields

    def string(self, key: str) -> str:
        value = lookup(self._fields, key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._mismatch(key, value, "string")
        return value

    def boolean(self, key: str) -> bool:
        value = lookup(self._fields, key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._mismatch(key, value, "bool")
        return value

    def integer(self, key: str) -> int:
        """A Go ``int`` (step indices)."""
        return self._int(key, lookup(self._fields, key), "int", _INT_RANGE)

    def uint64(self, key: str) -> int:
        return self._int(key, lookup(self._fields, key), "uint64", _UINT64_RANGE)

    def strings(self, key: str) -> tuple[str, ...]:
        return tuple(
            "" if item is None else self._str_item(key, item) for item in self._list(key)
        )

    def integers(self, key: str) -> tuple[int, ...]:
        return tuple(
            0 if item is None else self._int(key, item, "int", _INT_RANGE)
            for item in self._list(key)
        )

    def extensions(self, key: str) -> tuple[Extension, ...]:
        return tuple(self._extension(key, item) for item in self._list(key))

    def child(self, key: str) -> Params:
        """A nested object (``description``); missing gives an all-zero object."""
        return self._object(key, lookup(self._fields, key))

    def children(self, key: str) -> tuple[Params, ...]:
        """A list of nested objects (``byValue``)."""
        return tuple(self._object(key, item) for item in self._list(key))

    def _object(self, key: str, value: object) -> Params:
        if value is None:
            return Params(f"{self._where}.{key}", {})
        if not isinstance(value, dict):
            raise self._mismatch(key, value, "ProposalDescription")
        return Params(f"{self._where}.{key}", value)

    def _list(self, key: str) -> list[object]:
        value = lookup(self._fields, key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._mismatch(key, value, "array")
        return value

    def _str_item(self, key: str, item: object) -> str:
        if not isinstance(item, str):
            raise self._mismatch(key, item, "string")
        return item

    def _int(self, key: str, value: object, go_type: str, bounds: tuple[int, int]) -> int:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._mismatch(key, value, go_type)
        if not bounds[0] <= value <= bounds[1]:
            raise self._mismatch(key, value, go_type)
        return value

    def _extension(self, key: str, item: object) -> Extension:
        if item is None:
            return Extension(0, b"")
        if not isinstance(item, dict):
            raise self._mismatch(key, item, "Extension")
        data = lookup(item, "extension_data")
        if data is not None and not isinstance(data, str):
            raise self._mismatch("extension_data", data, "[]uint8")
        return Extension(
            extension_type=self._int(
                "extension_type", lookup(item, "extension_type"), "uint32", _UINT32_RANGE
            ),
            extension_data=_base64(data or ""),
        )

    def _mismatch(self, key: str, value: object, go_type: str) -> StepError:
        return StepError(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
            f"{self._where}.{key} of type {go_type}"
        )


def _base64(text: str) -> bytes:
    """Go's ``base64.StdEncoding`` as used for ``[]byte`` (padding required, CR/LF skipped)."""
    try:
        return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except binascii.Error as exc:
        raise StepError(f"illegal base64 data in extension_data: {exc}") from exc


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
