"""The idempotency key of a Prefect step: what stays the same when Prefect retries it, never a try number.

Example:
    >>> key = await prefect_idempotency_key(spec.fingerprint)   # doctest: +SKIP
"""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from sutro_core import idempotency_key

_MAX_DEPTH = 32  # guards against a cycle or a pathological nesting depth on the walk up
# own flow run id -> (root flow run id, root flow name): the walk costs API calls, and both never change.
_roots: dict[UUID, tuple[UUID, str]] = {}


async def current_root() -> tuple[UUID, str] | None:
    """(root flow run id, root flow name) of the current flow run, None outside one. A subflow run re-created
    by a retried parent gets a new id; its root stays the same.

    Example:
        >>> await current_root()   # doctest: +SKIP
        (UUID('3b28b852-...'), 'support-insights')
    """
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    own = ctx.flow_run
    if own.id not in _roots:
        root, parent_task, name = own.id, own.parent_task_run_id, ctx.flow.name if ctx.flow else ""
        if parent_task is not None:
            async with get_client() as client:
                for _ in range(_MAX_DEPTH):
                    task_run = await client.read_task_run(parent_task) if parent_task else None
                    if task_run is None or task_run.flow_run_id is None:
                        break
                    flow_run = await client.read_flow_run(task_run.flow_run_id)
                    root, parent_task = flow_run.id, flow_run.parent_task_run_id
                name = (await client.read_flow((await client.read_flow_run(root)).flow_id)).name
        _roots[own.id] = (root, name)
    return _roots[own.id]


async def prefect_idempotency_key(fingerprint: str, extra_scope: str | None = None) -> str:
    """The core key of a submit in the current run, scoped on ("prefect", root flow run id, flow name, task
    name, ``extra_scope``); in a bare task run (its retries keep its id) on the task run id instead.

    Example:
        >>> key = await prefect_idempotency_key(spec.fingerprint, "second-pass")   # doctest: +SKIP
    """
    task_ctx, flow_ctx = TaskRunContext.get(), FlowRunContext.get()
    task_name, extra = task_ctx.task.name if task_ctx else "", extra_scope or ""
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        root, _ = await current_root() or (flow_ctx.flow_run.id, "")
        flow_name = flow_ctx.flow.name if flow_ctx.flow else ""
        scope: tuple[str, ...] = ("prefect", str(root), flow_name, task_name, extra)
    elif task_ctx is not None:
        scope = ("prefect", "task-run", str(task_ctx.task_run.id), task_name, extra)
    else:
        raise RuntimeError("prefect_sutro could not find a Prefect flow or task run to scope the idempotency "
                           "key on; call this inside a @flow or @task, or pass idempotency_key= explicitly")
    return idempotency_key(*scope, fingerprint=fingerprint)
