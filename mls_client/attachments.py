"""Encrypted attachments (draft-ietf-mimi-content "External content").

The file is encrypted with AES-128-GCM under a fresh key and nonce, the ciphertext is
uploaded to the sender's own network (:mod:`transports.media`) and an ``ExternalPart``
carries the URL, the key, the nonce and the SHA-256 of the ciphertext ("hash of the
content at the target url") inside the MLS message only. A receiver downloads at most
the configured size, checks the hash, then decrypts; any failure is an
:class:`~mimi_content.AttachmentError` and changes nothing stored.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mimi_content import AES_128_GCM, SHA256, AttachmentError, ExternalPart

#: AES-128-GCM's key and nonce sizes (RFC 5116 §5.1) and tag
KEY_SIZE, NONCE_SIZE, TAG_SIZE = 16, 12, 16


@dataclass(frozen=True, repr=False)
class Sealed:
    """An encrypted file and what decrypts it (never logged: ``repr`` hides the key)."""

    ciphertext: bytes
    key: bytes
    nonce: bytes
    digest: bytes

    def __repr__(self) -> str:
        return f"Sealed({len(self.ciphertext)} bytes)"


def seal(data: bytes) -> Sealed:
    """Encrypt ``data`` under a fresh key and nonce (empty aad, the draft's default)."""
    key, nonce = AESGCM.generate_key(bit_length=128), os.urandom(NONCE_SIZE)
    ciphertext = AESGCM(key).encrypt(nonce, data, b"")
    return Sealed(ciphertext, key, nonce, hashlib.sha256(ciphertext).digest())


def external_part(sealed: Sealed, url: str, size: int, *, content_type: str,
                  filename: str = "", description: str = "") -> ExternalPart:
    """The ``ExternalPart`` of an uploaded file (``size``: of the plaintext)."""
    return ExternalPart(content_type, url, 0, size, AES_128_GCM, sealed.key, sealed.nonce,
                        b"", SHA256, sealed.digest, description, filename)


def check_fetchable(part: ExternalPart, max_size: int, now: int) -> None:
    """Refuse before downloading what could not be used."""
    if part.expires and part.expires <= now:
        raise AttachmentError(f"the attachment expired at {part.expires}")
    if part.size > max_size:
        raise AttachmentError(f"the attachment's {part.size} bytes exceed the limit of "
                              f"{max_size}")
    if part.enc_alg not in (0, AES_128_GCM):
        raise AttachmentError(f"unsupported encryption algorithm {part.enc_alg}")
    if part.hash_alg != SHA256:
        raise AttachmentError(f"unsupported hash algorithm {part.hash_alg}")


def unseal(part: ExternalPart, blob: bytes) -> bytes:
    """The plaintext of a downloaded blob: its SHA-256 must be the part's content hash,
    then AES-128-GCM must authenticate it. Raises AttachmentError."""
    if hashlib.sha256(blob).digest() != part.content_hash:
        raise AttachmentError("the downloaded attachment does not match its content hash "
                              "(tampered or wrong file)")
    if part.enc_alg == 0:
        return blob
    try:
        data = AESGCM(part.key).decrypt(part.nonce, blob, part.aad)
    except (InvalidTag, ValueError):
        raise AttachmentError("the attachment failed to decrypt (tampered)") from None
    if part.size and len(data) != part.size:
        raise AttachmentError(f"the attachment has {len(data)} bytes, not the {part.size} "
                              "announced")
    return data
