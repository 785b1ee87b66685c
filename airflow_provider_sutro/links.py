"""``SutroJobLink``: the "Sutro Job" button on a task, pointing at the job's page.

The operators record the job's id and URL in XCom (``record_job``) right after submitting, before they
defer or wait, so the link works while the job is still running and after the task failed.

Example::

    class MyOperator(BaseOperator):
        operator_extra_links = (SutroJobLink(),)
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

#: XCom keys the operators push as soon as a job id is known.
XCOM_JOB_ID = "sutro_job_id"
XCOM_JOB_URL = "sutro_job_url"


class SutroJobLink(BaseOperatorLink):
    """Operator extra link to the Sutro job submitted (or reattached to) by the task.

    ``record_job`` pushes the link's XCom as soon as the job id is known, so the button works while the
    task is deferred; at the end of the task Airflow re-reads it through ``get_link``.

    Example::

        SutroJobLink().name      # 'Sutro Job'
    """

    name = "Sutro Job"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The URL of the job this task instance ran, or ``""`` when it submitted none.

        Example::

            SutroJobLink().get_link(task, ti_key=ti)   # 'http://127.0.0.1:8000/jobs/job-123'
        """
        # The operator instance that ran the task holds the URL; no XCom round trip needed.
        return str(getattr(operator, "sutro_job_url", None) or "")


def record_job(operator: Any, context: Any, job_id: str, job_url: str) -> None:
    """Record the job durably before any waiting: its id and URL to XCom, and the link's own XCom.

    Example::

        record_job(self, context, submission.job_id, client.job_url(submission.job_id))
    """
    operator.sutro_job_url = job_url
    ti = context["ti"]
    ti.xcom_push(key=XCOM_JOB_ID, value=job_id)
    ti.xcom_push(key=XCOM_JOB_URL, value=job_url)
    ti.xcom_push(key=SutroJobLink().xcom_key, value=job_url)
