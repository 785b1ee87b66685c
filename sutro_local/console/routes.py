"""The console's routes under /console: sign-in/out, jobs, job page (+ live poll, cancel,
downloads), Functions, models, static files.

Authentication is the session cookie only (never a key in a URL); each key sees only its own
jobs, exactly as the API's `owned_job`. Another key's job is a plain 404, like a missing one.

Example:
    >>> # GET /console/jobs/job-123 without a session -> 303 /console/login?next=/console/jobs/job-123
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from ..api.jobs import cancel_job
from ..config import DEFAULT_EMBEDDING_MODEL
from ..errors import ApiError
from ..results import csv_zip, results_columns, results_file
from ..state import ServerState
from ..store import KeyRecord
from . import session as sess
from . import views
from .layout import PREFIX, STATUSES
from .preview import preview

router = APIRouter(prefix=PREFIX, include_in_schema=False)
STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
# Everything is same-origin: no CDN, no inline script; pages cannot be framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def _state(request: Request) -> ServerState:
    return request.app.state.sutro


def _html(doc_status: tuple[str, int], headers: dict[str, str] | None = None) -> HTMLResponse:
    doc, status = doc_status
    return HTMLResponse(
        doc,
        status_code=status,
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
    )


def _session(request: Request) -> sess.Session | None:
    """The request's session: a cookie signed by this server whose session is still recorded and
    whose key still exists (sign-out and `sutro-local keys revoke` end it at once). The signature is
    checked first, so a forged cookie costs no database read; a valid one costs one indexed read."""
    s = sess.verify(_state(request).secret, request.cookies.get(sess.COOKIE))
    if s is None or not _state(request).store.session_valid(sess.session_id(s), s.owner):
        return None
    return s


def _safe_next(value: str | None) -> str:
    """Only console paths (no open redirect to another site)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/jobs"


def _to_sign_in(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='/')}", status_code=303)


MAX_FORM_FIELDS = 10  # the console's forms have two or three


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form (no python-multipart dependency for three small forms); None when it is
    not one. The body is small by then: BodyLimitMiddleware cuts console bodies off at
    `http.console_form_max_bytes` (413) before they are read in full."""
    raw = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qs(raw, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than any console form has
        return None
    return {k: v[0] for k, v in fields.items()}


def _bad_form() -> Response:
    return _html(views.message_page("Bad request", "The form could not be read; reload the page, try again.", 400))


def _page_ctx(request: Request) -> tuple[sess.Session, KeyRecord, str] | None:
    s = _session(request)
    if s is None:
        return None
    return s, KeyRecord(owner=s.owner, name=s.name), sess.csrf_token(_state(request).secret, s)


# ---- sign-in ------------------------------------------------------------------------------------


@router.get("", response_model=None)
@router.get("/", response_model=None)
def home() -> Response:
    """The console's start page is the jobs list."""
    return RedirectResponse(f"{PREFIX}/jobs", status_code=303)


