"""The console's pages as HTML strings: sign-in, jobs list, job page, Functions, models.

Pure functions of the data they show (no request, no store), so they are easy to test.

Example:
    >>> "Sign in" in sign_in_page("/console/jobs", None)[0]
    True
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from ..config import DEFAULT_EMBEDDING_MODEL, ModelConfig
from ..store import JobRow
from .layout import (
    PREFIX,
    STATUSES,
    esc,
    fmt_cost,
    fmt_duration,
    fmt_int,
    fmt_ts,
    page,
    parse_ts,
    progress_bar,
    status_badge,
    table,
)
from .preview import cell_text

# A page showing any of these refreshes itself (CANCELLING included: it still changes, unlike store.ACTIVE_STATUSES).
CHANGING_STATUSES = ("QUEUED", "STARTING", "RUNNING", "CANCELLING")
MAX_LISTED = 500


def job_href(job_id: str) -> str:
    """The console path of a job page."""
    return f"{PREFIX}/jobs/{esc(job_id)}"


def elapsed_s(job: JobRow) -> float | None:
    """Seconds the job has run (so far, while running)."""
    from datetime import datetime

    start = parse_ts(job.started_at)
    if start is None:
        return None
    end = parse_ts(job.finished_at) or datetime.now(UTC)
    return max((end - start).total_seconds(), 0.0)


def tokens_per_second(job: JobRow) -> float:
    """(input + output tokens) / elapsed seconds, as the progress stream reports it."""
    secs = elapsed_s(job)
    return 0.0 if not secs else round((job.input_tokens + job.output_tokens) / max(secs, 1e-3), 1)


def live_fields(job: JobRow) -> dict[str, Any]:
    """What the job page's script refreshes while the job runs (the console's JSON poll)."""
    total = max(job.num_rows, 0)
    return {
        "job_id": job.job_id,
        "status": job.status,
        "terminal": job.is_terminal,
        "rows": f"{job.rows_processed:,} / {total:,}",
        "pct": 100.0 if total == 0 else round(100.0 * job.rows_processed / total, 1),
        "input_tokens": fmt_int(job.input_tokens),
        "output_tokens": fmt_int(job.output_tokens),
        "tok_s": f"{tokens_per_second(job):,.1f}",
        "cost": fmt_cost(job.job_cost),
        "elapsed": fmt_duration(elapsed_s(job)),
    }


def sign_in_page(next_path: str, error: str | None, status: int = 200) -> tuple[str, int]:
    """The API-key form (the key is POSTed, never put in a URL)."""
    err = f'<p class="alert">{esc(error)}</p>' if error else ""
    body = f"""<section class="signin card">
