"""A loopback TCP proxy that counts the bytes each way and can slow the upstream direction down.

Put it between a client and a real server (the S3 test endpoint) to see what went over the wire: a footer
read that moves kilobytes of a 20 MB file, an upload slow enough to be killed half way. Nothing is patched:
the client just talks to ``proxy.url``.

Example:
    >>> with CountingProxy(s3.port, upload_bytes_per_s=2_000_000) as proxy:   # doctest: +SKIP
    ...     env = {**s3.child_env(), "AWS_ENDPOINT_URL": proxy.url}
    ...     ...
    ...     proxy.downstream_bytes   # bytes the server sent back
"""

from __future__ import annotations

import socket
import threading
import time


class CountingProxy:
    """Forwards 127.0.0.1:``port`` (a free one) to 127.0.0.1:``target_port``; ``upstream_bytes`` (client to
    server) and ``downstream_bytes``; ``upload_bytes_per_s`` throttles the client-to-server direction."""

    def __init__(self, target_port: int, upload_bytes_per_s: float | None = None) -> None:
        self.target_port = target_port
        self.upload_bytes_per_s = upload_bytes_per_s
        self.upstream_bytes = 0
        self.downstream_bytes = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: use it as the endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Zero the byte counters."""
        with self._lock:
            self.upstream_bytes = self.downstream_bytes = 0

    def start(self) -> CountingProxy:
        """Accept connections in a daemon thread."""
        thread = threading.Thread(target=self._accept, name="counting-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for src, dst, up in ((client, server, True), (server, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, up), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        chunk = 16384
        try:
            while True:
                data = src.recv(chunk)
                if not data:
                    break
                if up and self.upload_bytes_per_s:
                    time.sleep(len(data) / self.upload_bytes_per_s)
                dst.sendall(data)
                with self._lock:
                    if up:
                        self.upstream_bytes += len(data)
                    else:
                        self.downstream_bytes += len(data)
        except OSError:
            pass
        finally:
            for s in (dst, src):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        """Close the listener and every connection; join the threads."""
        self._stopped.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
