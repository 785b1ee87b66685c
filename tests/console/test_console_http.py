"""The console's security and routing rules over plain HTTP (no browser needed): session cookie
attributes, CSRF, isolation between keys, no open redirect, offline assets, job_url."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sutro_core import SutroClient

from .conftest import submit, wait_status  # plain helpers, not fixtures


@contextmanager
def _signed_in(url: str, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/console/login", data={"api_key": key, "next": "/console/jobs"})
        assert r.status_code == 303 and r.headers["location"] == "/console/jobs", r.text
        yield client


def _csrf(client: httpx.Client, path: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert m, "no CSRF token on the page"
    return m.group(1)


def test_session_cookie_is_httponly_strict_signed_and_keyless(sutro_server, sutro_key):
    r = httpx.post(f"{sutro_server.url}/console/login", data={"api_key": sutro_key, "next": "/console/jobs"})
    cookie = r.headers["set-cookie"]
    assert (
        "HttpOnly" in cookie
        and "SameSite=strict" in cookie.replace("Strict", "strict")
        and "Path=/console" in cookie
    )
    value = cookie.split(";")[0].split("=", 1)[1]
    assert sutro_key not in value
    # a tampered cookie is no session
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    page = httpx.get(f"{sutro_server.url}/console/jobs", cookies={"sutro_console": forged})
    assert "/console/login" in page.text and 'id="api_key"' not in page.text  # the bounce page, not the list


def test_pages_need_a_session_and_never_take_a_key_in_the_url(sutro_server, sutro_key):
    for path in ("/console/jobs", "/console/functions", "/console/models", "/console/jobs/job-x"):
        r = httpx.get(f"{sutro_server.url}{path}?api_key={sutro_key}")
        assert r.status_code == 200 and 'http-equiv="refresh"' in r.text and "Jobs</h1>" not in r.text, path
    assert httpx.get(f"{sutro_server.url}/console/jobs/job-x/live").status_code == 401


def test_cancel_needs_the_csrf_token_and_same_origin(sutro_server, sutro_key):
    job_id = submit(sutro_server.url, sutro_key, model="slow-embed", inputs=[f"r{i}" for i in range(100)])
    with _signed_in(sutro_server.url, sutro_key) as c:
        token = _csrf(c, f"/console/jobs/{job_id}")
        assert c.post(f"/console/jobs/{job_id}/cancel", data={}).status_code == 403
        assert c.post(f"/console/jobs/{job_id}/cancel", data={"csrf": "x" * len(token)}).status_code == 403
        evil = {"Origin": "http://evil.example"}
        assert c.post(f"/console/jobs/{job_id}/cancel", data={"csrf": token}, headers=evil).status_code == 403
        cross = {"Sec-Fetch-Site": "cross-site"}
        assert (
            c.post(f"/console/jobs/{job_id}/cancel", data={"csrf": token}, headers=cross).status_code == 403
        )
        assert c.get(f"/console/jobs/{job_id}/live").json()["status"] in ("QUEUED", "STARTING", "RUNNING")
        ok = c.post(
            f"/console/jobs/{job_id}/cancel", data={"csrf": token}, headers={"Origin": sutro_server.url}
        )
        assert ok.status_code == 303 and ok.headers["location"] == f"/console/jobs/{job_id}"
    assert wait_status(sutro_server.url, sutro_key, job_id, ("CANCELLED",)) == "CANCELLED"


def test_sign_in_from_another_site_and_open_redirects_are_refused(sutro_server, sutro_key):
    r = httpx.post(
        f"{sutro_server.url}/console/login",
        data={"api_key": sutro_key},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403 and "set-cookie" not in r.headers
    for target in ("https://evil.example/", "//evil.example/x", "/jobs/x", "/console\\@evil"):
        r = httpx.post(f"{sutro_server.url}/console/login", data={"api_key": sutro_key, "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/console/jobs", target


def test_each_key_sees_only_its_own_jobs(sutro_server, sutro_key):
    job_id = submit(sutro_server.url, sutro_key, model="all-minilm-l6-v2", inputs=["a"], name="owned")
    wait_status(sutro_server.url, sutro_key, job_id, ("SUCCEEDED",))
    with _signed_in(sutro_server.url, sutro_server.create_key("intruder")) as c:
        assert job_id not in c.get("/console/jobs").text
        assert job_id not in c.get("/console/jobs/table").text
        for path in ("", "/live", "/download/parquet", "/download/json"):
            assert c.get(f"/console/jobs/{job_id}{path}").status_code == 404, path
        token = _csrf(c, "/console/jobs")
        assert c.post(f"/console/jobs/{job_id}/cancel", data={"csrf": token}).status_code == 404
    with _signed_in(sutro_server.url, sutro_key) as c:
        assert job_id in c.get("/console/jobs").text
        assert c.get(f"/console/jobs/{job_id}/download/parquet").content[:4] == b"PAR1"
        assert c.get(f"/console/jobs/{job_id}/download/json").json()["outputs"]


def test_bad_filter_and_format_are_clear_4xx(sutro_server, sutro_key):
    with _signed_in(sutro_server.url, sutro_key) as c:
        r = c.get("/console/jobs?status=DONE")
        assert r.status_code == 400 and "status must be one of" in r.text
        r = c.get("/console/jobs/job-x/download/xlsx")
        assert r.status_code == 400 and "parquet, csv or json" in r.text


def test_every_asset_is_served_by_the_server_itself(sutro_server, sutro_key):
    with _signed_in(sutro_server.url, sutro_key) as c:
        html = c.get("/console/jobs").text
        assert not re.search(r"""(src|href)=["']https?://""", html)
        assert "style=" not in html and "<script>" not in html  # the CSP allows neither inline
        assets = re.findall(r"""(?:src|href)=["'](/console/static/[^"']+)""", html)
        assert len(assets) >= 3
        for a in assets:
            assert c.get(a).status_code == 200, a
    assert httpx.get(f"{sutro_server.url}/console/static/..%2Fsession.py").status_code == 404


@pytest.mark.parametrize(
    "api_url", ["http://127.0.0.1:8484", "http://127.0.0.1:8484/v1", "http://h:1/sutro/v1"]
)
def test_job_url_is_the_console_page(api_url):
    base = api_url.removesuffix("/v1")
    assert SutroClient(api_key="k", api_url=api_url).job_url("job-1") == f"{base}/console/jobs/job-1"
    assert (
        SutroClient(api_key="k", api_url="https://api.sutro.sh").job_url("j1")
        == "https://app.sutro.sh/jobs/j1"
    )


def test_serve_prints_the_console_url(sutro_server):
    printed = sutro_server.log_path.read_text(errors="replace")
    assert f"web console: {sutro_server.url}/console/jobs" in printed
    assert httpx.get(f"{sutro_server.url}/console/jobs").status_code == 200
