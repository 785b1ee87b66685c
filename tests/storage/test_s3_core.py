"""sutro_core on S3 (moto's server over real HTTP): artifacts, inputs and row stores, with storage_options and
with only the standard AWS environment; the same guarantees as on disk (complete or nothing at the key,
nothing left behind by a killed upload, flat memory, footer reads by range); credentials never shown."""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from sutro_core import InputValidationError, JobSpec, PollPolicy, iter_results, load_results
from sutro_core.results.parquet_footer import read_key_value_metadata
from sutro_core.results.tables import table_counts
from sutro_core.row_store import RowStore
from support.services import wait_for
from support.tcp_proxy import CountingProxy

EMBED = "all-minilm-l6-v2"
FAST = PollPolicy(initial_interval=0.1, max_interval=0.5)
REPO = Path(__file__).resolve().parents[2]
CHILD_PATH = os.pathsep.join([str(REPO / "core"), str(REPO), str(REPO / "tests")])


def _tickets() -> pl.DataFrame:
    return pl.DataFrame({
        "ticket_id": [101, 102, 103],
        "text": ["I was charged twice this month", "The app crashes when I open settings", "Please add a dark mode"],
    })


def _child(code: str, env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with exactly ``env`` (plus the import path)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env={**env, "PYTHONPATH": CHILD_PATH},
                          capture_output=True, text=True, timeout=timeout)


def _random_parquet(path: Path, rows: int, row_bytes: int = 1000) -> Path:
    # Incompressible rows: the file's size is what goes over the wire.
    pl.DataFrame({"blob": [os.urandom(row_bytes) for _ in range(rows)]}).write_parquet(
        path, compression="uncompressed", row_group_size=2048)
    return path


# ---- a step's artifact ------------------------------------------------------------------------------------

def test_a_step_writes_its_artifact_to_s3_and_every_reader_reads_it_back(sutro_client, s3_bucket):
    opts = s3_bucket.server.storage_options
    uri = s3_bucket.uri("runs/2026-01-05/emb.parquet")
    spec = JobSpec.for_inference(_tickets(), EMBED, column="text", output_uri=uri, poll=FAST)
    outcome = sutro_client.run(spec, scope=("test", "s3", "artifact"), storage_options=opts)

    assert outcome.manifest.uri == uri and outcome.manifest.rows == 3
    assert s3_bucket.keys() == ["runs/2026-01-05/emb.parquet"]  # the artifact and nothing else
    assert s3_bucket.unfinished_uploads() == []
    df = load_results(outcome.manifest, storage_options=opts)
    assert df["ticket_id"].to_list() == [101, 102, 103] and len(df["inference_result"][0]) == 384
    assert pl.concat(list(iter_results(uri, batch_rows=2, storage_options=opts))).equals(df)
    assert load_results(uri, n_rows=1, storage_options=opts)["ticket_id"].to_list() == [101]
    meta = read_key_value_metadata(uri, opts)
    assert meta["sutro.job_id"] == outcome.job.job_id and meta["sutro.model"] == EMBED
    # The bytes at the key, read by another client (boto3), are the complete parquet file.
    body = s3_bucket.read("runs/2026-01-05/emb.parquet")
    assert len(body) == outcome.manifest.bytes and body[:4] == body[-4:] == b"PAR1"


def test_only_the_standard_aws_environment_is_needed(s3_server, s3_bucket, sutro_server, sutro_key, tmp_path):
    """A fresh process with AWS_ENDPOINT_URL, keys and region (no storage settings of ours): an input on S3,
    the artifact on S3, its footer and check by range reads, a row store on S3."""
    _tickets().write_parquet(tmp_path / "tickets.parquet")
    s3_server.client().upload_file(str(tmp_path / "tickets.parquet"), s3_bucket.name, "in/tickets.parquet")
    env = s3_server.child_env({"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
                               "SUTRO_API_URL": sutro_server.url, "SUTRO_API_KEY": sutro_key})
    code = """
        import json, sys
        import polars as pl
        from sutro_core import JobSpec, PollPolicy, SutroClient, load_results
        from sutro_core.inputs import read_input_file
        from sutro_core.results.parquet_footer import read_key_value_metadata
        from sutro_core.results.tables import table_counts
        from sutro_core.row_store import RowStore

        bucket = sys.argv[1]
        assert read_input_file(f"s3://{bucket}/in/tickets.parquet").height == 3
        # the URI itself as a step's data: read once, its rows sent and its other columns carried
        spec = JobSpec.for_inference(f"s3://{bucket}/in/tickets.parquet", "all-minilm-l6-v2", column="text",
                                     output_uri=f"s3://{bucket}/out/emb.parquet",
                                     poll=PollPolicy(initial_interval=0.1, max_interval=0.5))
        with SutroClient() as client:
            outcome = client.run(spec, scope=("test", "env-only", "1"))
        frame = pl.LazyFrame()
        frame.manifest = outcome.manifest   # what a SutroArtifact carries: counts from the remote footer
        store = RowStore(f"s3://{bucket}/rows")
        store.append(pl.DataFrame({"sutro_row_key": ["k1", "k2"], "output": ["a", "b"]}))
        print(json.dumps({
            "uri": outcome.manifest.uri,
            "ids": load_results(outcome.manifest)["ticket_id"].to_list(),
            "job": read_key_value_metadata(outcome.manifest.uri)["sutro.job_id"] == outcome.job.job_id,
            "counts": table_counts(frame, ["inference_result"])[1:],
            "stored": store.lookup(["k2"])["output"].to_list(),
        }))
    """
    out = _child(code, env, s3_bucket.name)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["uri"] == s3_bucket.uri("out/emb.parquet") and got["ids"] == [101, 102, 103] and got["job"]
    assert got["counts"] == [3, {"inference_result": 0}]
    assert got["stored"] == ["b"]
    keys = s3_bucket.keys()
    assert "out/emb.parquet" in keys and any(k.startswith("rows/") and k.endswith(".parquet") for k in keys)


