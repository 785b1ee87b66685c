"""The one description of a step (``sutro_core.lineage``): built from a real run against sutro-local."""

from __future__ import annotations

import polars as pl
import pytest

from sutro_core import JobSpec, PollPolicy, StepLineage, describe_step
from sutro_core.lineage import INLINE_ROWS, asset_uri, dataset_name

FAST = PollPolicy(initial_interval=0.1, max_interval=0.5)


@pytest.mark.parametrize(("uri", "expected"), [
    ("/data/out.parquet", ("file", "/data/out.parquet")),
    ("file:///data/out.parquet", ("file", "/data/out.parquet")),
    ("s3://bucket/a/b.parquet", ("s3://bucket", "a/b.parquet")),
    ("gs://bucket/b.parquet", ("gs://bucket", "b.parquet")),
    ("abfss://c@acct.dfs.core.windows.net/x/y.parquet", ("abfss://c@acct.dfs.core.windows.net", "x/y.parquet")),
    ("https://example.com/data/t.csv", ("https://example.com", "data/t.csv")),
])
def test_dataset_names_follow_openlineage_naming(uri, expected):
    assert dataset_name(uri) == expected


def test_asset_uris_name_local_files_by_absolute_file_uri(tmp_path):
    assert asset_uri(str(tmp_path / "o.parquet")) == f"file://{tmp_path}/o.parquet"
    assert asset_uri("s3://b/o.parquet") == "s3://b/o.parquet"


def test_a_finished_inference_step_is_described_once(sutro_client, tmp_path):
    frame = pl.DataFrame({"id": [1, 2, 3], "text": ["charged twice", "app crashes", "dark mode please"]})
    spec = JobSpec.for_inference(frame, "all-minilm-l6-v2", column="text", output_uri=str(tmp_path / "e.parquet"),
                                 poll=FAST)
    outcome = sutro_client.run(spec, scope=("test", "lineage", "1"))
    step = describe_step(outcome, spec=spec)  # row status counts come from the manifest

    assert step.input.uri is None and step.input.label == INLINE_ROWS and step.input.rows == 3
    assert step.output.uri == outcome.manifest.uri and step.output.rows == 3 and step.output.bytes > 0
    types = {c.name: c.type for c in step.output.columns}
    assert types["id"] == "int64" and "float" in types["inference_result"]  # read from the parquet footer
    attrs = step.attributes()
    assert attrs["gen_ai.request.model"] == "all-minilm-l6-v2" and attrs["gen_ai.system"] == "sutro"
    assert attrs["gen_ai.usage.input_tokens"] == outcome.job.input_tokens > 0
    assert attrs["sutro.job.id"] == outcome.job.job_id and attrs["sutro.job.reattached"] is False
    assert attrs["sutro.cost.usd"] == pytest.approx(outcome.job.job_cost)
    assert attrs["sutro.output.columns"] == ["id", "text", "inference_result", "sutro_row_status", "sutro_job_id"]
    assert attrs["sutro.rows.ok"] == 3 and attrs["sutro.rows.cut"] == 0
    assert "sutro.function.name" not in attrs
    assert StepLineage.from_dict(step.to_dict()) == step

    # The same step from what a resumed orchestrator task has: the handle and the manifest.
    again = describe_step(outcome.handle, manifest=outcome.manifest.to_dict(), input_uri=tmp_path / "in.csv")
    assert again.output == step.output and again.cost_usd == step.cost_usd
    assert again.input.namespace_and_name == ("file", str(tmp_path / "in.csv"))


def test_a_function_step_names_the_function_not_a_model(sutro_client, tmp_path):
    spec = JobSpec.for_function("ticket-triage", [{"text": "I was charged twice"}],
                                output_uri=str(tmp_path / "t.parquet"), poll=FAST)
    step = describe_step(sutro_client.run(spec, scope=("test", "lineage-fn", "1")), spec=spec)
    attrs = step.attributes()
    assert attrs["sutro.function.name"] == "ticket-triage" and "gen_ai.request.model" not in attrs
    assert {"label", "confidence_score"} <= set(attrs["sutro.output.columns"])
