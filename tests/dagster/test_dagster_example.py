"""The Dagster example pipeline loads as Definitions (`./run demo` materializes it end to end)."""

from __future__ import annotations

from dagster import AssetKey


def test_example_definitions_load(monkeypatch):
    monkeypatch.setenv("SUTRO_API_KEY", "sk-not-used-at-load-time")
    from example_pipelines.dagster_pipeline import defs

    job = defs.resolve_job_def("daily_ticket_triage")
    keys = job.asset_layer.executable_asset_keys
    assert {AssetKey("support_tickets"), AssetKey("ticket_triage"), AssetKey("ticket_embeddings")} <= set(keys)
    checks = {c.name for a in defs.resolve_asset_graph().assets_defs for c in a.check_specs}
    assert checks == {"sutro_results_complete"}
