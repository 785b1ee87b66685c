"""Dagster lineage (issue 25): a Sutro asset's materialization, read back from the instance's event log, shows
Dagster's standard row count, column schema and URI, the same ``gen_ai.*`` / ``sutro.*`` names as the Airflow
and Prefect adapters, and the asset's kinds (``sutro``, ``parquet``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    asset,
    materialize,
)

from dagster_sutro import SutroParquetIOManager, SutroResource, build_sutro_inference_asset


@asset
def lineage_reviews() -> pl.DataFrame:
    return pl.DataFrame({"review_id": [1, 2, 3], "text": ["Great blender.", "Broke in a week.", "Okay for the price."]})


def test_the_materialization_shows_row_count_schema_uri_names_and_kinds(sutro_server, sutro_key, sutro_client,
                                                                         tmp_path: Path) -> None:
    sutro = SutroResource(api_key=sutro_key, api_url=sutro_server.url, poll_interval_seconds=0.2,
                          max_poll_interval_seconds=0.5)
    embeddings = build_sutro_inference_asset(name="lineage_embeddings", upstream=lineage_reviews,
                                             model="all-minilm-l6-v2", column="text")
    with DagsterInstance.ephemeral() as instance:
        result = materialize([lineage_reviews, embeddings], instance=instance, resources={
            "sutro": sutro, "io_manager": SutroParquetIOManager(base_dir=str(tmp_path / "storage"))})
        assert result.success
        [record] = instance.fetch_materializations(AssetKey("lineage_embeddings"), limit=1).records
    meta = record.asset_materialization.metadata
    [job] = sutro_client.list_jobs()

    assert meta["dagster/row_count"].value == 3
    columns = {c.name: c.type for c in meta["dagster/column_schema"].schema.columns}
    assert set(columns) == {"review_id", "text", "inference_result", "sutro_row_status", "sutro_job_id"}
    stored = Path(meta["path"].value)
    assert meta["dagster/uri"].value == f"file://{stored}" and pl.read_parquet(stored).height == 3

    assert meta["gen_ai.request.model"].value == "all-minilm-l6-v2" and meta["gen_ai.system"].value == "sutro"
    assert meta["gen_ai.usage.input_tokens"].value == job.input_tokens
    assert meta["sutro.job.id"].value == job.job_id and meta["sutro.job.url"].value == sutro_client.job_url(job.job_id)
    assert meta["sutro.cost.usd"].value == pytest.approx(job.job_cost) and meta["sutro.job.reattached"].value is False
    assert meta["sutro.input.rows"].value == 3 and meta["sutro.output.columns"].value == list(columns)
    assert "sutro.output.uri" not in meta  # the staged file moved; dagster/uri says where it lives
    assert "sutro.input.uri" not in meta  # the upstream asset is the input, in Dagster's own lineage

    defs = Definitions(assets=[lineage_reviews, embeddings], resources={"sutro": sutro})
    node = defs.resolve_asset_graph().get(AssetKey("lineage_embeddings"))
    assert node.kinds == {"sutro", "parquet"}
    assert node.metadata["gen_ai.request.model"] == "all-minilm-l6-v2"
