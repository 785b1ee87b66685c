"""Validate a `batch-inference` body, apply quotas, and create the job (inputs first, then the row).

Example:
    >>> # accept_job(state, owner, {"model": "all-minilm-l6-v2", "inputs": ["hi"]}).job_id
"""

from __future__ import annotations

import logging
import secrets
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

from sutro_core.idempotency import key_in_description

from .config import DEFAULT_EMBEDDING_MODEL
from .errors import ApiError, echo
from .functions import FunctionDef
from .inputs import resolve_inputs, write_inputs
from .jsonsafe import check_json
from .sampling_check import check_sampling, model_max_tokens
from .state import ServerState
from .store import utcnow

log = logging.getLogger(__name__)

MAX_NAME = 45
MAX_DESCRIPTION = 512
QUOTA_RETRY_AFTER_S = 30
_FIELDS = {
    "model", "inputs", "job_priority", "json_schema", "system_prompt", "cost_estimate", "sampling_params",
    "random_seed_per_input", "truncate_rows", "name", "description", "column_name", "id_column_name",
}  # fmt: skip


def _bad(detail: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, detail)


def _opt_type(body: dict[str, Any], field: str, types: type | tuple[type, ...], hint: str) -> Any:
    value = body.get(field)
    if value is not None and (not isinstance(value, types) or (types is int and isinstance(value, bool))):
        raise _bad(f"field {field!r} must be {hint}, got {type(value).__name__}")
    return value


def _check_schema(schema: Any) -> None:
    if schema is None:
        return
    if not isinstance(schema, dict) or not schema:
        raise _bad("field 'json_schema' must be a JSON Schema object, e.g. {\"type\": \"object\", ...}",
                   "invalid_json_schema")  # fmt: skip
    try:
        import jsonschema

        jsonschema.validators.validator_for(schema).check_schema(schema)
    except ImportError:  # pragma: no cover - jsonschema ships with the local extra's deps
        return
    except jsonschema.SchemaError as exc:
        raise _bad(f"field 'json_schema' is not a valid JSON Schema: {exc.message}", "invalid_json_schema") from None


def resolve_target(state: ServerState, owner: str, model: Any) -> FunctionDef | None:
    """None for a configured model, the FunctionDef for a Function name; 400 listing what exists."""
    if isinstance(model, list):
        raise _bad(
            "field 'model' is a list; one job takes one model: submit one job per model "
            "(the official SDK's infer_per_model / infer(model=[...]) does that for you)", "unknown_model",
        )  # fmt: skip
    if not isinstance(model, str) or not model:
        raise _bad("field 'model' is required: a model name or a Function name", "unknown_model")
    if model in state.config.models:
        return None
    fn = state.functions.resolve(owner, model)
    if fn is not None:
        return fn
    funcs = [f["name"] for f in state.functions.list(owner)]
    extra = f"; Functions: {', '.join(funcs)}" if funcs else ""
    raise _bad(
        f"unknown model {echo(model)}; available models: {', '.join(state.engines.available_models())}{extra}",
        "unknown_model",
    )


@dataclass(frozen=True)
class Submitted:
    """What a submit did: the job's id, and whether it is an existing live job with the same
    idempotency key (reattached) rather than a new one."""

    job_id: str
    reattached: bool = False


