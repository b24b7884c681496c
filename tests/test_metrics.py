"""Operations: GET /metrics during real kernel work, who may scrape it, JSON logs and
request ids, and a log that a flooding kernel cannot blow up."""

from __future__ import annotations

import asyncio
import json
import logging
import re

from kernelgate.engine import KERNEL_LABEL
from kernelgate.jwt_auth import mint
from kernelgate.logs import FloodFilter

SECRET = "metrics-test-secret-" + "x" * 32
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """The samples of a Prometheus text exposition: (name, labels) -> value."""
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


async def scrape(client) -> dict:
    response = await client.request("GET", "/metrics")
    assert response.status == 200, response.body
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(response.body.decode() if isinstance(response.body, bytes) else str(response.body))


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_move_with_kernel_work(start_gateway, docker_engine, tmp_path):
    config = tmp_path / "config.py"
    config.write_text('c.KernelRegistry.pool_sizes = {"python3": 1}\nc.KernelRegistry.pool_retry = 1\n'
                      'c.KernelRegistry.allowed_client_env = ["KERNEL_PURPOSE"]\n')  # passing it: cold
    gateway = start_gateway("--kernels=docker", f"--config={config}")
    client = gateway.client()
    solo = {"kernelspec": "python3", "tier": "low", "kind": "solo"}
    for _ in range(120):  # the pool fills in the background
        before = await scrape(client)
        if value(before, "kernelgate_pool_ready", kernelspec="python3") == 1:
            break
        await asyncio.sleep(0.5)
    assert value(before, "kernelgate_kernels_running", **solo) == 0
    assert value(before, "kernelgate_kernels_running", kernelspec="python3", tier="low", kind="pool") == 1
    assert value(before, "kernelgate_execute_seconds_count", kernelspec="python3") == 0

    pooled = await client.start_kernel()  # no client variables: from the pool
    cold = await client.start_kernel(env={"KERNEL_PURPOSE": "cold"})
    ws = await client.connect(cold["id"])
    for i in range(5):
        assert (await ws.execute(f"{i} + 1")).status == "ok"
    during = await scrape(client)
    assert value(during, "kernelgate_kernels_running", **solo) == 2
    assert value(during, "kernelgate_kernel_start_seconds_count", kernelspec="python3", source="pool") == 1
    assert value(during, "kernelgate_kernel_start_seconds_count", kernelspec="python3", source="cold") == 1
    assert value(during, "kernelgate_execute_seconds_count", kernelspec="python3") == 5
    assert value(during, "kernelgate_websocket_connections", kind="channels") == 1
    assert value(during, "kernelgate_messages_total", channel="shell", direction="in") >= 5
    assert value(during, "kernelgate_messages_total", channel="iopub", direction="out") >= 10
    assert value(during, "kernelgate_docker_api_seconds_count", op="run") >= 2
    assert value(during, "http_request_duration_seconds_count",
                 method="POST", handler="KernelsHandler", code="201") == 2
    assert ("process_resident_memory_bytes", frozenset()) in during

    restart = await client.request("POST", f"/api/kernels/{cold['id']}/restart")
    assert restart.status == 200, restart.body
    ws.close()
    for kernel in (pooled, cold):
        assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204
    after = await scrape(client)
    assert value(after, "kernelgate_kernels_running", **solo) == 0
    assert value(after, "kernelgate_kernel_restarts_total", kernelspec="python3", reason="user") == 1
    assert value(after, "kernelgate_execute_seconds_count", kernelspec="python3") == 5


async def test_metrics_for_admins_or_the_scrape_token(start_gateway):
    gateway = start_gateway("--kernels=local", f"--jwt-secret={SECRET}", "--metrics-token=scrape-me")
    anonymous = gateway.client()
    user = gateway.client(mint(SECRET, "alice"))
    admin = gateway.client(mint(SECRET, "root", extra={"roles": ["admin"]}))
    assert (await anonymous.request("GET", "/metrics")).status == 403
    assert (await user.request("GET", "/metrics")).status == 403
    assert (await gateway.client("scrape-me-not").request("GET", "/metrics")).status == 403
    assert (await admin.request("GET", "/metrics")).status == 200
    assert (await gateway.client("scrape-me").request("GET", "/metrics")).status == 200
    refused = await anonymous.request("GET", "/metrics")
    assert refused.body["reason"] and refused.body["message"]


