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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .retrying import DeadlineReached
from .watchdog import SocketWatchdog

if TYPE_CHECKING:
    from .progressive_parquet import ProgressiveParquet

#: Bytes per read: the loop runs ~40 times for a 38 MB file instead of ~600.
CHUNK = 1 << 20
_UNSAFE_HEADERS = ("content-length", "transfer-encoding")
#: Bytes of the file asked first when a listener decodes as the body arrives: the footer of any results
#: file of up to ~10k row groups; a smaller file comes whole in this one request.
TAIL_BYTES = 1 << 20
T = TypeVar("T")


def usable(http: httpx.Client, custom_transport: bool, url: httpx.URL) -> bool:
    """True when sending ``url`` outside httpx skips nothing httpx would do for it."""
    if custom_transport or url.scheme not in ("http", "https"):
        return False
    if any(http.event_hooks.get(kind) for kind in ("request", "response")):
        return False
    proxies = urllib.request.getproxies()  # what httpx's trust_env honours (HTTP(S)_PROXY, ALL_PROXY)
    return not (proxies.get(url.scheme) or proxies.get("all")) or bool(urllib.request.proxy_bypass(url.host))


def get_to_file(request: httpx.Request, dest: str, *, read_timeout: float, connect_timeout: float,
                deadline: float | None, ssl_context: ssl.SSLContext,
                listener: ProgressiveParquet | None = None) -> httpx.Response | None:
    """Send ``request``; a 2xx body goes to ``dest``, any other status comes back read, as an httpx.Response.

    Returns None (nothing written) when the server encodes the body (gzip ...) despite
    ``Accept-Encoding: identity``: the caller then uses httpx, which decodes. Transport failures raise
    httpx's exceptions (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError`` ...), so retries and
    messages stay the client's; past ``deadline`` ``DeadlineReached`` is raised.

    With a ``listener`` the file's last ``TAIL_BYTES`` are asked first (``Range: bytes=-N``), so the
    listener can decode row groups while the rest streams in (a second request on the same connection,
    ``Range: bytes=0-...`` with ``If-Range``). A server that ignores Range answers the first request
    with the whole file, which is then simply written (no second request, nothing decoded early).
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
    exchange = _Exchange(conn, request, headers, read_timeout, deadline)
    try:
        if listener is None:
            return exchange.send({}, lambda response: _receive(request, response, dest, deadline))
        return _get_progressive(exchange, dest, listener)
    except BaseException:
        if listener is not None:
            listener.abandon()  # before anyone touches the file again (a retry truncates it)
        raise
    finally:
        conn.close()  # never pooled: the next request gets httpx's own connection


class _Exchange:
    """Requests on one ``http.client`` connection, each under the deadline's watchdog, errors as httpx's."""

    def __init__(self, conn: http.client.HTTPConnection, request: httpx.Request, headers: dict[str, str],
                 read_timeout: float, deadline: float | None) -> None:
        self.conn, self.request, self.headers = conn, request, headers
        self.read_timeout, self.deadline = read_timeout, deadline

    def send(self, extra: dict[str, str], handle: Callable[[http.client.HTTPResponse], T]) -> T:
        """Send the request with ``extra`` headers; ``handle`` reads the response."""
        conn, request = self.conn, self.request
        stage = "connect"
        try:
            if conn.sock is None:  # the first request, or the server closed the connection after one
                conn.connect()
                assert conn.sock is not None
                conn.sock.settimeout(self.read_timeout)
            stage = "send"
            conn.request(request.method, request.url.raw_path.decode("ascii"), headers={**self.headers, **extra})
            stage = "read"
            watchdog = SocketWatchdog(conn.sock, self.deadline)
            try:
                return handle(conn.getresponse())
            except BaseException:
                if watchdog.fired:
                    raise DeadlineReached(
                        f"{request.method} {request.url.path}: the body did not arrive in time") from None
                raise
            finally:
                watchdog.stop()
        except (DeadlineReached, httpx.HTTPError):
            raise
        except Exception as exc:
            raise _as_httpx(exc, stage, request) from exc


def _get_progressive(exchange: _Exchange, dest: str, listener: ProgressiveParquet) -> httpx.Response | None:
    """The tail first (handed to ``listener``), then the rest from byte 0; see ``get_to_file``."""
    request, deadline = exchange.request, exchange.deadline
    tail: dict[str, Any] = {}

    def read_tail(response: http.client.HTTPResponse) -> httpx.Response | None:
        if response.status == 416:  # a server that refuses a suffix Range (RFC 9110 says serve it): ask plainly
            response.read()
            tail["refused"] = True
            return None
        if response.status != 206 or _encoded(response):  # Range ignored (200), an error, or gzip: no tail
            return _receive(request, response, dest, deadline)
        span = _content_range(response.getheader("content-range"))
        if span is None:
            raise httpx.RemoteProtocolError(f"a 206 answer with Content-Range {response.getheader('content-range')!r}",
                                            request=request)
        start, end, size = span
        if end - start + 1 > TAIL_BYTES:  # more than asked: only the whole file makes sense; never held in memory
            if (start, end) != (0, size - 1):
                raise httpx.RemoteProtocolError(f"a 206 answer of {end - start + 1} bytes to a {TAIL_BYTES}-byte "
                                                "suffix Range", request=request)
            with open(dest, "wb", buffering=0) as fh:
                _copy(request, response, fh, deadline, None)
            return httpx.Response(200, headers=_safe_headers(response), request=request)
        body = response.read(end - start + 1)
        if len(body) != end - start + 1 or end != size - 1:
            raise httpx.RemoteProtocolError(f"the results tail ended after {len(body)} of {end - start + 1} bytes",
                                            request=request)
        tail.update(start=start, size=size, body=body, tag=response.getheader("etag"),
                    modified=response.getheader("last-modified"))
        return httpx.Response(200, headers=_safe_headers(response), request=request)

    first = exchange.send({"Range": f"bytes=-{TAIL_BYTES}"}, read_tail)
    if tail.pop("refused", False):
        return exchange.send({}, lambda response: _receive(request, response, dest, deadline))
    if not tail:
        return first
    start, size, body = tail["start"], tail["size"], tail["body"]
    with open(dest, "wb", buffering=0) as fh:  # sparse up to the tail, which goes at its place
        fh.truncate(size)
        fh.seek(start)
        fh.write(body)
    if start == 0:  # the whole file fitted in the tail
        return first
    listener.begin(size, body)
    condition = tail["tag"] or tail["modified"]  # a changed file comes back whole (200), never mixed
    extra = {"Range": f"bytes=0-{start - 1}", **({"If-Range": condition} if condition else {})}

    def read_rest(response: http.client.HTTPResponse) -> httpx.Response | None:
        if response.status != 206 or _encoded(response):
            listener.abandon()  # a whole (changed) file, an error or gzip: as without a tail
            return _receive(request, response, dest, deadline)
        if _content_range(response.getheader("content-range")) != (0, start - 1, size) or (
                tail["tag"] and response.getheader("etag") not in (None, tail["tag"])):
            raise httpx.RemoteProtocolError(  # retried from the start: never a file of two versions
                "the results file changed between its tail and the rest", request=request)
        with open(dest, "r+b", buffering=0) as fh:
            _copy(request, response, fh, deadline, listener.advance)
        listener.finished()
        return httpx.Response(200, headers=_safe_headers(response), request=request)

    return exchange.send(extra, read_rest)


def _content_range(value: str | None) -> tuple[int, int, int] | None:
    """``bytes START-END/SIZE`` as numbers; None when absent or not that form."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, size = value[6:].split("/")
        start, end = span.split("-")
        parsed = int(start), int(end), int(size)
    except ValueError:
        return None
    return parsed if 0 <= parsed[0] <= parsed[1] < parsed[2] else None


