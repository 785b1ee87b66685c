"""An ASGI middleware that caps request bodies: 413 with the JSON error shape, counted as bytes arrive.

A declared ``Content-Length`` over the limit is refused before anything is read; a chunked (or
lying) body is counted chunk by chunk and cut off at the limit, so an oversized body never sits in
memory whole.

Example:
    >>> # app.add_middleware(BodyLimitMiddleware, max_bytes=256 * 1024 * 1024)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _detail(max_bytes: int) -> str:
    return (f"request body is over the server's limit of {max_bytes} bytes (config max_request_body_bytes); "
            "pass large inputs as an http(s) URL of a csv/parquet file")


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes the limit. An HTTPException, so FastAPI's body
    parsing re-raises it as is (any other error there becomes a 400) and the app renders a 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _detail(max_bytes))


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413 {"detail", "code", "request_id"}."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _body_headers(scope)
        if declared is None and not chunked:
            # no Content-Length and no Transfer-Encoding: HTTP/1.1 says there is no body (every GET)
            await self.app(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        request_id = uuid.uuid4().hex[:16]
        body = json.dumps({"detail": _detail(self.max_bytes), "code": "request_too_large",
                           "request_id": request_id}).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": [
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
