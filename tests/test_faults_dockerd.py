"""dockerd restarted under traffic (issue 20), on a private dockerd (tests/dockerd.py):
the host's engine, where others' containers run, is never touched.

dockerd's SIGTERM stops every container (no live-restore), so every kernel's sandbox
dies with it. What the user sees is stated in the test's docstring."""

from __future__ import annotations

import asyncio
import time

import pytest

from kernelgate.engine import KERNEL_LABEL
from kernelgate.images import ImageBuilder
from tests.ci import require
from tests.dockerd import PrivateDockerd
from tests.test_faults import ANSWER_BOUND, answered, kernel_state, wait_for
from tests.test_workspace import in_thread, open_terminal


@pytest.fixture(scope="module")
def private_engine(docker_engine):
    """A private dockerd holding the python image; no container left in it afterwards."""
    daemon = PrivateDockerd("kg-faults")
    try:
        daemon.start()
    except RuntimeError as e:
        require(str(e))
    try:
        daemon.load_images(ImageBuilder().reference("python"))
        yield daemon
        if daemon.process is None:
            daemon.start()  # a test that failed with it down
        left = daemon.remove_containers()
        assert not left, f"containers left in the private engine: {left}"
    finally:
        daemon.stop()


async def test_dockerd_restarted_under_traffic(private_engine, start_gateway):
    """dockerd stops (SIGTERM) while a solo kernel and a room kernel run, a terminal is
    open and a cell runs. While it is down, the gateway answers at once: kernel starts
    are a JSON 503 naming the engine, /api/ready is 503, the room's files (served by
    its sandbox) a JSON 503 with Retry-After, nothing answers 500 or hangs; kernels are
    `restarting`, their clients told the engine does not answer. Once dockerd is back, every
    kernel is revived under its own id in a new container (its variables gone, as
    after a restart; clients were told "The kernel died"); the room's files, written by
    the kernel and by the API, are all there; the old terminal has ended and a new one
    works; new kernels start."""
    gateway = start_gateway("--kernels=docker", f"--DockerEngine.docker_url={private_engine.url}",
                            "--HealthCheck.cache_seconds=0")
    client = gateway.client()
    engine = private_engine.client()
    solo = (await answered(client, "POST", "/api/kernels", {"name": "python3"})).body["id"]
    room = (await answered(client, "POST", "/api/rooms", {"name": "dockerd", "languages": ["python3"]})).body
    room_id, kernel = room["id"], room["kernels"][0]["id"]
    ws = await client.connect(kernel)
    assert (await ws.execute("x = 1; open('/workspace/by-kernel.txt', 'w').write('kernel')")).status == "ok"
    put = await answered(client, "PUT", f"/api/rooms/{room_id}/contents/by-api.txt",
                         {"type": "file", "format": "text", "content": "api"})
    assert put.status in (200, 201), put.body
    old_terminal, old_shell = await open_terminal(gateway, client, kernel)
    old_shell.type("echo before-$((1+1))\r")
    await in_thread(old_shell.expect, "before-2")
    solo_ws = await client.connect(solo)
    assert (await solo_ws.execute("y = 2")).status == "ok"
    await ws.send("shell", "execute_request", {"code": "import time; time.sleep(600)", "silent": False})
    await wait_for(lambda: kernel_state(client, kernel, "busy"), "the cell runs")
    before = {k: [c.id for c in engine.containers.list(filters={"label": f"{KERNEL_LABEL}={k}"})]
              for k in (solo, kernel)}

    await asyncio.to_thread(private_engine.halt)
    began = time.monotonic()
    refused = await answered(client, "POST", "/api/kernels", {"name": "python3"})
    assert refused.status == 503 and "engine" in refused.body["message"].lower(), refused.body
    ready = await asyncio.wait_for(client.request("GET", "/api/ready", timeout=ANSWER_BOUND), ANSWER_BOUND + 5)
    assert ready.status == 503 and "docker" in ready.body["checks"], ready.body
    await wait_for(lambda: kernel_state(client, kernel, "restarting"), "the room kernel's death is seen")
    read = await answered(client, "GET", f"/api/rooms/{room_id}/contents/by-api.txt")
    assert read.status == 503 and "engine" in read.body["message"], read.body  # served by its sandbox
    assert int(read.headers["Retry-After"]) > 0
    for _ in range(5):  # the supervisor's rounds meanwhile: every answer still bounded, no 500
        for path in ("/api/kernels", f"/api/kernels/{solo}", f"/api/kernels/{kernel}", f"/api/rooms/{room_id}"):
            await answered(client, "GET", path)
        await asyncio.sleep(1)
    assert time.monotonic() - began < 4 * ANSWER_BOUND

    await asyncio.to_thread(private_engine.start)
    told = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while "The kernel died" not in told:
        msg = await ws.recv(max(0.1, deadline - loop.time()))
        if msg["header"]["msg_type"] == "stream":
            told += msg["content"]["text"]
    for k in (solo, kernel):
        await wait_for(lambda: kernel_state(client, k, "idle"), f"kernel {k} answers again", tries=240)
        now = [c.id for c in engine.containers.list(filters={"label": f"{KERNEL_LABEL}={k}"})]
        assert len(now) == 1 and now != before[k], (before[k], now)
    run = await ws.execute("print(open('/workspace/by-kernel.txt').read(), open('/workspace/by-api.txt').read(), "
                           "'x' in globals())", timeout=ANSWER_BOUND)
    assert run.stdout == "kernel api False\n", run.reply
    assert (await solo_ws.execute("print('y' in globals())", timeout=ANSWER_BOUND)).stdout == "False\n"
    ws.close()
    solo_ws.close()
    old_shell.close()
    assert (await answered(client, "GET", f"/api/terminals/{old_terminal}")).status == 404
    _, shell = await open_terminal(gateway, client, kernel)
    shell.type("cat /workspace/by-api.txt; echo; echo after-$((2+2))\r")
    await in_thread(shell.expect, "after-4")
    shell.close()
    ready = await asyncio.wait_for(client.request("GET", "/api/ready", timeout=ANSWER_BOUND), ANSWER_BOUND + 5)
    assert ready.body["checks"]["docker"] == "ok", ready.body  # (503 only for the images it lacks)
    fresh = await answered(client, "POST", "/api/kernels", {"name": "python3"})
    assert fresh.status == 201, fresh.body
    for k in (solo, fresh.body["id"]):
        assert (await answered(client, "DELETE", f"/api/kernels/{k}")).status == 204
    assert (await answered(client, "DELETE", f"/api/rooms/{room_id}")).status == 204
    engine.close()
