"""Result shaping: output column naming, JSON unpacking, reasoning outputs, joins, clashes."""

from __future__ import annotations

import json

import pandas as pd
import polars as pl
import pytest

from sutro_core.results.shape import ResultsShapeError, join_original, shape_results


def test_plain_outputs_are_renamed():
    df = shape_results(pl.DataFrame({"outputs": ["hi", "there"]}), output_column="answer")
    assert df.columns == ["answer"] and df["answer"].to_list() == ["hi", "there"]


def test_json_outputs_unpack_into_columns_and_raw_on_request():
    raw = pl.DataFrame({"inputs": ["a", "b"], "outputs": [json.dumps({"label": "x", "score": 1}),
                                                           json.dumps({"label": "y", "score": 2})]})
    df = shape_results(raw)
    assert df.columns == ["inputs", "label", "score"]
    assert df["label"].to_list() == ["x", "y"]
    kept = shape_results(raw, unpack_json=False)
    assert kept["inference_result"].to_list() == raw["outputs"].to_list()


def test_reasoning_outputs_unpack_as_the_sdk_does():
    outs = [json.dumps({"content": {"sentiment": "pos"}, "reasoning_content": "because"}),
            json.dumps({"content": {"sentiment": "neg"}, "reasoning_content": "hmm"})]
    # default: every field of the object is a column (content stays structured), as the SDK
    df = shape_results(pl.DataFrame({"outputs": outs}))
    assert df.columns == ["content", "reasoning_content"]
    assert df["reasoning_content"].to_list() == ["because", "hmm"]
    assert df["content"].to_list() == [{"sentiment": "pos"}, {"sentiment": "neg"}]
    # unwrap_reasoning flattens the content and keeps the reasoning (it dropped it before)
    flat = shape_results(pl.DataFrame({"outputs": outs}), unwrap_reasoning=True)
    assert flat.columns == ["reasoning_content", "sentiment"] and flat["sentiment"].to_list() == ["pos", "neg"]
    text = [json.dumps({"content": "plain answer", "reasoning_content": "r"})]
    plain = shape_results(pl.DataFrame({"outputs": text}), unwrap_reasoning=True)
    assert plain.columns == ["content", "reasoning_content"] and plain["content"].to_list() == ["plain answer"]


def test_non_json_strings_and_vectors_stay_as_they_are():
    mixed = pl.DataFrame({"outputs": ['{"a": 1}', "not json"]})
    assert shape_results(mixed)["inference_result"].to_list() == ['{"a": 1}', "not json"]
    vectors = pl.DataFrame({"outputs": [[0.1, 0.2], [0.3, 0.4]]})
    assert shape_results(vectors)["inference_result"].to_list()[1] == pytest.approx([0.3, 0.4])


def test_column_clash_is_a_clear_error():
    raw = pl.DataFrame({"inputs": ["a"], "outputs": [json.dumps({"inputs": "clash"})]})
    with pytest.raises(ResultsShapeError, match="inputs"):
        shape_results(raw)


def test_join_original_keeps_order_and_type():
    results = pl.DataFrame({"inference_result": ["r1", "r2"]})
    joined = join_original(results, pd.DataFrame({"text": ["a", "b"]}))
    assert isinstance(joined, pd.DataFrame)
    assert joined.to_dict("list") == {"text": ["a", "b"], "inference_result": ["r1", "r2"]}
    with pytest.raises(ResultsShapeError, match="2 rows but the results have 1"):
        join_original(results.head(1), pl.DataFrame({"text": ["a", "b"]}))
    with pytest.raises(ResultsShapeError, match="inference_result"):
        join_original(results, pl.DataFrame({"inference_result": ["a", "b"]}))


def test_join_original_pandas_keeps_index_and_dtypes():
    original = pd.DataFrame({"text": pd.Series(["a", "b", "c"], dtype=object), "n": [1, 2, 3]}, index=[10, 20, 30])
    joined = join_original(pl.DataFrame({"inference_result": ["r1", "r2", "r3"]}), original)
    assert list(joined.index) == [10, 20, 30]
    assert joined["text"].dtype == object and joined["n"].dtype == original["n"].dtype
    assert joined.loc[20, "inference_result"] == "r2"
    assert "inference_result" not in original.columns  # the caller's frame is not modified
