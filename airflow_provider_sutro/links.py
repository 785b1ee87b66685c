"""``SutroJobLink``: the "Sutro Job" button on a task, pointing at the job's page.

The operators record the job (``record_job``) right after ``client.start``, before they defer or wait, as
the dbt Cloud provider pushes its run link: the link works while the job runs and after the task failed.

Example::

    class MyOperator(BaseOperator):
        operator_extra_links = (SutroJobLink(),)
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink
from sutro_core import JobHandle

#: XCom keys the operators push as soon as the job is started.
XCOM_JOB_ID = "sutro_job_id"
XCOM_JOB_URL = "sutro_job_url"
XCOM_JOB_HANDLE = "sutro_job_handle"
#: The repair round's job a task deferred on (a step's other job), beside the step's own handle.
XCOM_REPAIR_HANDLE = "sutro_repair_handle"


class SutroJobLink(BaseOperatorLink):
    """Operator extra link to the Sutro job started (or reattached to) by the task.

    Example::

        SutroJobLink().name      # 'Sutro Job'
    """

    name = "Sutro Job"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The URL of the job this task instance ran, or ``""`` when it started none.

        Example::

            SutroJobLink().get_link(task, ti_key=ti)   # 'http://127.0.0.1:8484/console/jobs/job-123'
        """
        # The operator instance that ran the task holds the URL; no XCom round trip needed.
        return str(getattr(operator, "sutro_job_url", None) or "")


def record_job(operator: Any, context: Any, handle: JobHandle) -> None:
    """Record the job durably before any waiting: the handle, its id and URL, and the link's own XCom.

    Example::

        record_job(self, context, client.start(spec, scope=scope))
    """
    operator.sutro_job_url = handle.url
    ti = context["ti"]
    ti.xcom_push(key=XCOM_JOB_HANDLE, value=handle.to_dict())
    ti.xcom_push(key=XCOM_JOB_ID, value=handle.job_id)
    ti.xcom_push(key=XCOM_JOB_URL, value=handle.url)
    ti.xcom_push(key=SutroJobLink().xcom_key, value=handle.url)


def recorded_handle(context: Any, passed: dict[str, Any] | None, key: str = XCOM_JOB_HANDLE) -> JobHandle | None:
    """The handle a resumed task waits on: the one ``defer(kwargs=...)`` passed, else the one recorded in XCom
    under ``key`` (``dag.test()`` replaces the deferral's kwargs with the event alone).

    Example::

        handle = recorded_handle(context, handle)
    """
    if passed:
        return JobHandle.from_dict(passed)
    ti = context.get("ti")
    if ti is None:
        return None
    found = ti.xcom_pull(task_ids=ti.task_id, key=key, map_indexes=ti.map_index)
    return JobHandle.from_dict(found) if found else None