async def test_json_logs_with_request_ids(start_gateway):
    gateway = start_gateway("--kernels=local", f"--jwt-secret={SECRET}", "--log-format=json",
                            "--log-level=INFO")
    token = mint(SECRET, "alice")
    client = gateway.client(token)
    echoed = await client.request("GET", "/api/kernels", headers={"X-Request-Id": "trace-42"})
    assert echoed.headers["X-Request-Id"] == "trace-42"
    made = await client.request("GET", "/api/kernels", headers={"X-Request-Id": "not <an> id " * 10})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-Id"])
    await gateway.client().request("GET", f"/api/kernels?token={token}")  # a token in the URL
    missing = "0d2c1e4a-0000-4000-8000-000000000000"
    assert (await client.request("GET", f"/api/kernels/{missing}")).status == 404
    await asyncio.sleep(0.5)
    lines = [line for line in gateway.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "event"} <= set(e) for e in entries)
    access = [e for e in entries if e.get("request_id") == "trace-42"]
    assert access and access[0]["status"] == 200 and access[0]["user"] == "alice"
    assert any(e.get("request_id") == made.headers["X-Request-Id"] for e in entries)
    assert any(e.get("kernel") == missing and e.get("status") == 404 for e in entries)
    assert token not in gateway.log()


async def test_a_flooding_kernel_cannot_flood_the_log(start_gateway, docker_engine):
    """The kernel sends 20000 malformed iopub messages, each one a warning of the hub:
    the gateway logs a bounded number of them and says how many it suppressed."""
    gateway = start_gateway("--kernels=docker")
    client = gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    run = await ws.execute(
        "sock = get_ipython().kernel.iopub_socket\n"
        "for i in range(20000):\n"
        "    sock.send_multipart([b'malformed'])\n"
        "import time; time.sleep(2)\n", timeout=120)
    assert run.status == "ok", run.reply
    await asyncio.sleep(3)
    warnings = [line for line in gateway.log().splitlines() if "dropped a malformed iopub" in line]
    assert 1 <= len(warnings) <= 200, len(warnings)
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
    await asyncio.sleep(1)
    later = await scrape(client)
    assert value(later, "kernelgate_log_messages_suppressed_total") > 10000


def test_long_records_are_cut():
    """A kernel-controlled string of 10 MB in a record becomes max_length characters."""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(FloodFilter(max_length=1000, rate=1, burst=3))
    logger = logging.getLogger("kernelgate.test-flood")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(10):
            logger.warning("Kernel said: %s", "x" * 10_000_000)
    finally:
        logger.removeHandler(handler)
    assert len(records) == 3
    assert all(len(r) < 1100 for r in records)
    assert "characters cut" in records[0]


async def test_room_metrics_and_storage_syncs(start_gateway, docker_engine):
    gateway = start_gateway("--kernels=docker", "--RoomStorage.sync_interval=1")
    client = gateway.client()
    room = await client.request("POST", "/api/rooms", {"name": "metrics", "languages": ["python3"]})
    assert room.status == 201, room.body
    ws = await client.connect(room.body["kernels"][0]["id"])
    assert (await ws.execute("open('/workspace/a.txt', 'w').write('x' * 1000)")).status == "ok"
    ws.close()
    for _ in range(60):
        samples = await scrape(client)
        if value(samples, "kernelgate_storage_sync_seconds_count", backend="local") >= 1:
            break
        await asyncio.sleep(0.5)
    assert value(samples, "kernelgate_storage_sync_seconds_count", backend="local") >= 1
    assert value(samples, "kernelgate_storage_failures_total", backend="local") == 0
    assert value(samples, "kernelgate_rooms", state="running") == 1
    assert value(samples, "kernelgate_kernels_running", kernelspec="python3", tier="low", kind="room") == 1
    assert (await client.request("DELETE", f"/api/rooms/{room.body['id']}")).status == 204

    short = await client.request("POST", "/api/rooms", {"name": "short", "languages": ["bash"], "expires_in": 2})
    assert short.status == 201, short.body
    for _ in range(60):
        if (await client.request("GET", f"/api/rooms/{short.body['id']}")).body["state"] == "expired":
            break
        await asyncio.sleep(0.5)
    samples = await scrape(client)
    assert value(samples, "kernelgate_rooms", state="expired") == 1
    assert value(samples, "kernelgate_rooms", state="running") == 0


