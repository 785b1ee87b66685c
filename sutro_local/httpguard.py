"""Serving sutro-local with uvicorn, guarded against slow clients.

uvicorn closes an idle keep-alive connection, but not one that keeps sending a request's headers a
byte at a time (slowloris): its keep-alive timer is reset by every byte and no timer runs before the
first request. `guarded_protocol` wraps uvicorn's HTTP protocol class so that, while a connection
waits for a request's headers, it has `header_timeout_seconds` in all (not per byte) and at most
`max_header_bytes`; past either it gets 408/431 and is closed. Slow request *bodies* are cut off by
the body middleware (`bodylimit.py`, `body_idle_timeout_seconds`).

Example:
    >>> # run_server(create_app(settings), settings.config, host="127.0.0.1", port=8484, log_level="warning")
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .config import HttpConfig, ServerConfig


def _answer(status: bytes, text: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"content-length: " + str(len(text)).encode() + b"\r\n\r\n" + text)  # fmt: skip


TIMED_OUT = _answer(b"408 Request Timeout", b"request headers not received in time\n")
TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"request headers too large\n")


def guarded_protocol(base: type[asyncio.Protocol], http: HttpConfig) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's protocol class `base` (httptools or h11) with a total deadline and a
    size cap on each request's headers.

    Waiting for headers starts when the connection opens and again when a response completes with
    no pipelined request behind it; it ends when the protocol starts a new request cycle (its
    `cycle` changes), which both uvicorn protocols do as soon as the headers are parsed.

    Example:
        >>> from uvicorn.protocols.http.h11_impl import H11Protocol
        >>> guarded_protocol(H11Protocol, HttpConfig()).__name__
        'GuardedH11Protocol'
    """

    class Guarded(base):  # type: ignore[valid-type, misc]
        _deadline: asyncio.TimerHandle | None = None
        _waiting_cycle: Any = None
        _header_bytes = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._await_headers()

        def _await_headers(self) -> None:
            self._stop_waiting()
            self._waiting_cycle = self.cycle
            self._header_bytes = 0
            self._deadline = self.loop.call_later(http.header_timeout_seconds, self._refuse, TIMED_OUT)

        def _stop_waiting(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _refuse(self, answer: bytes) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            waiting = self._deadline is not None
            super().data_received(data)
            if not waiting:
                return
            if self.cycle is not self._waiting_cycle:  # the headers are in: a request runs now
                self._stop_waiting()
                return
            # still no full header block: count what came (bodies are counted by the body middleware)
            self._header_bytes += len(data)
            if self._header_bytes > http.max_header_bytes:
                self._stop_waiting()
                self._refuse(TOO_LARGE)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # no pipelined request started
                self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def run_server(app: Any, config: ServerConfig, *, host: str, port: int, log_level: str) -> None:
    """Serve `app` with uvicorn until stopped: guarded protocol, keep-alive timeout from
    `config.http`, and a 077 umask (every file the server writes -- database, job inputs and
    results, keys -- is private to its user whatever umask it was started with).

    Example:
        >>> # run_server(app, load_config(None), host="127.0.0.1", port=8484, log_level="warning")
    """
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    os.umask(0o077)
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=False,
        http=guarded_protocol(AutoHTTPProtocol, config.http),
        timeout_keep_alive=max(1, round(config.http.keep_alive_seconds)),
    )  # fmt: skip
