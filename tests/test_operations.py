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


async def test_a_drain_that_times_out_still_exits_and_the_room_is_readopted(start_gateway, docker_engine):
    """SIGTERM with an execution longer than drain_timeout: the gateway gives up after
    drain_timeout, says so, exits 0, and leaves the room's container; the next gateway
    re-adopts it, with its workspace and its kernel's state."""
    gateway = start_gateway("--kernels=docker", "--ServeApp.drain_timeout=2")
    client = gateway.client()
    room = await client.request("POST", "/api/rooms", {"name": "slow", "languages": ["python3"]})
    assert room.status == 201, room.body
    kernel = room.body["kernels"][0]["id"]
    ws = await client.connect(kernel)
    assert (await ws.execute("kept = 41; open('/workspace/a.txt', 'w').write('saved')")).status == "ok"
    await ws.send("shell", "execute_request", {"code": "import time; time.sleep(600)", "silent": False})
    await asyncio.sleep(1)
    gateway.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(gateway.proc.wait, 60) == 0
    assert "Drain timed out with 1 execution(s) still running" in gateway.log()
    ws.close()
    engine = docker.from_env(timeout=30)
    left = engine.containers.list(filters={"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"})
    assert [c.labels.get(KERNEL_LABEL) for c in left] == [kernel]

    again = start_gateway("--kernels=docker", like=gateway)
    client = again.client()
    models = (await client.request("GET", f"/api/rooms/{room.body['id']}/kernels")).body
    assert [(k["id"], k["execution_state"]) for k in models] == [(kernel, "busy")]  # the sleep still runs
    ws = await client.connect(kernel)
    assert (await client.request("POST", f"/api/kernels/{kernel}/interrupt")).status == 204
    for _ in range(120):  # the interrupted execution's end, seen on iopub, makes it idle
        model = (await client.request("GET", f"/api/kernels/{kernel}")).body
        if model["execution_state"] == "idle":
            break
        await asyncio.sleep(0.5)
    assert model["execution_state"] == "idle", model
    run = await ws.execute("print(kept + 1, open('/workspace/a.txt').read())", timeout=60)
    assert run.stdout == "42 saved\n", run.reply
    assert [c.id for c in engine.containers.list(
        filters={"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"})] == [left[0].id]
    ws.close()
