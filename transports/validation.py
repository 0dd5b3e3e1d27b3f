"""Argument checks shared by the transports: every DeliveryTransport method refuses
malformed arguments with :class:`~transports.base.InvalidRequestError` before doing
anything."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .base import InvalidRequestError, KeyPackageEntry

#: SQLite integers are signed 64-bit and a group moves to ``epoch + 1`` on a Commit.
MAX_EPOCH = (1 << 63) - 2
_CURSOR = re.compile(r"[0-9]{1,19}")
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def require_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{name} must be a non-empty str")
    return value


def require_message_id(value: object) -> str:
    """A submission's message id (DeliveryTransport.submit): 1-64 of ``[A-Za-z0-9._-]``,
    so every network can carry it (a Matrix transaction id, an XMPP origin-id)."""
    if not isinstance(value, str) or not _MESSAGE_ID.fullmatch(value):
        raise InvalidRequestError("message_id must be 1-64 characters of [A-Za-z0-9._-]")
    return value


def require_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes) or not value:
        raise InvalidRequestError(f"{name} must be non-empty bytes")
    return value


def require_epoch(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EPOCH:
        raise InvalidRequestError(f"epoch must be an int in [0, {MAX_EPOCH}]")
    return value


def require_client_ids(value: object) -> list[str]:
    """A non-empty sequence of client ids, without repeats (first occurrence kept)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise InvalidRequestError("client_ids must be a non-empty sequence of str")
    return list(dict.fromkeys(require_id("client id", c) for c in value))


def require_entries(value: object) -> list[KeyPackageEntry]:
    """KeyPackage entries to publish: distinct refs, at most one last-resort."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidRequestError("entries must be a sequence of KeyPackageEntry")
    entries = list(value)
    for entry in entries:
        if not isinstance(entry, KeyPackageEntry):
            raise InvalidRequestError("entries must be a sequence of KeyPackageEntry")
        require_bytes("KeyPackageEntry.ref", entry.ref)
        require_bytes("KeyPackageEntry.key_package", entry.key_package)
        if not isinstance(entry.last_resort, bool):
            raise InvalidRequestError("KeyPackageEntry.last_resort must be a bool")
    if len({e.ref for e in entries}) != len(entries):
        raise InvalidRequestError("entries repeat a KeyPackageRef")
    if sum(e.last_resort for e in entries) > 1:
        raise InvalidRequestError("at most one last-resort KeyPackage per publish")
    return entries


def parse_cursor(after: object) -> int:
    """A decimal-integer cursor (None: from the start)."""
    if after is None:
        return 0
    if not isinstance(after, str) or not _CURSOR.fullmatch(after):
        raise InvalidRequestError("cursor must be None or a cursor returned by this transport")
    return int(after)


def require_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidRequestError("limit must be a positive int")
    return limit
