"""A quiet ``http.server`` handler with one helper to answer: the base of the tests' tiny HTTP servers."""

from __future__ import annotations

import http.server


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Logs nothing (pytest output stays readable) and answers whole bodies with ``_send``."""

    def log_message(self, *args: object) -> None:  # noqa: D102
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/csv", extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
