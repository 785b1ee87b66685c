"""``SutroJobLink``: the "Sutro Job" button on a task, pointing at the job's page.

The operators push the job's URL to XCom (key ``sutro_job_url``) right after submitting, before they
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

    Example::

        SutroJobLink().name      # 'Sutro Job'
    """

    name = "Sutro Job"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The job URL the task recorded in XCom, or ``""`` when no job was submitted.

        Example::

            SutroJobLink().get_link(task, ti_key=ti)   # 'http://127.0.0.1:8000/jobs/job-123'
        """
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=XCOM_JOB_URL)
        return str(url) if url else ""
