"""Asset factories: a Sutro batch-inference or batch-Function job as a (partitioned) Dagster asset.

Materializing the asset runs one Sutro job per partition over the upstream rows (a retried or re-executed
step reattaches to its job) and returns a ``SutroArtifact``: the one results file (carried input columns +
unpacked outputs), which ``SutroParquetIOManager`` moves into place unchanged.

Example:
    >>> ticket_labels = build_sutro_function_asset(name="ticket_labels", upstream="tickets",
    ...                                            function="ticket-triage")
"""


from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypedDict, Unpack

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    Failure,
    Output,
    PartitionsDefinition,
    RetryPolicy,
    asset,
)

from sutro_core import InputValidationError, JobSpec, load_results
from sutro_core.spec import check_max_cost
from sutro_core.results.tables import rows_to_frame

from .checks import evaluate_results, results_check_spec
from .execution import prepare_spec, run_sutro_job, step_idempotency_key
from .io import SutroArtifact, staging_path
from .metadata import PREVIEW_ROWS, materialization_metadata
from .resources import SutroResource

MAX_JOB_NAME = 45  # the API's limit on job names


def _upstream_key(upstream: Any) -> AssetKey:
    key = upstream.key if isinstance(getattr(upstream, "key", None), AssetKey) else upstream  # asset / AssetSpec
    try:
        return AssetKey.from_coercible(key)
    except Exception as exc:  # dagster raises CheckError for odd types
        raise TypeError(
            f"upstream: expected an asset, AssetSpec, AssetKey or key string, got {type(upstream).__name__}") from exc


def _job_name_and_description(context: AssetExecutionContext) -> tuple[str, str]:
    # The description lets someone looking at the job on Sutro find the Dagster run (not in the fingerprint).
    name = context.asset_key.to_user_string()
    part = f" partition {context.partition_key}" if context.has_partition_key else ""
    description = f"Dagster asset {name}{part} run {context.run.run_id}"[:400]
    name = f"{name}[{context.partition_key}]" if context.has_partition_key else name
    return (name if len(name) <= MAX_JOB_NAME else name[: MAX_JOB_NAME - 1] + "…"), description


class AssetOptions(TypedDict, total=False):
    """How a Sutro asset is defined and run, the same for both factories (and the YAML components).

    ``max_cost_usd``: a dry run estimates the cost first and the step fails, before any billed job, when the
    estimate is above it (0 allows only free jobs). ``estimate_cost``: dry-run and report even without a
    limit. ``timeout_seconds``: overrides the resource's. ``partitions_def``: one job per partition.
    ``resource_key``: where the :class:`SutroResource` is bound (``"sutro"``). ``check_results``: attach the
    ``sutro_results_complete`` check (default True). ``repair_rounds``: follow-up jobs of only the rows that
    are not ``ok`` (default 0); ``max_failed_rows``: rows that may stay not ok (a count, or a fraction below
    1), past it the step fails without retries after materializing nothing (the artifact file is written).
    ``row_store``: a folder or fsspec URI of paid row results; only rows without a stored ``ok`` result are
    sent (credentials for a remote store: the standard environment, e.g. ``AWS_*``). The rest are
    ``@asset``'s own.

    Example:
        >>> options: AssetOptions = {"max_cost_usd": 5.0, "group_name": "support"}
    """

    max_cost_usd: float | None
    estimate_cost: bool
    timeout_seconds: float | None
    partitions_def: PartitionsDefinition | None
    key_prefix: str | Sequence[str] | None
    group_name: str | None
    io_manager_key: str | None
    resource_key: str
    retry_policy: RetryPolicy | None
    description: str | None
    check_results: bool
    repair_rounds: int
    max_failed_rows: int | float | None
    row_store: str | None


def _build(
    name: str, upstream: Any, make_spec: Callable[[pl.DataFrame, str, str], JobSpec],
    expected_columns: Sequence[str], kind_description: str, definition_metadata: Mapping[str, Any],
    options: AssetOptions,
) -> AssetsDefinition:
    unknown = sorted(set(options) - set(AssetOptions.__annotations__))
    if unknown:
        raise TypeError(f"unexpected arguments {unknown}; asset options: {sorted(AssetOptions.__annotations__)}")
    max_cost_usd, check_results = options.get("max_cost_usd"), options.get("check_results", True)
    resource_key = options.get("resource_key", "sutro")
    check_max_cost(max_cost_usd)  # the core's rule, at definition time
    key_prefix = options.get("key_prefix")
    prefix = [key_prefix] if isinstance(key_prefix, str) else list(key_prefix or [])
    asset_key = AssetKey([*prefix, name])

    @asset(
        name=name,
        key_prefix=prefix or None,
        ins={"rows": AssetIn(key=_upstream_key(upstream))},
        partitions_def=options.get("partitions_def"),
        group_name=options.get("group_name"),
        io_manager_key=options.get("io_manager_key"),
        required_resource_keys={resource_key},
        retry_policy=options.get("retry_policy"),
        description=options.get("description") or kind_description,
        kinds={"sutro", "parquet"},
        metadata=dict(definition_metadata),
        check_specs=[results_check_spec(asset_key)] if check_results else None,
        # A LazyFrame to any polars IO manager: dagster-polars sinks it (streamed), ours moves the file.
        dagster_type=pl.LazyFrame,
    )
    def _sutro_asset(context: AssetExecutionContext, rows: Any) -> Iterator[Any]:
        sutro: SutroResource = getattr(context.resources, resource_key)
        try:
            frame = rows_to_frame(rows)
            spec = make_spec(frame, *_job_name_and_description(context)).with_(
                max_cost_usd=max_cost_usd, estimate_cost=options.get("estimate_cost", False),
                repair_rounds=options.get("repair_rounds", 0), max_failed_rows=options.get("max_failed_rows"),
                row_store=options.get("row_store"))
        except InputValidationError as exc:
            raise Failure(description=f"Bad input for Sutro asset {name}: {exc}", allow_retries=False) from exc
        uri = staging_path(context, sutro.results_dir, step_idempotency_key(context, spec.fingerprint)[:16])
        spec = prepare_spec(spec, sutro, output_uri=uri, timeout_seconds=options.get("timeout_seconds"))
        outcome = yield from run_sutro_job(context, sutro, spec)
        artifact = SutroArtifact.of(outcome.manifest)
        preview = load_results(outcome.manifest, n_rows=PREVIEW_ROWS)
        # Checked before the Output: the IO manager may move the artifact's file when it stores it.
        check = evaluate_results(
            artifact, input_rows=frame.height, expected_columns=expected_columns,
            input_columns=frame.columns, asset_key=asset_key,
        ) if check_results else None
        yield Output(artifact, metadata=materialization_metadata(outcome, preview, input_rows=frame.height))
        if check is not None:
            yield check

    return _sutro_asset


