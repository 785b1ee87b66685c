"""Results: inline JSON (`job-results`), files (parquet / csv-zip / json) and signed file URLs.

Example:
    >>> # GET /jobs/{id}/results?result_format=parquet  -> the parquet file (zstd)
    >>> # GET /jobs/{id}/results-url -> {"artifact": {...}, "urls": {"get": ..., "head": ...}}
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import FileResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from .. import signing
from ..errors import ApiError, echo
from ..jsonsafe import check_json
from ..results import csv_zip, results_columns, results_file
from ..state import ServerState
from ..store import KeyRecord
from .deps import get_state, require_key
from .jobs import owned_job

router = APIRouter(tags=["results"])

MAX_URL_TTL_S = 7 * 24 * 3600


class _FileResponse(FileResponse):
    """Sends the file by 1 MiB reads, not Starlette's 64 KiB: each read is a thread hop, so a 38 MB results
    file cost 50-100 ms of server CPU and 0.06-0.13 s over loopback; by 1 MiB 13-25 ms and 0.02-0.03 s
    (same box, /work/notes/bench-results.md, session 4)."""

    chunk_size = 1 << 20


@router.post("/job-results")
def job_results(
    body: Any = Body(default=None), key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    """{"results": {"outputs": [...], "inputs"?, "cumulative_logprobs"?, carried columns...}}."""
    if not isinstance(body, dict) or not isinstance(body.get("job_id"), str):
        raise ApiError(400, "invalid_request", "field 'job_id' is required, e.g. {\"job_id\": \"job-...\"}")
    check_json(body)
    job = owned_job(state, key, body["job_id"])
    path = results_file(
        state, job, bool(body.get("include_inputs")), bool(body.get("include_cumulative_logprobs"))
    )
    return {"results": results_columns(path)}


@router.get("/jobs/{job_id}/results", response_model=None)
def job_results_file(
    job_id: str,
    result_format: Literal["parquet", "csv", "json"] = Query("parquet"),
    include_inputs: bool = False,
    include_cumulative_logprobs: bool = False,
    key: KeyRecord = Depends(require_key),
    state: ServerState = Depends(get_state),
) -> Any:
    """The results as parquet (zstd), a ZIP with one CSV, or JSON {outputs, inputs?, cumulative_logprobs?}.

    The CSV names its outputs column after the job id, as the docs say; parquet and JSON call it ``outputs``.
    ``result_format`` is required by the docs; a missing one means parquet (what every client here asks for).
    """
    job = owned_job(state, key, job_id)
    path = results_file(state, job, include_inputs, include_cumulative_logprobs)
    if result_format == "json":
        return results_columns(path)
    if result_format == "csv":
        return _FileResponse(csv_zip(path, job_id), media_type="application/zip", filename=f"{job_id}.csv.zip")
    return _FileResponse(path, media_type="application/vnd.apache.parquet", filename=f"{job_id}.parquet")


@router.get("/jobs/{job_id}/results-url")
def job_results_url(
    request: Request,
    job_id: str,
    format: Literal["parquet"] = Query("parquet"),
    include_inputs: bool = False,
    include_cumulative_logprobs: bool = False,
    expires_in_seconds: int = Query(3600, ge=1, le=MAX_URL_TTL_S),
    key: KeyRecord = Depends(require_key),
    state: ServerState = Depends(get_state),
) -> dict[str, Any]:
    """A signed, expiring URL of the results parquet; the URL needs no key and honours Range/HEAD."""
    job = owned_job(state, key, job_id)
    path = results_file(state, job, include_inputs, include_cumulative_logprobs)
    expires = int(time.time()) + expires_in_seconds
    token = signing.sign(state.secret, job_id, path.name, expires)
    url = _public_base(request) + request.app.url_path_for("results_file_by_token", token=token)
    return {
        "artifact": {
            "filename": f"{job_id}.parquet",
            "size_bytes": path.stat().st_size,
            "format": "parquet",
            "expires_at": datetime.fromtimestamp(expires, timezone.utc).isoformat().replace("+00:00", "Z"),
        },
        "urls": {"get": url, "head": url},
    }


@router.api_route("/results-files/{token}", methods=["GET", "HEAD"], name="results_file_by_token",
                  response_model=None)  # fmt: skip
def results_file_by_token(request: Request, token: str, state: ServerState = Depends(get_state)) -> FileResponse:
    """Serve a signed results file (206 + Content-Range for Range requests)."""
    try:
        job_id, filename = signing.verify(state.secret, token)
    except signing.TokenError as exc:
        raise ApiError(403, "invalid_signature", f"results URL is not valid ({exc}); ask results-url again")
    jdir = (state.data_dir / "jobs" / job_id).resolve()
    path = (jdir / filename).resolve()
    if path.parent != jdir or not path.is_file():
        raise ApiError(404, "results_file_not_found", "the results file of this URL no longer exists")
    check_range(request.headers.get("range"), path.stat().st_size)
    return _FileResponse(path, media_type="application/vnd.apache.parquet", filename=f"{job_id}.parquet")


def _public_base(request: Request) -> str:
    """The configured public URL (never the request's Host header, which the client controls)."""
    base = getattr(request.app.state, "public_url", None)
    if base:
        return str(base)
    server = request.scope.get("server") or ("127.0.0.1", 80)  # the socket's own address, not Host
    host, port = server[0], server[1]
    host = f"[{host}]" if ":" in str(host) else host
    return f"http://{host}:{port}"


def check_range(value: str | None, size: int) -> None:
    """A Range header the file response would refuse, refused here in the JSON error shape
    (Starlette answers those as plain text): 400 malformed, 416 not satisfiable."""
    if value is None:
        return
    try:
        FileResponse._parse_range_header(value, size)
    except MalformedRangeHeader as exc:
        raise ApiError(400, "invalid_range", f"Range header {echo(value)} is malformed ({exc}); "
                       "send e.g. 'bytes=0-1023'") from None  # fmt: skip
    except RangeNotSatisfiable:
        raise ApiError(416, "range_not_satisfiable", f"Range header {echo(value)} starts past the end of "
                       f"the {size}-byte file", {"Content-Range": f"bytes */{size}"}) from None  # fmt: skip
