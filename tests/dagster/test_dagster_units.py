"""dagster_sutro pieces that need no server: the results check, input coercion, definition-time errors."""

from __future__ import annotations

import polars as pl
import pytest
from dagster import AssetKey

from dagster_sutro import (
    SutroResource,
    build_sutro_function_asset,
    build_sutro_inference_asset,
    evaluate_results,
    preview_markdown,
    rows_to_frame,
)
from sutro_core import InputValidationError


def test_check_fails_on_missing_rows_and_fields():
    df = pl.DataFrame({"text": ["a", "b"], "label": ["x", None]})
    ok = evaluate_results(df, input_rows=2, expected_columns=["label"])
    assert ok.passed and ok.metadata["null_values"].value == {"label": 1}
    short = evaluate_results(df, input_rows=3, expected_columns=["label", "rationale"], asset_key=AssetKey("t"))
    assert not short.passed
    assert "2 result rows for 3 input rows" in short.description and "['rationale']" in short.description
    nothing_new = evaluate_results(df, input_rows=2, expected_columns=[], input_columns=["text", "label"])
    assert not nothing_new.passed and "no output columns" in nothing_new.description


def test_rows_to_frame_accepts_frames_and_parquet_paths(tmp_path):
    path = tmp_path / "rows.parquet"
    pl.DataFrame({"text": ["a"]}).write_parquet(path)
    assert rows_to_frame(path)["text"].to_list() == ["a"]
    assert rows_to_frame(pl.LazyFrame({"text": ["b"]}))["text"].to_list() == ["b"]
    assert rows_to_frame(pl.DataFrame({"text": ["c"]}).to_pandas())["text"].to_list() == ["c"]
    with pytest.raises(InputValidationError, match="upstream.*parquet"):
        rows_to_frame(str(tmp_path / "rows.csv"))
    with pytest.raises(InputValidationError, match="upstream.*produced a dict"):
        rows_to_frame({"text": "a"})


def test_factories_reject_bad_arguments_at_definition_time():
    with pytest.raises(ValueError, match="max_cost_usd: must be a dollar amount >= 0"):
        build_sutro_inference_asset(name="x", upstream="rows", model="m", max_cost_usd=-1)
    build_sutro_inference_asset(name="x", upstream="rows", model="m", max_cost_usd=0)  # 0: only free jobs
    with pytest.raises(ValueError, match="model: pass the Sutro model id"):
        build_sutro_inference_asset(name="x", upstream="rows", model="")
    with pytest.raises(ValueError, match="function: pass the published"):
        build_sutro_function_asset(name="x", upstream="rows", function="")
    with pytest.raises(TypeError, match="upstream: expected an asset"):
        build_sutro_inference_asset(name="x", upstream=42, model="m")


def test_preview_shortens_vectors_and_escapes_pipes():
    md = preview_markdown(pl.DataFrame({"v": [[0.1] * 384], "t": ["a|b"]}))
    assert "(384 items)" in md and "a\\|b" in md


def test_resource_poll_settings_reach_the_core_client():
    resource = SutroResource(api_key="k", api_url="http://127.0.0.1:1", poll_interval_seconds=0.5,
                             max_poll_interval_seconds=2.0)
    client = resource.get_client()
    assert client.poll.initial_interval == 0.5 and client.poll.max_interval == 2.0
    assert client.api_url == "http://127.0.0.1:1/v1"
    resource.close()
    assert client._http.is_closed