def test_a_row_store_on_s3_appends_looks_up_and_compacts_without_temp_objects(s3_bucket):
    store = RowStore(s3_bucket.uri("rows"), storage_options=s3_bucket.server.storage_options)
    store.append(pl.DataFrame({"sutro_row_key": ["a", "b"], "output": ["1", "2"]}))
    store.append(pl.DataFrame({"sutro_row_key": ["c"], "output": ["3"]}))
    assert sorted(store.lookup(["a", "c", "zz"])["output"].to_list()) == ["1", "3"]
    store.compact()
    assert sorted(store.lookup(["a", "b", "c"])["output"].to_list()) == ["1", "2", "3"]
    names = [k.split("/", 1)[1] for k in s3_bucket.keys("rows/")]
    assert len(names) == 1 and not any(n.startswith(".tmp-") for n in names)


def test_a_remote_row_store_lookup_reads_key_columns_and_matching_row_groups_only(s3_bucket):
    rows = 200_000  # 4 row groups of 65,536 rows (the last smaller), ~100 MB of mostly incompressible text
    keys = [f"k{i:06d}" for i in range(rows)]
    frame = pl.DataFrame({"sutro_row_key": keys, "output": [os.urandom(250).hex() for _ in range(rows)]})
    RowStore(s3_bucket.uri("rows"), storage_options=s3_bucket.server.storage_options).append(frame)
    size = s3_bucket.server.client().head_object(Bucket=s3_bucket.name, Key=s3_bucket.keys("rows/")[0])["ContentLength"]
    with CountingProxy(s3_bucket.server.port) as proxy:
        opts = {**s3_bucket.server.storage_options, "endpoint_url": proxy.url, "skip_instance_cache": True}
        store = RowStore(s3_bucket.uri("rows"), storage_options=opts)
        stored = store.lookup(["k000007", "k150000", "missing"], keys_only=True)
        keys_read = proxy.downstream_bytes
        proxy.reset()
        found = store.lookup(["k000007", "k000008", "missing"], aligned=True)
        one_group_read = proxy.downstream_bytes
    assert sorted(stored["sutro_row_key"].to_list()) == ["k000007", "k150000"]
    assert found["output"].to_list()[:2] == frame["output"].to_list()[7:9] and found["output"][2] is None
    # the key columns are ~3% of the file; the second lookup adds one of four row groups
    assert keys_read < size / 10, f"{keys_read} of {size} bytes read to find which keys are stored"
    assert one_group_read < size / 2, f"{one_group_read} of {size} bytes read for rows of one row group"


_ROW_STORE_WRITER = """
    import os, sys
    import polars as pl
    from sutro_core import storage
    from sutro_core.row_store import RowStore

    uri, rows, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    storage.MULTIPART_THRESHOLD, storage.PART_SIZE, storage.UPLOAD_CONCURRENCY = 5 << 20, 5 << 20, 1
    frame = pl.DataFrame({"sutro_row_key": [f"k{i}" for i in range(first, first + rows)],
                          "output": [os.urandom(500).hex() for _ in range(rows)]})
    print("writing", flush=True)
    print(RowStore(uri).append(frame), flush=True)
"""