def build_sutro_inference_asset(
    *,
    name: str,
    upstream: Any,
    model: str,
    column: str | Sequence[str] | None = None,
    system_prompt: str | None = None,
    output_schema: Mapping[str, Any] | None = None,
    sampling_params: Mapping[str, Any] | None = None,
    job_priority: int = 0,
    truncate_rows: bool = True,
    random_seed_per_input: bool = False,
    output_column: str = "inference_result",
    **options: Unpack[AssetOptions],
) -> AssetsDefinition:
    """An asset whose materialization runs a Sutro batch-inference job over the upstream rows.

    The result is the upstream DataFrame with the model's output joined on: ``output_column``
    (text, or embedding vectors), or, with ``output_schema``, one column per schema field.

    Args:
        name: the asset's name (also the job's name on Sutro, with the partition key).
        upstream: the asset (or key) whose value holds the rows: a polars/pandas DataFrame or a parquet path.
        model: the Sutro model id, e.g. ``"qwen-3-4b"`` or ``"all-minilm-l6-v2"``.
        column: the text column (or columns and literal separators, concatenated).
        system_prompt, output_schema, sampling_params, job_priority, truncate_rows, random_seed_per_input:
            passed to the job as is.
        options: :class:`AssetOptions` (cost gate, timeout, partitions, retry policy, check, ...).

    Example:
        >>> embeddings = build_sutro_inference_asset(
        ...     name="review_embeddings", upstream="reviews", model="all-minilm-l6-v2", column="text",
        ...     partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"), max_cost_usd=10.0,
        ... )  # doctest: +SKIP
    """
    if not model:
        raise ValueError("model: pass the Sutro model id, e.g. model='qwen-3-4b'")

    def make_spec(frame: pl.DataFrame, job_name: str, job_description: str) -> JobSpec:
        return JobSpec.for_inference(
            frame, model, column=column, system_prompt=system_prompt,
            output_schema=dict(output_schema) if output_schema else None,
            sampling_params=dict(sampling_params) if sampling_params else None, job_priority=job_priority,
            random_seed_per_input=random_seed_per_input, truncate_rows=truncate_rows, name=job_name,
            description=job_description, output_column=output_column,
        )

    props = (output_schema or {}).get("properties")
    expected = list(props) if isinstance(props, Mapping) and props else [output_column]
    return _build(name, upstream, make_spec, expected, f"Sutro batch inference with {model}",
                  {"gen_ai.request.model": model, "sutro.job.priority": job_priority}, options)


def build_sutro_function_asset(
    *,
    name: str,
    upstream: Any,
    function: str,
    input_columns: Sequence[str] | None = None,
    output_columns: Sequence[str] | None = None,
    job_priority: int = 0,
    **options: Unpack[AssetOptions],
) -> AssetsDefinition:
    """An asset whose materialization runs a Sutro Function over the upstream rows as one batch job.

    Each upstream row (its ``input_columns``, default all columns) is one Function input; the result
    is the upstream DataFrame with the Function's outputs joined on (e.g. ``label``, ``rationale``,
    ``confidence_score`` for a classification Function).

    Args:
        function: the published Function's name, e.g. ``"ticket-triage"``.
        input_columns: the upstream columns to send (the Function's input fields); the rest are kept
            in the result but not sent.
        output_columns: fields the completeness check requires (default: at least one new column).
        Other arguments: as in :func:`build_sutro_inference_asset`.

    Example:
        >>> labels = build_sutro_function_asset(
        ...     name="ticket_labels", upstream="tickets", function="ticket-triage", input_columns=["text"],
        ...     output_columns=["label", "confidence_score"],
        ... )  # doctest: +SKIP
    """
    if not function:
        raise ValueError("function: pass the published Sutro Function's name, e.g. function='ticket-triage'")

    def make_spec(frame: pl.DataFrame, job_name: str, job_description: str) -> JobSpec:
        if input_columns is not None:
            missing = [c for c in input_columns if c not in frame.columns]
            if missing:
                raise InputValidationError(
                    "input_columns", f"columns {missing} are not in the upstream rows; available: {frame.columns}")
        return JobSpec.for_function(
            function, frame, columns=list(input_columns) if input_columns is not None else None,
            job_priority=job_priority, name=job_name, description=job_description,
        )

    return _build(name, upstream, make_spec, list(output_columns or []),
                  f"Sutro Function {function} over every upstream row",
                  {"sutro.function.name": function, "sutro.job.priority": job_priority}, options)
