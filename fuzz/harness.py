"""What every fuzz target shares: the oracle, input framing and the target registry.

The oracle (docs/fuzzing.md): mls_core reports every failure as an
:class:`~mls_core.errors.MLSError` (``mls_core/errors.py``). Any other exception escaping a
target is a crash, and so is a broken invariant that a target checks itself
(:class:`InvariantViolation`), e.g. a rejected message that changed the group state.

Targets are plain modules with ``TestOneInput(data: bytes) -> None`` (the atheris entry
point) and ``run_one(data: bytes) -> Outcome`` (what the tests call), plus ``seeds()``
giving the target's seed corpus. Nothing here imports atheris: only ``fuzz.run`` does.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Iterator
from types import ModuleType

from mls_core.errors import MLSError

#: every target, in the order CI runs them (module ``fuzz.<name>``)
TARGETS = ("decoders", "join", "join_external", "process_public", "process_private")


class Outcome(enum.Enum):
    """How one input ended (crashes are raised, not returned)."""

    ACCEPTED = "accepted"   # mls_core accepted the input
    REJECTED = "rejected"   # mls_core raised an MLSError, invariants held
    SKIPPED = "skipped"     # the harness could not build a call from the input


class InvariantViolation(AssertionError):
    """A target's own check failed: this input is a finding."""


def guarded(call: Callable[[], object]) -> Outcome:
    """Run ``call``: ACCEPTED if it returns, REJECTED on MLSError; any other exception
    propagates and is the crash the fuzzer reports."""
    try:
        call()
    except MLSError:
        return Outcome.REJECTED
    return Outcome.ACCEPTED


# ----------------------------------------------------------------------- input framing


def split_chunks(data: bytes, n: int) -> list[bytes]:
    """Split ``data`` into ``n`` byte strings: ``n - 1`` with a 2-byte big-endian length
    prefix each (cut short at the end of the data), the last one the remainder."""
    out: list[bytes] = []
    p = 0
    for _ in range(n - 1):
        length = int.from_bytes(data[p:p + 2], "big")
        out.append(data[p + 2:p + 2 + length])
        p = min(len(data), p + 2 + length)
    out.append(data[p:])
    return out


def join_chunks(*parts: bytes) -> bytes:
    """Inverse of :func:`split_chunks` (every part but the last must be < 64 KiB)."""
    out = bytearray()
    for part in parts[:-1]:
        if len(part) > 0xFFFF:
            raise ValueError("chunk too long for a 2-byte length")
        out += len(part).to_bytes(2, "big") + part
    out += parts[-1]
    return bytes(out)


# ----------------------------------------------------------------------------- registry


def target(name: str) -> ModuleType:
    """The module of target ``name`` (one of :data:`TARGETS`)."""
    if name not in TARGETS:
        raise KeyError(f"unknown fuzz target {name!r}; known: {', '.join(TARGETS)}")
    return importlib.import_module(f"fuzz.{name}")


def mutations(seed: bytes, count: int, rng_seed: int = 0) -> Iterator[bytes]:
    """Deterministic cheap mutations of ``seed`` (bit flips, truncations, byte sets) for
    the tests that keep the harnesses from rotting."""
    import random

    rng = random.Random(rng_seed)
    for _ in range(count):
        data = bytearray(seed)
        op = rng.randrange(3)
        if not data:
            yield bytes(rng.randbytes(4))
            continue
        pos = rng.randrange(len(data))
        if op == 0:
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            del data[pos:]
        else:
            data[pos] = rng.choice((0x00, 0x01, 0x3F, 0x40, 0x80, 0xFF))
        yield bytes(data)
