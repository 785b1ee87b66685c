"""The Prefect side of the retry-safety protocol: which run a submit belongs to, as an idempotency key.

A key is made from what stays the same when Prefect retries the same step (the root flow run id, the
flow and task names) plus the job's fingerprint (inputs, model, prompt, schema, sampling params), and
never from a try number. So a retried task, a retried flow run, or a subflow re-run by a retried parent
all derive the same key, and ``submit_job`` reattaches to the job the earlier try submitted.

Example:
    >>> from prefect import task
    >>> @task
    ... async def my_submit(req):
    ...     key = await prefect_idempotency_key(req.fingerprint)
    ...     ...
"""

from __future__ import annotations

import logging
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from sutro_core import idempotency_key

logger = logging.getLogger(__name__)

# Guards against a cycle or a pathological nesting depth when walking up to the root flow run.
_MAX_DEPTH = 32


async def root_flow_run_id(flow_run_id: UUID, parent_task_run_id: UUID | None) -> UUID:
    """The id of the outermost flow run above ``flow_run_id`` (itself for a top-level flow run).

    A subflow run re-created by a retried parent gets a new id, but its root stays the same, so keys
    scoped on the root survive parent retries.

    Example:
        >>> await root_flow_run_id(ctx.flow_run.id, ctx.flow_run.parent_task_run_id)  # doctest: +SKIP
    """
    current, parent_task = flow_run_id, parent_task_run_id
    if parent_task is None:
        return current
    async with get_client() as client:
        for _ in range(_MAX_DEPTH):
            if parent_task is None:
                break
            task_run = await client.read_task_run(parent_task)
            if task_run.flow_run_id is None:
                break
            flow_run = await client.read_flow_run(task_run.flow_run_id)
            current, parent_task = flow_run.id, flow_run.parent_task_run_id
    return current


# own flow run id -> (root flow run id, root flow name): the walk costs API calls, and both never change.
_roots: dict[UUID, tuple[UUID, str]] = {}


async def current_root() -> tuple[UUID, str] | None:
    """(root flow run id, root flow name) of the current flow run; None outside any flow run.

    Example:
        >>> await current_root()   # doctest: +SKIP
        (UUID('3b28b852-...'), 'support-insights')
    """
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    own = ctx.flow_run
    if own.id not in _roots:
        root = await root_flow_run_id(own.id, own.parent_task_run_id)
        if root == own.id:
            name = ctx.flow.name if ctx.flow else ""
        else:
            async with get_client() as client:
                name = (await client.read_flow((await client.read_flow_run(root)).flow_id)).name
        _roots[own.id] = (root, name)
    return _roots[own.id]


async def prefect_retry_scope(extra_scope: str | None = None) -> tuple[str, ...]:
    """The parts of the current Prefect run that stay the same across retries of this step.

    Inside a flow: ("prefect", root flow run id, flow name, task name, extra_scope).
    Outside any flow (a bare task run): ("prefect", "task-run", task run id, task name, extra_scope),
    since a task's retries keep its task run id.

    Example:
        >>> await prefect_retry_scope()   # doctest: +SKIP
        ('prefect', '3b28b852-...', 'sutro-batch-job', 'submit_batch_inference', '')
    """
    task_ctx = TaskRunContext.get()
    flow_ctx = FlowRunContext.get()
    task_name = task_ctx.task.name if task_ctx else ""
    extra = extra_scope or ""
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        fr = flow_ctx.flow_run
        root = await root_flow_run_id(fr.id, fr.parent_task_run_id)
        flow_name = flow_ctx.flow.name if flow_ctx.flow else ""
        return ("prefect", str(root), flow_name, task_name, extra)
    if task_ctx is not None:
        return ("prefect", "task-run", str(task_ctx.task_run.id), task_name, extra)
    raise RuntimeError(
        "prefect_sutro could not find a Prefect flow or task run to scope the idempotency key on; "
        "call this inside a @flow or @task, or pass idempotency_key= explicitly"
    )


async def prefect_idempotency_key(fingerprint: str, extra_scope: str | None = None) -> str:
    """The core idempotency key for a submit made in the current Prefect run.

    ``extra_scope`` tells apart two deliberate, identical submits in one flow run (otherwise the second
    reattaches to the first, which is the safe default).

    Example:
        >>> key = await prefect_idempotency_key(req.fingerprint)   # doctest: +SKIP
    """
    scope = await prefect_retry_scope(extra_scope)
    key = idempotency_key(*scope, fingerprint=fingerprint)
    logger.debug("idempotency key %s from scope %s", key, scope)
    return key
