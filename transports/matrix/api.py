"""A thin JSON client of the Matrix client-server API on matrix-nio's HTTP session.

matrix-nio handles login and owns the aiohttp session; the calls the MLS mapping needs
(custom one-time-key algorithms, custom to-device types, state events, backfill) go through
nio's raw request support (:meth:`nio.AsyncClient.send`), because nio's typed helpers only
speak Olm/Megolm. Every failure becomes a typed :class:`~transports.base.TransportError`;
HTTP 429 is retried after the server's ``retry_after_ms``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
from nio import AsyncClient, AsyncClientConfig, LoginResponse  # type: ignore[import-untyped]

from transports.base import (
    CredentialsRejectedError,
    InvalidRequestError,
    LoginError,
    TransportError,
    UnreachableError,
)
from transports.tls import client_context, untrusted_error

from .events import PayloadTooLargeError

CLIENT = "/_matrix/client/v3"
MAX_429_RETRIES = 10
MAX_ERROR_BODY = 65_536


class MatrixApiError(TransportError):
    """The homeserver refused a request (``status`` and Matrix ``errcode``)."""

    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(f"HTTP {status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        #: the homeserver failed or is overloaded: the request may be retried
        self.transient = status >= 500 or status == 429


class MatrixCredentialsError(MatrixApiError, CredentialsRejectedError):
    """HTTP 401 with ``M_UNKNOWN_TOKEN`` or ``M_MISSING_TOKEN`` (Matrix client-server API,
    "Authentication"): the access token no longer works, so the transport cannot go on."""


#: errcodes of a 401 that mean the access token itself is gone (a 401 of user-interactive
#: authentication carries ``flows`` and no such errcode)
TOKEN_ERRCODES = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"})


def quote(value: str) -> str:
    """Percent-encode a path segment (room ids contain ``!`` and ``:``)."""
    return urllib.parse.quote(value, safe="")


def _login_refused(homeserver: str, user_id: str, resp: object) -> TransportError:
    """The typed error of a refused password login (a nio ``LoginError``), saying which
    setting to check: M_FORBIDDEN is a wrong password or user; no Matrix error code at
    all means the URL does not lead to a homeserver's client API."""
    errcode = getattr(resp, "status_code", None)
    transport = getattr(resp, "transport_response", None)
    status = getattr(transport, "status", None)
    if errcode == "M_FORBIDDEN":
        return LoginError(f"the homeserver {homeserver} refused the login of {user_id}: "
                          "wrong password, or no such user; check [matrix] user_id and "
                          "password")
    if errcode in (None, "", "None") or not str(errcode).startswith("M_"):
        return LoginError(f"{homeserver} does not answer as a Matrix homeserver"
                          f"{f' (HTTP {status})' if status else ''}: check [matrix] "
                          "homeserver, the server's base URL (e.g. https://matrix.example.org)")
    return MatrixApiError(int(status or 403), str(errcode),
                          f"login failed: {getattr(resp, 'message', resp)}")


def _error(status: int, body: object) -> TransportError:
    errcode, message = "M_UNKNOWN", ""
    if isinstance(body, dict):
        errcode = str(body.get("errcode", errcode))
        message = str(body.get("error", ""))
    if status == 413 or errcode == "M_TOO_LARGE":
        return PayloadTooLargeError(f"the homeserver refused a payload as too large: "
                                    f"{message}")
    if status == 401 and errcode in TOKEN_ERRCODES:
        return MatrixCredentialsError(status, errcode, message)
    return MatrixApiError(status, errcode, message)


