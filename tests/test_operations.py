"""Operations: readiness (/api/ready) and the graceful drain on SIGTERM, on real Docker kernels."""

from __future__ import annotations

import asyncio
import signal

import docker

from kernelgate.engine import GATEWAY_LABEL, KERNEL_LABEL


async def test_ready_reports_backends_and_images(start_gateway, docker_engine):
    gateway = start_gateway("--kernels=docker")
    ready = await gateway.client().request("GET", "/api/ready")
    assert ready.status == 200, ready.body
    assert ready.body["status"] == "ok"
    assert ready.body["checks"]["images"] == "ok" and ready.body["checks"]["docker"] == "ok"
    health = await gateway.client().request("GET", "/api/health")
    assert health.status == 200 and "images" not in health.body["checks"]


async def test_ready_is_503_while_an_image_is_missing(start_gateway, docker_engine, tmp_path):
    """A gateway whose image repository holds none of its images is alive, not ready."""
    gateway = start_gateway("--kernels=docker", "--ImageBuilder.repository=kernelgate-test-none")
    ready = await gateway.client().request("GET", "/api/ready")
    assert ready.status == 503, ready.body
    assert ready.body["checks"]["images"].startswith("unavailable: not built: ")  # dev user: admin
    assert (await gateway.client().request("GET", "/api/health")).status == 200


async def test_sigterm_drains(start_gateway, docker_engine):
    """SIGTERM: new kernels get 503 with Retry-After, /api/ready 503, the execution in
    flight ends with its output, the room container stays for re-adoption, exit 0."""
    gateway = start_gateway("--kernels=docker", "--ServeApp.drain_timeout=60")
    client = gateway.client()
    room = await client.request("POST", "/api/rooms", {"name": "drain", "languages": ["python3"]})
    assert room.status == 201, room.body
    room_kernel = room.body["kernels"][0]["id"]
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    msg_id = await ws.send("shell", "execute_request", {
        "code": "import time; time.sleep(6); print('finished')", "silent": False})
    await asyncio.sleep(1.5)  # the execution runs
    gateway.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(1)
    refused = await client.request("POST", "/api/kernels", {"name": "python3"})
    assert refused.status == 503, refused.body
    assert int(refused.headers["Retry-After"]) > 0 and refused.body["reason"]
    ready = await client.request("GET", "/api/ready")
    assert ready.status == 503 and ready.body["status"] == "draining"
    run = await ws.collect(msg_id, timeout=60)
    assert run.status == "ok" and run.stdout == "finished\n"
    ws.close()
    assert await asyncio.to_thread(gateway.proc.wait, 60) == 0
    engine = docker.from_env(timeout=30)
    left = engine.containers.list(filters={"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"})
    assert [c.labels.get(KERNEL_LABEL) for c in left] == [room_kernel]
    assert "Drain timed out" not in gateway.log()
