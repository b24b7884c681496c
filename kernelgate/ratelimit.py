"""Execution rate limits: how many execute requests a user may send (abuse checklist row 20).

One token bucket per user, shared by all of that user's sockets and kernels, so opening
more connections does not raise the limit. A request over the limit never reaches the
kernel: the channels handler answers it with an error naming when to retry. Buckets of
users who stopped sending are forgotten, so memory is bounded by the active users.
"""

from __future__ import annotations

import time

from traitlets import Int
from traitlets.config import Configurable


class ExecuteRateLimit(Configurable):
    """Per-user token buckets for execute requests (time from time.monotonic)."""

    per_minute = Int(
        600, config=True,
        help="Execute requests one user may send per minute, over all their kernels and "
        "connections (0: no limit; --no-auth sets 0). A request beyond it gets an "
        "execute_reply with status error and ename RateLimited, saying when to retry.",
    )
    burst = Int(
        60, config=True,
        help="Execute requests one user may send at once before per_minute applies.",
    )
    max_users = Int(
        100_000, config=True,
        help="Most users tracked at once; beyond it the least recently seen are forgotten "
        "(they start again with a full burst).",
    )

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at); oldest first

    def take(self, user: str, now: float | None = None) -> float:
        """Spend one request of `user`'s: 0 if allowed, else the seconds until one is."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        capacity = float(max(1, self.burst))
        tokens, at = self._buckets.pop(user, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        self._buckets[user] = (tokens, now)  # re-inserted: the dict stays oldest first
        while len(self._buckets) > self.max_users:
            del self._buckets[next(iter(self._buckets))]
        return wait
