"""Live job progress for ``attach`` and attached ``infer``, always on stderr (stdout stays the caller's).

On a terminal: a tqdm bar whose postfix shows input tokens, output tokens and tokens/s, as the
SDK docs' bar does. Off a terminal (CI, notebooks' captured stderr, pipelines): one plain line every
``log_every`` seconds and a last line at the end, so logs show progress without ANSI redraws.

Example:
    >>> reporter = ProgressReporter("job-1", total=100)
    >>> reporter.update({"update_type": "progress", "result": 10})
    >>> reporter.close()
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

log = logging.getLogger("sutro_core.progress")


def _stderr() -> IO[str]:
    return sys.stderr  # looked up at call time: pytest's capsys and notebooks swap it


def token_summary(tokens: dict[str, Any]) -> str:
    """The docs' wording: ``Input tokens processed: N, Tokens generated: M, Total tokens/s: X``."""
    return (
        f"Input tokens processed: {tokens.get('input_tokens', 0)}, "
        f"Tokens generated: {tokens.get('output_tokens', 0)}, "
        f"Total tokens/s: {tokens.get('total_tokens_processed_per_second', 0)}"
    )


def announce_finished(job_id: str, status: str, reason: str | None = None) -> None:
    """Say on stderr that ``attach`` found the job already finished (the docs' attach behaviour).

    Example:
        >>> announce_finished("job-1", "SUCCEEDED")   # prints a hint to get the results
    """
    if status == "SUCCEEDED":
        text = (f"Job {job_id} already SUCCEEDED; get its results with client.get_job_results({job_id!r}) "
                f"(or `sutro jobs results {job_id}`)")
    elif status == "FAILED":
        text = f"Job {job_id} FAILED: {reason or 'no reason given'}"
    else:
        text = f"Job {job_id} is {status}"
    print(text, file=_stderr(), flush=True)


class ProgressReporter:
    """Consumes ``stream-job-progress`` updates: rows done, input/output tokens, tokens per second.

    ``bar``: None picks a bar on a terminal and periodic lines otherwise; True forces the bar;
    False prints nothing (updates still go to the ``sutro_core.progress`` logger at DEBUG).
    """

    def __init__(self, job_id: str, total: int | None, *, log_every: float = 10.0, bar: bool | None = None) -> None:
        self.job_id = job_id
        self.total = total
        self.rows = 0
        self.tokens: dict[str, Any] = {}
        self._log_every = log_every
        self._last_line = time.monotonic()
        self._quiet = bar is False
        self._lines_printed = 0
        self._updated = False
        use_bar = _stderr().isatty() if bar is None else bar
        self._bar = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="Progress", unit="row", file=_stderr(), postfix=token_summary({}))

    def update(self, message: dict[str, Any]) -> None:
        """Apply one NDJSON progress message."""
        kind = message.get("update_type")
        if kind == "progress" and isinstance(message.get("result"), (int, float)):
            rows = int(message["result"])
            if self._bar is not None and rows > self.rows:
                self._bar.update(rows - self.rows)
            self.rows = max(self.rows, rows)
        elif kind == "tokens" and isinstance(message.get("result"), dict):
            self.tokens = {**self.tokens, **message["result"]}
            if self._bar is not None:
                self._bar.set_postfix_str(token_summary(self.tokens))
        else:
            return
        self._updated = True
        log.debug("job %s: %s/%s rows, %s", self.job_id, self.rows, self.total or "?", self.tokens)
        now = time.monotonic()
        if self._bar is None and not self._quiet and now - self._last_line >= self._log_every:
            self._last_line = now
            self._print_line()

    def _print_line(self) -> None:
        self._lines_printed += 1
        print(f"Job {self.job_id}: {self.rows}/{self.total if self.total is not None else '?'} rows, "
              f"{token_summary(self.tokens)}", file=_stderr(), flush=True)

    def close(self) -> None:
        """Close the bar, or print the last line (off a terminal) when any progress arrived."""
        if self._bar is not None:
            self._bar.close()
        elif not self._quiet and self._updated:
            self._print_line()
