"""Runner-side cancellation that is hard to get wrong: ``@sutro_flow`` and ``with_sutro_cancellation``.

When a Prefect runner or worker cancels a deployed flow run it kills the flow's process (SIGTERM, then
SIGKILL after 30 s) and then runs, in its own process, the ``on_cancellation`` hooks of the *deployed*
flow only. Hooks on subflows (``sutro_batch_job``) never run there, and a frozen or killed flow process
runs none of its own. So the top-level flow must carry ``cancel_sutro_jobs``; ``@sutro_flow`` (a
drop-in for ``@flow``) installs it, and the submit tasks log a WARNING when a deployed run lacks it.

Crashes (the process died, the node was lost) are not a request to stop: by default the crash hook
leaves the jobs running and logs which ones, so retrying the flow run reattaches to them and nothing
already paid is lost; ``cancel_on_crash=True`` cancels them instead.

Example:
    >>> from prefect_sutro import sutro_flow, sutro_batch_job
    >>> @sutro_flow(name="nightly-embeddings", retries=1)
    ... async def nightly(): ...
    >>> from prefect_sutro.hooks import has_sutro_cancellation
    >>> has_sutro_cancellation(nightly)
    True
"""

from __future__ import annotations

import logging
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
    def hook(flow: Any, flow_run: Any, state: Any) -> None:  # noqa: ARG001 - Prefect's hook signature
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
                "Flow run %s crashed; its Sutro jobs %s are left running (and billed) so that retrying "
                "this flow run reattaches to them. To stop them instead, cancel them (cancel_job, or the "
                "Sutro UI), or decorate the flow with @sutro_flow(cancel_on_crash=True).",
                run_id, ", ".join(jobs))

    hook.__name__ = _CRASH_HOOKS[0] if cancel else _CRASH_HOOKS[1]
    return hook


def has_sutro_cancellation(flow_obj: Any) -> bool:
    """Whether cancelling a run of ``flow_obj`` through a runner/worker cancels its Sutro jobs.

    Example:
        >>> from prefect import flow
        >>> @flow
        ... def plain(): ...
        >>> has_sutro_cancellation(plain), has_sutro_cancellation(with_sutro_cancellation(plain))
        (False, True)
    """
    return cancel_sutro_jobs in (getattr(flow_obj, "on_cancellation_hooks", None) or [])


def with_sutro_cancellation(flow_obj: Flow[Any, Any], *, cancel_on_crash: bool = False) -> Flow[Any, Any]:
    """A copy of ``flow_obj`` whose cancellation (in process or by a runner/worker) cancels its Sutro jobs.

    Adds ``cancel_sutro_jobs`` to ``on_cancellation`` and a crash hook to ``on_crashed`` (it reports the
    jobs left running, or cancels them with ``cancel_on_crash=True``), keeping the flow's own hooks.
    Assign the result to the name the deployment's entrypoint points at.

    Example:
        >>> from prefect import flow
        >>> @flow
        ... def nightly(): ...
        >>> nightly = with_sutro_cancellation(nightly)
        >>> [h.__name__ for h in nightly.on_cancellation_hooks]
        ['cancel_sutro_jobs']
    """
    if not isinstance(flow_obj, Flow):
        raise TypeError(
            f"with_sutro_cancellation takes a Prefect flow (a function decorated with @flow), "
            f"got {type(flow_obj).__name__}; or decorate the function with @sutro_flow instead")
    # Ours are replaced, not stacked, so wrapping twice (or changing cancel_on_crash) keeps one of each.
    on_cancellation = [h for h in flow_obj.on_cancellation_hooks if h is not cancel_sutro_jobs]
    on_crashed = [h for h in flow_obj.on_crashed_hooks if getattr(h, "__name__", "") not in _CRASH_HOOKS]
    return flow_obj.with_options(on_cancellation=[*on_cancellation, cancel_sutro_jobs],
                                 on_crashed=[*on_crashed, _crash_hook(cancel_on_crash)])


