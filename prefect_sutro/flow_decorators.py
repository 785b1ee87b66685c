"""``@sutro_flow`` and ``with_sutro_cancellation``: the top-level flow carries the Sutro cancellation hooks.

A runner or worker that cancels a deployed run kills its process and runs the ``on_cancellation`` hooks of
the deployed flow only (never a subflow's; a frozen process runs none), so that flow must carry
``cancel_sutro_jobs``. A crash keeps the jobs running by default, so a retry reattaches to them.

Example:
    >>> @sutro_flow(name="nightly-embeddings", retries=1)
    ... async def nightly(): ...
    >>> has_sutro_cancellation(nightly)
    True
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from .cancellation import cancel_jobs_for_flow_run, cancel_sutro_jobs, recorded_jobs

logger = logging.getLogger(__name__)

_CRASH_HOOKS = ("cancel_sutro_jobs_on_crash", "report_sutro_jobs_on_crash")


def _crash_hook(cancel: bool) -> Callable[[Any, Any, Any], None]:
    def hook(flow: Any, flow_run: Any, state: Any) -> None:
        run_id = str(flow_run.id)
        if cancel:
            cancel_jobs_for_flow_run(run_id)
            return
        try:
            jobs = sorted(recorded_jobs(run_id))
        except Exception as exc:  # noqa: BLE001 - a hook must never raise into the runner
            logger.warning("Could not list the Sutro jobs of crashed flow run %s: %s", run_id, exc)
            return
        if jobs:
            logger.warning(
                "Flow run %s crashed; its Sutro jobs %s are left running (and billed) so that retrying this "
                "flow run reattaches to them. To stop them instead, cancel them (cancel_job, or the Sutro "
                "UI), or decorate the flow with @sutro_flow(cancel_on_crash=True).", run_id, ", ".join(jobs))

    hook.__name__ = _CRASH_HOOKS[0] if cancel else _CRASH_HOOKS[1]
    return hook


def has_sutro_cancellation(flow_obj: Any) -> bool:
    """Whether cancelling a run of ``flow_obj`` through a runner or worker cancels its Sutro jobs.

    Example:
        >>> @flow
        ... def plain(): ...
        >>> has_sutro_cancellation(plain), has_sutro_cancellation(with_sutro_cancellation(plain))
        (False, True)
    """
    return cancel_sutro_jobs in (getattr(flow_obj, "on_cancellation_hooks", None) or [])


def with_sutro_cancellation(flow_obj: Flow[Any, Any], *, cancel_on_crash: bool = False) -> Flow[Any, Any]:
    """A copy of ``flow_obj`` with ``cancel_sutro_jobs`` on cancellation and a crash hook (it reports the
    jobs left running, or cancels them with ``cancel_on_crash=True``), keeping the flow's own hooks.

    Example:
        >>> @flow
        ... def nightly(): ...
        >>> [h.__name__ for h in with_sutro_cancellation(nightly).on_cancellation_hooks]
        ['cancel_sutro_jobs']
    """
    if not isinstance(flow_obj, Flow):
        raise TypeError(f"with_sutro_cancellation takes a Prefect flow (a function decorated with @flow), "
                        f"got {type(flow_obj).__name__}; or decorate the function with @sutro_flow instead")
    # Ours are replaced, not stacked, so wrapping twice (or changing cancel_on_crash) keeps one of each.
    on_cancellation = [h for h in flow_obj.on_cancellation_hooks if h is not cancel_sutro_jobs]
    on_crashed = [h for h in flow_obj.on_crashed_hooks if getattr(h, "__name__", "") not in _CRASH_HOOKS]
    return flow_obj.with_options(on_cancellation=[*on_cancellation, cancel_sutro_jobs],
                                 on_crashed=[*on_crashed, _crash_hook(cancel_on_crash)])


def sutro_flow(fn: Callable[..., Any] | None = None, /, *, cancel_on_crash: bool = False,
               **flow_kwargs: Any) -> Any:
    """``@flow`` (same arguments) for flows that run Sutro jobs: cancelling a run, also from a runner, cancels
    its jobs; ``cancel_on_crash=True`` also cancels them when the run crashes.

    Example:
        >>> @sutro_flow(name="weekly-triage", retries=2)
        ... async def weekly(day: str): ...
        >>> weekly.name, has_sutro_cancellation(weekly)
        ('weekly-triage', True)
    """

    def decorate(fn: Callable[..., Any]) -> Flow[Any, Any]:
        return with_sutro_cancellation(flow(fn, **flow_kwargs), cancel_on_crash=cancel_on_crash)

    return decorate(fn) if fn is not None else decorate


# root flow run id -> the warning already logged for it (None: checked and fine): once per run.
_checked: dict[str, str | None] = {}


def _loaded_flow(entrypoint: str | None, flow_name: str) -> Flow[Any, Any] | None:
    """The flow object this process loaded for the deployment's ``entrypoint`` (the runner loads it too)."""
    attr = (entrypoint or "").replace(":", ".").rsplit(".", 1)[-1]
    for module in list(sys.modules.values()):
        # vars(), not getattr: no module-level __getattr__ (lazy imports) is triggered.
        candidate = (getattr(module, "__dict__", None) or {}).get(attr) if attr else None
        if isinstance(candidate, Flow) and candidate.name == flow_name:
            return candidate
    return None


