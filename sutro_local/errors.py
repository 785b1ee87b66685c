"""The one error type API code raises: an HTTP status, a machine `code` and a human `detail`.

Example:
    >>> raise ApiError(404, "job_not_found", "no job job-1 for this API key")  # doctest: +SKIP
"""

from __future__ import annotations


class ApiError(Exception):
    """Rendered as JSON {"detail", "code", "request_id"} with the given status and headers."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def job_not_found(job_id: str) -> ApiError:
    """404 for an unknown job or another key's job (the two are indistinguishable on purpose)."""
    return ApiError(404, "job_not_found", f"job {job_id!r} not found for this API key")


MAX_ECHO = 200  # characters of a client-sent value that an error message may quote


def echo(value: object, limit: int = MAX_ECHO) -> str:
    """A client-sent value as an error message may quote it: repr'd (so lone surrogates and control
    characters are escaped) and cut to `limit` characters (a 20 MB model name is not echoed back).

    Example:
        >>> echo("x" * 500)[-30:]
        "xxxxxxxxx... (500 characters)'"
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, (str, bytes, list, dict)) else len(text)
    return f"{text[:limit]}... ({size} characters)'"