def _encoded(response: http.client.HTTPResponse) -> bool:
    return response.getheader("content-encoding", "identity").lower() != "identity"


def _safe_headers(response: http.client.HTTPResponse) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.getheaders() if k.lower() not in _UNSAFE_HEADERS]


def _receive(request: httpx.Request, response: http.client.HTTPResponse, dest: str,
             deadline: float | None) -> httpx.Response | None:
    headers = _safe_headers(response)
    if not 200 <= response.status < 300:  # an error answer: small; parsed as usual by the caller
        answer = httpx.Response(response.status, headers=headers, stream=httpx.ByteStream(response.read()),
                                request=request)
        answer.read()  # decodes a gzip error body like httpx would
        return answer
    if _encoded(response):
        return None
    with open(dest, "wb", buffering=0) as fh:
        _copy(request, response, fh, deadline, None)
    return httpx.Response(response.status, headers=headers, request=request)


def _copy(request: httpx.Request, response: http.client.HTTPResponse, fh: Any, deadline: float | None,
          progress: Callable[[int], None] | None) -> None:
    """The body into ``fh`` (at its position) by 1 MiB reads; ``progress(bytes so far)`` after each."""
    expected = None if response.chunked else response.length  # Content-Length, when the body has one
    buffer = memoryview(bytearray(CHUNK))
    total = 0
    while True:
        n = response.readinto(buffer)
        if not n:
            break
        written = 0
        while written < n:
            written += fh.write(buffer[written:n])
        total += n
        if progress is not None:
            progress(total)
        if deadline is not None and time.time() > deadline:
            raise DeadlineReached(f"{request.method} {request.url.path}: the body did not arrive in time")
    if expected is not None and total != expected:  # readinto answers a closed socket with 0, not an error
        raise httpx.RemoteProtocolError(f"the body ended after {total} of {expected} bytes (connection closed)",
                                        request=request)


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
