"""Input normalisation and the bad inputs each give a clear error before any request."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest
from pydantic import BaseModel

from sutro_core import BatchJobRequest, InputValidationError, SutroClient


def test_text_rows_from_every_source(tmp_path):
    df = pl.DataFrame({"title": ["A", "B"], "body": ["x", "y"]})
    assert BatchJobRequest.for_inference(["a", "b"], "m").inputs.inline == ["a", "b"]
    assert BatchJobRequest.for_inference(df, "m", column="body").inputs.inline == ["x", "y"]
    assert BatchJobRequest.for_inference(df.to_pandas(), "m", column="body").inputs.inline == ["x", "y"]
    concat = BatchJobRequest.for_inference(df, "m", column=["title", ": ", "body"])
    assert concat.inputs.inline == ["A: x", "B: y"]
    df.write_parquet(tmp_path / "d.parquet")
    df.write_csv(tmp_path / "d.csv")
    (tmp_path / "d.txt").write_text("one\ntwo\n")
    assert BatchJobRequest.for_inference(tmp_path / "d.parquet", "m", column="title").inputs.inline == ["A", "B"]
    assert BatchJobRequest.for_inference(str(tmp_path / "d.csv"), "m", column="title").inputs.inline == ["A", "B"]
    assert BatchJobRequest.for_inference(tmp_path / "d.txt", "m").inputs.inline == ["one", "two"]
    url = BatchJobRequest.for_inference("https://x.test/data.parquet", "m", column="text", id_column="id")
    body = url.payload()
    assert body["inputs"] == "https://x.test/data.parquet"
    assert body["column_name"] == "text" and body["id_column_name"] == "id"
    assert BatchJobRequest.for_inference(pl.Series("s", ["q"]), "m").inputs.inline == ["q"]
    assert BatchJobRequest.for_inference(pd.Series(["q"]), "m").inputs.inline == ["q"]


def test_function_rows():
    df = pl.DataFrame({"text": ["a"], "extra": [1]})
    assert BatchJobRequest.for_function("f", df).inputs.inline == [{"text": "a", "extra": 1}]
    assert BatchJobRequest.for_function("f", df, columns=["text"]).inputs.inline == [{"text": "a"}]
    assert BatchJobRequest.for_function("f", [{"text": "a"}]).inputs.inline == [{"text": "a"}]

    class In(BaseModel):
        text: str

    assert BatchJobRequest.for_function("f", [In(text="z")]).inputs.inline == [{"text": "z"}]


BAD_INPUTS = [
    ("missing column", lambda: BatchJobRequest.for_inference(pl.DataFrame({"a": ["x"]}), "m", column="b"), "column"),
    ("ambiguous columns", lambda: BatchJobRequest.for_inference(pl.DataFrame({"a": ["x"], "b": ["y"]}), "m"), "column"),
    ("null values", lambda: BatchJobRequest.for_inference(pl.DataFrame({"a": ["x", None]}), "m", column="a"), "null"),
    ("non-text column", lambda: BatchJobRequest.for_inference(pl.DataFrame({"a": [1]}), "m", column="a"), "cast"),
    ("unsupported file type", lambda: BatchJobRequest.for_inference("data.xlsx", "m"), "unsupported file type"),
    ("missing file", lambda: BatchJobRequest.for_inference("nope.csv", "m"), "does not exist"),
    ("empty list", lambda: BatchJobRequest.for_inference([], "m"), "no rows"),
    ("empty frame", lambda: BatchJobRequest.for_inference(pl.DataFrame({"a": []}, schema={"a": pl.String}), "m", column="a"), "no rows"),
    ("non-string rows", lambda: BatchJobRequest.for_inference(["ok", 3], "m"), "row 1 is int"),
    ("name too long", lambda: BatchJobRequest.for_inference(["x"], "m", name="n" * 46), "limit is 45"),
    ("description too long", lambda: BatchJobRequest.for_inference(["x"], "m", description="d" * 513), "limit is 512"),
    ("bad schema type", lambda: BatchJobRequest.for_inference(["x"], "m", output_schema="{}"), "output_schema"),
    ("empty schema", lambda: BatchJobRequest.for_inference(["x"], "m", output_schema={}), "empty"),
    ("bad priority", lambda: BatchJobRequest.for_inference(["x"], "m", job_priority=-1), "job_priority"),
    ("empty model", lambda: BatchJobRequest.for_inference(["x"], ""), "model"),
    ("URL of wrong type", lambda: BatchJobRequest.for_inference("https://x.test/a.json", "m", column="t"), ".csv or .parquet"),
    ("URL without column", lambda: BatchJobRequest.for_inference("https://x.test/a.csv", "m"), "column"),
    ("unsupported data type", lambda: BatchJobRequest.for_inference(42, "m"), "unsupported data type"),
    ("function rows not dicts", lambda: BatchJobRequest.for_function("f", ["text"]), "dicts"),
    ("function missing columns", lambda: BatchJobRequest.for_function("f", pl.DataFrame({"a": [1]}), columns=["text"]), "text"),
    ("sampling params not a dict", lambda: BatchJobRequest.for_inference(["x"], "m", sampling_params=[0.1]), "sampling_params"),
]


@pytest.mark.parametrize("case,make,needle", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gives_clear_error(case, make, needle):
    with pytest.raises(InputValidationError) as info:
        make()
    assert needle in str(info.value)


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(InputValidationError, match="UTF-8"):
        BatchJobRequest.for_inference(path, "m", column="text")


def test_client_checks_before_any_request():
    # Nothing listens on this port: an error other than InputValidationError would mean a request went out.
    client = SutroClient(api_key="k", api_url="http://127.0.0.1:9")
    with pytest.raises(InputValidationError, match="one name per model"):
        client.infer(["x"], model=["a", "b"], name=["only-one"], stay_attached=False)
    with pytest.raises(InputValidationError, match="input_data"):
        client.run_function("f", "not a dict")
    with pytest.raises(InputValidationError, match="format"):
        client.download_results("job", "out.xlsx", format="xlsx")


def test_fingerprint_tracks_what_the_job_computes():
    base = BatchJobRequest.for_inference(["a", "b"], "m", system_prompt="p")
    assert base.fingerprint == BatchJobRequest.for_inference(["a", "b"], "m", system_prompt="p", name="renamed").fingerprint
    assert base.fingerprint != BatchJobRequest.for_inference(["a", "c"], "m", system_prompt="p").fingerprint
    assert base.fingerprint != BatchJobRequest.for_inference(["ab"], "m", system_prompt="p").fingerprint
    assert base.fingerprint != BatchJobRequest.for_inference(["a", "b"], "m2", system_prompt="p").fingerprint
    assert base.fingerprint != BatchJobRequest.for_inference(["a", "b"], "m", system_prompt="q").fingerprint


def test_payload_carries_idempotency_marker_and_keeps_description():
    req = BatchJobRequest.for_inference(["a"], "m", description="nightly run")
    body = req.payload("k" * 32)
    assert body["description"].startswith("nightly run ")
    assert body["description"].endswith("[sutro-idempotency-key:" + "k" * 32 + "]")
    assert len(body["description"]) <= 512
    with pytest.raises(InputValidationError, match="description"):
        BatchJobRequest.for_inference(["a"], "m", description="d" * 500).payload("k" * 32)


def test_api_url_is_normalised_to_the_v1_prefix_like_the_official_sdk():
    assert SutroClient(api_key="k", api_url="https://api.sutro.sh").api_url == "https://api.sutro.sh/v1"
    assert SutroClient(api_key="k", api_url="http://127.0.0.1:8484/v1/").api_url == "http://127.0.0.1:8484/v1"
    assert SutroClient(api_key="k", api_url="https://gw.example.com/sutro").api_url == "https://gw.example.com/sutro"
    assert SutroClient(api_key="k", api_url="https://api.sutro.sh").job_url("j1") == "https://app.sutro.sh/jobs/j1"
    with pytest.raises(InputValidationError, match="api_url"):
        SutroClient(api_key="k", api_url="api.sutro.sh")
