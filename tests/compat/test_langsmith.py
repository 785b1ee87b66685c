"""LangSmith tracing of run_function / batch_run_function: on with `langsmith` + LANGSMITH_TRACING=true, else a no-op.

The real `langsmith` package needs its service; a stand-in module records what would be sent.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from sutro_core import tracing


class _Run:
    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def end(self, outputs: dict[str, Any] | None = None) -> None:
        self.record["outputs"] = outputs


@pytest.fixture
def fake_langsmith(monkeypatch):
    runs: list[dict[str, Any]] = []

    class trace:  # noqa: N801 - the name langsmith.run_helpers uses
        def __init__(self, name: str, **kwargs: Any) -> None:
            self.record = {"name": name, **kwargs}

        def __enter__(self) -> _Run:
            runs.append(self.record)
            return _Run(self.record)

        def __exit__(self, *exc: Any) -> None:
            self.record["error"] = exc[1]

    package = types.ModuleType("langsmith")
    helpers = types.ModuleType("langsmith.run_helpers")
    helpers.trace = trace
    package.run_helpers = helpers
    monkeypatch.setitem(sys.modules, "langsmith", package)
    monkeypatch.setitem(sys.modules, "langsmith.run_helpers", helpers)
    return runs


def test_run_function_is_traced_when_tracing_is_on(sutro_client, fake_langsmith, monkeypatch):
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    result = sutro_client.run_function("ticket-triage", {"text": "I was charged twice"},
                                       {"team": "support"}, ["nightly"])
    [run] = fake_langsmith
    assert run["name"] == "Sutro Function" and run["run_type"] == "llm" and run["tags"] == ["nightly"]
    assert run["metadata"] == {"ls_provider": "sutro", "ls_model_name": "ticket-triage", "team": "support"}
    assert run["inputs"] == {"input_data": {"text": "I was charged twice"}}
    assert run["outputs"]["response"] == result["response"] == "billing" and run["error"] is None


def test_failed_run_is_recorded_and_still_raises(sutro_client, fake_langsmith, monkeypatch):
    from sutro_core.errors import SutroAPIError

    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    with pytest.raises(SutroAPIError):
        sutro_client.run_function("ticket-triage", {"body": "wrong"})
    assert isinstance(fake_langsmith[0]["error"], SutroAPIError)


def test_batch_submit_is_traced_with_the_job_id(sutro_client, fake_langsmith, monkeypatch):
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    job_id = sutro_client.batch_run_function("ticket-triage", [{"text": "a"}, {"text": "b"}],
                                             langsmith_tags=["t"])
    [run] = fake_langsmith
    assert run["inputs"] == {"function": "ticket-triage", "rows": 2} and run["outputs"] == {"job_id": job_id}


def test_no_tracing_without_the_switch(sutro_client, fake_langsmith, monkeypatch):
    monkeypatch.delenv("LANGSMITH_TRACING", raising=False)
    monkeypatch.delenv("LANGCHAIN_TRACING_V2", raising=False)
    assert sutro_client.run_function("ticket-triage", {"text": "x"}, {"a": 1}, ["b"]).label
    assert fake_langsmith == [] and not tracing.tracing_enabled()


def test_no_tracing_without_the_package(monkeypatch):
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setitem(sys.modules, "langsmith", None)  # import fails
    assert not tracing.tracing_enabled()
    with tracing.function_run_trace("f", {"x": 1}) as outputs:
        outputs["ok"] = True
