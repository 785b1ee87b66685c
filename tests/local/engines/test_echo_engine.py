"""The `echo` plumbing/benchmark engine: unit behaviour, and a job through a real sutro-local."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from sutro_local.config import ConfigError, ModelConfig, load_config
from sutro_local.engines.base import ChunkParams
from sutro_local.engines.echo import create


def test_echo_returns_rows_unchanged_by_default():
    eng = create(ModelConfig(name="echo", engine="echo"))
    res = eng.run(["a b c", "", "héllo"], ChunkParams())
    assert res.outputs == ["a b c", "", "héllo"]
    assert res.input_tokens == [3, 0, 1]
    assert len(res.output_tokens) == 3


def test_echo_expands_to_fixed_length_deterministically():
    eng = create(ModelConfig(name="echo", engine="echo", options={"output_chars": 100}))
    rows = [f"row {i}" for i in range(50)]
    first = eng.run(rows, ChunkParams()).outputs
    again = create(ModelConfig(name="echo", engine="echo", options={"output_chars": 100})).run(rows, ChunkParams())
    assert first == again.outputs  # same on a re-run (resume after a restart)
    assert all(len(o) == 100 for o in first)
    assert all(o.startswith(r + " ") for o, r in zip(first, rows))
    assert len(set(first)) == len(rows)
    assert eng.run(["x" * 150], ChunkParams()).outputs == ["x" * 100]  # long rows are cut


@pytest.mark.parametrize("bad", [-1, "100", 1.5, True])
def test_echo_rejects_bad_output_chars(bad):
    with pytest.raises(ConfigError, match="options.output_chars"):
        create(ModelConfig(name="bench-echo", engine="echo", options={"output_chars": bad}))


def test_echo_is_only_selected_by_config():
    assert "echo" not in {m.engine for m in load_config(None).models.values()}
    assert load_config({"models": {"e": {"engine": "echo"}}}).models["e"].engine == "echo"


def test_echo_job_runs_through_worker_and_results(tmp_path):
    from sutro_core import SutroClient
    from sutro_local.testing import LocalServer

    cfg = {"models": {"echo-100": {"engine": "echo", "options": {"output_chars": 100}, "chunk_size": 7}}}
    rows = [f"input number {i}" for i in range(30)]
    with LocalServer(tmp_path / "srv", cfg) as srv, SutroClient(api_key=srv.api_key, api_url=srv.url) as client:
        job_id = client.infer(rows, model="echo-100", stay_attached=False)
        job = client.await_job_completion(job_id, timeout=60, obtain_results=False)
        assert job.num_rows == 30 and job.output_tokens == 30 * 25
        manifest = client.download_results(job_id, tmp_path / "out.parquet")
        outputs = pq.read_table(manifest.uri)["outputs"].to_pylist()
    assert manifest.rows == 30
    assert [o[: len(r)] for o, r in zip(outputs, rows)] == rows  # input order across 5 chunks
    assert all(len(o) == 100 for o in outputs)


def test_echo_honours_max_tokens_as_words_and_marks_cut_rows():
    eng = create(ModelConfig(name="echo", engine="echo"))
    res = eng.run(["one two three", "one two", ""], ChunkParams(sampling_params={"max_tokens": 2}))
    assert res.outputs == ["one two", "one two", ""]
    assert res.carried["finish_reason"] == ["length", "stop", "stop"]
    assert "finish_reason" not in eng.run(["a b c"], ChunkParams()).carried  # no max_tokens, no column


def test_a_cut_echo_row_says_length_through_a_real_server(tmp_path):
    from sutro_core import BatchJobRequest, SutroClient
    from sutro_local.testing import LocalServer

    cfg = {"models": {"echo": {"engine": "echo"}}}
    with LocalServer(tmp_path / "srv", cfg) as srv, SutroClient(api_key=srv.api_key, api_url=srv.url) as client:
        request = BatchJobRequest.for_inference(["a b c d", "a b"], model="echo", sampling_params={"max_tokens": 3})
        job_id = client.submit_job(request).job_id
        client.await_job_completion(job_id, timeout=60, obtain_results=False)
        df = client.get_job_results(job_id)
    assert df["finish_reason"].to_list() == ["length", "stop"]
    assert df["inference_result"].to_list() == ["a b c", "a b"]
