"""Message ids (draft-ietf-mimi-content, "Message ID"): bound to the sender, the room, the
whole content and its salt.

    hash_output = SHA-256(senderUriLength || senderUri || roomUriLength || roomUri ||
                          message || salt)
    messageId = 0x01 || hash_output[0..30]
"""

from __future__ import annotations

import hashlib
import os

from .content import SHA256
from .errors import ContentValidationError

SALT_SIZE = 16


def new_salt() -> bytes:
    """A fresh 16-octet salt from the operating system's CSPRNG (the draft requires a
    cryptographically random salt; deriving it from an MLS exporter, as its
    "Generating the random salt" suggests, is one way, not a requirement)."""
    return os.urandom(SALT_SIZE)


def message_id(content: bytes, sender_uri: str, room_uri: str) -> bytes:
    """The 32-octet id of the encoded ``content`` sent by ``sender_uri`` to ``room_uri``.
    The salt is read from the content (its first field, always at the same offset)."""
    salt = _salt_of(content)
    hashed = hashlib.sha256()
    for uri in (sender_uri, room_uri):
        raw = uri.encode()
        if len(raw) > 0xFFFF:
            raise ContentValidationError("a URI longer than 65535 octets has no message id")
        hashed.update(len(raw).to_bytes(2, "big") + raw)
    hashed.update(content + salt)
    return bytes([SHA256]) + hashed.digest()[:31]


def _salt_of(content: bytes) -> bytes:
    # 0x87: array(7), 0x50: bytes(16): every valid content starts so (deterministic CBOR)
    if len(content) < 2 + SALT_SIZE or content[:2] != b"\x87\x50":
        raise ContentValidationError("not MIMI content: it must start with its 16-octet salt")
    return content[2:2 + SALT_SIZE]
