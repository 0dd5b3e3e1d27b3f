"""transports.media: the blob store lookup through wrappers and the capped HTTP GET."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from transports.base import InvalidRequestError, TransportError
from transports.media import MediaTooLargeError, http_download, media_store_of


class _Store:
    async def upload_media(self, data: bytes) -> str:
        return "http://127.0.0.1/blob"


class _Wrapper:
    def __init__(self, inner: object) -> None:
        self.inner = inner


def test_media_store_is_found_through_wrappers() -> None:
    store = _Store()
    assert media_store_of(_Wrapper(_Wrapper(store))) is store
    assert media_store_of(_Wrapper(object())) is None
    looped = _Wrapper(None)
    looped.inner = looped
    assert media_store_of(looped) is None


def test_download_refuses_other_schemes_and_caps_the_size() -> None:
    async def body() -> None:
        app = web.Application()

        async def chunked(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse()  # no Content-Length: the cap applies while reading
            await resp.prepare(request)
            for _ in range(10):
                await resp.write(b"x" * 1000)
            return resp

        async def fixed(request: web.Request) -> web.Response:
            return web.Response(body=b"y" * 5000)

        app.router.add_get("/fixed", fixed)
        app.router.add_get("/chunked", chunked)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            assert await http_download(f"{base}/fixed", 5000) == b"y" * 5000
            with pytest.raises(MediaTooLargeError, match="exceed the limit of 4999"):
                await http_download(f"{base}/fixed", 4999)
            with pytest.raises(MediaTooLargeError, match="more than 2500"):
                await http_download(f"{base}/chunked", 2500)
            with pytest.raises(TransportError, match="HTTP 404"):
                await http_download(f"{base}/missing", 100)
            with pytest.raises(InvalidRequestError, match="not an HTTP URL"):
                await http_download("file:///etc/passwd", 100)
        finally:
            await runner.cleanup()

    asyncio.run(body())
