"""An ASGI middleware that guards request bodies: size caps (413), a stall timeout (408), and no
body read for a caller without a valid key (401) -- all in the JSON error shape.

- A declared ``Content-Length`` over the limit is refused before anything is read; a chunked (or
  lying) body is counted chunk by chunk and cut off at the limit, so an oversized body never sits in
  memory whole. Paths can have a smaller limit of their own (the console's forms: a few hundred bytes).
- A body that sends nothing for ``idle_timeout`` seconds is cut off (a client trickling a body
  would otherwise hold its request open forever).
- ``check_before_body(scope)`` runs before the app reads a body: FastAPI reads and decodes a
  route's JSON body *before* its dependencies run, so without it a request with no key could make
  the server decode 256 MB. It answers an ApiError (e.g. 401) or None.

Every refusal closes the connection (``connection: close``): the unread rest of the body is
never read.

Example:
    >>> # app.add_middleware(BodyLimitMiddleware, max_bytes=256 * 1024 * 1024,
    >>> #                    path_limits=[("/console/", 16384, "http.console_form_max_bytes")])
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _detail(max_bytes: int, setting: str) -> str:
    if setting != "max_request_body_bytes":
        return f"request body is over this route's limit of {max_bytes} bytes (config {setting})"
    return (f"request body is over the server's limit of {max_bytes} bytes (config max_request_body_bytes); "
            "pass large inputs as an http(s) URL of a csv/parquet file")


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes the limit. An HTTPException, so FastAPI's body
    parsing re-raises it as is (any other error there becomes a 400) and the app renders a 413."""

    def __init__(self, max_bytes: int, setting: str = "max_request_body_bytes") -> None:
        super().__init__(413, _detail(max_bytes, setting))


class BodyStalled(HTTPException):
    """Raised from `receive` when the client sent no body bytes for the idle timeout (408)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body stalled: nothing arrived for {seconds:g} s "
                              "(config http.body_idle_timeout_seconds)")  # fmt: skip


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` (or a path's own limit) with 413, stalled ones with 408,
    and bodies of callers `check_before_body` refuses, before reading them."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        max_bytes: int,
        *,
        path_limits: Sequence[tuple[str, int, str]] = (),
        idle_timeout: float | None = None,
        check_before_body: Callable[[Scope], Any] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = tuple(path_limits)  # (path prefix, max bytes, config key named in the 413)
        self.idle_timeout = idle_timeout
        self.check_before_body = check_before_body

    def _limit(self, path: str) -> tuple[int, str]:
        for prefix, max_bytes, setting in self.path_limits:
            if path.startswith(prefix):
                return max_bytes, setting
        return self.max_bytes, "max_request_body_bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _body_headers(scope)
        if declared is None and not chunked:
            # no Content-Length and no Transfer-Encoding: HTTP/1.1 says there is no body (every GET)
            await self.app(scope, receive, send)
            return
        max_bytes, setting = self._limit(scope.get("path", ""))
        if declared is not None and declared > max_bytes:
            await _refuse(send, 413, "request_too_large", _detail(max_bytes, setting))
            return
        if self.check_before_body is not None and (chunked or (declared or 0) > 0):
            refused = self.check_before_body(scope)
            if refused is not None:
                await _refuse(send, refused.status, refused.code, refused.detail)
                return
        seen = 0
        started = False
        idle = self.idle_timeout

        async def counting_receive() -> Message:
            nonlocal seen
            if idle is None:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout(idle):
                        message = await receive()
                except TimeoutError:
                    raise BodyStalled(idle) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise BodyTooLarge(max_bytes, setting)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except (BodyTooLarge, BodyStalled) as exc:
            if not started:
                code = "request_too_large" if exc.status_code == 413 else "request_timeout"
                await _refuse(send, exc.status_code, code, str(exc.detail))


async def _refuse(send: Send, status: int, code: str, detail: str) -> None:
    """Answer `status` in the API's JSON error shape and close the connection (the rest of the body
    is never read)."""
    request_id = uuid.uuid4().hex[:16]
    body = json.dumps({"detail": detail, "code": code, "request_id": request_id}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()), (b"connection", b"close")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _body_headers(scope: Scope) -> tuple[int | None, bool]:
    """(declared Content-Length or None, whether a Transfer-Encoding header is present)."""
    declared, chunked = None, False
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = -1  # unparsable: not "no body"; the server or app refuses it
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked
