"""Every Prometheus metric the gateway exports, in one place (GET /metrics).

Names and labels follow jupyter_server and JupyterHub: `http_request_duration_seconds
{method,handler,code}`, label values created up front, buckets chosen per histogram.
The metrics live in a registry of their own (`METRICS`, with the process collector), not
prometheus_client's default one: jupyter_server registers a `http_request_duration_seconds`
there too, and both may be imported in one process (the JupyterLab extension, tests).

The message path pays nothing measurable: messages are counted in plain integers
(`count_message`), and what is a state rather than an event (kernels running, pools,
connections, terminals) is read from the services when /metrics is scraped
(`StateCollector`), not kept up to date on every change.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = CONTENT_TYPE_LATEST
CHANNELS = ("shell", "control", "stdin", "iopub")
KINDS = ("solo", "room", "pool")
SOURCES = ("pool", "cold")
RESTART_REASONS = ("oom", "crash", "timeout", "user")

METRICS = CollectorRegistry()
ProcessCollector(registry=METRICS)
PlatformCollector(registry=METRICS)

KERNEL_START = Histogram(
    "kernelgate_kernel_start_seconds", "From a start request to a kernel answering.",
    ["kernelspec", "source"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
    registry=METRICS,
)
KERNEL_START_FAILURES = Counter(
    "kernelgate_kernel_start_failures_total", "Kernel starts that failed, by error class.",
    ["kernelspec", "reason"],
    registry=METRICS,
)
EXECUTE = Histogram(
    "kernelgate_execute_seconds", "execute_request to execute_reply, as the hub sees them.",
    ["kernelspec"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=METRICS,
)
KERNEL_RESTARTS = Counter(
    "kernelgate_kernel_restarts_total", "Kernel restarts: oom, crash, timeout, user.",
    ["kernelspec", "reason"],
    registry=METRICS,
)
OUTPUT_TRUNCATED = Counter(
    "kernelgate_output_truncated_total", "Executions whose output was cut at max_output.",
    registry=METRICS,
)
DOCKER_API = Histogram(
    "kernelgate_docker_api_seconds", "Docker SDK calls, by operation.", ["op"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=METRICS,
)
STORE = Histogram(
    "kernelgate_store_seconds", "Store (database) calls, by operation.", ["op"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    registry=METRICS,
)
STORAGE_SYNC = Histogram(
    "kernelgate_storage_sync_seconds", "Room workspace syncs that wrote the durable copy, by backend.",
    ["backend"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=METRICS,
)
STORAGE_FAILURES = Counter(
    "kernelgate_storage_failures_total", "Room workspace syncs that failed, by backend.", ["backend"],
    registry=METRICS,
)
EVENT_LOOP_LAG = Gauge(
    "kernelgate_event_loop_lag_seconds", "How late the event loop last ran a timer.",
    registry=METRICS,
)
HTTP_REQUESTS = Histogram(
    "http_request_duration_seconds", "HTTP request duration, by method, handler and code.",
    ["method", "handler", "code"],
    registry=METRICS,
)
LOG_SUPPRESSED = Counter(
    "kernelgate_log_messages_suppressed_total", "Log records dropped by the flood limiter.",
    registry=METRICS,
)

#: (channel, direction) -> messages; direction "in" (to kernels) or "out" (from kernels)
_messages: defaultdict[tuple[str, str], int] = defaultdict(int)


def count_message(channel: str, direction: str) -> None:
    """One message through a hub (a dict increment: no lock, no label lookup)."""
    _messages[(channel, direction)] += 1


def kernel_started(kernelspec: str, source: str, seconds: float) -> None:
    KERNEL_START.labels(kernelspec, source).observe(seconds)


def kernel_start_failed(kernelspec: str, error: BaseException) -> None:
    KERNEL_START_FAILURES.labels(kernelspec, type(error).__name__).inc()


def kernel_restarted(kernelspec: str, reason: str) -> None:
    KERNEL_RESTARTS.labels(kernelspec, reason).inc()


def prepare(kernelspecs: list[str]) -> None:
    """Create the label values known at start-up, so that series exist before events."""
    for name in kernelspecs:
        for source in SOURCES:
            KERNEL_START.labels(name, source)
        EXECUTE.labels(name)
        for reason in RESTART_REASONS:
            KERNEL_RESTARTS.labels(name, reason)
    for backend in ("local", "s3", "database"):
        STORAGE_SYNC.labels(backend)
        STORAGE_FAILURES.labels(backend)
    for channel in CHANNELS:
        for direction in ("in", "out"):
            _messages[(channel, direction)] += 0


class StateCollector:
    """Gauges read from the services at scrape time (registered once per process)."""

    def __init__(self, registry, terminals, rooms) -> None:
        self.registry, self.terminals, self.rooms = registry, terminals, rooms

    def describe(self):
        return []

    def collect(self):
        running = GaugeMetricFamily("kernelgate_kernels_running", "Kernels running.",
                                    labels=["kernelspec", "tier", "kind"])
        counts: defaultdict[tuple, int] = defaultdict(int)
        channels = 0
        for kernel in list(self.registry.kernels.values()):
            counts[(kernel.name, kernel.tier, "room" if kernel.room else "solo")] += 1
            channels += kernel.connections
        ready = GaugeMetricFamily("kernelgate_pool_ready", "Pooled kernels ready.", labels=["kernelspec"])
        for name, pool in self.registry.pools.items():
            for kernel in pool:
                counts[(kernel.name, kernel.tier, "pool")] += 1
            ready.add_metric([name], len(pool))
        for labels, value in counts.items():
            running.add_metric(list(labels), value)
        yield running
        yield ready
        terminals = list(self.terminals.terminals.values())
        yield GaugeMetricFamily("kernelgate_terminals_running", "Terminals open.", value=len(terminals))
        sockets = GaugeMetricFamily("kernelgate_websocket_connections", "WebSockets open.", labels=["kind"])
        sockets.add_metric(["channels"], channels)
        sockets.add_metric(["terminal"], sum(len(t.clients) for t in terminals))
        yield sockets
        rooms = GaugeMetricFamily("kernelgate_rooms", "Rooms known, by state.", labels=["state"])
        states: defaultdict[str, int] = defaultdict(int)
        live = {k.room for k in self.registry.kernels.values() if k.room}
        for room in self.rooms.all():
            if self.rooms.expired(room):
                states["expired"] += 1
            else:
                states["running" if room.id in live else "idle"] += 1
        for state in ("running", "idle", "expired"):
            rooms.add_metric([state], states[state])
        yield rooms
        messages = CounterMetricFamily("kernelgate_messages", "Kernel messages through the hubs.",
                                       labels=["channel", "direction"])
        for (channel, direction), value in list(_messages.items()):
            messages.add_metric([channel, direction], value)
        yield messages


_collector: StateCollector | None = None


def register_state(registry, terminals, rooms) -> None:
    """Export the services' state (the last call's services win: one gateway per process)."""
    global _collector
    if _collector is None:
        _collector = StateCollector(registry, terminals, rooms)
        METRICS.register(_collector)
    else:
        _collector.registry, _collector.terminals, _collector.rooms = registry, terminals, rooms


def exposition() -> bytes:
    """The text format of every metric."""
    return generate_latest(METRICS)


async def watch_event_loop(interval: float = 1.0) -> None:
    """Record how late the loop runs a timer of `interval` seconds, forever."""
    while True:
        start = time.monotonic()
        await asyncio.sleep(interval)
        EVENT_LOOP_LAG.set(max(0.0, time.monotonic() - start - interval))
