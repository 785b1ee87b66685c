"""The Sutro Dagster Components: assets declared in a defs.yaml load and materialize against a real
sutro-local, through the same factories as the Python API."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import AssetKey, asset, materialize
from dagster.components.testing import create_defs_folder_sandbox

from dagster_sutro import RESULTS_CHECK_NAME, SutroParquetIOManager, SutroResource
from dagster_sutro.components import SutroFunctionComponent, SutroInferenceComponent

TICKETS = ["I was charged twice for my subscription", "The app crashes when I log in", "Please add dark mode"]


@asset(key=["support", "tickets"])
def tickets() -> pl.DataFrame:
    return pl.DataFrame({"ticket_id": ["t1", "t2", "t3"], "text": TICKETS})


@contextmanager
def _load(yaml_text: str) -> Iterator[tuple[Any, Any]]:
    """Write defs/sutro_assets/defs.yaml in a sandbox project and load it the way `dg`/`dagster dev` do."""
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.defs_folder_path / "sutro_assets"
        path.mkdir(parents=True)
        (path / "defs.yaml").write_text(textwrap.dedent(yaml_text))
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            yield component, defs


def _asset(defs, name: str):
    # the component's own Definitions (resources come from the rest of a project, as in `dagster dev`)
    return next(a for a in defs.assets if a.key == AssetKey(name))


@pytest.fixture
def resources(sutro_server, sutro_key, tmp_path: Path) -> dict:
    return {
        "sutro": SutroResource(
            api_key=sutro_key,
            api_url=sutro_server.url,
            poll_interval_seconds=0.2,
            max_poll_interval_seconds=0.5,
        ),
        "io_manager": SutroParquetIOManager(base_dir=str(tmp_path / "storage")),
    }


def test_function_component_from_yaml_materializes(resources, tmp_path, sutro_client):
    with _load("""\
        type: dagster_sutro.components.SutroFunctionComponent
        attributes:
          name: ticket_labels
          upstream: support/tickets
          function: ticket-triage
          input_columns: [text]
          output_columns: [label]
          daily_partitions_start_date: "2026-01-01"
          max_retries: 2
          group_name: sutro
        """) as (component, defs):
        assert isinstance(component, SutroFunctionComponent)
        labels = _asset(defs, "ticket_labels")
        assert (
            labels.partitions_def is not None
            and labels.group_names_by_key[AssetKey("ticket_labels")] == "sutro"
        )
        upstream = next(iter(labels.dependency_keys))
        assert upstream == AssetKey(["support", "tickets"])
        daily_tickets = asset(key=["support", "tickets"], partitions_def=labels.partitions_def)(
            lambda: tickets()
        )
        result = materialize([daily_tickets, labels], partition_key="2026-01-05", resources=resources)
        assert result.success
        df = pl.read_parquet(tmp_path / "storage" / "ticket_labels" / "2026-01-05.parquet")
        assert df.height == 3 and {"ticket_id", "text", "label"} <= set(df.columns)
        assert df["label"].to_list()[0] == "billing"
        checks = result.get_asset_check_evaluations()
        assert [(c.check_name, c.passed) for c in checks] == [(RESULTS_CHECK_NAME, True)]
        mat = result.asset_materializations_for_node("ticket_labels")[0]
        job_id = mat.metadata["sutro.job.id"].value
        assert sutro_client.get_job(job_id).status.value == "SUCCEEDED"


def test_inference_component_from_yaml_materializes(resources, tmp_path):
    with _load("""\
        type: dagster_sutro.components.SutroInferenceComponent
        attributes:
          name: ticket_vectors
          upstream: support/tickets
          model_name: all-minilm-l6-v2
          column: text
        """) as (component, defs):
        assert isinstance(component, SutroInferenceComponent)
        result = materialize([tickets, _asset(defs, "ticket_vectors")], resources=resources)
        assert result.success
        df = pl.read_parquet(tmp_path / "storage" / "ticket_vectors.parquet")
        assert df.height == 3 and len(df["inference_result"][0]) == 384


def test_a_wrong_yaml_field_is_a_clear_error():
    with (
        pytest.raises(Exception) as info,
        _load("""\
            type: dagster_sutro.components.SutroFunctionComponent
            attributes: {name: x, upstream: tickets, functon: ticket-triage}
            """),
    ):
        pass
    chain, exc = [], info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    text = "\n".join(chain)
    assert "functon" in text and "function" in text, text


def test_the_components_are_registered_for_dg():
    from dagster.components.core.package_entry import discover_entry_point_package_objects

    names = {
        k.name for k in discover_entry_point_package_objects() if k.namespace == "dagster_sutro.components"
    }
    assert names == {"SutroFunctionComponent", "SutroInferenceComponent"}