def accept_job(state: ServerState, owner: str, body: Any, started: float | None = None) -> Submitted:
    """Create a job from a request body (or find the live job with the same idempotency key).
    Raises ApiError (400/429) on bad input."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object with at least 'model' and 'inputs'")
    check_json(body)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise _bad(f"unknown field(s) {echo(unknown)}; allowed: {sorted(_FIELDS)}")
    function = resolve_target(state, owner, body.get("model"))
    priority = body.get("job_priority", 0)
    priority = 0 if priority is None else priority
    if not isinstance(priority, int) or isinstance(priority, bool) or priority not in (0, 1):
        raise _bad(f"field 'job_priority' must be 0 (interactive) or 1 (cheaper, slower), got {echo(priority)}")
    name = _opt_type(body, "name", str, "a string")
    if name is not None and len(name) > MAX_NAME:
        raise _bad(f"field 'name' is {len(name)} characters; the limit is {MAX_NAME}")
    description = _opt_type(body, "description", str, "a string")
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise _bad(f"field 'description' is {len(description)} characters; the limit is {MAX_DESCRIPTION}")
    system_prompt = _opt_type(body, "system_prompt", str, "a string")
    sampling = _opt_type(body, "sampling_params", dict, "an object like {\"temperature\": 0.7}") or {}
    # checked now against the model that runs the job: a bad value is a 400 here, not a failed job
    # (or a dry run priced at -10^12 tokens) later
    runs_on = body["model"] if function is None else (function.model or DEFAULT_EMBEDDING_MODEL)
    check_sampling(sampling, max_tokens_limit=model_max_tokens(state, runs_on), model=runs_on)
    schema = body.get("json_schema")
    _check_schema(schema)
    dry_run = bool(_opt_type(body, "cost_estimate", bool, "true or false"))
    seed_per_input = bool(_opt_type(body, "random_seed_per_input", bool, "true or false"))
    truncate = _opt_type(body, "truncate_rows", bool, "true or false")
    truncate = False if truncate is None else truncate
    if function is None:
        cfg = state.config.models[body["model"]]
        if cfg.engine == "embedding" and schema is not None:
            raise _bad(f"field 'json_schema' does not apply to embedding model {cfg.name!r}; drop it")

    idem_key = key_in_description(description)
    dedupe = state.config.dedupe_idempotency_keys and idem_key is not None and not dry_run
    if dedupe:  # cheap early answer (no fetch, no inputs written); the transaction below decides
        existing = state.store.live_job_with_key(owner, idem_key)
        if existing:
            log.info("submit with idempotency key %s reattached to job %s", idem_key, existing)
            return Submitted(existing, reattached=True)
    resolved = resolve_inputs(body.get("inputs"), function, body.get("column_name"), body.get("id_column_name"),
                              url_config=state.config.url_inputs, tmp_dir=state.data_dir / "tmp",
                              started=started)  # fmt: skip
    if not dry_run:  # early refusal before the inputs are written; repeated atomically at the insert
        _check_quota(state, owner, priority, len(resolved.rows), resolved.est_tokens())

    job_id = "job-" + uuid.uuid4().hex
    model = body["model"]
    params = {
        "system_prompt": system_prompt,
        "json_schema": schema,
        "sampling_params": sampling,
        "random_seed_per_input": seed_per_input,
        "truncate_rows": truncate,
        "job_seed": secrets.randbelow(2**31),
        # a Function job runs on its model: use that model's pacing
        "chunk_size": state.config.chunk_size_for(model if function is None else (function.model or DEFAULT_EMBEDDING_MODEL)),
        "id_column": resolved.id_column,
        "function": function.raw if function else None,
    }
    # inputs land on disk before the row exists, so the worker never sees a job without inputs
    write_inputs(state.job_dir(job_id) / "inputs.parquet", resolved)
    rows, tokens = len(resolved.rows), resolved.est_tokens()
    try:
        created, reattached = state.store.create_job(
            {
                "job_id": job_id, "owner": owner, "status": "QUEUED", "model": model, "name": name,
                "description": description, "job_priority": priority, "num_rows": rows,
                "created_at": utcnow(), "dry_run": int(dry_run), "est_tokens": tokens,
                "params": params, "idem_key": idem_key,
            },
            dedupe=dedupe,
            # the quota check and the insert are one transaction: concurrent submits cannot overshoot
            guard=None if dry_run else (lambda conn: _check_quota(state, owner, priority, rows, tokens, conn)),
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(state.job_dir(job_id), ignore_errors=True)
        raise
    if reattached:
        shutil.rmtree(state.job_dir(job_id), ignore_errors=True)
        log.info("submit with idempotency key %s reattached to job %s", idem_key, created)
        return Submitted(created, reattached=True)
    log.info("job %s queued: model=%s rows=%d priority=%d dry_run=%s", job_id, model, len(resolved.rows),
             priority, dry_run)  # fmt: skip
    state.wake_worker()
    return Submitted(job_id)


def _check_quota(
    state: ServerState, owner: str, priority: int, rows: int, tokens: int, conn: sqlite3.Connection | None = None
) -> None:
    quota = state.config.quota_for(priority)
    if quota is None:
        return
    used_rows, used_tokens = state.store.active_usage(owner, priority, conn)
    headers = {"Retry-After": str(QUOTA_RETRY_AFTER_S)}
    if quota.row_quota is not None and used_rows + rows > quota.row_quota:
        raise ApiError(
            429, "quota_exceeded",
            f"row_quota for job_priority {priority} is {quota.row_quota} rows; this key has {used_rows} rows "
            f"queued or running and this job adds {rows}. Retry after running jobs finish, or split the job.",
            headers,
        )  # fmt: skip
    if quota.token_quota is not None and used_tokens + tokens > quota.token_quota:
        raise ApiError(
            429, "quota_exceeded",
            f"token_quota for job_priority {priority} is {quota.token_quota} tokens; this key has about "
            f"{used_tokens} tokens queued or running and this job adds about {tokens}. Retry later.",
            headers,
        )  # fmt: skip
