"""Issue 14 items 5-6: inputs that used to answer 500 (lone surrogates, deep nesting), Range errors
as JSON, signed URLs that ignore the Host header, echoed values truncated, unknown config and
Function keys refused. Everything runs against the session's real sutro-local process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from sutro_local.config import ConfigError, load_config

EMBED = "all-minilm-l6-v2"
SURROGATE = "\ud800"


@pytest.fixture
def http(sutro_server, sutro_key):
    with httpx.Client(base_url=sutro_server.url, headers={"Authorization": f"Key {sutro_key}"}, timeout=60) as c:
        yield c


def _raw(http: httpx.Client, method: str, path: str, body: object) -> httpx.Response:
    """Send `body` as JSON exactly as json.dumps writes it (lone surrogates become \\ud800 escapes)."""
    return http.request(method, path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def _json_4xx(r: httpx.Response) -> dict:
    assert 400 <= r.status_code < 500, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:300]}"
    err = r.json()
    assert err["detail"] and err["code"] and err["request_id"], err
    return err


@pytest.mark.parametrize("field, value", [
    ("inputs", [SURROGATE]), ("inputs", ["ok", f"a{SURROGATE}b"]), ("name", SURROGATE),
    ("description", SURROGATE), ("model", SURROGATE), ("system_prompt", SURROGATE),
    ("json_schema", {"type": "object", "properties": {SURROGATE: {"type": "string"}}}),
    ("sampling_params", {SURROGATE: 1}),
])  # fmt: skip
def test_lone_surrogates_in_a_submit_are_400(http, field, value, tally):
    body = {"model": EMBED, "inputs": ["ok"], field: value}
    err = _json_4xx(_raw(http, "POST", "/batch-inference", body))
    assert err["code"] in ("invalid_text", "invalid_request", "unknown_model"), err
    tally["bad inputs tried"] += 1


def test_lone_surrogates_in_ids_names_and_function_inputs_are_4xx(http, tally):
    for path in ("/jobs/%ED%A0%80", "/job-status/%ED%A0%80", "/stream-job-progress/%ED%A0%80",
                 "/jobs/job-%ED%A0%80/results", "/jobs/job-%ff/results-url", "/job-cancel/%ED%A0%80"):
        _json_4xx(http.get(path))
    _json_4xx(_raw(http, "POST", "/job-results", {"job_id": SURROGATE}))
    _json_4xx(_raw(http, "POST", "/functions/ticket-triage/run", {"input": {"text": SURROGATE}}))
    _json_4xx(_raw(http, "POST", "/functions/%ED%A0%80/run", {"input": {"text": "x"}}))
    _json_4xx(_raw(http, "POST", "/v1/chat/completions", {"model": "tiny-llama",
                                                          "messages": [{"role": "user", "content": SURROGATE}]}))
    tally["bad inputs tried"] += 10


def test_a_function_with_a_bad_label_is_refused_at_publish_and_listing_keeps_working(http, tally):
    good = {"name": "surrogate-check", "type": "classification", "inputs": ["text"],
            "labels": [{"name": "a", "description": "x"}, {"name": "b", "description": "y"}]}
    bad = {**good, "labels": [{"name": f"a{SURROGATE}", "description": "x"}, {"name": "b", "description": "y"}]}
    err = _json_4xx(_raw(http, "POST", "/functions", bad))
    assert "labels[0].name" in err["detail"]
    assert http.get("/functions").status_code == 200
    assert http.post("/functions", json=good).status_code == 200
    assert http.get("/functions").status_code == 200
    tally["bad inputs tried"] += 1


def test_deeply_nested_json_is_400(http, tally):
    schema: dict = {"type": "string"}
    for _ in range(98):
        schema = {"type": "object", "properties": {"a": schema}}
    err = _json_4xx(http.post("/batch-inference", json={"model": "tiny-llama", "inputs": ["x"], "json_schema": schema}))
    assert "json_schema" in err["detail"] and "levels" in err["detail"]
    # far deeper than Python's recursion limit: refused while parsing
    _json_4xx(http.post("/batch-inference", content=b"[" * 50_000 + b"]" * 50_000,
                        headers={"content-type": "application/json"}))
    deep: object = "x"
    for _ in range(100):
        deep = [deep]
    _json_4xx(_raw(http, "POST", "/functions/ticket-triage/run", {"input": {"text": deep}}))
    tally["bad inputs tried"] += 3


def test_echoed_values_are_truncated(http):
    err = _json_4xx(http.post("/batch-inference", json={"model": "m" * 2_000_000, "inputs": ["x"]}))
    assert len(err["detail"]) < 1000 and "2000000 characters" in err["detail"]
    err = _json_4xx(http.post("/batch-inference", json={"model": EMBED, "inputs": ["x"], "k" * 100_000: 1}))
    assert len(err["detail"]) < 2000


@pytest.fixture(scope="module")
def signed(sutro_server):
    key = sutro_server.create_key("hardening-signed")
    with httpx.Client(base_url=sutro_server.url, headers={"Authorization": f"Key {key}"}, timeout=60) as c:
        job_id = c.post("/batch-inference", json={"model": EMBED, "inputs": ["a", "b"]}).json()["results"]
        for _ in range(600):
            if c.get(f"/job-status/{job_id}").json()["job_status"][job_id] == "SUCCEEDED":
                break
            import time

            time.sleep(0.1)
        yield c, job_id


def test_signed_urls_ignore_the_host_header(signed, sutro_server):
    c, job_id = signed
    body = c.get(f"/jobs/{job_id}/results-url", headers={"Host": "attacker.example:666"}).json()
    assert body["urls"]["get"].startswith(sutro_server.url + "/results-files/"), body
    assert "attacker" not in json.dumps(body)
    assert httpx.get(body["urls"]["get"]).status_code == 200


@pytest.mark.parametrize("value, status", [("bytes=abc", 400), ("pages=0-1", 400), ("bytes=999999999-", 416),
                                           ("bytes=5-2", 400), ("garbage", 400)])
def test_range_errors_are_json(signed, value, status, tally):
    c, job_id = signed
    url = c.get(f"/jobs/{job_id}/results-url").json()["urls"]["get"]
    r = httpx.get(url, headers={"Range": value})
    if value == "bytes=abc":  # Starlette ignores a non-numeric range: the whole file
        assert r.status_code in (200, 400)
        if r.status_code == 200:
            return
    assert r.status_code == status, r.text
    err = _json_4xx(r)
    assert err["code"] in ("invalid_range", "range_not_satisfiable")
    if status == 416:
        assert r.headers["content-range"].startswith("bytes */")
    tally["bad inputs tried"] += 1


@pytest.mark.parametrize("cfg, needle", [
    ({"modles": {}}, "['modles'] at the top level"),
    ({"models": {"m": {"engine": "embedding", "chunksize": 4}}}, "['chunksize'] in models.m;"),
    ({"models": {"m": {"engine": "embedding", "price": {"input_per_1M": 1}}}}, "['input_per_1M'] in models.m.price"),
    ({"quotas": [{"job_priority": 0, "row_quota": 1, "rows": 3}]}, "['rows'] in quotas[0]"),
    ({"worker": {"chunk": 3}}, "['chunk'] in worker"),
    ({"url_inputs": {"allow_privat": True}}, "['allow_privat'] in url_inputs"),
])  # fmt: skip
def test_unknown_config_keys_are_refused(cfg, needle):
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert needle in str(info.value) and "allowed there" in str(info.value)


def test_shipped_configs_still_load():
    cfg = load_config("example_pipelines/sutro-local.yaml")
    assert cfg.url_inputs.allow_private is False and cfg.dedupe_idempotency_keys is True


def test_a_config_with_an_unknown_key_stops_the_cli_with_one_clear_line(tmp_path):
    (tmp_path / "c.yaml").write_text("models:\n  m: {engine: embedding, chunk_sise: 4}\n")
    out = subprocess.run([sys.executable, "-m", "sutro_local", "serve", "--config", str(tmp_path / "c.yaml"),
                          "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "chunk_sise" in out.stdout and "Traceback" not in out.stderr, out


def test_unknown_function_keys_are_refused_at_publish(http, tally):
    import yaml

    # the documented pitfall: a comma inside {...} splits a label's description into extra keys
    doc = yaml.safe_load("name: split-desc\ninputs: [text]\nlabels:\n"
                         "  - {name: billing, description: charges, invoices, refunds and payments}\n"
                         "  - {name: bug, description: crashes}\n")
    err = _json_4xx(http.post("/functions", json=doc))
    assert "labels[0]" in err["detail"] and "'invoices'" in err["detail"] and "comma" in err["detail"]
    good = {"name": "typo-fn", "inputs": ["text"], "labels": [{"name": "a"}, {"name": "b"}]}
    err = _json_4xx(http.post("/functions", json={**good, "promt_template": "{text}"}))
    assert "'promt_template'" in err["detail"]
    assert http.post("/functions", json=good).status_code == 200
    tally["bad inputs tried"] += 2