def sutro_flow(
    __fn: Callable[..., Any] | None = None, *, cancel_on_crash: bool = False, **flow_kwargs: Any
) -> Any:
    """``@flow`` for flows that run Sutro jobs: cancelling a run cancels its jobs, also from a runner.

    Takes every ``@flow`` argument (``name``, ``retries``, ``on_cancellation`` ...) plus
    ``cancel_on_crash`` (default ``False``: a crashed run's jobs keep running so a retry reattaches).

    Example:
        >>> @sutro_flow
        ... async def triage(day: str): ...
        >>> @sutro_flow(name="weekly-triage", retries=2)
        ... async def weekly(day: str): ...
        >>> weekly.name, has_sutro_cancellation(weekly)
        ('weekly-triage', True)
    """

    def decorate(fn: Callable[..., Any]) -> Flow[Any, Any]:
        return with_sutro_cancellation(flow(fn, **flow_kwargs), cancel_on_crash=cancel_on_crash)

    return decorate(__fn) if __fn is not None else decorate


# ---- the runtime check the submit tasks make --------------------------------------------------------

# root flow run id -> None when checked and fine, else the warning already logged there (once per run).
_checked: dict[str, str | None] = {}


def _loaded_flow(entrypoint: str | None, flow_name: str) -> Flow[Any, Any] | None:
    """The flow object this process loaded for ``entrypoint`` (what the runner will load too)."""
    if not entrypoint:
        return None
    attr = entrypoint.rsplit(":", 1)[-1] if ":" in entrypoint else entrypoint.rsplit(".", 1)[-1]
    for module in list(sys.modules.values()):
        # vars(), not getattr: no module-level __getattr__ (lazy imports) is triggered.
        candidate = (getattr(module, "__dict__", None) or {}).get(attr)
        if isinstance(candidate, Flow) and candidate.name == flow_name:
            return candidate
    return None


async def _root_run_flow(root_id: UUID) -> tuple[Any, Flow[Any, Any] | None, str]:
    """The root flow run, the flow object a runner would run its hooks on (None: unknown), its name."""
    ctx = FlowRunContext.get()
    async with get_client() as client:
        root = await client.read_flow_run(root_id)
        if ctx is not None and ctx.flow_run is not None and ctx.flow_run.id == root_id:
            return root, ctx.flow, ctx.flow.name if ctx.flow else ""
        flow_name = (await client.read_flow(root.flow_id)).name
        entrypoint = None
        if root.deployment_id is not None:
            entrypoint = (await client.read_deployment(root.deployment_id)).entrypoint
    return root, _loaded_flow(entrypoint, flow_name), flow_name


async def check_runner_cancellation(
    run_logger: Any, root_id: UUID, job_id: str, credentials_saved: bool, env_key: bool
) -> str | None:
    """Log a WARNING (once per root flow run) when cancelling this deployed run would lose ``job_id``.

    Returns the warning text (None when the run is protected or not deployed).

    Example:
        >>> await check_runner_cancellation(logger, root_id, handle.job_id, True, False)  # doctest: +SKIP
    """
    key = str(root_id)
    if key in _checked:
        return _checked[key]
    message: str | None = None
    try:
        root, root_flow, flow_name = await _root_run_flow(root_id)
    except Exception as exc:  # noqa: BLE001 - a check must never fail the submit it follows
        logger.debug("could not check the cancellation hooks of flow run %s: %s", root_id, exc)
        return None
    if root.deployment_id is not None:
        if root_flow is None or not has_sutro_cancellation(root_flow):
            message = (
                f"Deployed flow {flow_name!r} has no Sutro cancellation hook: if flow run {root.name!r} is "
                f"cancelled while its process cannot react (frozen, killed, on a lost machine), the runner "
                f"runs only that flow's on_cancellation hooks and Sutro job {job_id} keeps running and is "
                f"billed. Decorate {flow_name!r} with @sutro_flow (or on_cancellation=[cancel_sutro_jobs])."
            )
        elif not credentials_saved and not env_key:
            message = (
                f"Sutro job {job_id} was submitted with inline credentials and SUTRO_API_KEY is not set, so "
                f"a runner-side cancellation of flow run {root.name!r} cannot authenticate to cancel "
                f"it; pass a saved block (await SutroCredentials.load('...')) or set SUTRO_API_KEY for the runner."
            )
    _checked[key] = message
    if message:
        run_logger.warning(message)
    return message
