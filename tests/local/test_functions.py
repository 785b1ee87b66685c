"""Classification Functions: one input over functions/{name}/run, and batch jobs through batch-inference."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pyarrow.parquet as pq

from .helpers import submit, wait_status

TICKETS = {
    "My card was billed two times, I need my money back": "billing",
    "The dashboard throws an error and crashes when I click save": "bug",
    "Could you add a dark theme to the editor?": "feature_request",
    "I can't sign in, my password reset email never arrives": "account",
}


def test_run_one_classification_shape_and_labels(api):
    for text, label in TICKETS.items():
        out = api.post("/functions/ticket-triage/run", json={"input": {"text": text}}).json()
        assert {"response", "confidence", "predictions", "rationale", "usage"} <= set(out)
        assert out["function"]["name"] == "ticket-triage" and out["request_id"]
        assert out["response"] == label, (text, out)
        assert [p["label"] for p in out["predictions"]][0] == label
        assert {p["label"] for p in out["predictions"]} == {"billing", "bug", "feature_request", "account"}
        assert abs(sum(p["confidence"] for p in out["predictions"]) - 1) < 1e-4
        assert out["confidence"] == out["predictions"][0]["confidence"] > 0.25
        assert f"Predicted '{label}'" in out["rationale"] and "nearest example" in out["rationale"]
        # the docs' usage.system_prompt is the prompt's text ("Return one lead qualification label.")
        assert out["usage"]["input_tokens"] > 0 and isinstance(out["usage"]["system_prompt"], str)
        assert out["usage"]["system_prompt"].strip()


def test_run_one_without_confidence_scoring(api):
    out = api.post("/functions/ticket-triage/run",
                   json={"input": {"text": "refund my invoice"}, "confidence_scoring": False}).json()
    assert out["response"] == "billing" and out["confidence"] is None
    # a bare string is accepted for a one-input Function (the official SDK sends it so)
    assert api.post("/functions/ticket-triage/run", json={"input": "the app crashes on start"}).json()["response"] == "bug"


def test_run_one_bad_input_names_the_field(api):
    r = api.post("/functions/ticket-triage/run", json={"input": {"body": "x"}})
    # 422: the official SDK raises SutroValidationError only for 422
    assert r.status_code == 422 and "missing field 'text'" in r.json()["detail"]
    assert r.json()["code"] == "invalid_function_input"
    r = api.post("/functions/nope/run", json={"input": {"text": "x"}})
    assert r.status_code == 404 and r.json()["code"] == "function_not_found"


def test_batch_function_job_outputs_label_json_and_confidence(api):
    texts = list(TICKETS)
    job_id = submit(api, model="ticket-triage", inputs=[{"text": t} for t in texts])
    job = wait_status(api, job_id)
    assert job["status"] == "SUCCEEDED" and job["model"] == "ticket-triage" and job["input_tokens"] > 0
    table = pq.read_table(io.BytesIO(api.get(f"/jobs/{job_id}/results", params={"include_inputs": "true"}).content))
    assert table.column_names == ["inputs", "outputs", "confidence_score"]
    labels = [json.loads(o)["label"] for o in table["outputs"].to_pylist()]
    assert labels == list(TICKETS.values())
    assert all("rationale" in json.loads(o) for o in table["outputs"].to_pylist())
    assert all(0 < c <= 1 for c in table["confidence_score"].to_pylist())
    assert [json.loads(i) for i in table["inputs"].to_pylist()] == [{"text": t} for t in texts]


def test_invalid_definitions_are_rejected_with_the_field(api):
    bad = [
        ({"name": "x", "type": "classification", "inputs": ["text"], "labels": [{"name": "only"}]}, "at least two"),
        ({"name": "x", "type": "summarise", "inputs": ["text"]}, "'type' is 'summarise'"),
        ({"name": "x y", "inputs": ["text"]}, "'name'"),
        ({"name": "x", "inputs": ["text"], "prompt_template": "{body}",
          "labels": [{"name": "a"}, {"name": "b"}]}, "{body} which is not an input field"),
        ({"name": "x", "inputs": ["text"], "model": "slow-embedx", "labels": [{"name": "a"}, {"name": "b"}]},
         "unknown model 'slow-embedx'"),
    ]
    for definition, needle in bad:
        r = api.post("/functions", json=definition)
        assert r.status_code == 400 and needle in r.json()["detail"], (definition, r.text)


def test_cli_publish_registers_per_key_and_republish_bumps_revision(tmp_path):
    from sutro_local.testing import LocalServer

    from .helpers import api_client

    yaml_file = tmp_path / "lang.yaml"
    yaml_file.write_text(
        "name: lang\ntype: classification\ninputs: [text]\nlabels:\n"
        "  - {name: greeting, description: hello hi good morning}\n"
        "  - {name: farewell, description: goodbye see you later bye}\n"
    )
    with LocalServer(tmp_path / "data") as srv:
        cmd = [sys.executable, "-m", "sutro_local", "functions", "publish", str(yaml_file),
               "--data-dir", str(srv.data_dir)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert "published Function 'lang' (classification) revision 1" in out
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert "revision 1" in out  # unchanged definition: same revision
        yaml_file.write_text(yaml_file.read_text().replace("good morning", "good morning hey"))
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert "revision 2" in out
        log = srv.log_tail()
        assert f"sutro-local serving at {srv.url}" in log and f"API key: {srv.api_key}" in log
        api = api_client(srv.url, srv.api_key)
        [listed] = api.get("/functions").json()["functions"]
        assert listed["name"] == "lang" and "good morning hey" in str(listed["labels"])
        new_key = subprocess.run([sys.executable, "-m", "sutro_local", "keys", "create", "b", "--data-dir",
                                  str(srv.data_dir)], capture_output=True, text=True, check=True).stdout.strip()
        other = api_client(srv.url, new_key)
        assert other.get("/auth/check").json()["key_name"] == "b"
        assert other.post("/functions/lang/run", json={"input": {"text": "bye"}}).status_code == 404
        assert other.get("/functions").json()["functions"] == []
        api.close()
        other.close()
