"""``python -m mimi_content check FILE.cbor...``: decode each file as MIMI content (or, for
the draft's implied-values examples, as ``MessageDerivedValues``), validate it, encode
the result again and compare the bytes. Prints ``FILE: ok`` or ``FILE: <error>`` per file
and ``N passed, M failed`` last; exits 1 if any failed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .content import decode, encode
from .derived import decode_derived, encode_derived
from .errors import ContentError

#: how a MessageDerivedValues array starts: array(7), then bytes(32) (the message id)
_DERIVED_PREFIX = b"\x87\x58\x20"


def check_bytes(data: bytes) -> None:
    """Raise :class:`ContentError` unless ``data`` is valid and encodes back to itself."""
    if data.startswith(_DERIVED_PREFIX):
        again = encode_derived(decode_derived(data))
    else:
        again = encode(decode(data, max_size=max(len(data), 1)))
    if again != data:
        raise ContentError("decoded and encoded again, the bytes differ")


def check_files(paths: Sequence[str], out: TextIO) -> int:
    passed = failed = 0
    for name in paths:
        try:
            check_bytes(Path(name).read_bytes())
        except (ContentError, OSError) as exc:
            failed += 1
            print(f"{name}: {type(exc).__name__}: {exc}", file=out)
        else:
            passed += 1
            print(f"{name}: ok", file=out)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed or not passed else 0
