"""Results over HTTP: file formats, projections, signed URLs with Range/HEAD, URL inputs with an id column."""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
import zipfile

import polars as pl
import pyarrow.parquet as pq
import pytest

from .helpers import submit, wait_status

MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def done_job(sutro_server):
    """One succeeded job (with its own key) shared by the read-only tests below."""
    from .helpers import api_client

    api = api_client(sutro_server.url, sutro_server.create_key("results-module"))
    job_id = submit(api, model=MODEL, inputs=["alpha", "beta", "gamma", "delta"])
    assert wait_status(api, job_id)["status"] == "SUCCEEDED"
    yield api, job_id
    api.close()


def test_parquet_projection_with_inputs_and_logprobs(done_job):
    api, job_id = done_job
    r = api.get(f"/jobs/{job_id}/results", params={"include_inputs": "true", "include_cumulative_logprobs": "true"})
    assert r.status_code == 200
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column_names == ["inputs", "outputs", "cumulative_logprobs"]
    assert table["inputs"].to_pylist() == ["alpha", "beta", "gamma", "delta"]
    assert table["cumulative_logprobs"].null_count == 4  # embeddings have no logprobs
    assert pq.ParquetFile(io.BytesIO(r.content)).metadata.row_group(0).column(0).compression == "ZSTD"


def test_the_default_projection_is_built_when_the_job_finishes(sutro_server):
    """No first download pays for the projection: it is on disk at SUCCEEDED, and it is what is served."""
    from .helpers import api_client

    with api_client(sutro_server.url, sutro_server.create_key("results-eager")) as api:
        job_id = submit(api, model=MODEL, inputs=["one", "two", "three"])
        assert wait_status(api, job_id)["status"] == "SUCCEEDED"
        jdir = sutro_server.data_dir / "jobs" / job_id
        proj = jdir / "results-proj.parquet"
        assert proj.is_file()  # before any results request
        built = pq.read_table(proj)
        assert built.column_names == ["outputs"] and built.num_rows == 3
        assert built.schema.metadata[b"sutro.job_id"] == job_id.encode()
        r = api.get(f"/jobs/{job_id}/results")
        assert r.status_code == 200 and r.content == proj.read_bytes()
        # The other variants are still built on request, from the stored file.
        lazy = jdir / "results-proj-logprobs.parquet"
        assert not lazy.exists()
        r = api.get(f"/jobs/{job_id}/results", params={"include_cumulative_logprobs": "true"})
        assert pq.read_table(io.BytesIO(r.content)).column_names == ["outputs", "cumulative_logprobs"]
        assert lazy.is_file()


