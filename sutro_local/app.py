"""The sutro-local FastAPI application.

Example:
    >>> # app = create_app(Settings(data_dir=Path(".sutro-local"), config=load_config(None)))
    >>> # uvicorn.run(app, port=8484)
"""

from __future__ import annotations

import gc
import importlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import ROUTER_MODULES
from .bodylimit import BodyLimitMiddleware
from .config import ServerConfig
from .errors import ApiError
from .state import ServerState
from .worker import start_worker

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """Where the server keeps its data, what it serves, and whether to run the worker."""

    data_dir: Path
    config: ServerConfig
    run_worker: bool = True
    public_url: str | None = None  # base of signed result URLs (else config public_url, else the request's)


MAX_DETAIL = 2000  # characters of an error detail (details quote client values; see errors.echo)


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    request_id = uuid.uuid4().hex[:16]
    # never fail while reporting a failure: escape lone surrogates, cap the size
    detail = str(detail).encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_DETAIL]
    return JSONResponse(
        {"detail": detail, "code": code, "request_id": request_id},
        status_code=status,
        headers={**(headers or {}), "X-Request-ID": request_id},
    )


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        parts.append(f"field {where!r}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON {"detail", "code", "request_id"}; validation errors are 400s."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "invalid_request", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
                413: "request_too_large"}.get(exc.status_code, "http_error")  # fmt: skip
        headers = dict(exc.headers or {})
        if exc.status_code in (408, 413):  # a body cut off mid-way: the rest is never read
            headers["Connection"] = "close"
        return _error(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(RecursionError)
    async def _too_deep(_: Request, exc: RecursionError) -> JSONResponse:
        # json.loads of a body nested thousands of levels deep
        return _error(400, "invalid_request", "the JSON body nests too deeply; flatten it")

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        # the exception goes to the server log only: its text can hold paths, values or secrets
        response = _error(500, "internal_error", "internal error; the server log has the details")
        log.exception("unhandled error (request_id %s)", response.headers["x-request-id"])
        return response


def create_app(settings: Settings, state: ServerState | None = None) -> FastAPI:
    """Build the app over a data dir; the worker starts with the app and stops with it."""
    state = state or ServerState.open(settings.data_dir, settings.config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.run_worker and settings.config.worker_enabled:
            start_worker(state)
        # What exists now (imports, the app, its routes) lives as long as the server: kept out of the
        # cyclic GC's full collections, which otherwise scan it all (40-70 ms pauses of every request
        # under load, measured; the p99 of 50 pollers is set by them).
        gc.freeze()
        try:
            yield
        finally:
            state.stop_worker()

    app = FastAPI(
        title="sutro-local",
        description="A Sutro-compatible batch inference server for local development and tests.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.sutro = state
    app.state.public_url = (settings.public_url or settings.config.public_url or "").rstrip("/") or None
    install_error_handlers(app)
    # counts body bytes as they arrive: an oversized (even chunked) body is cut off with a 413; the
    # console's forms have a small limit of their own; no body is read for a caller without a key
    http = settings.config.http
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.config.max_request_body_bytes,
        path_limits=[("/console/", http.console_form_max_bytes, "http.console_form_max_bytes")],
        idle_timeout=http.body_idle_timeout_seconds, check_before_body=key_before_body,
    )  # fmt: skip
    for module in ROUTER_MODULES:
        app.include_router(importlib.import_module(module).router)
    # The official SDK (sutro 0.1.67, validation.normalize_api_url) sends every call under
    # "<SUTRO_API_URL origin>/v1/..."; serve the Sutro API there too so it can use sutro-local.
    for module in ROUTER_MODULES:
        if not module.endswith("openai_compat"):  # already /v1-prefixed
            app.include_router(importlib.import_module(module).router, prefix="/v1", include_in_schema=False)
    # The web console (HTML, session cookie) lives under /console at the root only.
    from .console import mount_console

    mount_console(app)
    _hot_reads_first(app)
    return app


def key_before_body(scope: dict[str, Any]) -> ApiError | None:
    """The 401 for a request to a route that reads a JSON body, sent without a valid key; None
    otherwise. Runs before the body is read: FastAPI decodes a route's body before its dependencies
    (the key check) run, so a keyless 256 MB body would otherwise be decoded in full.

    Example:
        >>> # POST /batch-inference without Authorization -> ApiError(401, "missing_api_key", ...)
    """
    from starlette.routing import Match

    from .api.deps import invalid_key, presented_key
    from .store import hash_key

    app = scope["app"]
    routes = getattr(app.state, "body_routes", None)
    if routes is None:  # the routes whose endpoint takes a body, found once
        routes = [r for r in app.router.routes if getattr(r, "body_field", None) is not None]
        app.state.body_routes = routes
    if not any(r.matches(scope)[0] is Match.FULL for r in routes):
        return None
    header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
    try:
        owner = hash_key(presented_key(header.decode("latin-1") if header is not None else None))
    except ApiError as exc:
        return exc
    return None if app.state.sutro.store.key_exists(owner) else invalid_key()


# Status and job reads are what pollers call, at up to thousands a second; Starlette tries routes in
# order (a regex each), so these go first. Moving them is safe: no other route matches their paths.
HOT_READ_PATHS = ("/job-status/{job_id}", "/jobs/{job_id}", "/list-jobs")


def _hot_reads_first(app: FastAPI) -> None:
    hot = {*HOT_READ_PATHS, *(f"/v1{p}" for p in HOT_READ_PATHS)}
    routes = app.router.routes
    routes[:] = [r for r in routes if getattr(r, "path", None) in hot] + [
        r for r in routes if getattr(r, "path", None) not in hot
    ]
