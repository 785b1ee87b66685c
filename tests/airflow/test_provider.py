"""Provider registration, the hook, and how a resumed task judges the trigger's event."""

from __future__ import annotations

from typing import Any

import pytest
from sutro_core import (
    BatchJobRequest,
    InputValidationError,
    JobCancelledError,
    JobFailedError,
    JobHandle,
    JobStatus,
    SutroClient,
)

from airflow_provider_sutro.errors import SutroJobError, SutroTaskTimeoutError, SutroTriggerEventError
from airflow_provider_sutro.hooks.sutro import SutroHook, api_url_from_connection
from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator

#: The handle a deferred task resumes with (what execute() passed to defer(kwargs=...)).
HANDLE = {"job_id": "job-1", "api_url": "http://127.0.0.1:9/v1", "url": "http://127.0.0.1:9/console/jobs/job-1",
          "started_at": 0.0}


def make_event(status: str, job_id: str, message: str, **details: Any) -> dict[str, Any]:
    """A trigger event as SutroJobTrigger yields it (the core's outcome dict)."""
    return {"status": status, "job_id": job_id, "message": message, **details}


def test_airflow_finds_the_provider_and_the_sutro_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "sutro-pipelines" in pm.providers
    info = pm.providers["sutro-pipelines"]
    assert info.data["name"] == "Sutro"

    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["sutro"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_sutro.hooks.sutro.SutroHook"
    assert hook.connection_testable
    assert pm.field_behaviours["sutro"]["relabeling"] == {"password": "API Key", "host": "API URL"}
    assert "airflow_provider_sutro.links.SutroJobLink" in pm.extra_links_class_names
    assert any(t.package_name == "sutro-pipelines" for t in pm.trigger)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, None),
        ("", None, None),
        ("api.sutro.sh", None, "https://api.sutro.sh"),
        ("http://127.0.0.1:8000/", None, "http://127.0.0.1:8000"),
        ("http://127.0.0.1", 8123, "http://127.0.0.1:8123"),
        ("localhost", 9000, "https://localhost:9000"),
    ],
)
def test_api_url_from_connection(host: str | None, port: int | None, expected: str | None) -> None:
    assert api_url_from_connection(host, port) == expected


def test_hook_test_connection(sutro_conn: str, monkeypatch: pytest.MonkeyPatch, sutro_api_url: str) -> None:
    ok, message = SutroHook(sutro_conn).test_connection()
    assert ok, message
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUTRO_DEFAULT",
        f'{{"conn_type": "sutro", "host": "{sutro_api_url}", "password": "nope"}}',
    )
    ok, message = SutroHook(sutro_conn).test_connection()
    assert not ok
    assert "401" in message or "403" in message


