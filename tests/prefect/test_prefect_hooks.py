"""The pieces behind the Prefect UI and the runner-side hooks, without running a job."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.states import Failed
from sutro_core import (
    CostLimitExceededError,
    InputValidationError,
    JobCancelledError,
    JobFailedError,
    JobTimeoutError,
    SubmitOutcomeUnknownError,
)
from sutro_core.markdown import format_usd
from sutro_core.markdown import jobs_table_markdown as render

from prefect_sutro import cancel_sutro_jobs, sutro_flow, with_sutro_cancellation
from prefect_sutro.flow_decorators import has_sutro_cancellation
from prefect_sutro.summary import summary_key
from prefect_sutro.tasks import retry_unless_permanent


def _names(hooks) -> list[str]:
    return [h.__name__ for h in hooks]


def test_sutro_flow_installs_the_hooks_and_keeps_flow_arguments():
    def mine(flow, flow_run, state): ...

    @sutro_flow(name="nightly", retries=2, on_cancellation=[mine])
    def nightly(): ...

    assert nightly.name == "nightly" and nightly.retries == 2
    assert _names(nightly.on_cancellation_hooks) == ["mine", "cancel_sutro_jobs"]
    assert _names(nightly.on_crashed_hooks) == ["report_sutro_jobs_on_crash"]  # a crash keeps the jobs

    @sutro_flow(cancel_on_crash=True)
    def strict(): ...

    assert _names(strict.on_crashed_hooks) == ["cancel_sutro_jobs_on_crash"]
    assert has_sutro_cancellation(strict)


def test_with_sutro_cancellation_is_idempotent_and_refuses_a_plain_function():
    @flow
    def plain(): ...

    assert not has_sutro_cancellation(plain)
    twice = with_sutro_cancellation(with_sutro_cancellation(plain))
    assert twice.on_cancellation_hooks.count(cancel_sutro_jobs) == 1 and len(twice.on_crashed_hooks) == 1
    with pytest.raises(TypeError, match="@sutro_flow"):
        with_sutro_cancellation(lambda: None)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.00002, "$0.00002"), (0.0000234, "$0.000023"), (0.0099, "$0.0099"), (0.01, "$0.01"), (1234.5, "$1,234.50"),
     (0.0, "$0.00"), (None, "n/a")],
)
def test_small_costs_keep_two_significant_digits(value, text):
    assert format_usd(value) == text


def test_job_table_has_a_header_links_and_a_total():
    rows = {
        "job-1": {"step": "triage", "url": "http://h/console/jobs/job-1", "status": "SUCCEEDED", "rows": 3,
                  "cost": 0.00002, "uri": "/out/t.parquet"},
        "job-2": {"step": "a|b", "status": "RUNNING", "rows": 5},
    }
    lines = render(rows).splitlines()
    assert lines[0] == "### Sutro jobs of this flow run" and "`" not in lines[0]
    assert lines[2] == "| Step | Job | Status | Rows | Cost (USD) | Results |"
    assert lines[4] == "| triage | [job-1](http://h/console/jobs/job-1) | SUCCEEDED | 3 | $0.00002 | `/out/t.parquet` |"
    assert lines[5] == "| a\\|b | job-2 | RUNNING | 5 |  |  |"  # a pipe in a cell cannot break the table
    assert lines[-1] == "2 jobs, total cost $0.00002"
    assert summary_key("Support Insights!") == "support-insights-sutro-jobs"


@pytest.mark.parametrize(
    ("exc", "retry"),
    [(InputValidationError("data", "empty"), False), (CostLimitExceededError(2.0, 1.0), False),
     (JobFailedError("job-1", "bad prompt"), False), (JobCancelledError("job-1"), False),
     (JobTimeoutError("job-1", "RUNNING", 5.0), True), (ConnectionError("reset"), True)],
)
def test_only_errors_a_retry_can_fix_are_retried(exc, retry):
    assert retry_unless_permanent(None, None, Failed(data=exc)) is retry


def test_a_lost_submit_is_retried():
    exc = SubmitOutcomeUnknownError("the answer was lost", idempotency_key="k")
    assert retry_unless_permanent(None, None, Failed(data=exc)) is True
