"""A requests-per-minute limit shared by every request of a judge, in any thread or loop.

Requests are spaced at least ``60 / requests_per_minute`` seconds apart (a leaky bucket
without burst): the next free start time is reserved under a lock and the caller sleeps
until it. A server's ``Retry-After`` on 429 pauses every later request too
(:meth:`RequestRateLimiter.pause`), since the server is telling the client, not the request,
to slow down. The state is a timestamp behind a threading lock rather than an asyncio
primitive, so one limiter serves the judge's own event-loop thread and the runner's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time


class RequestRateLimiter:
    """At most ``requests_per_minute`` request starts per minute; None means unlimited."""

    def __init__(self, requests_per_minute: float | None) -> None:
        if requests_per_minute is not None and not requests_per_minute > 0:
            raise ValueError("requests_per_minute must be > 0 (or None for no limit)")
        self.requests_per_minute = requests_per_minute
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
            return start - now

    async def acquire(self) -> float:
        """Wait for this request's slot; returns the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Start no request for ``seconds`` from now."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)