def test_a_killed_row_store_write_on_s3_leaves_no_object_and_upkeep_aborts_its_upload(s3_bucket, monkeypatch):
    server, uri = s3_bucket.server, s3_bucket.uri("rows")
    done = _child(_ROW_STORE_WRITER, server.child_env(), uri, "100", "0")  # rows stored before the kill
    assert done.returncode == 0, done.stderr[-3000:]
    with CountingProxy(server.port, upload_bytes_per_s=2_000_000) as proxy:
        env = {**server.child_env(), "AWS_ENDPOINT_URL": proxy.url}
        # ~14 MB after compression: three 5 MB parts, killed with one stored and the next on its way
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_ROW_STORE_WRITER), uri, "24000", "100"],
                                env={**env, "PYTHONPATH": CHILD_PATH}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
            wait_for(lambda: s3_bucket.unfinished_uploads("rows/") and proxy.upstream_bytes > 7 << 20, 120,
                     "the second part to be on its way", interval=0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            _reap(proc)
    listed = s3_bucket.keys("rows/")
    assert listed == [f"rows/{done.stdout.split()[-1]}"]  # the earlier file only: no temp or partial object
    assert len(s3_bucket.unfinished_uploads("rows/")) == 1  # the killed write's parts: invisible, billed

    store = RowStore(uri, storage_options=server.storage_options)
    assert store.lookup(["k5", "k150"], keys_only=True)["sutro_row_key"].to_list() == ["k5"]  # its rows: not found
    monkeypatch.setattr("sutro_core.row_store.STALE_TEMP_S", 0)  # as a day later
    store.prune(_dt.timedelta(days=30))
    assert s3_bucket.unfinished_uploads() == []
    assert s3_bucket.keys("rows/") == listed  # the complete file is kept


# ---- complete or nothing ------------------------------------------------------------------------------------

_UPLOADER = """
    import os, sys
    import polars as pl
    from sutro_core import storage
    from sutro_core.models import Job
    from sutro_core.results.targets import finalize, prepare_target

    uri, mode, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "multipart":   # a file of a few parts, one part in flight at a time
        storage.MULTIPART_THRESHOLD, storage.PART_SIZE, storage.UPLOAD_CONCURRENCY = 5 << 20, 5 << 20, 1
    target = prepare_target(uri, "parquet")
    pl.DataFrame({"blob": [os.urandom(1000) for _ in range(rows)]}).write_parquet(
        target.tmp_path, compression="uncompressed", row_group_size=2048)
    print(target.tmp_path, flush=True)
    print(finalize(target, Job(job_id="job-upload"), "parquet").rows, flush=True)
"""


def _reap(proc: subprocess.Popen[str]) -> None:
    """Kill the child if it still runs (a failed test) and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.parametrize("mode", ["single", "multipart"])
def test_a_killed_upload_leaves_nothing_at_the_key_and_the_next_run_leaves_nothing_stray(s3_bucket, mode):
    server, key = s3_bucket.server, "out/big.parquet"
    uri = s3_bucket.uri(key)
    rows = 16_000  # ~16 MB: at 2 MB/s through the proxy the upload takes ~8 s, long enough to kill half way
    with CountingProxy(server.port, upload_bytes_per_s=2_000_000) as proxy:
        env = {**server.child_env(), "AWS_ENDPOINT_URL": proxy.url}
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_UPLOADER), uri, mode, str(rows)],
                                env={**env, "PYTHONPATH": CHILD_PATH}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            temp_file = Path(proc.stdout.readline().strip())
            assert temp_file.name.startswith("upload-"), proc.stderr.read()
            if mode == "multipart":  # a part stored, the next one on its way
                wait_for(lambda: s3_bucket.unfinished_uploads(key) and proxy.upstream_bytes > 7 << 20, 120,
                         "the second part to be on its way", interval=0.05)
            else:
                wait_for(lambda: proxy.upstream_bytes > 6 << 20, 120, "6 MB of the PUT to be sent", interval=0.05)
            assert key not in s3_bucket.keys()  # in flight: not visible
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            _reap(proc)
    assert s3_bucket.keys() == []  # nothing at the final key, nor anywhere else
    assert len(s3_bucket.unfinished_uploads(key)) == (1 if mode == "multipart" else 0)  # parts kept, invisible
    assert temp_file.exists()  # a kill -9 runs no cleanup

    again = _child(_UPLOADER, server.child_env(), uri, mode, "6000")  # the next run of the same step
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.split()[-1] == "6000"
    assert s3_bucket.keys() == [key]
    assert s3_bucket.unfinished_uploads() == []  # the killed run's upload was aborted
    assert not temp_file.exists()  # its local temp file swept (its process is gone)
    assert pq.read_metadata(io.BytesIO(s3_bucket.read(key))).num_rows == 6000


# ---- flat memory and range reads -------------------------------------------------------------------------------

_MEMORY = """
    import json, resource, sys
    from sutro_core import iter_results, storage
    uri, local, direction = sys.argv[1:4]
    fs, path = storage.filesystem(uri)
    fs.ls(path.split("/", 1)[0])                        # connect before measuring
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if direction == "up":
        storage.upload_file(local, fs, path)
    else:
        rows = sum(batch.height for batch in iter_results(uri, batch_rows=4096))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (peak - before) / 1024}))