def test_csv_zip_and_json_formats(done_job):
    api, job_id = done_job
    r = api.get(f"/jobs/{job_id}/results", params={"result_format": "csv", "include_inputs": "true"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        [name] = zf.namelist()
        df = pl.read_csv(zf.read(name))
    # the docs: "CSV format: outputs are in a column named after the job_id"
    assert df.columns == ["inputs", job_id] and df["inputs"].to_list() == ["alpha", "beta", "gamma", "delta"]
    assert len(json.loads(df[job_id][0])) == 384
    body = api.get(f"/jobs/{job_id}/results", params={"result_format": "json"}).json()
    assert list(body) == ["outputs"] and len(body["outputs"]) == 4
    inline = api.post("/job-results", json={"job_id": job_id}).json()["results"]
    assert inline == body


def test_bad_result_format_is_400(done_job):
    api, job_id = done_job
    r = api.get(f"/jobs/{job_id}/results", params={"result_format": "xlsx"})
    assert r.status_code == 400 and "result_format" in r.json()["detail"]


def test_signed_url_range_head_and_tamper(done_job):
    import httpx

    api, job_id = done_job
    body = api.get(f"/jobs/{job_id}/results-url", params={"include_inputs": "true"}).json()
    art, url = body["artifact"], body["urls"]["get"]
    assert art["format"] == "parquet" and art["filename"] == f"{job_id}.parquet" and art["expires_at"].endswith("Z")
    full = httpx.get(url)  # no API key needed
    assert full.status_code == 200 and len(full.content) == art["size_bytes"]
    assert pq.read_table(io.BytesIO(full.content)).column_names == ["inputs", "outputs"]
    part = httpx.get(url, headers={"Range": "bytes=4-99"})
    assert part.status_code == 206 and part.content == full.content[4:100]
    assert part.headers["content-range"] == f"bytes 4-99/{art['size_bytes']}"
    head = httpx.head(body["urls"]["head"])
    assert head.status_code == 200 and int(head.headers["content-length"]) == art["size_bytes"]
    payload, mac = url.rsplit("/", 1)[1].split(".")
    forged = url.replace(mac, mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"))
    assert httpx.get(forged).status_code == 403
    assert httpx.get(url.rsplit("/", 1)[0] + "/..%2F..%2Fsutro-local.db").status_code in (403, 404)


def test_signed_url_expires(done_job, sutro_server):
    import httpx

    from sutro_local import signing
    from sutro_local.state import load_secret

    api, job_id = done_job
    url = api.get(f"/jobs/{job_id}/results-url", params={"expires_in_seconds": 1}).json()["urls"]["get"]
    secret = load_secret(sutro_server.data_dir)
    expired = signing.sign(secret, job_id, "results-proj.parquet", expires_at=1)
    r = httpx.get(url.rsplit("/", 1)[0] + "/" + expired)
    assert r.status_code == 403 and "expired" in r.json()["detail"]


@pytest.fixture
def file_server(tmp_path):
    """A real HTTP server serving tmp_path (for URL inputs)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_url_inputs_carry_the_id_column_in_order(api, file_server, fmt):
    folder, base = file_server
    df = pl.DataFrame({"ticket_id": [30, 10, 20], "body": ["refund please", "app crashes", "dark mode?"]})
    getattr(df, f"write_{fmt}")(folder / f"tickets.{fmt}")
    job_id = submit(api, model=MODEL, inputs=f"{base}/tickets.{fmt}", column_name="body", id_column_name="ticket_id")
    assert wait_status(api, job_id)["status"] == "SUCCEEDED"
    table = pq.read_table(io.BytesIO(api.get(f"/jobs/{job_id}/results", params={"include_inputs": "true"}).content))
    assert table.column_names == ["inputs", "outputs", "ticket_id"]
    assert table["inputs"].to_pylist() == ["refund please", "app crashes", "dark mode?"]
    assert [str(v) for v in table["ticket_id"].to_pylist()] == ["30", "10", "20"]


def test_url_input_errors_name_the_fix(api, file_server):
    folder, base = file_server
    pl.DataFrame({"body": ["x"]}).write_csv(folder / "t.csv")
    r = api.post("/batch-inference", json={"model": MODEL, "inputs": f"{base}/t.csv", "column_name": "text"})
    assert r.status_code == 400 and "column 'text' is not in the file" in r.json()["detail"]
    r = api.post("/batch-inference", json={"model": MODEL, "inputs": f"{base}/missing.csv", "column_name": "body"})
    assert r.status_code == 400 and "404" in r.json()["detail"]
    r = api.post("/batch-inference", json={"model": MODEL, "inputs": f"{base}/t.csv"})
    assert r.status_code == 400 and "column_name" in r.json()["detail"]


def test_function_job_from_a_url_uses_the_file_columns(api, file_server):
    folder, base = file_server
    pl.DataFrame({"id": ["t1", "t2"], "text": ["Please refund my invoice", "The app crashes on login"]}).write_parquet(
        folder / "tickets.parquet")
    job_id = submit(api, model="ticket-triage", inputs=f"{base}/tickets.parquet", id_column_name="id")
    assert wait_status(api, job_id)["status"] == "SUCCEEDED"
    table = pq.read_table(io.BytesIO(api.get(f"/jobs/{job_id}/results").content))
    assert table.column_names == ["outputs", "id", "confidence_score"]
    assert [json.loads(o)["label"] for o in table["outputs"].to_pylist()] == ["billing", "bug"]
    assert table["id"].to_pylist() == ["t1", "t2"]
