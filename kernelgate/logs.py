"""The gateway's log: plain text or one JSON object per line, bounded against floods.

Much of what the gateway logs comes from kernels, agents and clients (error texts,
names, reasons): code in a sandbox can make a log line as long and as frequent as it
likes. `FloodFilter` bounds both: every record is cut to `max_length` characters, and
each message template (logger + format string) may log `burst` records at once and
`rate` per second after; what it drops is counted and reported on the template's next
record ("N similar messages suppressed").
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import time
from datetime import datetime, timezone

#: The request being served, for log records (set by the handlers).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="")
kernel: contextvars.ContextVar[str] = contextvars.ContextVar("kernel", default="")
room: contextvars.ContextVar[str] = contextvars.ContextVar("room", default="")


def background(coroutine) -> "asyncio.Task":
    """A task for background work, outside the request that happens to start it: its log
    records carry no request id, user, kernel or room unless they name them (`extra`)."""
    return asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())


#: Templates whose buckets are kept at most (older ones are forgotten first).
_MAX_TEMPLATES = 4096


class FloodFilter(logging.Filter):
    """Cuts each record to `max_length` characters and rate-limits each template."""

    def __init__(self, max_length: int = 2000, rate: float = 5.0, burst: int = 50) -> None:
        super().__init__()
        self.max_length, self.rate, self.burst = max_length, rate, burst
        self._buckets: dict[tuple, list] = {}  # template -> [tokens, last time, suppressed]
        self._lock = threading.Lock()  # records come from worker threads too

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _MAX_TEMPLATES:
                    self._buckets.pop(next(iter(self._buckets)))
                bucket = self._buckets[key] = [float(self.burst), now, 0]
            bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if bucket[0] < 1:
                bucket[2] += 1
                from kernelgate.metrics import LOG_SUPPRESSED
                LOG_SUPPRESSED.inc()
                return False
            bucket[0] -= 1
            suppressed, bucket[2] = bucket[2], 0
        message = record.getMessage()
        if len(message) > self.max_length:
            message = f"{message[:self.max_length]}... [{len(message) - self.max_length} characters cut]"
        if suppressed:
            message += f" ({suppressed} similar messages suppressed)"
        record.msg, record.args = message, None
        if record.exc_text and len(record.exc_text) > 4 * self.max_length:
            record.exc_text = record.exc_text[-4 * self.max_length:]
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, and request_id, user,
    kernel, room when known (a record's `extra` or the request's context)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name, var in (("request_id", request_id), ("user", user), ("kernel", kernel), ("room", room)):
            value = getattr(record, name, None) or var.get()
            if value:
                entry[name] = value
        for name in ("status", "method", "path", "duration_ms"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(app_log: logging.Logger, style: str, flood: FloodFilter) -> None:
    """Route every logger through the application's handlers, filtered by `flood` and
    formatted as `style` ("text" keeps the application's format, "json")."""
    handlers = list(app_log.handlers)
    for handler in handlers:
        handler.addFilter(flood)
        if style == "json":
            handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
