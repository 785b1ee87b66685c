"""The rule ``SutroJobTrigger.on_kill`` applies: did the user end the task (cancel the job) or clear it (keep it)?

Airflow 3.3's triggerer calls ``on_kill()`` for every user action that takes a task out of DEFERRED (clear,
mark failed, mark success), so the trigger's arguments cannot tell a clear from a kill. ``on_kill`` asks the
triggerer's supervisor for the task instance's state *now* (``GetTaskStates``): a try still to come or running
keeps the job (it reattaches, or replaces it when the inputs changed); a finished or deleted task instance
cancels it; no answer cancels it and logs why (a job nobody waits for would run on, billed). The full rule and
its residual window: docs/architecture.md, "Airflow, clear vs kill of a deferred task".

Example::

    decide(True, "failed")     # KillDecision(cancel=True, reason='the task instance is now failed ...')
    decide(True, None)         # KillDecision(cancel=False, reason='the task instance was cleared ...')
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from sutro_core.lifecycle import CANCEL_TIMEOUT_S

log = logging.getLogger(__name__)

#: States of a try that is still coming or running: a newer try owns the job.
GOES_ON = frozenset({None, "scheduled", "queued", "running", "deferred", "up_for_retry", "up_for_reschedule",
                     "restarting", "awaiting_input"})
#: The lookup's answer when the task instance no longer exists (its DAG run was deleted).
GONE = "<gone>"
#: Seconds ``on_kill`` keeps for the cancel itself (the core's bound on a cancel).
CANCEL_BUDGET_S = CANCEL_TIMEOUT_S


def state_timeout() -> float:
    """How long to wait for the state: what ``[triggerer] on_kill_timeout`` (30 s) leaves after the cancel.

    The supervisor answers between its own database rounds; its first answer in a triggerer's life took
    7-18 s (measured with a real triggerer), later ones under 0.2 s, hence ``warm_up``.
    """
    try:
        from airflow.configuration import conf

        total = conf.getfloat("triggerer", "on_kill_timeout", fallback=30.0)
    except Exception:  # noqa: BLE001 - outside a configured Airflow
        total = 30.0
    return max(2.0, total - CANCEL_BUDGET_S - 2.0)


@dataclass(frozen=True)
class KillDecision:
    """Whether ``on_kill`` cancels the job, and the sentence the trigger logs about it."""

    cancel: bool
    reason: str


def decide(known: bool, state: str | None) -> KillDecision:
    """The rule, given the task instance's state when ``on_kill`` runs (``known=False``: no answer).

    Example::

        decide(True, "queued").cancel      # False: the cleared task's next try is on its way
        decide(False, None).cancel         # True
    """
    if not known:
        return KillDecision(True, "the task instance's state could not be read, so the user's kill is honoured")
    if state in GOES_ON:
        what = "was cleared" if state is None else f"is {state} again"
        return KillDecision(False, f"the task instance {what}: its next try reattaches to the job (same inputs) "
                                   "or replaces it (changed inputs)")
    if state == GONE:
        return KillDecision(True, "the task instance no longer exists")
    return KillDecision(True, f"the task instance is now {state} (ended by a user)")


_warmed: set[int] = set()
_warm_tasks: set[asyncio.Task[Any]] = set()


def warm_up(ti: Any) -> None:
    """Ask for ``ti``'s state once per triggerer event loop, in the background, right when a trigger starts.

    The triggerer's supervisor builds its in-process execution API on the first request it serves; that
    first answer took 7 s, and over 18 s on a loaded machine (measured with a real triggerer), which would
    make ``on_kill`` give up on the lookup. Warming it when the first trigger starts keeps ``on_kill``'s own
    lookup fast (9-75 ms over 34 clears with a real triggerer, the first one included).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if ti is None or id(loop) in _warmed:
        return
    _warmed.add(id(loop))
    task = loop.create_task(ti_state_now(ti))
    _warm_tasks.add(task)  # keep a reference until it is done (the loop holds tasks weakly)
    task.add_done_callback(_warm_tasks.discard)


def _state_key(task_id: str, map_index: int | None) -> str:
    # The execution API keys mapped instances as "<task_id>_<map_index>" (routes/task_instances.py).
    return task_id if map_index is None or map_index < 0 else f"{task_id}_{map_index}"


async def ti_state_now(ti: Any, timeout: float | None = None) -> tuple[bool, str | None]:
    """``(known, state)`` of the trigger's task instance now, asked of the triggerer's supervisor.

    ``known`` is False when the trigger runs outside a triggerer (no supervisor comms) or the lookup fails.

    Example::

        known, state = await ti_state_now(trigger.task_instance)
    """
    if ti is None:
        return False, None
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import GetTaskStates

        comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
        if comms is None or not hasattr(comms, "asend"):
            return False, None
        map_index = getattr(ti, "map_index", -1)
        request = GetTaskStates(
            dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id],
            map_index=map_index if map_index is not None and map_index >= 0 else None,
        )
        response = await asyncio.wait_for(comms.asend(request), timeout=timeout or state_timeout())
        states = getattr(response, "task_states", None)
        if not isinstance(states, dict):
            log.warning("task state lookup answered %r", response)
            return False, None
        by_task = states.get(ti.run_id) or {}
        key = _state_key(ti.task_id, map_index)
        if key not in by_task:
            return True, GONE
        state = by_task[key]
        return True, None if state is None else str(getattr(state, "value", state))
    except Exception as exc:  # noqa: BLE001 - on_kill decides "cancel" on no answer; the log says why
        log.warning("could not read the task instance's state: %r", exc)
        return False, None
