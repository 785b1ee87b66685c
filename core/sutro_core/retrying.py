"""Backoff, jitter and wall-clock deadlines, shared by every retry and wait loop.

Example:
    >>> policy = RetryPolicy(max_retries=3)
    >>> [round(policy.delay(n, jitter=False), 2) for n in (1, 2, 3)]
    [0.5, 1.0, 2.0]
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from .errors import InputValidationError


@dataclass(frozen=True)
class RetryPolicy:
    """How safe (read) requests are retried on 429/5xx/524/connection errors.

    Submits are never retried, whatever this says.
    """

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None, *, jitter: bool = True) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based); Retry-After wins when larger."""
        delay = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        if jitter:
            delay *= random.uniform(0.8, 1.2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, 300.0))
        return delay


@dataclass(frozen=True)
class PollPolicy:
    """How ``await_job_completion`` polls: exponential backoff with jitter, capped.

    ``max_transient_errors`` is the budget of polls that may fail (after their own retries)
    before the wait gives up; a success resets it.
    """

    initial_interval: float = 1.0
    max_interval: float = 30.0
    factor: float = 1.5
    max_transient_errors: int = 10

    def __post_init__(self) -> None:
        # The one rule every adapter gets: bad values raise, a cap below the first interval is raised to it.
        for name in ("initial_interval", "max_interval", "factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InputValidationError(name, f"must be a positive number of seconds, got {value!r}")
        if self.factor < 1:
            raise InputValidationError("factor", f"must be >= 1 (1 polls at a fixed interval), got {self.factor!r}")
        if isinstance(self.max_transient_errors, bool) or not isinstance(self.max_transient_errors, int) \
                or self.max_transient_errors < 0:
            raise InputValidationError(
                "max_transient_errors", f"must be a whole number >= 0, got {self.max_transient_errors!r}")
        if self.max_interval < self.initial_interval:
            object.__setattr__(self, "max_interval", float(self.initial_interval))

    def to_dict(self) -> dict[str, float]:
        """The policy as plain JSON values (it travels inside a ``JobHandle``)."""
        return {"initial_interval": self.initial_interval, "max_interval": self.max_interval,
                "factor": self.factor, "max_transient_errors": self.max_transient_errors}

    def intervals(self) -> Iterator[float]:
        """Endless sequence of poll intervals."""
        interval = self.initial_interval
        while True:
            yield interval * random.uniform(0.8, 1.2)
            interval = min(self.max_interval, interval * self.factor)


class DeadlineReached(Exception):
    """Raised by the transports when a request runs past its call's deadline (the operation turns it
    into the typed timeout error of what it was doing)."""


class Deadline:
    """An absolute wall-clock deadline (epoch seconds), so it survives process moves (Airflow triggers).

    Example:
        >>> Deadline.after(60).remaining() <= 60
        True
    """

    def __init__(self, at: float | None) -> None:
        self.at = at
        self.started = time.time()

    @classmethod
    def after(cls, timeout: float | None) -> "Deadline":
        """A deadline ``timeout`` seconds from now (None: never)."""
        return cls(None if timeout is None else time.time() + timeout)

    @classmethod
    def of(cls, deadline: "float | datetime | None", timeout: float | None) -> "Deadline":
        """From an absolute deadline (epoch seconds or aware datetime), else from a timeout."""
        if isinstance(deadline, datetime):
            return cls(deadline.timestamp())
        if deadline is not None:
            return cls(float(deadline))
        return cls.after(timeout)

    def remaining(self) -> float:
        """Seconds left (infinite when there is no deadline)."""
        return float("inf") if self.at is None else self.at - time.time()

    def elapsed(self) -> float:
        """Seconds since this deadline object was made."""
        return time.time() - self.started


def poll_policy(initial: float | None = None, maximum: float | None = None,
                transient_errors: int | None = None) -> PollPolicy:
    """The default ``PollPolicy`` with an adapter's overrides; ``None`` keeps the core's default.

    Example:
        >>> poll_policy(maximum=5.0).max_interval
        5.0
    """
    default = PollPolicy()
    return PollPolicy(
        initial_interval=default.initial_interval if initial is None else initial,
        max_interval=default.max_interval if maximum is None else maximum,
        max_transient_errors=default.max_transient_errors if transient_errors is None else transient_errors)
