"""load_results: raw by default, shaped on request, bounded previews, remote URIs."""

from __future__ import annotations

import json

import fsspec
import polars as pl
import pytest

from sutro_core import InputValidationError, load_results


@pytest.fixture
def results_file(tmp_path):
    path = tmp_path / "r.parquet"
    rows = [json.dumps({"label": f"l{i}", "rationale": "r"}) for i in range(100)]
    pl.DataFrame({"inputs": [f"in{i}" for i in range(100)], "outputs": rows}).write_parquet(path, row_group_size=10)
    return path


def test_raw_shaped_and_preview(results_file):
    assert load_results(results_file).columns == ["inputs", "outputs"]
    shaped = load_results(results_file, unpack_json=True)
    assert shaped.columns == ["inputs", "label", "rationale"] and shaped["label"][99] == "l99"
    head = load_results(results_file, n_rows=3, unpack_json=True)
    assert head["inputs"].to_list() == ["in0", "in1", "in2"]


def test_remote_uri_and_manifest_dict(results_file):
    with fsspec.open("memory://bucket/r.parquet", "wb") as fh:
        fh.write(results_file.read_bytes())
    assert load_results({"uri": "memory://bucket/r.parquet", "format": "parquet"}).height == 100
    assert load_results("memory://bucket/r.parquet", n_rows=5).height == 5


def test_json_artifacts_are_refused_with_the_fix():
    with pytest.raises(InputValidationError, match="parquet or csv"):
        load_results({"uri": "r.json", "format": "json"})
