"""Live job progress for ``attach``: a tqdm bar on a terminal, plain log lines otherwise.

Example:
    >>> reporter = ProgressReporter("job-1", total=100)
    >>> reporter.update({"update_type": "progress", "result": 10})
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("sutro_core.progress")


class ProgressReporter:
    """Consumes ``stream-job-progress`` updates: rows done, tokens, tokens per second."""

    def __init__(self, job_id: str, total: int | None, *, log_every: float = 10.0, bar: bool | None = None) -> None:
        self.job_id = job_id
        self.total = total
        self.rows = 0
        self.tokens: dict[str, Any] = {}
        self._log_every = log_every
        self._last_log = 0.0
        use_bar = sys.stderr.isatty() if bar is None else bar
        self._bar = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=f"job {job_id}", unit="row", file=sys.stderr)

    def update(self, message: dict[str, Any]) -> None:
        """Apply one NDJSON progress message."""
        kind = message.get("update_type")
        if kind == "progress" and isinstance(message.get("result"), (int, float)):
            rows = int(message["result"])
            if self._bar is not None:
                self._bar.update(max(0, rows - self.rows))
            self.rows = rows
        elif kind == "tokens" and isinstance(message.get("result"), dict):
            self.tokens = message["result"]
            if self._bar is not None:
                self._bar.set_postfix(
                    out_tokens=self.tokens.get("output_tokens"),
                    tok_s=self.tokens.get("total_tokens_processed_per_second"),
                )
        else:
            return
        now = time.monotonic()
        if self._bar is None and now - self._last_log >= self._log_every:
            self._last_log = now
            log.info("job %s: %s/%s rows, tokens %s", self.job_id, self.rows, self.total or "?", self.tokens or "-")

    def close(self) -> None:
        """Close the bar, if any."""
        if self._bar is not None:
            self._bar.close()