<h1>Sign in</h1>
<p class="muted">Paste a sutro-local API key. <code>sutro-local serve</code> prints one; create more with
<code>sutro-local keys create NAME</code>. You see only the jobs of this key.</p>{err}
<form method="post" action="{PREFIX}/login">
<input type="hidden" name="next" value="{esc(next_path)}">
<label for="api_key">API key</label>
<input id="api_key" name="api_key" type="password" autocomplete="off" autofocus required placeholder="sk-local-…">
<button class="primary" type="submit">Sign in</button></form></section>"""
    return page("Sign in", body, status=status)


def bounce_page(target: str) -> tuple[str, int]:
    """A same-site hop to `target`: SameSite=Strict cookies are not sent on a navigation that
    started on another site (a link in Dagster/Airflow/Prefect); a navigation from this page is."""
    body = f'<p class="muted">Opening <a href="{esc(target)}" id="bounce">{esc(target)}</a>…</p>'
    doc, status = page("Opening", body)
    return doc.replace(
        "<head>", f'<head><meta http-equiv="refresh" content="0;url={esc(target)}">', 1
    ), status


def _job_row(job: JobRow) -> list[str]:
    name = esc(job.name) if job.name else '<span class="muted">—</span>'
    tokens = f"{fmt_int(job.input_tokens)} <span class='muted'>in</span> · {fmt_int(job.output_tokens)} <span class='muted'>out</span>"
    return [
        f'<a href="{job_href(job.job_id)}" class="strong">{name}</a><div class="mono small muted">{esc(job.job_id)}</div>',
        status_badge(job.status) + (' <span class="tag">dry run</span>' if job.dry_run else ""),
        f'<span class="mono">{esc(job.model)}</span>',
        f'<span class="num">{fmt_int(job.rows_processed)} / {fmt_int(job.num_rows)}</span>',
        progress_bar(job.rows_processed, job.num_rows),
        f'<span class="num">{tokens}</span>',
        f'<span class="num">{fmt_cost(job.cost_estimate if job.dry_run else job.job_cost)}</span>',
        fmt_ts(job.created_at),
        fmt_ts(job.finished_at),
    ]


def jobs_table(jobs: list[JobRow]) -> str:
    """The jobs table (also served alone, for the list's live refresh)."""
    headers = [
        "Name / job id",
        "Status",
        "Model",
        "Rows",
        "Progress",
        "Tokens",
        "Cost",
        "Created (UTC)",
        "Finished (UTC)",
    ]
    shown = jobs[:MAX_LISTED]  # newest first; a page of thousands of rows helps nobody
    grid = table(headers, (_job_row(j) for j in shown), empty="No jobs for this key (and filter) yet.")
    if len(jobs) > len(shown):
        grid += f'<p class="muted small">Showing the newest {len(shown):,} of {len(jobs):,} jobs; filter by status to narrow.</p>'
    return grid


def jobs_page(
    jobs: list[JobRow], counts: dict[str, int], status: str | None, user: str, csrf: str
) -> tuple[str, int]:
    """All of a key's jobs, newest first, with status filter chips."""
    chips = [
        f'<a class="chip {"on" if not status else ""}" href="{PREFIX}/jobs">All <b>{sum(counts.values())}</b></a>'
    ]
    for s in STATUSES:
        if counts.get(s):
            on = "on" if s == status else ""
            chips.append(
                f'<a class="chip {on}" href="{PREFIX}/jobs?status={s}">{status_badge(s)} <b>{counts[s]}</b></a>'
            )
    live = " data-live" if any(j.status in CHANGING_STATUSES for j in jobs) else ""
    src = f"{PREFIX}/jobs/table" + (f"?status={esc(status)}" if status else "")
    body = (
        f'<div class="head"><h1>Jobs</h1><div class="chips">{"".join(chips)}</div></div>'
        f'<div id="jobs" data-src="{src}"{live}>{jobs_table(jobs)}</div>'
    )
    return page("Jobs", body, user=user, csrf=csrf, active="jobs")


def _kv(pairs: list[tuple[str, str]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _estimate(job: JobRow, model: ModelConfig | None) -> tuple[str, str]:
    """(estimate, how it was made): a dry run's own estimate, else input tokens counted at submit × price."""
    if job.cost_estimate is not None:
        return fmt_cost(job.cost_estimate), "dry-run estimate"
    if model is None:
        return "—", "model not served any more"
    out_tokens = 0 if model.engine == "embedding" else model.default_output_tokens * job.num_rows
    note = "≈ input tokens at submit × price" + (
        "" if not out_tokens else f" + {model.default_output_tokens} output tokens/row"
    )
    return fmt_cost(model.cost(job.est_tokens, out_tokens)), note


def job_page(
    job: JobRow,
    model: ModelConfig | None,
    preview: tuple[list[str], list[list[str]], int] | None,
    preview_note: str | None,
    user: str,
    csrf: str,
) -> tuple[str, int]:
    """One job: live progress, failure, timings, cost, results preview, downloads, cancel."""
    live = live_fields(job)
    title = esc(job.name) if job.name else esc(job.job_id)
    cancel = ""
    if job.status in ("QUEUED", "STARTING", "RUNNING"):
        cancel = (
            f'<form method="post" action="{job_href(job.job_id)}/cancel" class="inline" data-confirm="Cancel this job?">'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}"><button class="danger" type="submit" id="cancel">Cancel job</button></form>'
        )
    failure = ""
    if job.failure_reason:
        failure = f'<div class="alert"><b>{"Failed" if job.status == "FAILED" else "Note"}:</b> {esc(job.failure_reason)}</div>'
    stats = "".join(
        f'<div class="stat"><div class="label">{label}</div><div class="value" data-field="{key}">{esc(live[key])}</div></div>'
        for key, label in [
            ("rows", "Rows"),
            ("input_tokens", "Input tokens"),
            ("output_tokens", "Output tokens"),
            ("tok_s", "Tokens / s"),
            ("elapsed", "Elapsed"),
            ("cost", "Cost"),
        ]
    )
    estimate, how = _estimate(job, model)
    queued = None
    if job.started_at:
        queued = (parse_ts(job.started_at) - parse_ts(job.created_at)).total_seconds()  # type: ignore[operator]
    timings = _kv(
        [
            ("Created", fmt_ts(job.created_at)),
            ("Started", fmt_ts(job.started_at)),
            ("Finished", fmt_ts(job.finished_at)),
            ("Waited in queue", fmt_duration(queued)),
            ("Ran for", fmt_duration(elapsed_s(job))),
        ]
    )
    price = (
        "—"
        if model is None
        else f"{fmt_cost(model.price_input_per_1m)} in · {fmt_cost(model.price_output_per_1m)} out per 1M tokens"
    )
    costs = _kv(
        [
            ("Estimate", f'{estimate} <span class="muted small">{esc(how)}</span>'),
            ("Actual", f'<span data-field="cost">{fmt_cost(job.job_cost)}</span>'),
            ("Model price", price),
        ]
    )
    details = _kv(
        [
            ("Job id", f'<span class="mono">{esc(job.job_id)}</span>'),
            ("Model", f'<span class="mono">{esc(job.model)}</span>'),
            ("Priority", esc(job.job_priority)),
            ("Description", esc(job.description) or "—"),
            ("Dry run", "yes" if job.dry_run else "no"),
        ]
    )
    results = ""
    if preview is not None:
        cols, rows, total = preview
        downloads = "".join(
            f'<a class="button" href="{job_href(job.job_id)}/download/{fmt}" download>{label}</a>'
            for fmt, label in [("parquet", "Parquet"), ("csv", "CSV (zip)"), ("json", "JSON")]
        )
        shown = f"first {len(rows):,} of {total:,} rows" if total > len(rows) else f"{total:,} rows"
        grid = table(
            cols, ([f'<span class="cell">{esc(c)}</span>' for c in r] for r in rows), cls="grid results"
        )
        results = (
            f'<section class="card"><div class="head"><h2>Results <span class="muted small">{shown}</span></h2>'
            f'<div class="downloads">{downloads}</div></div>{grid}</section>'
        )
    elif preview_note:
        results = f'<section class="card"><h2>Results</h2><p class="muted">{esc(preview_note)}</p></section>'
    poll = f' data-poll="{job_href(job.job_id)}/live"' if not job.is_terminal else ""
    body = f"""<div class="crumbs"><a href="{PREFIX}/jobs">Jobs</a> / <span class="mono">{esc(job.job_id)}</span></div>
<div class="head" id="job"{poll}><h1>{title} {status_badge(job.status)}</h1><div>{cancel}</div></div>
{failure}
<section class="card"><div class="progress-big">{progress_bar(job.rows_processed, job.num_rows)}
<span class="pct" data-field="pct">{live["pct"]}%</span></div><div class="stats">{stats}</div></section>
<div class="cols"><section class="card"><h2>Timings</h2>{timings}</section>
<section class="card"><h2>Cost</h2>{costs}</section><section class="card"><h2>Details</h2>{details}</section></div>
{results}"""
    return page(job.name or job.job_id, body, user=user, csrf=csrf, active="jobs")


def _fn_model(d: dict[str, Any]) -> str:
    if d.get("model"):
        return f'<span class="mono">{esc(d["model"])}</span>'
    if d.get("type") == "classification":  # classification runs on the embedding model by default
        return (
            f'<span class="mono">{DEFAULT_EMBEDDING_MODEL}</span> <span class="muted small">(default)</span>'
        )
    return '<span class="muted">server default</span>'


def _function_card(d: dict[str, Any]) -> str:
    inputs = "".join(f'<span class="tag mono">{esc(i)}</span>' for i in d.get("inputs") or [])
    parts = [
        f'<div class="head"><h2 class="mono">{esc(d.get("name"))}</h2><span class="tag">{esc(d.get("type"))}</span></div>',
        f"<p>{esc(d.get('description') or '')}</p>",
        _kv([("Inputs", inputs or "—"), ("Model", _fn_model(d))]),
    ]
    labels = d.get("labels")
    if labels:
        rows = (
            [
                f'<span class="mono">{esc(lab.get("name") if isinstance(lab, dict) else lab)}</span>',
                esc(lab.get("description", "") if isinstance(lab, dict) else ""),
            ]
            for lab in labels
        )
        parts.append("<h3>Labels</h3>" + table(["Label", "Description"], rows))
    schema = d.get("output_schema")
    if isinstance(schema, dict):
        props = schema.get("properties") or {}
        rows = (
            [
                f'<span class="mono">{esc(k)}</span>',
                esc((v or {}).get("type", "")),
                esc(cell_text((v or {}).get("description", ""))),
            ]
            for k, v in props.items()
        )
        parts.append(
            "<h3>Output schema</h3>"
            + table(["Field", "Type", "Description"], rows)
            + f"<details><summary>JSON schema</summary><pre>{esc(json.dumps(schema, indent=2))}</pre></details>"
        )
    return '<section class="card fn">' + "".join(parts) + "</section>"


def functions_page(functions: list[dict[str, Any]], user: str, csrf: str) -> tuple[str, int]:
    """The Functions this key can run (its own and the server's shared ones)."""
    cards = (
        "".join(_function_card(d) for d in functions)
        or '<p class="empty">No Functions published for this key.</p>'
    )
    body = f'<div class="head"><h1>Functions</h1></div>{cards}'
    return page("Functions", body, user=user, csrf=csrf, active="functions")


def models_page(models: list[ModelConfig], user: str, csrf: str) -> tuple[str, int]:
    """The models this server serves, with prices per 1M tokens."""
    rows = (
        [
            f'<span class="mono strong">{esc(m.name)}</span>',
            f'<span class="tag">{esc(m.engine)}</span>',
            f'<span class="num">{fmt_cost(m.price_input_per_1m)}</span>',
            f'<span class="num">{fmt_cost(m.price_output_per_1m)}</span>',
            f'<span class="num">{fmt_int(m.chunk_size) if m.chunk_size else "server default"}</span>',
        ]
        for m in models
    )
    body = (
        '<div class="head"><h1>Models</h1></div><section class="card">'
        + table(["Model", "Engine", "Input / 1M tokens", "Output / 1M tokens", "Rows per chunk"], rows)
        + "</section>"
    )
    return page("Models", body, user=user, csrf=csrf, active="models")


def message_page(
    title: str, text: str, status: int, user: str | None = None, csrf: str | None = None
) -> tuple[str, int]:
    """An error or notice page (not found, forbidden, no results)."""
    body = (
        f'<section class="card narrow"><h1>{esc(title)}</h1><p>{esc(text)}</p>'
        f'<p><a href="{PREFIX}/jobs">← All jobs</a></p></section>'
    )
    return page(title, body, user=user, csrf=csrf, status=status)