async def test_hook_gives_a_working_async_client(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = sutro_client.submit_job(BatchJobRequest.for_inference(["hi"], model="all-minilm-l6-v2")).job_id
    async with await SutroHook(sutro_conn).get_async_conn() as client:
        job = await client.get_job(job_id)
    assert job.job_id == job_id


def _operator(tmp_path: Any, **kwargs: Any) -> SutroBatchInferenceOperator:
    kwargs.setdefault("inputs", ["a"])
    return SutroBatchInferenceOperator(
        task_id="embed", model="all-minilm-l6-v2", output_uri=str(tmp_path / "o.parquet"), **kwargs
    )


def _fail_fast(exc_type: type[Exception], match: str):
    """Errors a retry cannot fix reach Airflow as AirflowFailException (no retry spent), caused by the core's."""
    from airflow.sdk.exceptions import AirflowFailException

    class _Check:
        def __enter__(self) -> None:
            self.raises = pytest.raises(AirflowFailException, match=match)
            self.info = self.raises.__enter__()

        def __exit__(self, *exc: Any) -> bool:
            handled = self.raises.__exit__(*exc)
            assert isinstance(self.info.value.__cause__, exc_type), self.info.value.__cause__
            return handled

    return _Check()


def test_execute_complete_failed_fails_fast_with_the_server_reason(sutro_conn: str, tmp_path: Any) -> None:
    event = make_event("failed", "job-1", "job job-1 FAILED: row 1 too long", reason="row 1 too long")
    with _fail_fast(JobFailedError, "row 1 too long"):
        _operator(tmp_path).execute_complete({}, event, handle=HANDLE)


def test_execute_complete_cancelled_is_never_success(sutro_conn: str, tmp_path: Any) -> None:
    with _fail_fast(JobCancelledError, "CANCELLED"):
        _operator(tmp_path).execute_complete({}, make_event("cancelled", "job-1", "x"), handle=HANDLE)


def test_execute_complete_timeout_says_the_job_was_cancelled(sutro_conn: str, tmp_path: Any) -> None:
    event = make_event("timeout", "job-1", "still RUNNING", job_status="RUNNING", cancelled=True)
    with pytest.raises(SutroTaskTimeoutError, match="it was cancelled") as info:
        _operator(tmp_path, timeout=5).execute_complete({}, event, handle=HANDLE)
    assert info.value.cancelled and "keeps running" not in str(info.value)


def test_execute_complete_error_says_a_retry_reattaches(sutro_conn: str, tmp_path: Any) -> None:
    with pytest.raises(SutroJobError, match="reattaches"):
        _operator(tmp_path).execute_complete({}, make_event("error", "job-1", "HTTP 503", http_status=503),
                                             handle=HANDLE)


@pytest.mark.parametrize(
    "event",
    [None, "success", {"status": "done", "job_id": "job-1"}, {"status": "success"}],
)
def test_execute_complete_rejects_malformed_events(sutro_conn: str, tmp_path: Any, event: Any) -> None:
    with pytest.raises(SutroTriggerEventError):
        _operator(tmp_path).execute_complete({}, event, handle=HANDLE)


def test_execute_complete_rejects_an_event_for_another_job(sutro_conn: str, tmp_path: Any) -> None:
    with pytest.raises(SutroTriggerEventError, match="job-2"):
        _operator(tmp_path).execute_complete({}, make_event("success", "job-2", "ok"), handle=HANDLE)


def test_execute_complete_without_a_handle_fails_loudly(sutro_conn: str, tmp_path: Any) -> None:
    with pytest.raises(SutroTriggerEventError, match="handle"):
        _operator(tmp_path).execute_complete({}, make_event("success", "job-1", "ok"))


def test_bad_input_names_the_field(tmp_path: Any) -> None:
    with pytest.raises(InputValidationError, match="output_uri"):
        from airflow_provider_sutro.io import output_uri_to_str

        output_uri_to_str("  ")
    with pytest.raises(InputValidationError, match="max_cost_usd"):
        _operator(tmp_path, max_cost_usd=-1)
    with pytest.raises(InputValidationError, match="timeout"):
        _operator(tmp_path, timeout=0)
    with pytest.raises(InputValidationError, match="inputs"):
        from airflow_provider_sutro.io import resolve_inputs

        resolve_inputs(f"file://{tmp_path}/missing.parquet".replace("file://", "memory://"))


def test_on_kill_cancels_in_non_deferrable_mode(
    sutro_conn: str, sutro_client: SutroClient, tmp_path: Any
) -> None:
    job_id = sutro_client.submit_job(
        BatchJobRequest.for_inference([f"r{i}" for i in range(40)], model="slow-embed")
    ).job_id
    op = _operator(tmp_path, deferrable=False)
    op.handle = JobHandle(job_id=job_id, api_url=sutro_client.api_url, url="", started_at=0.0)  # execute() records it
    op.on_kill()
    assert sutro_client.get_job_status(job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)


def test_sensor_poke_fails_on_a_failed_job(sutro_conn: str, sutro_client: SutroClient) -> None:
    from airflow_provider_sutro.sensors.sutro import SutroJobSensor

    job_id = sutro_client.submit_job(
        BatchJobRequest.for_inference(["ok", "word " * 2000], model="all-minilm-l6-v2", truncate_rows=False)
    ).job_id
    sensor = SutroJobSensor(task_id="wait", job_id=job_id)
    import time

    deadline = time.monotonic() + 30
    with _fail_fast(JobFailedError, "context window|tokens|row"):
        while time.monotonic() < deadline:
            if sensor.poke({}):
                pytest.fail("a FAILED job must never satisfy the sensor")
            time.sleep(0.2)


def test_airflow_can_import_the_distribution_name(caplog: pytest.LogCaptureFixture) -> None:
    """With ``load_examples`` on (Airflow's default) every ``dags test`` imports each provider's distribution
    name to look for example DAGs; ``sutro_pipelines`` was missing, so it printed two tracebacks."""
    from airflow.dag_processing.bundles.manager import _add_provider_example_dags_to_bundle

    with caplog.at_level("ERROR"):
        _add_provider_example_dags_to_bundle([])
    assert "sutro_pipelines" not in caplog.text