"""


def test_uploads_and_reads_stream_in_memory_far_below_the_file_size(s3_bucket, tmp_path):
    big = _random_parquet(tmp_path / "big.parquet", rows=48_000)  # ~48 MB
    size_mb = big.stat().st_size / 2**20
    uri = s3_bucket.uri("mem/big.parquet")
    env = s3_bucket.server.child_env()
    up = _child(_MEMORY, env, uri, str(big), "up")
    assert up.returncode == 0, up.stderr[-3000:]
    down = _child(_MEMORY, env, uri, str(big), "down")
    assert down.returncode == 0, down.stderr[-3000:]
    for result in (up, down):
        growth = json.loads(result.stdout.strip().splitlines()[-1])["growth_mb"]
        assert growth < size_mb / 3, f"peak RSS grew {growth:.0f} MB moving a {size_mb:.0f} MB file"


def test_footer_metadata_previews_and_counts_read_only_byte_ranges(s3_bucket, tmp_path):
    big = _random_parquet(tmp_path / "big.parquet", rows=16_000)  # ~16 MB
    from sutro_core.results.parquet_footer import add_key_value_metadata

    add_key_value_metadata(big, {"sutro.job_id": "job-ranges"})
    s3_bucket.server.client().upload_file(str(big), s3_bucket.name, "r/big.parquet")
    uri = s3_bucket.uri("r/big.parquet")
    with CountingProxy(s3_bucket.server.port) as proxy:
        opts = {**s3_bucket.server.storage_options, "endpoint_url": proxy.url, "skip_instance_cache": True}
        assert read_key_value_metadata(uri, opts)["sutro.job_id"] == "job-ranges"
        frame = pl.LazyFrame()
        frame.manifest = type("M", (), {"uri": uri, "format": "parquet"})()
        frame.storage_options = opts
        assert table_counts(frame, ["blob"]) == (["blob"], 16_000, {"blob": 0})
        assert load_results(uri, n_rows=3, storage_options=opts).height == 3
        moved = proxy.downstream_bytes
    assert 0 < moved < big.stat().st_size / 4, f"{moved} bytes read for footers and a 3-row preview"


# ---- bad input and credentials ----------------------------------------------------------------------------------

def test_s3_without_s3fs_names_the_field_and_the_extra(s3_server):
    code = """
        import sys
        sys.modules["s3fs"] = None   # as if the s3 extra were not installed
        from sutro_core import InputValidationError, load_results
        from sutro_core.results.targets import prepare_target
        for call in (lambda: prepare_target("s3://bucket/out.parquet", "parquet"),
                     lambda: load_results("s3://bucket/out.parquet")):
            try:
                call()
            except InputValidationError as exc:
                print(exc.field, "|", exc)
    """
    out = _child(code, s3_server.child_env())
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("output_uri |") and lines[1].startswith("source |")
    assert all("pip install 'sutro-pipelines[s3]'" in line for line in lines)


def test_a_folder_uri_is_refused_before_anything_runs():
    from sutro_core.results.targets import prepare_target

    with pytest.raises(InputValidationError, match="output_uri.*names a folder"):
        prepare_target("memory://bucket/out/", "parquet")


def test_credentials_never_reach_logs_errors_manifests_or_artifacts(sutro_client, s3_bucket, caplog):
    server = s3_bucket.server
    secret = server.secret_key
    opts = server.storage_options
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)  # every logger, botocore and s3fs included
    # A step that fails at the upload: the bucket does not exist.
    bad = JobSpec.for_inference(_tickets(), EMBED, column="text", output_uri="s3://no-such-bucket-sutro/x.parquet",
                                poll=FAST)
    with pytest.raises(Exception) as failed:  # noqa: PT011 - whatever the storage library raises
        sutro_client.run(bad, scope=("test", "secret", "bad"), storage_options=opts)
    seen += ["".join(traceback.format_exception(failed.value)), repr(failed.value)]
    good = JobSpec.for_inference(_tickets(), EMBED, column="text", output_uri=s3_bucket.uri("ok/emb.parquet"),
                                 poll=FAST)
    outcome = sutro_client.run(good, scope=("test", "secret", "good"), storage_options=opts)
    seen += [outcome.manifest.model_dump_json(), json.dumps(outcome.handle.to_dict()), caplog.text,
             json.dumps(read_key_value_metadata(outcome.manifest.uri, opts))]
    artifact = s3_bucket.read("ok/emb.parquet")
    assert caplog.records, "the run logged nothing at DEBUG: the check would prove nothing"
    assert "no-such-bucket-sutro" in seen[0]  # the error names where, not how
    for text in seen:
        assert secret not in text
    assert secret.encode() not in artifact