def _forget_cookie(response: Response) -> Response:
    response.delete_cookie(sess.COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


@router.get("/login", response_model=None)
def login_form(request: Request, next: str | None = None) -> Response:
    """The sign-in form; a visitor who already has a session goes straight on to `next`."""
    if _session(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    page = _html(views.sign_in_page(_safe_next(next), None))
    # a cookie of an ended session (signed out elsewhere, key revoked, expired) is dropped
    return _forget_cookie(page) if sess.COOKIE in request.cookies else page


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    """Check the API key (from the form body), record the session, set its cookie, go on to `next`."""
    if not sess.same_origin(request):  # headers only: refused before the body is read
        refused = "Sign-in refused: the form was sent from another site."
        return _html(views.sign_in_page(f"{PREFIX}/jobs", refused, 403))
    form = await _form(request)
    if form is None:
        return _bad_form()
    target = _safe_next(form.get("next"))
    key = (form.get("api_key") or "").strip()
    record = _state(request).store.resolve_key(key) if key else None
    if record is None:
        msg = (
            "Enter an API key."
            if not key
            else "Unknown API key for this server (create one with `sutro-local keys create NAME`)."
        )
        return _html(views.sign_in_page(target, msg, 401))
    session = sess.Session.new(record.owner, record.name)
    _state(request).store.add_session(sess.session_id(session), session.owner, session.expires)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        sess.COOKIE,
        sess.sign(_state(request).secret, session),
        max_age=sess.TTL_S,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    """End the session server-side and drop its cookie (CSRF-checked, so another site cannot sign
    a user out). The cookie stops working at once, even where a copy of it survives."""
    s = _session(request)
    if s is None:  # no live session: nothing to end (and no body worth reading)
        return _forget_cookie(RedirectResponse(f"{PREFIX}/login", status_code=303))
    form = await _form(request)
    if form is None or not sess.csrf_ok(_state(request).secret, s, request, form.get("csrf")):
        return _html(views.message_page("Forbidden", "Sign-out refused: bad or missing CSRF token.", 403))
    _state(request).store.end_session(sess.session_id(s))
    return _forget_cookie(RedirectResponse(f"{PREFIX}/login", status_code=303))


# ---- jobs ---------------------------------------------------------------------------------------


def _filtered(state: ServerState, owner: str, status: str | None) -> tuple[list[Any], dict[str, int]]:
    jobs = state.store.list_jobs(owner)
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.status] = counts.get(j.status, 0) + 1
    return ([j for j in jobs if j.status == status] if status else jobs), counts


def _status_param(status: str | None) -> str | None:
    if not status:
        return None
    status = status.upper()
    if status not in STATUSES:
        raise ApiError(400, "invalid_status", f"status must be one of {', '.join(STATUSES)}")
    return status


@router.get("/jobs", response_model=None)
def jobs(request: Request, status: str | None = None) -> Response:
    """The key's jobs, newest first; `?status=RUNNING` filters."""
    ctx = _page_ctx(request)
    if ctx is None:
        return _bounce_or_sign_in(request)
    s, key, csrf = ctx
    try:
        wanted = _status_param(status)
    except ApiError as exc:
        return _html(views.message_page("Bad filter", exc.detail, 400, s.name, csrf))
    listed, counts = _filtered(_state(request), key.owner, wanted)
    return _html(views.jobs_page(listed, counts, wanted, s.name, csrf))


@router.get("/jobs/table", response_model=None)
def jobs_table(request: Request, status: str | None = None) -> Response:
    """The jobs table alone (the list page's live refresh swaps it in)."""
    ctx = _page_ctx(request)
    if ctx is None:
        return JSONResponse({"detail": "not signed in"}, status_code=401)
    try:
        wanted = _status_param(status)
    except ApiError as exc:
        return JSONResponse({"detail": exc.detail, "code": exc.code}, status_code=400)
    listed, _ = _filtered(_state(request), ctx[1].owner, wanted)
    active = any(j.status in views.ACTIVE for j in listed)
    return _html((views.jobs_table(listed), 200), {"X-Sutro-Active": "1" if active else "0"})


def _bounce_or_sign_in(request: Request) -> Response:
    """No session: a same-site hop (bounce page) to the sign-in page, which returns here after.

    A link clicked in another site's UI arrives without our SameSite=Strict cookie even when the
    user is signed in; the hop is a navigation started by this site, so the browser sends the
    cookie then, and the sign-in page passes a signed-in user straight back."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _html(views.bounce_page(f"{PREFIX}/login?next={quote(target, safe='/')}"))


@router.get("/jobs/{job_id}", response_model=None)
def job(request: Request, job_id: str) -> Response:
    """One job's page (404 for a job of another key, as for a missing one)."""
    ctx = _page_ctx(request)
    if ctx is None:
        return _bounce_or_sign_in(request)
    s, key, csrf = ctx
    state = _state(request)
    row = state.store.get_job(job_id, owner=key.owner)
    if row is None:
        return _html(
            views.message_page("Job not found", f"No job {job_id} for the key '{s.name}'.", 404, s.name, csrf)
        )
    shown, note = None, None
    if row.status == "SUCCEEDED" and not row.dry_run:
        try:
            shown = preview(results_file(state, row, include_inputs=True, include_logprobs=False))
        except ApiError as exc:
            note = exc.detail
    elif row.dry_run:
        note = "A dry run (cost estimate) has no results."
    elif not row.is_terminal:
        note = "Results appear here when the job has succeeded."
    else:
        note = f"The job is {row.status}: it has no results."
    return _html(views.job_page(row, _served_model(state, row), shown, note, s.name, csrf))


def _served_model(state: ServerState, row: Any) -> Any:
    """The model that priced a job: its own, or for a Function job the Function's model."""
    if row.model in state.config.models:
        return state.config.models[row.model]
    fn = row.params.get("function") if isinstance(row.params, dict) else None
    if isinstance(fn, dict):
        return state.config.models.get(fn.get("model") or DEFAULT_EMBEDDING_MODEL)
    return None


@router.get("/jobs/{job_id}/live", response_model=None)
def job_live(request: Request, job_id: str) -> Response:
    """The job page's JSON poll: rows, tokens, tok/s, cost, status."""
    ctx = _page_ctx(request)
    if ctx is None:
        return JSONResponse({"detail": "not signed in"}, status_code=401)
    row = _state(request).store.get_job(job_id, owner=ctx[1].owner)
    if row is None:
        return JSONResponse({"detail": f"job {job_id} not found"}, status_code=404)
    return JSONResponse(views.live_fields(row), headers={"Cache-Control": "no-store"})


@router.post("/jobs/{job_id}/cancel", response_model=None)
async def cancel(request: Request, job_id: str) -> Response:
    """Cancel from the job page: same-origin + CSRF token required, then back to the page."""
    ctx = _page_ctx(request)
    if ctx is None:
        return _to_sign_in(request)
    s, key, csrf = ctx
    form = await _form(request)
    if form is None or not sess.csrf_ok(_state(request).secret, s, request, form.get("csrf")):
        return _html(
            views.message_page(
                "Forbidden",
                "Cancel refused: the request came from another site or had no valid CSRF token.",
                403,
                s.name,
                csrf,
            )
        )
    try:
        done = cancel_job(job_id, key=key, state=_state(request))  # the API's own cancel: same rules
        if inspect.isawaitable(done):
            await done
    except ApiError as exc:
        return _html(views.message_page("Job not found", exc.detail, exc.status, s.name, csrf))
    return RedirectResponse(f"{PREFIX}/jobs/{quote(job_id)}", status_code=303)


@router.get("/jobs/{job_id}/download/{fmt}", response_model=None)
def download(request: Request, job_id: str, fmt: str) -> Response:
    """The results as parquet, CSV (zip) or JSON, for the signed-in key."""
    ctx = _page_ctx(request)
    if ctx is None:
        return _bounce_or_sign_in(request)
    s, key, csrf = ctx
    if fmt not in ("parquet", "csv", "json"):
        return _html(
            views.message_page(
                "Unknown format", f"format {fmt!r}: use parquet, csv or json", 400, s.name, csrf
            )
        )
    state = _state(request)
    row = state.store.get_job(job_id, owner=key.owner)
    if row is None:
        return _html(
            views.message_page("Job not found", f"No job {job_id} for the key '{s.name}'.", 404, s.name, csrf)
        )
    try:
        path = results_file(state, row, include_inputs=True, include_logprobs=False)
    except ApiError as exc:
        return _html(views.message_page("No results", exc.detail, exc.status, s.name, csrf))
    if fmt == "json":
        return JSONResponse(
            results_columns(path), headers={"Content-Disposition": f'attachment; filename="{job_id}.json"'}
        )
    if fmt == "csv":
        return FileResponse(csv_zip(path, job_id), media_type="application/zip", filename=f"{job_id}.csv.zip")
    return FileResponse(path, media_type="application/vnd.apache.parquet", filename=f"{job_id}.parquet")


# ---- Functions, models, static ------------------------------------------------------------------


@router.get("/functions", response_model=None)
def functions(request: Request) -> Response:
    """The Functions this key can run."""
    ctx = _page_ctx(request)
    if ctx is None:
        return _bounce_or_sign_in(request)
    s, key, csrf = ctx
    return _html(views.functions_page(_state(request).functions.list(key.owner), s.name, csrf))


@router.get("/models", response_model=None)
def models(request: Request) -> Response:
    """The models served, with prices."""
    ctx = _page_ctx(request)
    if ctx is None:
        return _bounce_or_sign_in(request)
    s, _, csrf = ctx
    served = sorted(_state(request).config.models.values(), key=lambda m: m.name)
    return _html(views.models_page(served, s.name, csrf))


@router.get("/static/{name}", response_model=None)
def static(name: str) -> Response:
    """The console's own CSS/JS/icon (shipped in the package; nothing from a CDN)."""
    path = STATIC_DIR / name
    if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
        return JSONResponse({"detail": f"no static file {name!r}"}, status_code=404)
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})
