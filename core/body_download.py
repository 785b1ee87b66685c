"""A results body streamed to a file by one C-level read loop, not httpx's Python path per 64 KiB.

httpx parses every socket read (64 KiB) in Python (httpcore + h11): ~43 ms of CPU for a 38 MB results
file, a third more than the transfer itself on loopback. ``http.client``'s ``readinto`` fills a
1 MiB buffer in C (one ``recv_into`` per socket read), so a download costs ~17 ms of CPU and runs at
curl's speed (benchmarks/results_download.py). Used by ``SutroClient`` for ``stream_to`` calls when
nothing of httpx's would be skipped (no custom transport, no event hooks, no proxy); errors come
back as the httpx exceptions and responses the rest of the client already handles.

Example:
    >>> request = http.build_request("GET", "jobs/job-1/results")            # doctest: +SKIP
    >>> get_to_file(request, "/tmp/r.parquet", read_timeout=60, connect_timeout=10, deadline=None,
    ...             ssl_context=shared_ssl_context()).status_code
    200
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.request
from typing import Any

import httpx

from .retrying import DeadlineReached
from .watchdog import SocketWatchdog

#: Bytes per read: the loop runs ~40 times for a 38 MB file instead of ~600.
CHUNK = 1 << 20
_UNSAFE_HEADERS = ("content-length", "transfer-encoding")


def usable(http: httpx.Client, custom_transport: bool, url: httpx.URL) -> bool:
    """True when sending ``url`` outside httpx skips nothing httpx would do for it."""
    if custom_transport or url.scheme not in ("http", "https"):
        return False
    if any(http.event_hooks.get(kind) for kind in ("request", "response")):
        return False
    proxies = urllib.request.getproxies()  # what httpx's trust_env honours (HTTP(S)_PROXY, ALL_PROXY)
    return not (proxies.get(url.scheme) or proxies.get("all")) or bool(urllib.request.proxy_bypass(url.host))


def get_to_file(request: httpx.Request, dest: str, *, read_timeout: float, connect_timeout: float,
                deadline: float | None, ssl_context: ssl.SSLContext) -> httpx.Response | None:
    """Send ``request``; a 2xx body goes to ``dest``, any other status comes back read, as an httpx.Response.

    Returns None (nothing written) when the server encodes the body (gzip ...) despite
    ``Accept-Encoding: identity``: the caller then uses httpx, which decodes. Transport failures raise
    httpx's exceptions (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError`` ...), so retries and
    messages stay the client's; past ``deadline`` ``DeadlineReached`` is raised.
    """
    url = request.url
    port = url.port or (443 if url.scheme == "https" else 80)
    if url.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.host, port, timeout=connect_timeout, context=ssl_context)
    else:
        conn = http.client.HTTPConnection(url.host, port, timeout=connect_timeout)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "accept-encoding"}
    headers["Accept-Encoding"] = "identity"  # the file's bytes as they are: nothing to decode
    stage = "connect"
    try:
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(read_timeout)
            stage = "send"
            conn.request(request.method, url.raw_path.decode("ascii"), headers=headers)
            stage = "read"
            watchdog = SocketWatchdog(conn.sock, deadline)
            try:
                response = conn.getresponse()
                return _receive(request, response, dest, deadline)
            except BaseException:
                if watchdog.fired:
                    raise DeadlineReached(f"{request.method} {url.path}: the body did not arrive in time") from None
                raise
            finally:
                watchdog.stop()
        except (DeadlineReached, httpx.HTTPError):
            raise
        except Exception as exc:
            raise _as_httpx(exc, stage, request) from exc
    finally:
        conn.close()  # never pooled: the next request gets httpx's own connection


def _receive(request: httpx.Request, response: http.client.HTTPResponse, dest: str,
             deadline: float | None) -> httpx.Response | None:
    headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _UNSAFE_HEADERS]
    if not 200 <= response.status < 300:  # an error answer: small; parsed as usual by the caller
        answer = httpx.Response(response.status, headers=headers, stream=httpx.ByteStream(response.read()),
                                request=request)
        answer.read()  # decodes a gzip error body like httpx would
        return answer
    if response.getheader("content-encoding", "identity").lower() != "identity":
        return None
    expected = None if response.chunked else response.length  # Content-Length, when the body has one
    buffer = memoryview(bytearray(CHUNK))
    total = 0
    with open(dest, "wb", buffering=0) as fh:
        while True:
            n = response.readinto(buffer)
            if not n:
                break
            written = 0
            while written < n:
                written += fh.write(buffer[written:n])
            total += n
            if deadline is not None and time.time() > deadline:
                raise DeadlineReached(f"{request.method} {request.url.path}: the body did not arrive in time")
    if expected is not None and total != expected:  # readinto answers a closed socket with 0, not an error
        raise httpx.RemoteProtocolError(f"the body ended after {total} of {expected} bytes (connection closed)",
                                        request=request)
    return httpx.Response(response.status, headers=headers, request=request)


def _as_httpx(exc: Exception, stage: str, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception httpx itself would have raised for ``exc`` at ``stage``."""
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        kind: Any = {"connect": httpx.ConnectTimeout, "send": httpx.WriteTimeout}.get(stage, httpx.ReadTimeout)
    elif isinstance(exc, (http.client.IncompleteRead, http.client.RemoteDisconnected, http.client.BadStatusLine)):
        kind = httpx.RemoteProtocolError  # httpx: "peer closed connection without sending complete message body"
    elif isinstance(exc, http.client.HTTPException):
        kind = httpx.RemoteProtocolError
    else:  # OSError (refused, reset, DNS, TLS)
        kind = {"connect": httpx.ConnectError, "send": httpx.WriteError}.get(stage, httpx.ReadError)
    return kind(message, request=request)