class MatrixApi:
    """One logged-in device. Create with :meth:`login`; :meth:`close` it."""

    def __init__(self, nio_client: AsyncClient) -> None:
        self._nio = nio_client

    @classmethod
    async def login(cls, homeserver: str, user_id: str, *, password: str | None = None,
                    access_token: str | None = None, device_id: str | None = None,
                    device_name: str = "mls-bridge", request_timeout: float = 60.0,
                    ca_file: Path | None = None) -> MatrixApi:
        """Log in with a password (reusing ``device_id`` if given) or adopt an access
        token (its device is looked up with ``/account/whoami``). An ``https://``
        homeserver's certificate must verify against the system's CAs, or only those of
        ``ca_file``."""
        config = AsyncClientConfig(request_timeout=request_timeout, max_timeouts=2,
                                   encryption_enabled=False, store_sync_tokens=False)
        client = AsyncClient(homeserver.rstrip("/"), user_id, device_id=device_id or "",
                             config=config, ssl=client_context(ca_file))
        api = cls(client)
        try:
            if access_token is not None:
                client.access_token = access_token
                who = await api.request("GET", f"{CLIENT}/account/whoami")
                if who.get("user_id") != user_id or not isinstance(who.get("device_id"), str):
                    raise InvalidRequestError("the access token belongs to another user or "
                                              "has no device")
                client.device_id = who["device_id"]
            elif password is not None:
                resp = await client.login(password=password, device_name=device_name)
                if not isinstance(resp, LoginResponse):
                    raise _login_refused(homeserver, user_id, resp)
            else:
                raise InvalidRequestError("a password or an access token is required")
        except aiohttp.ClientConnectorCertificateError as exc:
            await client.close()
            raise untrusted_error(f"the Matrix homeserver {homeserver}", "matrix",
                                  exc.certificate_error, ca_file) from None
        except aiohttp.ClientConnectorError as exc:
            await client.close()
            why = exc.os_error.strerror or str(exc.os_error)
            raise UnreachableError(f"cannot reach the Matrix homeserver at {homeserver} "
                                   f"({why}): is it running? Check [matrix] homeserver"
                                   ) from None
        except aiohttp.ClientResponseError as exc:
            await client.close()
            raise LoginError(f"{homeserver} does not answer as a Matrix homeserver "
                             f"(HTTP {exc.status}): check [matrix] homeserver, the "
                             "server's base URL (e.g. https://matrix.example.org)") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            await client.close()
            raise UnreachableError(f"no answer from the Matrix homeserver at {homeserver} "
                                   f"({exc or type(exc).__name__}): is it running? "
                                   "Check [matrix] homeserver") from None
        except BaseException:
            await client.close()
            raise
        return api

    @property
    def user_id(self) -> str:
        return str(self._nio.user_id)

    @property
    def device_id(self) -> str:
        return str(self._nio.device_id)

    async def close(self) -> None:
        await self._nio.close()

    async def request(self, method: str, path: str, body: Any = None, *,
                      query: dict[str, str] | None = None,
                      timeout: float | None = None) -> dict[str, Any]:
        """One JSON request; returns the decoded object."""
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        raw = await self.raw(method, path, data, query=query, timeout=timeout)
        try:
            out = json.loads(raw)
        except ValueError:
            raise TransportError(f"{method} {path}: the homeserver sent invalid JSON") from None
        if not isinstance(out, dict):
            raise TransportError(f"{method} {path}: expected a JSON object")
        return out

    async def raw(self, method: str, path: str, data: bytes | str | None = None, *,
                  query: dict[str, str] | None = None, content_type: str = "application/json",
                  timeout: float | None = None, max_size: int | None = None) -> bytes:
        """One request returning the raw body; retries 429 after ``retry_after_ms``."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        headers = {"Content-Type": content_type,
                   "Authorization": f"Bearer {self._nio.access_token}"}
        for _ in range(MAX_429_RETRIES):
            try:
                resp = await self._nio.send(method, path, data, headers, timeout=timeout)
                async with resp:
                    status = resp.status
                    # an error body is read only as far as an error needs
                    limit = max_size if status < 300 else MAX_ERROR_BODY
                    if limit is not None and (resp.content_length or 0) > limit:
                        raise PayloadTooLargeError(f"{path}: {resp.content_length} bytes "
                                                   f"exceed the limit of {limit}")
                    payload = await _read_body(resp, limit)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransportError(f"{method} {path.split('?')[0]}: {exc!r}") from None
            if limit is not None and len(payload) > limit:
                raise PayloadTooLargeError(f"{path}: the body exceeds {limit} bytes")
            if status < 300:
                return payload
            err = _decode_error(payload)
            if status == 429:
                await asyncio.sleep(_retry_after(err))
                continue
            raise _error(status, err)
        raise TransportError(f"{method} {path}: still rate-limited after "
                             f"{MAX_429_RETRIES} tries")

    async def ban(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        """Ban ``user_id`` from the room (client-server API ``POST /rooms/{id}/ban``)."""
        body = {"user_id": user_id} if reason is None else {"user_id": user_id,
                                                              "reason": reason}
        await self.request("POST", f"{CLIENT}/rooms/{quote(room_id)}/ban", body)

    async def upload(self, data: bytes) -> str:
        """Store bytes in the media repository; returns the ``mxc://`` URI."""
        out = await self.raw("POST", "/_matrix/media/v3/upload", data,
                             content_type="application/octet-stream")
        try:
            uri = json.loads(out)["content_uri"]
        except (ValueError, KeyError, TypeError):
            raise TransportError("the media repository returned no content_uri") from None
        if not isinstance(uri, str):
            raise TransportError("the media repository returned no content_uri")
        return uri

    def media_url(self, mxc: str) -> str:
        """The plain HTTP URL of an ``mxc://server/id`` URI (client-server API "Content
        repository": ``GET /_matrix/media/v3/download/{server}/{id}``), which any HTTP
        client fetches without a token where the homeserver serves media
        unauthenticated (Synapse ``enable_authenticated_media: false``; docs/content.md)."""
        parts = urllib.parse.urlsplit(mxc)
        media_id = parts.path.lstrip("/")
        if parts.scheme != "mxc" or not parts.netloc or not media_id or "/" in media_id:
            raise TransportError("the media repository returned a malformed mxc URI")
        base = str(self._nio.homeserver).rstrip("/")
        return f"{base}/_matrix/media/v3/download/{quote(parts.netloc)}/{quote(media_id)}"

    async def download(self, server: str, media_id: str, max_size: int) -> bytes:
        """Fetch media (authenticated media API, Matrix 1.11), at most ``max_size``."""
        return await self.raw("GET", f"/_matrix/client/v1/media/download/{quote(server)}/"
                              f"{quote(media_id)}", max_size=max_size)


async def _read_body(resp: aiohttp.ClientResponse, max_size: int | None) -> bytes:
    """The whole body, or (with ``max_size``) at most ``max_size + 1`` bytes of it."""
    if max_size is None:
        data: bytes = await resp.read()
        return data
    out = bytearray()
    while len(out) <= max_size:
        chunk = await resp.content.read(max_size + 1 - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _decode_error(payload: bytes) -> object:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _retry_after(err: object) -> float:
    ms = err.get("retry_after_ms") if isinstance(err, dict) else None
    return min(10.0, ms / 1000) if isinstance(ms, int | float) and ms > 0 else 1.0