async def _runner_cancel_problem(root_id: UUID, job_id: str, saved_block: bool) -> str | None:
    """Why a runner-side cancel of deployed run ``root_id`` would not cancel ``job_id`` (None: it would)."""
    ctx = FlowRunContext.get()
    async with get_client() as client:
        root = await client.read_flow_run(root_id)
        if root.deployment_id is None:  # not deployed: the flow's own process runs its hooks
            return None
        if ctx is not None and ctx.flow_run is not None and ctx.flow_run.id == root_id:
            root_flow, name = ctx.flow, ctx.flow.name if ctx.flow else ""
        else:
            name = (await client.read_flow(root.flow_id)).name
            root_flow = _loaded_flow((await client.read_deployment(root.deployment_id)).entrypoint, name)
    if not has_sutro_cancellation(root_flow):
        return (f"Deployed flow {name!r} has no Sutro cancellation hook: if flow run {root.name!r} is "
                f"cancelled while its process cannot react (frozen, killed, on a lost machine), the runner "
                f"runs only that flow's on_cancellation hooks and Sutro job {job_id} keeps running and is "
                f"billed. Decorate {name!r} with @sutro_flow (or on_cancellation=[cancel_sutro_jobs]).")
    if not saved_block and not os.environ.get("SUTRO_API_KEY"):
        return (f"Sutro job {job_id} was submitted with inline credentials and SUTRO_API_KEY is not set, so "
                f"a runner-side cancellation of flow run {root.name!r} cannot authenticate to cancel it; "
                f"pass a saved block (await SutroCredentials.load('...')) or set SUTRO_API_KEY for the "
                f"runner.")
    return None


async def check_runner_cancellation(run_logger: Any, root_id: UUID, job_id: str,
                                    saved_block: bool) -> str | None:
    """Log a WARNING (once per root flow run) when a runner-side cancel of this deployed run would lose
    ``job_id``; returns it (None: the run is protected, or not deployed).

    Example:
        >>> await check_runner_cancellation(run_logger, root_id, handle.job_id, True)  # doctest: +SKIP
    """
    key = str(root_id)
    if key not in _checked:
        try:
            _checked[key] = await _runner_cancel_problem(root_id, job_id, saved_block)
        except Exception as exc:  # noqa: BLE001 - a check must never fail the submit it follows
            logger.debug("could not check the cancellation hooks of flow run %s: %s", root_id, exc)
            return None
        if _checked[key]:
            run_logger.warning(_checked[key])
    return _checked[key]