async def test_cuts_crashes_and_failed_starts_are_counted(start_gateway, docker_engine):
    gateway = start_gateway("--kernels=docker", "--KernelRegistry.max_output=1000")
    client = gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    assert (await ws.execute("print('x' * 5000)")).status == "ok"
    assert value(await scrape(client), "kernelgate_output_truncated_total") == 1
    await ws.send("shell", "execute_request", {"code": "import os; os._exit(3)", "silent": False})
    for _ in range(120):
        samples = await scrape(client)
        if value(samples, "kernelgate_kernel_restarts_total", kernelspec="python3", reason="crash"):
            break
        await asyncio.sleep(0.5)
    assert value(samples, "kernelgate_kernel_restarts_total", kernelspec="python3", reason="crash") == 1
    assert value(samples, "kernelgate_kernel_restarts_total", kernelspec="python3", reason="user") == 0
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")

    broken = start_gateway("--kernels=docker", "--ImageBuilder.repository=kernelgate-test-none")
    assert (await broken.client().request("POST", "/api/kernels", {"name": "python3"})).status == 503
    samples = await scrape(broken.client())
    assert value(samples, "kernelgate_kernel_start_failures_total", kernelspec="python3", reason="ImageMissing") == 1
    assert value(samples, "kernelgate_kernel_start_seconds_count", kernelspec="python3", source="cold") == 0


async def wait_for_sample(client, name: str, **labels) -> dict:
    for _ in range(240):
        samples = await scrape(client)
        if value(samples, name, **labels):
            return samples
        await asyncio.sleep(0.5)
    return samples


async def test_timeout_and_out_of_memory_restarts_are_counted_by_reason(start_gateway, docker_engine, tmp_path):
    config = tmp_path / "config.py"
    config.write_text(
        "MiB = 1024 * 1024\n"
        "c.Tiers.tiers = {name: {'memory': 256 * MiB, 'cpus': 0.5, 'pids': 128, 'exec_timeout': 3,\n"
        "                        'idle_timeout': 600, 'tmp_size': 64 * MiB}\n"
        "                 for name in ('low', 'medium', 'high')}\n"
        "c.KernelRegistry.timeout_grace = 2\n")
    client = start_gateway("--kernels=docker", f"--config={config}").client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    # a cell that ignores the interrupt after its tier's exec_timeout: the kernel restarts
    await ws.send("shell", "execute_request", {
        "code": "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
        "silent": False})
    samples = await wait_for_sample(client, "kernelgate_kernel_restarts_total", kernelspec="python3", reason="timeout")
    assert value(samples, "kernelgate_kernel_restarts_total", kernelspec="python3", reason="timeout") == 1
    ws.close()
    for _ in range(120):
        if (await client.request("GET", f"/api/kernels/{kernel['id']}")).body["execution_state"] == "idle":
            break
        await asyncio.sleep(0.5)
    # a cell that fills the tier's memory: the container is OOM-killed and revived
    ws = await client.connect(kernel["id"])
    await ws.send("shell", "execute_request", {
        "code": "chunks = []\nwhile True: chunks.append(b'x' * (16 << 20))", "silent": False})
    samples = await wait_for_sample(client, "kernelgate_kernel_restarts_total", kernelspec="python3", reason="oom")
    assert value(samples, "kernelgate_kernel_restarts_total", kernelspec="python3", reason="oom") == 1
    assert value(samples, "kernelgate_kernel_restarts_total", kernelspec="python3", reason="crash") == 0
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_background_log_records_name_their_kernel_and_room(start_gateway, docker_engine):
    """Records of the supervisor (no request behind them) carry the kernel and the room."""
    gateway = start_gateway("--kernels=docker", "--log-format=json", "--log-level=INFO",
                            "--KernelRegistry.check_interval=0.5")
    client = gateway.client()
    room = await client.request("POST", "/api/rooms", {"name": "logged", "languages": ["python3"]})
    assert room.status == 201, room.body
    kernel = room.body["kernels"][0]["id"]
    container = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kernel}"})[0]
    container.kill()
    died = []
    for _ in range(120):
        entries = [json.loads(line) for line in gateway.log().splitlines() if line.strip()]
        died = [e for e in entries if "died" in e["event"] and kernel in e["event"]]
        if died:
            break
        await asyncio.sleep(0.5)
    assert died and died[0]["kernel"] == kernel and died[0]["room"] == room.body["id"], died
    assert "request_id" not in died[0]
