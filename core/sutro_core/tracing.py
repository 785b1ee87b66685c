"""Optional LangSmith tracing of Function calls, as the official SDK does it.

Active only when the ``langsmith`` package is importable *and* tracing is on
(``LANGSMITH_TRACING=true``, or the older ``LANGCHAIN_TRACING_V2=true``). Otherwise every helper
here is a no-op, and ``langsmith_metadata`` / ``langsmith_tags`` are accepted and ignored.
Tracing never fails a call: an error inside LangSmith is logged and the call goes on.

- ``run_function``: one ``llm`` run named "Sutro Function" per call (inputs, outputs, token usage,
  errors), with ``ls_provider="sutro"``, ``ls_model_name=<Function>`` and your metadata and tags.
- ``batch_run_function``: one ``chain`` run per submitted job (Function, row count, job id). The SDK
  creates one run per row and completes them when results are read; this client does not.

Example:
    >>> with function_run_trace("ticket-triage", {"text": "hi"}, {"team": "support"}, ["prod"]) as outputs:
    ...     outputs.update({"response": "billing"})
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("sutro_core.tracing")


def tracing_enabled() -> bool:
    """True when LangSmith tracing is switched on and the ``langsmith`` package is installed."""
    flag = os.environ.get("LANGSMITH_TRACING") or os.environ.get("LANGCHAIN_TRACING_V2") or ""
    if flag.strip().lower() != "true":
        return False
    try:
        import langsmith  # noqa: F401
    except ImportError:
        return False
    return True


def _metadata(name: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {"ls_provider": "sutro", "ls_model_name": name, **(extra or {})}


@contextmanager
def _run(name: str, run_type: str, inputs: dict[str, Any], metadata: dict[str, Any],
         tags: list[str] | None) -> Iterator[dict[str, Any]]:  # fmt: skip
    outputs: dict[str, Any] = {}
    cm = run = None
    if tracing_enabled():
        try:
            from langsmith.run_helpers import trace

            cm = trace(name, run_type=run_type, inputs=inputs, metadata=metadata, tags=list(tags or []) or None)
            run = cm.__enter__()
        except Exception as exc:  # noqa: BLE001 - tracing must never fail the call
            log.warning("LangSmith tracing is on but a trace could not be started: %r", exc)
            cm = None
    try:
        yield outputs
    except BaseException as exc:
        if cm is not None:
            try:
                cm.__exit__(type(exc), exc, exc.__traceback__)
            except Exception as trace_exc:  # noqa: BLE001
                log.warning("LangSmith trace could not record the error: %r", trace_exc)
        raise
    if cm is not None:
        try:
            run.end(outputs=outputs)
            cm.__exit__(None, None, None)
        except Exception as exc:  # noqa: BLE001
            log.warning("LangSmith trace could not be completed: %r", exc)


def function_run_trace(name: str, input_data: dict[str, Any], metadata: dict[str, Any] | None = None,
                       tags: list[str] | None = None) -> Any:  # fmt: skip
    """Context manager around one ``run_function`` call; fill the yielded dict with the result."""
    return _run("Sutro Function", "llm", {"input_data": input_data}, _metadata(name, metadata), tags)


def batch_submit_trace(name: str, rows: int | None, metadata: dict[str, Any] | None = None,
                       tags: list[str] | None = None) -> Any:  # fmt: skip
    """Context manager around one ``batch_run_function`` submit; put ``job_id`` in the yielded dict."""
    return _run("Sutro Function batch", "chain", {"function": name, "rows": rows}, _metadata(name, metadata), tags)
