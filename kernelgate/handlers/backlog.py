"""Backlog: what a WebSocket's client has not read yet, counted so that it stays bounded.

Tornado keeps what a socket could not send yet in the stream's write buffer, without
limit. A handler asks `admits(size)` before each write and hands the write's future to
`track`; when a write is not admitted, the client is too slow and is disconnected with
CLOSE_TOO_SLOW (the gateway, the kernel and the other clients go on).
"""

from __future__ import annotations

from asyncio import Future

#: Close code for a client that left too much unread (IANA: Try Again Later).
CLOSE_TOO_SLOW = 1013


class Backlog:
    """Bytes written to one stream and not sent yet. A write goes whole when nothing is
    unsent (a replay can be large); beyond that write, at most `limit` bytes more may
    wait (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.unsent = 0
        self._whole = 0

    def admits(self, size: int) -> bool:
        if not self.unsent:
            self._whole = size
            return True
        return not self.limit or self.unsent + size <= self._whole + self.limit

    def track(self, written: Future, size: int) -> None:
        """Count a write until it is sent (a stream sends in order: once this write is
        sent, so is everything before it)."""
        self.unsent += size
        written.add_done_callback(lambda future: self._sent(future, size))

    def _sent(self, future: Future, size: int) -> None:
        if not future.cancelled():
            future.exception()  # a closed stream's error is expected: retrieved, not logged
        self.unsent -= size
