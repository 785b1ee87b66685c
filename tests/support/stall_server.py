"""A tiny HTTP server for the faults a real sutro-local cannot produce: a route that hangs, a body that
trickles, a body that never ends, a body of the wrong format.

Every other route answers like a finished job, so a client gets as far as the faulty request.
Runs an asyncio loop in a thread; ``stop()`` closes every connection (no thread or socket outlives it).

Example:
    >>> with StallServer(status="hang") as srv:                      # doctest: +SKIP
    ...     SutroClient(api_key="k", api_url=srv.url).await_job_completion("job-1", timeout=3)
"""

from __future__ import annotations

import asyncio
import json
import threading

from sutro_local.testing import free_port

from .held_tasks import hold_current_task

JOB = {
    "job_id": "job-1", "status": "SUCCEEDED", "num_rows": 3, "model": "m", "name": None,
    "description": None, "job_priority": 0, "created_at": "2026-12-01T00:00:00Z",
}


class StallServer:
    """``status`` / ``results`` pick the behaviour of ``job-status`` / ``jobs/{id}/results``:
    ``ok``, ``hang`` (never answers), ``trickle`` (1 byte every ``interval`` s of a 10 kB body),
    ``endless`` (a chunked body that never ends), or raw bytes to send as a 200 body."""

    def __init__(self, *, status: str = "ok", results: "str | bytes" = "ok", job_status: str = "RUNNING",
                 interval: float = 0.5) -> None:
        self.status, self.results, self.job_status, self.interval = status, results, job_status, interval
        self.port = free_port()
        self.hits: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        # the handler tasks, held (support/held_tasks.py says why)
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "StallServer":
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop)
        self._server = fut.result(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> "StallServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hold_current_task(self._tasks)
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode()
                path = line.split(" ")[1].split("?")[0].removeprefix("/v1")
                length = 0
                for h in head.split(b"\r\n")[1:]:
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                self.hits.append(path)
                await self._answer(path, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        if path.startswith("/job-status/"):
            await self._behave(self.status, writer, json.dumps({"job_status": {"job-1": self.job_status}}).encode())
        elif path.endswith("/results"):
            await self._behave(self.results, writer, b"")
        elif path.startswith("/job-cancel/"):
            await _send(writer, json.dumps({"job_id": "job-1", "status": "CANCELLING"}).encode())
        elif path.startswith("/jobs/"):
            await _send(writer, json.dumps({"job": {**JOB, "status": self.job_status}}).encode())
        else:
            await _send(writer, json.dumps({"detail": "not here"}).encode(), status=404)

    async def _behave(self, how: "str | bytes", writer: asyncio.StreamWriter, ok_body: bytes) -> None:
        if isinstance(how, bytes):
            await _send(writer, how, content_type="application/octet-stream")
        elif how == "ok":
            await _send(writer, ok_body)
        elif how == "hang":
            await asyncio.Event().wait()
        elif how == "trickle":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 10000\r\n\r\n")
            for _ in range(10000):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(self.interval)
        elif how == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            while True:
                writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
        else:
            raise ValueError(how)


async def _send(writer: asyncio.StreamWriter, body: bytes, *, status: int = 200,
                content_type: str = "application/json") -> None:
    writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                 + body)
    await writer.drain()
