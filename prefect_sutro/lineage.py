"""Prefect lineage of a Sutro step: the results artifact as a Prefect asset, and ``sutro.job.*`` events.

* **Asset.** ``download_results_to_parquet`` materializes the artifact: its task run becomes a
  materialization of the asset keyed by the artifact's URI (``file:///abs/path``, ``s3://bucket/key``), so
  Prefect emits ``prefect.asset.materialization.succeeded`` (or ``.failed``) when the task ends, with the
  step's description as metadata, its input (``asset_deps``, or an upstream materialization) as upstream
  asset, and ``sutro`` as what materialized it. Later tasks given its result see the asset upstream.
* **Events.** ``sutro.job.submitted``, ``sutro.job.succeeded``, ``sutro.job.failed``, ``sutro.job.cancelled``
  on the resource ``sutro.job.<job id>``, whose labels carry the job id, the model (``gen_ai.request.model``)
  or Function (``sutro.function.name``) and the cost (``sutro.cost.usd``); the payload is the step's
  ``gen_ai.*`` / ``sutro.*`` attributes. Automations trigger on them.

Example (an automation's trigger, e.g. in ``prefect.yaml`` or the UI)::

    EventTrigger(expect={"sutro.job.succeeded"}, match={"prefect.resource.id": "sutro.job.*"},
                 posture="Reactive", threshold=1)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, Literal

from prefect.assets import Asset, AssetProperties
from prefect.context import AssetContext
from prefect.events import emit_event
from sutro_core import Job, JobHandle, ResultsManifest
from sutro_core.lineage import StepLineage, asset_uri, describe_step

logger = logging.getLogger(__name__)

#: The prefix of the job events (``sutro.job.submitted`` ...) and of their resource ids.
JOB_EVENT_PREFIX = "sutro.job."
#: What materialized the asset (the ``asset-materialized-by`` related resource).
MATERIALIZED_BY = "sutro"
JobEvent = Literal["submitted", "succeeded", "failed", "cancelled"]
_RESTRICTED = re.compile(r"[\s#?&%\"'<>\[\]{}|\\^`\x00]")
_MAX_KEY = 512


def asset_key(uri: str) -> str | None:
    """The Prefect asset key of an artifact URI (characters Prefect refuses become ``_``); None if too long.

    Example:
        >>> asset_key("/data/my results.parquet")
        'file:///data/my_results.parquet'
    """
    key = _RESTRICTED.sub("_", asset_uri(uri))
    return key if len(key) <= _MAX_KEY else None


def asset_metadata(step: StepLineage) -> dict[str, Any]:
    """The materialization's metadata: the step's attributes and the artifact's typed schema.

    Example:
        >>> asset_metadata(step)["gen_ai.request.model"]   # doctest: +SKIP
        'all-minilm-l6-v2'
    """
    metadata = step.attributes()
    if step.output is not None:
        metadata["sutro.output.schema"] = [c.model_dump() for c in step.output.columns]
    return metadata


def results_asset(step: StepLineage) -> Asset | None:
    """The Prefect asset of the step's artifact (None when the step wrote none).

    Example:
        >>> results_asset(step).key   # doctest: +SKIP
        's3://bucket/reviews.parquet'
    """
    key = asset_key(step.output.uri) if step.output is not None else None
    if key is None:
        return None
    what = f"Sutro Function {step.function}" if step.function else f"Sutro batch inference on {step.model}"
    return Asset(key=key, properties=AssetProperties(
        name=PurePosixPath(key.split("://", 1)[-1]).name or key,
        description=f"{what}: {step.output.rows} rows written by job {step.job_id}."))


def materialize_step(step: StepLineage) -> Asset | None:
    """Make the running task a materialization of the step's artifact: Prefect emits the asset's
    ``prefect.asset.materialization.*`` event when the task ends (outside a task run: at once).

    Example:
        >>> materialize_step(describe_step(handle, manifest=manifest))   # doctest: +SKIP
    """
    asset = results_asset(step)
    if asset is None:
        return None
    ctx = AssetContext.get()
    if ctx is None or ctx.task_run_id is None:  # called outside a task run (e.g. through .fn in a flow)
        from prefect.states import Completed

        ctx = AssetContext(downstream_assets={asset}, materialized_by=MATERIALIZED_BY)
        ctx.add_asset_metadata(asset.key, asset_metadata(step))
        ctx.emit_events(Completed())
        return asset
    ctx.downstream_assets.add(asset)
    ctx.materialized_by = ctx.materialized_by or MATERIALIZED_BY
    ctx.add_asset_metadata(asset.key, asset_metadata(step))
    ctx.update_tracked_assets()  # tasks given this task's result see the asset upstream
    return asset


def materialize_results(handle: JobHandle, manifest: ResultsManifest, job: Job | None = None,
                        storage_options: Mapping[str, Any] | None = None) -> Asset | None:
    """Describe the finished step and make the running task its artifact's materialization (best effort:
    lineage never fails a step whose results are written). ``storage_options`` read a remote artifact's footer.

    Example:
        >>> materialize_results(handle, manifest, job)   # doctest: +SKIP
    """
    try:
        return materialize_step(describe_step(handle, manifest=manifest, job=job, input_uri=upstream_input(),
                                              storage_options=storage_options))
    except Exception as exc:  # noqa: BLE001 - the results are written; lineage is a record of it
        logger.warning("could not record the results asset of job %s: %s", handle.job_id, exc)
        return None


def upstream_input() -> str | None:
    """The input the running task declared (``asset_deps``) or inherited (one upstream asset), if one.

    Example:
        >>> download_results_to_parquet.with_options(asset_deps=["s3://b/tickets.parquet"])  # doctest: +SKIP
    """
    ctx = AssetContext.get()
    if ctx is None:
        return None
    keys = {a.key for a in ctx.direct_asset_dependencies} or {a.key for a in ctx.upstream_assets}
    return keys.pop() if len(keys) == 1 else None


def job_resource(step: StepLineage) -> dict[str, str]:
    """The event resource of a job: ``sutro.job.<id>`` with its id, model or Function, cost and status.

    Example:
        >>> job_resource(StepLineage(job_id="job-1", model="qwen-3-4b"))["prefect.resource.id"]
        'sutro.job.job-1'
    """
    attrs = step.attributes()
    labels = {k: attrs.get(k) for k in ("sutro.job.id", "gen_ai.request.model", "sutro.function.name",
                                         "sutro.cost.usd", "sutro.cost.estimate_usd", "sutro.job.status",
                                         "sutro.job.reattached", "sutro.job.url")}
    resource = {"prefect.resource.id": f"{JOB_EVENT_PREFIX}{step.job_id}",
                "prefect.resource.name": step.job_id}
    resource.update({k: str(v).lower() if isinstance(v, bool) else str(v)
                     for k, v in labels.items() if v is not None})
    return resource


def job_step(handle: JobHandle, job: Job | None = None, status: str | None = None) -> StepLineage:
    """The description of a step whose artifact is not written yet (submitted, ended, cancelled).

    Example:
        >>> job_step(handle, status="CANCELLED").status   # doctest: +SKIP
        'CANCELLED'
    """
    return describe_step(handle, job=job, status=status, read_schema=False)


def emit_job_event(kind: JobEvent, step: StepLineage, **payload: Any) -> Any:
    """Emit ``sutro.job.<kind>`` for the step's job (best effort: an events hiccup never fails a task).

    Example:
        >>> emit_job_event("succeeded", job_step(handle, job))   # doctest: +SKIP
    """
    # The job's facts; where its rows came from is the results asset's upstream (a job event cannot know it).
    facts = {k: v for k, v in step.attributes().items() if k != "sutro.input.uri"}
    try:
        return emit_event(event=f"{JOB_EVENT_PREFIX}{kind}", resource=job_resource(step),
                          payload={**facts, **payload})
    except Exception as exc:  # noqa: BLE001 - an event is a notification; the job must go on
        logger.warning("could not emit %s%s for job %s: %s", JOB_EVENT_PREFIX, kind, step.job_id, exc)
        return None
