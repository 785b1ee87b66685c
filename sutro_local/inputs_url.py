"""Fetch a URL input safely: public addresses only, every redirect hop checked, a size cap applied
as bytes arrive, one total deadline, and errors that never quote what was fetched.

- Only http/https. Each hop's host is resolved once and every address it resolves to must be
  public (not loopback, link-local, private, multicast, unspecified or reserved; v4 and v6,
  v4-mapped v6 and integer forms like ``2130706433`` included); the connection then goes to that
  very address (Host header and TLS SNI keep the name), so a DNS answer cannot change in between.
- Redirects are followed by hand (at most ``MAX_REDIRECTS``), each hop checked the same way.
- The body streams to a temp file and is cut off past ``max_bytes``.
- ``deadline`` bounds the whole fetch: checked between chunks, and no single read waits longer
  than what is left (at most ``READ_TIMEOUT_S``).
- Connection failures all read the same ("could not connect"), so errors do not map ports.

``allow_private`` (config ``url_inputs.allow_private``) lifts the address check for trusted
local files (tests, a file server on the same box).

Example:
    >>> # fetched = fetch_url("https://example.com/rows.csv", UrlInputsConfig(), Path("/tmp"))
    >>> # fetched.path, fetched.final_url, fetched.content_type
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from .config import UrlInputsConfig
from .errors import ApiError, echo

MAX_REDIRECTS = 5
READ_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Fetched:
    """A downloaded URL input: the temp file (the caller deletes it), the final URL and its content type."""

    path: Path
    final_url: str
    content_type: str


def _bad(detail: str, code: str = "invalid_inputs_url") -> ApiError:
    return ApiError(400, code, detail)


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address on the public internet.

    Example:
        >>> is_public_address(ipaddress.ip_address("127.0.0.1")), is_public_address(ipaddress.ip_address("8.8.8.8"))
        (False, True)
    """
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None and not is_public_address(embedded):
                return False
    # is_global is False for loopback, private, link-local, shared (100.64/10), reserved, unspecified
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int, deadline: float) -> list[str]:
    """Addresses of `host` (an IP literal resolves to itself; getaddrinfo also reads integer forms)."""
    if time.monotonic() > deadline:
        raise _timeout()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise _bad("could not connect to the inputs URL's host (name not resolved)", "inputs_url_unreachable") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _timeout() -> ApiError:
    return _bad("fetching the inputs URL took longer than the server's url_inputs.timeout_seconds; "
                "serve the file faster or pass the rows inline", "inputs_url_timeout")  # fmt: skip


def _check_hop(url: str, cfg: UrlInputsConfig, deadline: float) -> tuple[str, str, int, str]:
    """(scheme, host, port, address to connect to) of one hop, or ApiError(400)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise _bad(f"inputs URL (or a redirect) {echo(url)} is not http(s); only http and https URLs are fetched")
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise _bad(f"inputs URL {echo(url)} has an invalid port") from None
    if not host:
        raise _bad(f"inputs URL {echo(url)} has no host")
    addresses = _resolve(host, port, deadline)
    if not addresses:
        raise _bad("could not connect to the inputs URL's host (name not resolved)", "inputs_url_unreachable")
    if not cfg.allow_private:
        for addr in addresses:
            if not is_public_address(ipaddress.ip_address(addr.split("%")[0])):
                raise _bad(
                    f"inputs URL host {echo(host)} resolves to a non-public address (loopback, private, "
                    "link-local, multicast or reserved); sutro-local fetches only public addresses. For trusted "
                    "local files set url_inputs: {allow_private: true} in the server config",
                    "inputs_url_refused",
                )  # fmt: skip
    return parts.scheme, host, port, addresses[0]


def fetch_url(url: str, cfg: UrlInputsConfig, tmp_dir: Path, started: float | None = None) -> Fetched:
    """Download `url` to a temp file under `tmp_dir` (see the module docstring); ApiError(400) otherwise.
    `started` (time.monotonic()) is when the deadline began (e.g. when the request arrived)."""
    import httpx

    deadline = (started if started is not None else time.monotonic()) + cfg.timeout_seconds
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for _hop in range(MAX_REDIRECTS + 1):
        scheme, host, port, address = _check_hop(url, cfg, deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout()
        parts = urlsplit(url)
        ip_host = f"[{address}]" if ":" in address else address
        pinned = parts._replace(netloc=f"{ip_host}:{port}").geturl()  # connect to the checked address
        default_port = 443 if scheme == "https" else 80
        headers = {"Host": host if port == default_port else f"{host}:{port}", "Accept-Encoding": "identity"}
        timeout = httpx.Timeout(connect=min(CONNECT_TIMEOUT_S, remaining), read=min(READ_TIMEOUT_S, remaining),
                                write=min(READ_TIMEOUT_S, remaining), pool=min(CONNECT_TIMEOUT_S, remaining))  # fmt: skip
        extensions: dict[str, Any] = {"sni_hostname": host} if scheme == "https" else {}
        try:
            with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
                request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
                resp = client.send(request, stream=True)
                try:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise _bad("the inputs URL answered a redirect without a Location", "inputs_url_unreachable")
                        url = urljoin(url, location)
                        continue
                    if resp.status_code != 200:
                        raise _bad(f"inputs URL {echo(url)} answered HTTP {resp.status_code}", "inputs_url_unreachable")
                    return Fetched(_stream_to_file(resp, cfg.max_bytes, deadline, tmp_dir), url,
                                   resp.headers.get("content-type", "").lower())  # fmt: skip
                finally:
                    resp.close()
        except httpx.TimeoutException:
            raise _timeout() from None
        except httpx.HTTPError:
            # one message for refused, reset and unreachable alike: errors must not map ports
            raise _bad(f"could not connect to the inputs URL {echo(url)}", "inputs_url_unreachable") from None
    raise _bad(f"the inputs URL redirected more than {MAX_REDIRECTS} times", "inputs_url_unreachable")


def _stream_to_file(resp: Any, max_bytes: int, deadline: float, tmp_dir: Path) -> Path:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_big(max_bytes)
    fd, name = tempfile.mkstemp(prefix="url-input-", dir=tmp_dir)
    path = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as f:
            # as they arrive (a chunk_size would buffer); decoded, so the cap also bounds a gzip bomb
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(max_bytes)
                if time.monotonic() > deadline:
                    raise _timeout()
                f.write(chunk)
        return path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _too_big(max_bytes: int) -> ApiError:
    return _bad(f"the inputs URL's file is over the server's limit of {max_bytes} bytes (url_inputs.max_bytes); "
                "split it into several jobs", "inputs_url_too_large")  # fmt: skip
