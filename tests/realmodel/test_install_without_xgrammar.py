"""`pip install sutro-pipelines[local]` alone (no xgrammar): the default model's JSON-schema jobs work.

xgrammar is installed out of band by ./run (its triton dependency is 1 GB), so a plain pip install lacks
it. The default engine's choice takes that into account: without xgrammar the default chat model is
served on llamacpp, whose grammar needs none, even on a CPU where transformers would be chosen.
"""

from __future__ import annotations

import json
import os

import pytest

from sutro_core import BatchJobRequest, SutroClient
from sutro_local.engines.smollm2 import ENGINE_ENV, has_bf16
from sutro_local.testing import LocalServer

from .conftest import MODEL
from .test_smollm2 import EXTRACT_PROMPT, PEOPLE, PERSON_SCHEMA, _is_person

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_without_xgrammar_the_default_model_serves_schema_jobs_on_llamacpp(tmp_path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    # Runs at the server's interpreter start: `import xgrammar` then fails and find_spec says "absent".
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["xgrammar"] = None  # as if not installed\n')
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    with LocalServer(tmp_path / "data", None, env={ENGINE_ENV: "auto", "PYTHONPATH": path}) as server:
        with SutroClient(api_key=server.api_key, api_url=server.url) as client:
            request = BatchJobRequest.for_inference(
                [s for s, _, _ in PEOPLE[:4]], model=MODEL, system_prompt=EXTRACT_PROMPT,
                output_schema=PERSON_SCHEMA, sampling_params={"temperature": 0.0, "max_tokens": 48},
            )  # fmt: skip
            job_id = client.submit_job(request).job_id
            client.await_job_completion(job_id, obtain_results=False)
            raw = client.get_job_results(job_id, unpack_json=False)
        log = server.log_path.read_text(errors="replace")
    assert all(_is_person(json.loads(text)) for text in raw["inference_result"]), raw
    assert raw["finish_reason"].to_list() == ["stop"] * 4
    assert f"{MODEL} on the llamacpp engine: " in log and f"loading model {MODEL} (engine llamacpp)" in log
    if has_bf16():  # where transformers would have been chosen, the reason says why it was not
        assert "xgrammar is not installed" in log
