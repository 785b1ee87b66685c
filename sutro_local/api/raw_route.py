"""A FastAPI route for the pollers' hot reads: the endpoint takes the `Request` and returns a `Response`.

`APIRoute` wraps every endpoint in FastAPI's request handler (dependency solving, body reading,
response serialisation): under cProfile ~17% of a `jobs/{id}` poll's time in the server, more than
half of what the endpoint itself took (SQLite read and encoding). This route keeps what the app
needs from `APIRoute` (the OpenAPI entry, `include_router` with a prefix, the app's exception
handlers) and serves the endpoint the way a plain Starlette `Route` does. It also refuses paths
outside its literal prefix before trying its regex (the hot routes go first, so every request is
tried against them).

Example:
    >>> # router.add_api_route("/job-status/{job_id}", job_status, methods=["GET"],
    >>> #                      route_class_override=RawRoute)   # async def job_status(request) -> Response
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Match, get_route_path, request_response
from starlette.types import Scope


class RawRoute(APIRoute):
    """An `APIRoute` whose endpoint is `async def endpoint(request: Request) -> Response`: no
    dependencies, no declared parameters (document them with `openapi_extra`), no response model."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(endpoint)  # Starlette's: exceptions still reach the app's handlers
        self._prefix = path.split("{", 1)[0]

    def get_route_handler(self) -> Callable[..., Any]:
        return self.endpoint  # APIRoute.__init__ builds its handler from this; replaced above

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not get_route_path(scope).startswith(self._prefix):
            return Match.NONE, {}
        return super().matches(scope)
