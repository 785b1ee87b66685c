"""Issue 14 items 1-3: URL inputs cannot reach internal addresses, cannot stall the API, and
cannot fill the server's memory; request bodies have a limit.

The server-level cases run against real sutro-local processes. Redirect hops need a first hop the
server accepts; these run the fetcher in-process against real local HTTP servers, with one
loopback address (127.0.0.2) treated as public for the test.
"""

from __future__ import annotations

import http.server
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from sutro_local import inputs_url
from sutro_local.config import UrlInputsConfig
from sutro_local.errors import ApiError
from sutro_local.inputs import resolve_inputs
from sutro_local.testing import LocalServer
from support.quiet_handler import QuietHandler

EMBED = "all-minilm-l6-v2"
SECRET_LINE = "root:x:0:0:SECRET-FIRST-LINE"


class _Handler(QuietHandler):
    """Routes: /secret.txt (text/plain), /rows.csv, /to?u=URL (302), /loop/N (redirect chain),
    /trickle.csv (1 byte a tick, until stopped), /endless.csv (chunked, never ends), /big.csv
    (declares a huge Content-Length)."""

    stop: threading.Event

    def do_GET(self):  # noqa: N802, D102
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(self.path)
        try:
            if parts.path == "/secret.txt":
                self._send(200, f"{SECRET_LINE}\nline two\n".encode(), "text/plain")
            elif parts.path == "/rows.csv":
                self._send(200, b"text\nhello\nworld\n")
            elif parts.path == "/to":
                self._send(302, b"", extra={"Location": parse_qs(parts.query)["u"][0]})
            elif parts.path.startswith("/loop/"):
                self._send(302, b"", extra={"Location": f"/loop/{int(parts.path[6:]) + 1}"})
            elif parts.path == "/trickle.csv":
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                while not self.stop.wait(0.5):
                    self.wfile.write(b"x")
                    self.wfile.flush()
            elif parts.path == "/endless.csv":
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"text\n" + b"y" * 65530 + b"\n"
                while not self.stop.is_set():
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            elif parts.path == "/big.csv":
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(10**12))
                self.end_headers()
            else:
                self._send(404, b"no")
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextmanager
def serve(host: str = "127.0.0.1") -> Iterator[str]:
    stop = threading.Event()
    handler = type("H", (_Handler,), {"stop": stop})
    srv = http.server.ThreadingHTTPServer((host, 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{srv.server_address[1]}"
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """A server with the defaults: private addresses refused; a small body limit."""
    cfg = {"models": {EMBED: {"engine": "embedding"}}, "worker": {"enabled": False},
           "max_request_body_bytes": 1_000_000}
    with LocalServer(tmp_path_factory.mktemp("strict") / "srv", cfg) as srv:
        yield srv


def _submit(srv: LocalServer, **body) -> httpx.Response:
    return httpx.post(f"{srv.url}/batch-inference", json={"model": EMBED, "column_name": "text", **body},
                      headers={"Authorization": f"Key {srv.api_key}"}, timeout=60)


def test_internal_addresses_are_refused_and_errors_do_not_map_ports(strict_server, tally):
    with serve() as base:
        port = base.rsplit(":", 1)[1]
        targets = [f"{base}/rows.csv", f"http://localhost:{port}/rows.csv", f"http://0.0.0.0:{port}/rows.csv",
                   f"http://2130706433:{port}/rows.csv", f"http://0x7f000001:{port}/rows.csv",
                   f"http://[::1]:{port}/rows.csv", f"http://[::ffff:127.0.0.1]:{port}/rows.csv",
                   "http://169.254.169.254/latest/meta-data.csv", "http://10.0.0.1/x.csv", "http://192.168.1.1/x.csv",
                   "http://127.0.0.1:9/closed-port.csv"]
        for url in targets:
            r = _submit(strict_server, inputs=url)
            assert r.status_code == 400, (url, r.text)
            assert r.json()["code"] == "inputs_url_refused", (url, r.text)
            tally["SSRF attempts refused"] += 1
        # an open and a closed local port answer alike: nothing is learnt about local ports
        open_port = _submit(strict_server, inputs=f"{base}/rows.csv").json()
        closed = _submit(strict_server, inputs="http://127.0.0.1:9/rows.csv").json()
        assert open_port["code"] == closed["code"] and open_port["detail"] == closed["detail"]
        for url in ("file:///etc/passwd", "ftp://example.com/x.csv", "gopher://127.0.0.1/x.csv"):
            assert _submit(strict_server, inputs=url).status_code == 400


@pytest.fixture
def one_public_loopback(monkeypatch):
    """Treat 127.0.0.2 as a public address (the first hop); every other loopback stays private."""
    real = inputs_url.is_public_address
    monkeypatch.setattr(inputs_url, "is_public_address", lambda ip: str(ip) == "127.0.0.2" or real(ip))


def _resolve(url: str, tmp_path: Path, **cfg) -> ApiError:
    with pytest.raises(ApiError) as info:
        resolve_inputs(url, None, "text", None, url_config=UrlInputsConfig(**cfg), tmp_dir=tmp_path)
    return info.value


def test_every_redirect_hop_is_checked(one_public_loopback, tmp_path, tally):
    with serve("127.0.0.2") as public, serve() as internal:
        port = internal.rsplit(":", 1)[1]
        # the first hop is fine on its own
        rows = resolve_inputs(f"{public}/rows.csv", None, "text", None, url_config=UrlInputsConfig(), tmp_dir=tmp_path)
        assert rows.rows == ["hello", "world"]
        for target in (f"{internal}/rows.csv", f"http://2130706433:{port}/rows.csv", f"http://localhost:{port}/rows.csv",
                       "file:///etc/passwd"):
            err = _resolve(f"{public}/to?u={target}", tmp_path)
            assert err.status == 400 and err.code in ("inputs_url_refused", "invalid_inputs_url"), err.detail
            tally["SSRF attempts refused"] += 1
        err = _resolve(f"{public}/loop/0", tmp_path)
        assert "redirected more than 5 times" in err.detail
    assert not list(tmp_path.iterdir())  # no temp file left behind


def test_the_suffix_is_checked_on_the_final_url_and_content_is_never_echoed(tmp_path):
    with serve() as base:
        # .csv on the first URL, a text/plain file at the end of the redirect
        err = _resolve(f"{base}/to?u=/secret.txt&x=.csv", tmp_path, allow_private=True)
        assert "must end in .csv or .parquet" in err.detail and SECRET_LINE not in err.detail
        err = _resolve(f"{base}/to?u=/secret.txt%3Fa.csv", tmp_path, allow_private=True)
        assert SECRET_LINE not in err.detail and "root" not in err.detail


def test_url_bodies_are_cut_off_at_the_size_limit(tmp_path, tally):
    with serve() as base:
        started = time.monotonic()
        err = _resolve(f"{base}/endless.csv", tmp_path, allow_private=True, max_bytes=2_000_000)
        assert err.code == "inputs_url_too_large", err.detail
        assert time.monotonic() - started < 30  # it stopped reading (the body never ends)
        err = _resolve(f"{base}/big.csv", tmp_path, allow_private=True, max_bytes=2_000_000)
        assert err.code == "inputs_url_too_large"
    assert not list(tmp_path.iterdir())
    tally["oversized bodies cut off"] += 2


def test_a_slow_url_hits_the_total_deadline(tmp_path):
    with serve() as base:
        started = time.monotonic()
        err = _resolve(f"{base}/trickle.csv", tmp_path, allow_private=True, timeout_seconds=2)
        assert err.code == "inputs_url_timeout" and "timeout_seconds" in err.detail
        assert time.monotonic() - started < 20  # a per-read timeout alone never ends a trickle


def test_request_bodies_over_the_limit_get_413_json(strict_server, tally):
    headers = {"Authorization": f"Key {strict_server.api_key}", "content-type": "application/json"}
    big = b'{"model": "all-minilm-l6-v2", "inputs": ["' + b"x" * 2_000_000 + b'"]}'
    r = httpx.post(f"{strict_server.url}/batch-inference", content=big, headers=headers, timeout=60)
    assert r.status_code == 413 and r.json()["code"] == "request_too_large", r.text

    def chunked():  # no Content-Length: counted as it arrives
        yield b'{"model": "all-minilm-l6-v2", "inputs": ["'
        for _ in range(40):
            yield b"x" * 100_000
        yield b'"]}'

    r = httpx.post(f"{strict_server.url}/batch-inference", content=chunked(), headers=headers, timeout=60)
    assert r.status_code == 413 and r.json()["detail"] and r.json()["request_id"], r.text
    ok = httpx.post(f"{strict_server.url}/batch-inference", json={"model": EMBED, "inputs": ["small"]},
                    headers={"Authorization": f"Key {strict_server.api_key}"})
    assert ok.status_code == 200
    tally["oversized bodies cut off"] += 2


def test_a_flood_of_trickling_urls_does_not_stall_the_api(tmp_path, tally):
    """40 submits of a URL that sends 1 byte every 0.5 s: /health and list-jobs keep answering."""
    cfg = {"models": {EMBED: {"engine": "embedding"}}, "worker": {"enabled": False},
           "url_inputs": {"allow_private": True, "timeout_seconds": 4, "max_concurrent": 4}}
    with LocalServer(tmp_path / "srv", cfg) as srv, serve() as base:
        headers = {"Authorization": f"Key {srv.api_key}"}

        def flood(_: int) -> httpx.Response:
            return httpx.post(f"{srv.url}/batch-inference", headers=headers, timeout=60,
                              json={"model": EMBED, "inputs": f"{base}/trickle.csv", "column_name": "text"})

        with ThreadPoolExecutor(40) as pool:
            futures = [pool.submit(flood, i) for i in range(40)]
            time.sleep(0.5)
            latencies = []
            with httpx.Client(base_url=srv.url, headers=headers, timeout=2) as http:
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:  # every call must answer within the 2 s client timeout
                    t0 = time.monotonic()
                    assert http.get("/health").status_code == 200
                    latencies.append(time.monotonic() - t0)
                    assert http.get("/list-jobs").status_code == 200
                    time.sleep(0.05)
            answers = [f.result() for f in futures]
        codes = {r.json()["code"] for r in answers}
        assert {r.status_code for r in answers} <= {400, 429} and codes <= {"inputs_url_timeout", "too_many_url_fetches"}, codes
        tally["slow-URL floods survived"] += 1
        latencies.sort()
        print(f"/health during the flood: n={len(latencies)} p50={statistics.median(latencies) * 1000:.1f} ms "
              f"p99={latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")
