"""Fuzz target ``process_private``: Group.process on live state, handshake messages as
PrivateMessages (§6.3). See :mod:`fuzz.process` for the input format and the oracle."""

from __future__ import annotations

from collections.abc import Iterator

from . import process
from .harness import Outcome

WIRE_FORMAT = process.PRIVATE


def run_one(data: bytes) -> Outcome:
    return process.run_one(data, WIRE_FORMAT)


def TestOneInput(data: bytes) -> None:
    process.run_one(data, WIRE_FORMAT)


def seeds() -> Iterator[bytes]:
    return process.seeds(WIRE_FORMAT)
