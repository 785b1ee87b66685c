"""The direct results-body path (core/sutro_core/body_download.py): what httpx did, the client still does.

Real sockets (a scripted threaded HTTP server), since the point is the socket path: a cut body is
retried and leaves no file, an error answer is parsed as usual, an encoded body falls back to httpx,
and the path steps aside for custom transports, event hooks and proxies. Deadlines on this path are
covered by tests/core/test_deadlines.py (hang, trickle, endless bodies), sutro-local downloads by
tests/core/test_client_e2e.py.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import threading
from collections.abc import Iterator

import httpx
import polars as pl
import pytest
from sutro_core import AuthenticationError, RetryPolicy, SutroClient, SutroConnectionError
from sutro_core.body_download import usable
from support.quiet_handler import QuietHandler

FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)
JOB = {"job_id": "job-1", "status": "SUCCEEDED", "num_rows": 1000, "model": "m", "name": None,
       "description": None, "job_priority": 0, "created_at": "2026-12-01T00:00:00Z"}


def _parquet() -> bytes:
    buf = io.BytesIO()
    pl.DataFrame({"outputs": [f"out-{i}" for i in range(1000)]}).write_parquet(buf, row_group_size=100)
    return buf.getvalue()


BODY = _parquet()


class Script(http.server.ThreadingHTTPServer):
    """Answers ``jobs/job-1`` as SUCCEEDED and ``jobs/job-1/results`` by the next scripted action."""

    daemon_threads = True

    def __init__(self, actions: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.actions = actions
        self.results_requests: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(QuietHandler):
    server: Script

    def do_GET(self) -> None:  # http.server's name
        path = self.path.split("?")[0].removeprefix("/v1")
        if path == "/jobs/job-1":
            return self._send(200, json.dumps({"job": JOB}).encode(), "application/json")
        self.server.results_requests.append({k.lower(): v for k, v in self.headers.items()})
        action = self.server.actions.pop(0) if self.server.actions else "ok"
        if action == "truncate":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[: len(BODY) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif action == "503":
            self._send(503, json.dumps({"detail": "busy"}).encode(), "application/json", {"Retry-After": "0"})
        elif action == "401":
            self._send(401, json.dumps({"detail": "key not valid for job-1"}).encode(), "application/json")
        elif action == "416-on-range" and "Range" in self.headers:
            self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{len(BODY)}"})
        elif action == "range-whole":  # a 206 of the whole file, whatever was asked
            self._send(206, BODY, "application/vnd.apache.parquet",
                       {"Content-Range": f"bytes 0-{len(BODY) - 1}/{len(BODY)}"})
        elif action in ("range", "range-changed"):  # Range honoured; "-changed": a new ETag after the tail
            self._ranged("v2" if action == "range-changed" and len(self.server.results_requests) > 1 else "v1")
        elif action == "gzip":
            self._send(200, gzip.compress(BODY), "application/octet-stream", {"Content-Encoding": "gzip"})
        else:
            self._send(200, BODY, "application/vnd.apache.parquet")

    def _ranged(self, etag: str) -> None:
        value = self.headers.get("Range")
        if value is None:
            return self._send(200, BODY, "application/vnd.apache.parquet", {"ETag": etag})
        first, _, last = value.removeprefix("bytes=").partition("-")
        start, end = (len(BODY) - int(last), len(BODY) - 1) if not first else (int(first), int(last))
        self._send(206, BODY[start:end + 1], "application/vnd.apache.parquet",
                   {"ETag": etag, "Content-Range": f"bytes {start}-{end}/{len(BODY)}"})


@pytest.fixture
def script() -> Iterator[Script]:
    srv = Script([])
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def _client(srv: Script) -> SutroClient:
    return SutroClient(api_key="k", api_url=srv.url, retry=FAST)


def test_a_cut_body_is_retried_and_the_file_is_whole(script, tmp_path):
    script.actions[:] = ["truncate"]
    with _client(script) as client:
        manifest = client.download_results("job-1", tmp_path / "r.parquet")
    assert manifest.rows == 1000 and pl.read_parquet(manifest.uri)["outputs"][999] == "out-999"
    assert len(script.results_requests) == 2 and [p.name for p in tmp_path.iterdir()] == ["r.parquet"]
    # the body is asked for as it is stored, with the client's own headers
    assert script.results_requests[0]["accept-encoding"] == "identity"
    assert script.results_requests[0]["authorization"] == "Key k"


def test_a_body_cut_every_time_fails_typed_and_leaves_nothing(script, tmp_path):
    script.actions[:] = ["truncate"] * 3
    with _client(script) as client, pytest.raises(SutroConnectionError, match="results"):
        client.download_results("job-1", tmp_path / "r.parquet")
    assert list(tmp_path.iterdir()) == []


def test_error_answers_are_parsed_and_transient_ones_retried(script, tmp_path):
    script.actions[:] = ["503", "ok"]
    with _client(script) as client:
        assert client.get_job_results("job-1").height == 1000
    script.actions[:] = ["401"]
    with _client(script) as client, pytest.raises(AuthenticationError):
        client.download_results("job-1", tmp_path / "r.parquet")
    assert list(tmp_path.iterdir()) == []


def test_an_encoded_body_falls_back_to_httpx_which_decodes_it(script, tmp_path):
    script.actions[:] = ["gzip", "gzip"]
    with _client(script) as client:
        manifest = client.download_results("job-1", tmp_path / "r.parquet")
    assert manifest.rows == 1000 and len(script.results_requests) == 2  # direct try, then httpx


def test_the_direct_path_steps_aside_when_httpx_would_do_more(monkeypatch):
    url = httpx.URL("http://sutro.test/v1/jobs/job-1/results")
    with httpx.Client() as http:
        assert usable(http, False, url)
        assert not usable(http, True, url)  # a custom transport (tests, mocks) sees every request
        assert not usable(http, False, httpx.URL("ftp://sutro.test/x"))
        monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
        assert not usable(http, False, url)
        monkeypatch.setenv("NO_PROXY", "sutro.test")
        assert usable(http, False, url)
        monkeypatch.delenv("HTTP_PROXY")
        http.event_hooks = {"request": [lambda r: None], "response": []}
        assert not usable(http, False, url)


@pytest.fixture
def small_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    from sutro_core import body_download, progressive_parquet

    monkeypatch.setattr(body_download, "TAIL_BYTES", 2048)  # BODY is ~6 KB: a tail, then the rest
    monkeypatch.setattr(progressive_parquet, "SLICE_BYTES", 1)


def test_the_tail_comes_first_then_the_rest_on_one_connection(script, small_tail):
    script.actions[:] = ["range", "range"]
    with _client(script) as client:
        df = client.get_job_results("job-1")
    assert df["inference_result"].to_list() == [f"out-{i}" for i in range(1000)]
    tail, rest = script.results_requests
    assert tail["range"] == "bytes=-2048"
    assert rest["range"] == f"bytes=0-{len(BODY) - 2049}" and rest["if-range"] == "v1"


def test_a_server_that_ignores_range_sends_the_whole_file_once(script, small_tail):
    script.actions[:] = ["ok"]
    with _client(script) as client:
        assert client.get_job_results("job-1").height == 1000
    assert len(script.results_requests) == 1 and script.results_requests[0]["range"] == "bytes=-2048"


def test_a_file_changed_between_tail_and_rest_is_fetched_again_never_mixed(script, small_tail):
    script.actions[:] = ["range-changed", "range-changed", "range", "range"]
    with _client(script) as client:
        assert client.get_job_results("job-1").height == 1000
    assert len(script.results_requests) == 4  # tail v1, rest v2 (refused), then tail and rest again


def test_a_206_of_the_whole_file_is_streamed_not_held(script, small_tail):
    script.actions[:] = ["range-whole"]
    with _client(script) as client:
        assert client.get_job_results("job-1")["inference_result"][999] == "out-999"
    assert len(script.results_requests) == 1


def test_a_server_that_refuses_the_suffix_range_is_asked_plainly(script, small_tail):
    script.actions[:] = ["416-on-range", "416-on-range"]
    with _client(script) as client:
        assert client.get_job_results("job-1").height == 1000
    assert [r.get("range") for r in script.results_requests] == ["bytes=-2048", None]
