"""When to try an HTTP call again, and how long to wait first.

Retried: 429 (waiting what ``Retry-After``/``retry-after-ms`` asks, capped), 408, 409, every
5xx, timeouts and connection failures. Not retried: other 4xx (a bad request or a wrong key
does not get better). Without ``Retry-After`` the wait is exponential backoff with full
jitter, ``uniform(0, min(max_backoff_s, base_s · 2^k))`` for the k-th retry (k = 0, 1, …),
which spreads a burst of clients instead of synchronising them.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    """429, 408, 409 and every 5xx."""
    return status in RETRYABLE_STATUS or 500 <= status <= 599


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Returns None when neither header is present or usable; never negative.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    Parameters
    ----------
    max_attempts : int
        Attempts in all (1 = never retry).
    base_s, max_backoff_s : float
        Backoff of the k-th retry is drawn from ``uniform(0, min(max_backoff_s, base_s·2^k))``.
    max_retry_after_s : float
        A server's ``Retry-After`` is honoured up to this many seconds.
    """

    max_attempts: int = 6
    base_s: float = 1.0
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.max_backoff_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("backoff and Retry-After limits must be ≥ 0")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        return rng.uniform(0.0, min(self.max_backoff_s, self.base_s * 2.0**retry))
