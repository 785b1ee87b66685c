"""Coalesced status reads: many waits on one ``AsyncSutroClient`` share one ``GET list-jobs`` read.

A wait polls ``job-status/{id}``; 1,000 waits polling every 30 s cost ~33 requests a second, and on this
client almost all of a poll's CPU is the HTTP request itself (~1.5 ms in httpx), not the answer (issue 17).
``list-jobs`` answers every job of the key with its status, so when the client is busy one listing serves
every wait's poll that comes due shortly after it:

- a poll is answered from a listing that was *sent* at most ``min(window, call.batch_max_age)`` seconds
  before the poll began (one in flight is joined). A wait asks for at most a fifth of its last pause
  (``operations.BATCHED_STATUS_AGE``): 6 s at the steady 30 s, 0.2 s after a 1 s pause, 0 for its first
  poll; so a wait wakes at most that much later than its poll policy says, within the policy's own
  jitter (x0.8-1.2). A listing every ~6 s instead of every ~1 s is what brings 1,000 waits under 1% of a
  core (a 1,000-job listing costs ~15-20 ms of client CPU; benchmarks/triggers.py);
- otherwise the poll waits ``collect_s`` for others, then one listing is sent for all of them when the
  client is busy (``min_batch`` jobs polled within the last ``window``, more for a key with many jobs,
  whose listing costs more), else each poll is its own ``job-status`` read, as without batching;
- a job the listing does not show (a paged or capped listing, a job newer than the listing) is read with
  its own ``job-status`` call, and later polls of that job skip the listing;
- every poll keeps its own deadline: it waits for a shared listing only as long as its deadline allows
  (``DeadlineReached`` then, as for its own request), and never holds the listing for others;
- a listing that fails transiently (5xx, 429, a transport error) is the answer of each poll it would have
  served, so each wait retries and counts it against its own transient-error budget exactly as a failed
  ``job-status`` read; any other failure (404/400: a server without ``list-jobs``, a body that is not a
  listing) turns batching off for this client and each poll reads its own status.

One ``StatusBatch`` per client and event loop (``AsyncSutroClient`` makes it on first use).

Example:
    >>> batch = StatusBatch(client)                       # doctest: +SKIP
    >>> response = await batch.read(call)                 # None: send the call itself  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from . import protocol
from .protocol import Call
from .retrying import DeadlineReached

log = logging.getLogger("sutro_core")

#: The most seconds a listing may be older than a poll it answers (each poll asks for less: see above), and
#: the span over which polled jobs are counted to decide whether a listing pays off.
DEFAULT_WINDOW_S = 10.0
#: Seconds a poll waits for others before its read is sent (reads started together share one listing).
DEFAULT_COLLECT_S = 0.01
#: Jobs polled within one window that make a listing worth its cost (below it: one job-status read each).
DEFAULT_MIN_BATCH = 4
#: A listing costs about this fraction of one job-status request per job it holds, client and server
#: together (sutro-local: ~45 us a listed job against ~2.6 ms a request; benchmarks/triggers.py --list-cost):
#: a key with 5,000 jobs needs ~85 jobs polled within the window before a listing pays off.
LISTED_JOB_COST = 1 / 60

_FALLBACK = object()  # a poll's answer: "send your own job-status call"


class StatusBatch:
    """Serves the status polls of one client (see the module docstring).

    Example:
        >>> client = AsyncSutroClient(api_key="k", api_url="http://127.0.0.1:8484")   # doctest: +SKIP
        >>> await asyncio.gather(*(client.wait(h) for h in handles))   # polls share listings  # doctest: +SKIP
    """

    def __init__(
        self,
        send: Callable[[Call[Any]], Awaitable[httpx.Response]],
        *,
        window: float = DEFAULT_WINDOW_S,
        collect_s: float = DEFAULT_COLLECT_S,
        min_batch: int = DEFAULT_MIN_BATCH,
        timeout: float = 60.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._send = send  # sends one call through the client's pool (its slots, no retry)
        self.window = window
        self.collect_s = collect_s
        self.min_batch = min_batch
        self.timeout = timeout
        self.enabled = True
        #: ``list-jobs`` reads sent so far (benchmarks and tests read it).
        self.listings = 0
        self._recent: dict[str, float] = {}  # job -> its latest poll (pruned to the last window)
        self._pending: list[tuple[str, asyncio.Future[Any]]] = []
        self._flush: asyncio.TimerHandle | None = None
        self._sent_at = float("-inf")  # loop time the latest listing was sent
        self._inflight: asyncio.Future[Any] | None = None  # the latest listing: statuses, or its failure
        self._listed = 0  # jobs in the latest listing
        self._missed: dict[str, float] = {}  # job -> send time of the first listing that did not show it
        self._unlisted: set[str] = set()  # jobs listings do not show: read on their own
        self._tasks: set[asyncio.Task[Any]] = set()

    async def read(self, call: Call[Any]) -> "httpx.Response | _ListedStatus | None":
        """The answer to a status poll, or None: send ``call`` on its own (as without batching).

        Raises ``DeadlineReached`` when the call's deadline passes while it waits for a shared listing,
        and the listing's transport error when that failed.
        """
        job_id = call.batch_job_id
        if not self.enabled or job_id is None or job_id in self._unlisted:
            return None
        now = self.loop.time()
        self._recent[job_id] = now
        if self._inflight is not None and self._sent_at >= now - min(self.window, call.batch_max_age):
            listing = self._inflight  # fresh enough for this poll: in flight, or answered a moment ago
        else:
            listing = self._join_pending(job_id)
        answer = listing.result() if listing.done() else await self._wait(listing, call)
        if answer is _FALLBACK:
            return None
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, httpx.Response):  # the listing failed transiently: this poll's failure
            return answer
        statuses, request, sent_at = answer
        status = statuses.get(job_id)
        if status is None:
            self._missing(job_id, sent_at)
            return None
        if self._missed:
            self._missed.pop(job_id, None)  # it was only newer than an earlier listing
        return _status_response(job_id, status, request)

    def _missing(self, job_id: str, sent_at: float) -> None:
        """A listing did not show the job. Once may mean it is newer than the listing; missing again from a
        listing sent after that means the listing never shows it (paged or capped): read it on its own."""
        first = self._missed.get(job_id)
        if first is None:
            self._missed[job_id] = sent_at
        elif sent_at > first:
            del self._missed[job_id]
            self._unlisted.add(job_id)

    def _join_pending(self, job_id: str) -> asyncio.Future[Any]:
        """A future for this poll's share of the next listing (or the fallback); schedules the flush."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending.append((job_id, fut))
        if self._flush is None:
            self._flush = self.loop.call_later(self.collect_s, self._start)
        return fut

    async def _wait(self, listing: asyncio.Future[Any], call: Call[Any]) -> Any:
        """Await the listing within the call's own deadline; never cancels the listing for the others."""
        left = call.seconds_left()
        if left is None:
            return await asyncio.shield(listing)
        try:
            async with asyncio.timeout(left):
                return await asyncio.shield(listing)
        except TimeoutError as exc:
            raise DeadlineReached(f"{call.method} {call.path}: past the deadline (waiting for list-jobs)") from exc

    def _worth_a_listing(self, polls: int) -> bool:
        return polls >= max(self.min_batch, self._listed * LISTED_JOB_COST)

    def _start(self) -> None:
        """End of the collection: one listing for every pending poll, or each on its own."""
        self._flush = None
        pending, self._pending = self._pending, []
        since = self.loop.time() - self.window
        for job_id in [j for j, at in self._recent.items() if at < since]:
            del self._recent[job_id]
        # Jobs polled within the last window: about how many polls a listing sent now will answer.
        if not self.enabled or not self._worth_a_listing(len(self._recent)):
            for _, fut in pending:
                if not fut.done():
                    fut.set_result(_FALLBACK)
            return
        listing: asyncio.Future[Any] = self.loop.create_future()
        self._inflight, self._sent_at = listing, self.loop.time()
        for _, fut in pending:
            _chain(listing, fut)
        task = self.loop.create_task(self._list(listing, self._sent_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _list(self, listing: asyncio.Future[Any], sent_at: float) -> None:
        self.listings += 1
        call = protocol.list_jobs_call()
        call = Call(call.method, call.path, _statuses, timeout=self.timeout)
        try:
            response = await self._send(call)
            if response.is_success:
                statuses = _statuses(response)
                self._listed = len(statuses)
                _settle(listing, (statuses, response.request, sent_at))
                return
            error = protocol.error_from_response(response)
            if protocol.is_transient(error):
                self._fail(listing, response)  # each poll's send retries it, counting it as one failed poll
                return
            self._disable(f"HTTP {response.status_code} {error}")
        except httpx.TransportError as exc:
            self._fail(listing, exc)
            return
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a 200 that is not a listing
            self._disable(f"its answer is not a listing ({exc!r})")
        except BaseException as exc:  # cancelled (client closed) or unexpected: the polls read on their own
            self._fail(listing, _FALLBACK)
            if not isinstance(exc, Exception):
                raise
            log.warning("list-jobs for batched status polls failed unexpectedly (%r); polling one by one", exc)
            return
        self._fail(listing, _FALLBACK)

    def _fail(self, listing: asyncio.Future[Any], outcome: Any) -> None:
        """Answer the listing's polls with ``outcome``; later polls (a retry is one) start a new listing."""
        if self._inflight is listing:
            self._inflight = None
        _settle(listing, outcome)

    def _disable(self, why: str) -> None:
        if self.enabled:
            log.warning("list-jobs cannot serve batched status polls (%s); polling each job on its own", why)
        self.enabled = False

    def close(self) -> None:
        """Cancel a listing in flight and answer every pending poll with the fallback."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for _, fut in self._pending:
            if not fut.done():
                fut.set_result(_FALLBACK)
        self._pending = []
        for task in list(self._tasks):
            task.cancel()


def _statuses(response: httpx.Response) -> dict[str, str]:
    """``{job_id: status}`` from a ``list-jobs`` body, without building a ``Job`` per entry (1,000 of
    them cost ~10 ms in pydantic; a poll needs only the status)."""
    jobs = json.loads(response.content)["jobs"]
    if not isinstance(jobs, list):
        raise TypeError(f"'jobs' is a {type(jobs).__name__}")
    out: dict[str, str] = {}
    for job in jobs:
        job_id, status = job.get("job_id"), job.get("status")
        if isinstance(job_id, str) and isinstance(status, str):
            out[job_id] = status
    return out


class _ListedStatus:
    """The ``job-status`` answer a poll would have got, as much of an ``httpx.Response`` as the poll's
    operation reads (``is_success``, ``json()``): building a real response and parsing its JSON back cost
    about a third of a batched poll's CPU."""

    __slots__ = ("_body", "request")
    status_code = 200
    is_success = True

    def __init__(self, job_id: str, status: str, request: httpx.Request) -> None:
        self._body = {"job_status": {job_id: status}}
        self.request = request

    def json(self) -> dict[str, Any]:
        return self._body


def _status_response(job_id: str, status: str, request: httpx.Request) -> _ListedStatus:
    return _ListedStatus(job_id, status, request)


def _settle(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _chain(listing: asyncio.Future[Any], fut: asyncio.Future[Any]) -> None:
    """``fut`` (one pending poll) gets the listing's outcome; a poll that gave up is skipped."""

    def copy(done: asyncio.Future[Any]) -> None:
        if not fut.done():
            fut.set_result(done.result())

    listing.add_done_callback(copy)
