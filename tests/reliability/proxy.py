"""A fault-injecting HTTP/1.1 proxy for loopback tests: client -> FaultProxy -> sutro-local.

Each request is matched against the rules in order; the first rule with uses left applies one fault:

- ``drop_before``: close the connection without forwarding (the server never sees the request)
- ``drop_after``: forward, let the server do the work, then close without answering
- ``status_before`` / ``status_after``: answer ``status`` (500/502/503/524...) instead of, or after,
  forwarding (``after``: the server did the work, the answer is lost)
- ``rate_limit``: 429 with ``Retry-After`` without forwarding
- ``delay``: wait ``seconds`` before forwarding (a slow response)
- ``truncate``: forward, send the status line, headers and only ``keep`` body bytes, then close

Requests without a matching rule are forwarded untouched. Every request is logged in ``.log``
(method, path, fault applied, upstream status), so tests can count faults and server hits.
One request per client connection (``Connection: close``); streaming responses are piped.

Example:
    >>> with FaultProxy("127.0.0.1", 8484) as proxy:                        # doctest: +SKIP
    ...     proxy.add(Rule("status_after", path=r"^/batch-inference", status=524))
    ...     client = SutroClient(api_key=key, api_url=proxy.url)
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field

from sutro_local.testing import free_port
from support.held_tasks import hold_current_task

_API_PREFIX = re.compile(r"^/v1(?=/)")
ACTIONS = ("drop_before", "drop_after", "status_before", "status_after", "rate_limit", "delay", "truncate")
_HOP_HEADERS = {b"connection", b"keep-alive", b"proxy-connection"}


@dataclass
class Rule:
    """One fault: ``action`` applied to up to ``times`` requests matching ``method`` and the
    ``path`` regex (searched in the path with its query string), after skipping ``skip`` matches."""

    action: str
    path: str = ""
    method: str | None = None
    times: int = 1
    skip: int = 0
    status: int = 503
    retry_after: float = 0.05
    seconds: float = 0.0
    keep: int = 0
    applied: int = field(default=0, init=False)
    seen: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action {self.action!r} is not one of {ACTIONS}")

    def matches(self, method: str, target: str) -> bool:
        """True (and counted) when this rule applies to the request now."""
        if self.method and self.method.upper() != method.upper():
            return False
        if not re.search(self.path, target):
            return False
        self.seen += 1
        if self.seen <= self.skip or self.applied >= self.times:
            return False
        self.applied += 1
        return True


@dataclass(frozen=True)
class Entry:
    """What happened to one request."""

    method: str
    target: str
    fault: str | None
    upstream_status: int | None


class FaultProxy:
    """The proxy, serving on its own event loop thread. ``.url`` is what clients point at."""

    def __init__(self, upstream_host: str, upstream_port: int, *, port: int | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.rules: list[Rule] = []
        self.log: list[Entry] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        # the handler tasks, held (support/held_tasks.py says why)
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    def for_url(cls, url: str) -> "FaultProxy":
        """A proxy in front of ``http://host:port``."""
        host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
        return cls(host, int(port))

    @property
    def url(self) -> str:
        """Base URL clients use instead of the server's."""
        return f"http://127.0.0.1:{self.port}"

    # ---- rules and observations ----------------------------------------------------------------

    def add(self, *rules: Rule) -> "FaultProxy":
        """Append rules (first match wins)."""
        with self._lock:
            self.rules.extend(rules)
        return self

    def clear(self) -> None:
        """Drop every rule (the log stays)."""
        with self._lock:
            self.rules.clear()

    def faults_injected(self) -> int:
        """How many requests got a fault."""
        with self._lock:
            return sum(1 for e in self.log if e.fault)

    def hits(self, method: str, path_regex: str) -> list[Entry]:
        """Logged requests with this method whose target matches ``path_regex``."""
        with self._lock:
            return [e for e in self.log if e.method == method and re.search(path_regex, e.target)]

    def _pick(self, method: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, target):
                    return rule
        return None

    def _record(self, method: str, target: str, fault: str | None, status: int | None) -> None:
        with self._lock:
            self.log.append(Entry(method, target, fault, status))

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        """Start serving (returns once the port is bound)."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)  # stream objects finalised in this thread look the loop up
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        """Stop serving and close the loop."""
        if self._loop is None:
            return
        loop = self._loop
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    async def _shutdown(self) -> None:
        # finish connections still in flight (a delayed request, a client's idle keep-alive)
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- one connection --------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hold_current_task(self._tasks)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head[:-4].split(b"\r\n")
        method, target, _version = request_line.decode("latin-1").split(" ", 2)
        headers = [line for line in header_lines if line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS]
        length = 0
        for line in headers:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await reader.readexactly(length) if length else b""
        # Rules and the log see API paths without the deployment's /v1 prefix (clients send it, as the
        # official SDK does); the request is forwarded unchanged.
        target = _API_PREFIX.sub("", target, count=1)
        rule = self._pick(method, target)
        action = rule.action if rule else None

        if action == "drop_before":
            self._record(method, target, action, None)
            return
        if action == "status_before":
            self._record(method, target, action, None)
            await _answer(writer, rule.status, b'{"detail": "injected by fault proxy", "code": "injected"}')
            return
        if action == "rate_limit":
            self._record(method, target, action, None)
            await _answer(writer, 429, b'{"detail": "slow down (fault proxy)", "code": "rate_limited"}',
                          extra=f"Retry-After: {rule.retry_after}\r\n")
            return
        if action == "delay":
            await asyncio.sleep(rule.seconds)

        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            up_writer.write(request_line + b"\r\n" + b"\r\n".join(headers) + b"\r\nConnection: close\r\n\r\n" + body)
            await up_writer.drain()
            resp_head = await up_reader.readuntil(b"\r\n\r\n")
            status = int(resp_head.split(b" ", 2)[1])
            if action in ("drop_after", "status_after"):
                await up_reader.read()  # the server finishes its work; its answer is thrown away
                self._record(method, target, action, status)
                if action == "status_after":
                    text = b"<html><body>error code: %d (fault proxy)</body></html>" % rule.status
                    await _answer(writer, rule.status, text, content_type="text/html")
                return
            if action == "truncate":
                body_part = await _read_at_most(up_reader, rule.keep)
                self._record(method, target, action, status)
                writer.write(resp_head + body_part)
                await writer.drain()
                return
            self._record(method, target, action, status)
            writer.write(resp_head)
            while chunk := await up_reader.read(1 << 16):  # piped, so NDJSON streams flow line by line
                writer.write(chunk)
                await writer.drain()
        finally:
            up_writer.close()


async def _read_at_most(reader: asyncio.StreamReader, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await reader.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def _answer(writer: asyncio.StreamWriter, status: int, body: bytes, *, content_type: str = "application/json",
                  extra: str = "") -> None:
    head = (f"HTTP/1.1 {status} Fault\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n")
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
