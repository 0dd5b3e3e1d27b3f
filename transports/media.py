"""Blob storage for encrypted attachments (draft-ietf-mimi-content "External content").

A network transport that can store a blob on its own network offers
:class:`MediaStore` (``upload_media``): XEP-0363 HTTP File Upload on XMPP, the media
repository on Matrix. The blob is already encrypted by the client; the transport sees
ciphertext only. What comes back is an ordinary HTTP(S) URL that any member fetches with
:func:`http_download`, whatever network it is on (a bridged group's members included).
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Protocol, runtime_checkable

import aiohttp

from .base import InvalidRequestError, TransportError
from .tls import download_context

#: the content type every encrypted blob is uploaded as
BLOB_TYPE = "application/octet-stream"


class MediaTooLargeError(InvalidRequestError):
    """A blob is larger than the limit (ours on download, the server's on upload)."""


@runtime_checkable
class MediaStore(Protocol):
    """A transport that stores blobs on its network and returns their HTTP URL."""

    async def upload_media(self, data: bytes) -> str:
        """Store ``data``; returns an HTTP(S) URL from which anyone may GET it."""
        ...


def media_store_of(transport: object) -> MediaStore | None:
    """The :class:`MediaStore` of a transport, looking through wrappers (``inner``,
    e.g. a bridged transport) to the network transport; None if there is none."""
    seen: set[int] = set()
    while transport is not None and id(transport) not in seen:
        seen.add(id(transport))
        if isinstance(transport, MediaStore):
            return transport
        transport = vars(transport).get("inner") if hasattr(transport, "__dict__") else None
    return None


async def http_download(url: str, max_size: int, *, timeout: float = 120.0,
                        ca_file: Path | None = None) -> bytes:
    """GET ``url`` (http or https), refusing more than ``max_size`` bytes (by the
    announced length, and while reading). An https server's certificate must verify
    against the system's CAs or those of ``ca_file``. Failures are
    :class:`TransportError`s."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidRequestError(f"not an HTTP URL: {scheme or 'no scheme'}")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
                s.get(url, allow_redirects=True, ssl=download_context(ca_file)) as resp:
            if resp.status != 200:
                raise TransportError(f"GET {_short(url)}: HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > max_size:
                raise MediaTooLargeError(f"GET {_short(url)}: {resp.content_length} bytes "
                                         f"exceed the limit of {max_size}")
            out = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                out += chunk
                if len(out) > max_size:
                    raise MediaTooLargeError(f"GET {_short(url)}: more than {max_size} "
                                             "bytes")
            return bytes(out)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransportError(f"GET {_short(url)}: {exc!r}") from None


def _short(url: str) -> str:
    """The URL without its query (which may carry a token) for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
