"""Dagster Components for Sutro: declare Sutro Function and batch-inference assets in YAML.

Each component builds its asset with the same factories as Python code
(`build_sutro_function_asset`, `build_sutro_inference_asset`), so the YAML form gets the same
retry-safe submit/reattach, cost guard, metadata and completeness check. The `sutro` resource
(`SutroResource`) and the IO manager come from the rest of the project's definitions.

Example ``defs/ticket_labels/defs.yaml``::

    type: dagster_sutro.components.SutroFunctionComponent
    attributes:
      name: ticket_labels
      upstream: tickets
      function: ticket-triage
      input_columns: [text]
      output_columns: [label]      # fields the completeness check requires (it selects nothing)
      max_cost_usd: 5.0
      daily_partitions_start_date: "2026-01-01"
      max_retries: 2

Scaffold one with ``dg scaffold defs dagster_sutro.components.SutroFunctionComponent ticket_labels``
(the package registers this module for ``dg list components``).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import ConfigDict

from .assets import build_sutro_function_asset, build_sutro_inference_asset


class _SutroAssetFields(dg.Model):
    """Fields both components share."""

    name: str
    upstream: str  # the upstream asset's key; "prefix/name" for a multi-part key
    job_priority: int = 0
    max_cost_usd: float | None = None
    estimate_cost: bool = False
    timeout_seconds: float | None = None
    daily_partitions_start_date: str | None = None  # one job per day from this date (YYYY-MM-DD)
    key_prefix: list[str] | None = None
    group_name: str | None = None
    io_manager_key: str | None = None
    resource_key: str = "sutro"
    max_retries: int | None = None  # retries reattach to the submitted job, never resubmit
    description: str | None = None
    check_results: bool = True

    def _arguments(self) -> dict[str, Any]:
        """The factory's arguments: every field, the YAML's date and retry count as Dagster objects."""
        fields = {k: getattr(self, k) for k in type(self).model_fields}
        if "model_name" in fields:
            fields["model"] = fields.pop("model_name")
        start, retries = fields.pop("daily_partitions_start_date"), fields.pop("max_retries")
        return {
            **fields,
            "upstream": dg.AssetKey.from_user_string(self.upstream),
            "partitions_def": dg.DailyPartitionsDefinition(start_date=start) if start else None,
            "retry_policy": dg.RetryPolicy(max_retries=retries) if retries else None,
        }


class SutroFunctionComponent(dg.Component, dg.Resolvable, _SutroAssetFields):
    """An asset that runs a Sutro Function over every upstream row (one job per partition).

    Example:
        >>> SutroFunctionComponent(name="labels", upstream="tickets", function="ticket-triage").function
        'ticket-triage'
    """

    function: str
    input_columns: list[str] | None = None
    output_columns: list[str] | None = None  # required fields for the check; all columns are kept

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The asset (and its completeness check)."""
        return dg.Definitions(assets=[build_sutro_function_asset(**self._arguments())])


class SutroInferenceComponent(dg.Component, dg.Resolvable, _SutroAssetFields):
    """An asset that runs Sutro batch inference (embeddings or an LLM) over the upstream rows.

    Example:
        >>> SutroInferenceComponent(name="vectors", upstream="tickets", model_name="all-minilm-l6-v2", column="text").model_name
        'all-minilm-l6-v2'
    """

    # "model" would shadow Resolvable.model(), which Dagster uses to read the YAML
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_name: str
    column: str | list[str] | None = None
    system_prompt: str | None = None
    output_schema: dict[str, Any] | None = None
    sampling_params: dict[str, Any] | None = None
    output_column: str = "inference_result"

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The asset (and its completeness check)."""
        return dg.Definitions(assets=[build_sutro_inference_asset(**self._arguments())])


__all__ = ["SutroFunctionComponent", "SutroInferenceComponent"]
