"""Helpers shared by the official test-vector checkers."""

from __future__ import annotations

from typing import Any


class VectorMismatch(AssertionError):
    """A computed value differs from the test vector's."""


def h(value: str | None) -> bytes:
    """Decode a hex field of a vector (``None`` stays empty)."""
    return bytes.fromhex(value) if value else b""


def expect(name: str, got: Any, want: Any) -> None:
    """Raise VectorMismatch naming the field when ``got != want`` (hex for bytes)."""
    if got != want:
        if isinstance(got, bytes | bytearray) and isinstance(want, bytes | bytearray):
            got, want = bytes(got).hex(), bytes(want).hex()
        raise VectorMismatch(f"{name}: got {got!r}, want {want!r}")


def expect_true(name: str, cond: bool) -> None:
    if not cond:
        raise VectorMismatch(f"{name}: check failed")


class NotReproducible(Exception):
    """A vector (part) that cannot be reproduced with the installed libraries; the message
    says why. Counted apart from passes and failures, never as a pass."""
