"""Faults, with real components: what a user sees, and that nothing saved is lost
(issue 20). A database outage, a room kernel's container killed mid-execution, the
gateway killed mid-snapshot, the S3 server stopped mid-snapshot."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import websocket

from kernelgate.engine import KERNEL_LABEL
from tests.ci import require
from tests.harness import lose_working_copy
from tests.postgres import PostgresServer, postgres_bindir
from tests.test_workspace import in_thread, open_terminal

#: Longest any answer may take during a fault, seconds.
ANSWER_BOUND = 30


async def answered(client, method: str, path: str, body=None):
    """The response, which must come within ANSWER_BOUND and never be a 500."""
    response = await asyncio.wait_for(client.request(method, path, body, timeout=ANSWER_BOUND), ANSWER_BOUND + 5)
    assert response.status != 500, response.body
    if response.status >= 400:
        assert {"reason", "message"} <= set(response.body), response.body
    return response


@pytest.fixture
def postgres():
    bindir = postgres_bindir()
    if bindir is None:
        require("PostgreSQL is not installed (Debian package: postgresql)")
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


async def test_a_database_outage_is_503_and_loses_nothing(postgres, docker_engine, start_gateway):
    url = postgres.url(postgres.create_database())
    gateway = start_gateway("--kernels=docker", f"--Store.url={url}")
    client = gateway.client()
    room = (await answered(client, "POST", "/api/rooms", {"name": "kept", "languages": ["python3"]})).body
    kernel = room["kernels"][0]["id"]
    ws = await client.connect(kernel)
    assert (await ws.execute("x = 1")).status == "ok"

    postgres.halt()
    listed = await answered(client, "GET", "/api/rooms")  # rooms are known in memory
    assert listed.status == 200 and [r["name"] for r in listed.body] == ["kept"], listed.body
    made = await answered(client, "POST", "/api/rooms", {"name": "during", "languages": ["bash"]})
    assert made.status == 503, made.body
    # running kernels do not need the database
    assert (await ws.execute("print(x + 1)", timeout=ANSWER_BOUND)).stdout == "2\n"

    postgres.resume()
    for _ in range(60):
        listed = await answered(client, "GET", "/api/rooms")
        if listed.status == 200:
            break
        await asyncio.sleep(0.5)
    assert [r["name"] for r in listed.body] == ["kept"]  # nothing lost, nothing half-made
    again = await answered(client, "POST", "/api/rooms", {"name": "after", "languages": ["bash"]})
    assert again.status == 201, again.body
    ws.close()

    # stopped while the database is down: it still exits cleanly (the start_gateway
    # fixture checks its log for tracebacks), and the next run has every room
    postgres.halt()
    gateway.stop()
    assert gateway.proc.returncode == 0, gateway.log()[-2000:]
    postgres.resume()
    client = start_gateway("--kernels=docker", f"--Store.url={url}", like=gateway).client()
    assert sorted(r["name"] for r in (await answered(client, "GET", "/api/rooms")).body) == ["after", "kept"]


async def wait_for(predicate, what: str, tries: int = 120, every: float = 0.5):
    """Poll `predicate` (async) until it returns something true; fail naming `what`."""
    for _ in range(tries):
        found = await predicate()
        if found:
            return found
        await asyncio.sleep(every)
    pytest.fail(f"never: {what}")


async def test_a_room_kernel_killed_mid_execution_is_told_revived_and_loses_no_file(docker_engine, start_gateway):
    """The room kernel's container is killed while a cell runs. The user sees, on the
    kernel's WebSocket, "[kernelgate] The kernel died" and the status `restarting`, then
    the same kernel id answers again in a new container (its variables gone, as after a
    restart); every file written before (by the kernel and by the Contents API) is there,
    the old terminal is told it ended, and a new terminal works."""
    gateway = start_gateway("--kernels=docker")
    client = gateway.client()
    room = (await answered(client, "POST", "/api/rooms", {"name": "killed", "languages": ["python3"]})).body
    kernel = room["kernels"][0]["id"]
    ws = await client.connect(kernel)
    assert (await ws.execute("x = 1; open('/workspace/by-kernel.txt', 'w').write('kernel')")).status == "ok"
    put = await answered(client, "PUT", f"/api/rooms/{room['id']}/contents/by-api.txt",
                         {"type": "file", "format": "text", "content": "api"})
    assert put.status in (200, 201)
    old_terminal, old_shell = await open_terminal(gateway, client, kernel)
    old_shell.type("echo before-$((1+1))\r")
    await in_thread(old_shell.expect, "before-2")

    await ws.send("shell", "execute_request", {"code": "import time; time.sleep(600)", "silent": False})
    await wait_for(lambda: kernel_state(client, kernel, "busy"), "the cell runs")
    [first] = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kernel}"})
    await asyncio.to_thread(first.kill)

    told, states = "", []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_BOUND
    while not ("The kernel died" in told and "restarting" in states):
        msg = await ws.recv(max(0.1, deadline - loop.time()))
        if msg["header"]["msg_type"] == "stream":
            told += msg["content"]["text"]
        elif msg["header"]["msg_type"] == "status":
            states.append(msg["content"]["execution_state"])
    assert told.startswith("[kernelgate] The kernel died")
    with pytest.raises((ConnectionError, websocket.WebSocketException)):
        await in_thread(old_shell.expect, "never printed", 30)  # the old terminal ended
    old_shell.close()
    assert (await answered(client, "GET", f"/api/terminals/{old_terminal}")).status == 404

    await wait_for(lambda: kernel_state(client, kernel, "idle"), "the kernel answers again")
    [revived] = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kernel}"})
    assert revived.id != first.id
    run = await ws.execute("print(open('/workspace/by-kernel.txt').read(), open('/workspace/by-api.txt').read(), "
                           "'x' in globals())", timeout=ANSWER_BOUND)
    assert run.stdout == "kernel api False\n", run.reply
    ws.close()
    _, shell = await open_terminal(gateway, client, kernel)
    shell.type("cat /workspace/by-api.txt; echo; echo after-$((2+2))\r")
    await in_thread(shell.expect, "after-4")
    assert "api" in shell.seen
    shell.close()
    assert (await answered(client, "DELETE", f"/api/rooms/{room['id']}")).status == 204


async def kernel_state(client, kernel_id: str, state: str) -> bool:
    model = await answered(client, "GET", f"/api/kernels/{kernel_id}")
    return model.status == 200 and model.body["execution_state"] == state


def snapshot_parts(gateway, room_id: str) -> list[Path]:
    """The local backend's files of snapshots being written (LocalBackend.put's temporaries)."""
    folder = gateway.data_dir / "storage" / "rooms" / room_id / "snapshots"
    return list(folder.glob(".*.part")) if folder.is_dir() else []


async def fill_workspace(ws, megabytes: int) -> None:
    """A big incompressible file, so that archiving the workspace takes a while."""
    run = await ws.execute(f"import os\nwith open('/workspace/big.bin', 'wb') as f:\n"
                           f"    for _ in range({megabytes}): f.write(os.urandom(1 << 20))", timeout=120)
    assert run.status == "ok", run.reply


async def test_the_gateway_killed_mid_snapshot_lists_no_half_snapshot(docker_engine, start_gateway):
    """SIGKILL while a snapshot is being written (its temporary file is in the backend).
    After a restart the user sees only the snapshots that were complete, each one
    restores exactly, and the room works (its kernel re-adopted, its files there)."""
    gateway = start_gateway("--kernels=docker")
    client = gateway.client()
    room = (await answered(client, "POST", "/api/rooms", {"name": "snap", "languages": ["python3"]})).body
    room_id, kernel = room["id"], room["kernels"][0]["id"]
    ws = await client.connect(kernel)
    assert (await ws.execute("open('/workspace/v.txt', 'w').write('one')")).status == "ok"
    first = await answered(client, "POST", f"/api/rooms/{room_id}/snapshots")
    assert first.status == 201, first.body
    assert (await ws.execute("open('/workspace/v.txt', 'w').write('two')")).status == "ok"
    await fill_workspace(ws, 300)
    ws.close()

    snapshot = asyncio.ensure_future(client.request("POST", f"/api/rooms/{room_id}/snapshots", timeout=120))
    for _ in range(3000):  # mid-snapshot: its archive is being written
        if snapshot.done() or snapshot_parts(gateway, room_id):
            break
        await asyncio.sleep(0.01)
    assert not snapshot.done() and snapshot_parts(gateway, room_id), "the snapshot was not caught mid-way"
    gateway.stop(signal.SIGKILL)
    with pytest.raises(Exception):  # the request dies with the gateway
        await snapshot

    left = snapshot_parts(gateway, room_id)
    fresh = left[0].with_name(".fresh.tar.0.part")  # as another gateway's put in progress would be
    fresh.write_bytes(b"")
    for part in left:  # the killed snapshot's, made to look two hours old
        os.utime(part, (time.time() - 7200, time.time() - 7200))
    again = start_gateway("--kernels=docker", like=gateway)
    client = again.client()
    listed = (await answered(client, "GET", f"/api/rooms/{room_id}/snapshots")).body
    assert [s["id"] for s in listed] == [first.body["id"]], listed
    assert snapshot_parts(gateway, room_id) == [fresh]  # the stale half-snapshot is swept at start
    ws = await client.connect(kernel)  # re-adopted: the same kernel
    run = await ws.execute("import os; print(open('/workspace/v.txt').read(), os.path.getsize('/workspace/big.bin'))")
    assert run.stdout == f"two {300 << 20}\n", run.reply
    ws.close()
    for listed_snapshot in listed:
        restored = await answered(client, "POST", f"/api/rooms/{room_id}/snapshots/{listed_snapshot['id']}/restore")
        assert restored.status == 200, restored.body
    got = await answered(client, "GET", f"/api/rooms/{room_id}/contents/v.txt")
    assert got.body["content"] == "one"
    assert (await answered(client, "GET", f"/api/rooms/{room_id}/contents/big.bin")).status == 404
    kernel = (await answered(client, "GET", f"/api/rooms/{room_id}/kernels")).body[0]["id"]
    ws = await client.connect(kernel)
    assert (await ws.execute("print(open('/workspace/v.txt').read())", timeout=ANSWER_BOUND)).stdout == "one\n"
    ws.close()
    assert (await answered(client, "DELETE", f"/api/rooms/{room_id}")).status == 204


async def test_s3_stopped_during_a_snapshot_is_503_degraded_then_recovers(docker_engine, start_gateway, s3_server):
    """The S3 server stops while a snapshot is being uploaded (its multipart upload
    begun). The user gets a 503 saying the backend failed, the room shows `degraded`
    and keeps serving its files; no snapshot is listed for the failed one. Once S3 is
    back the room is `ok` again, a snapshot succeeds, and a new host (working copy
    lost) gets every file back from S3."""
    options = ["--kernels=docker", *s3_server.gateway_args(), "--RoomStorage.sync_interval=2",
               "--RoomStorage.retry_interval=0.5", "--HealthCheck.cache_seconds=0"]
    gateway = start_gateway(*options)
    client = gateway.client()
    room = (await answered(client, "POST", "/api/rooms", {"name": "s3", "languages": ["python3"],
                                                         "storage": "s3"})).body
    room_id = room["id"]
    ws = await client.connect(room["kernels"][0]["id"])
    assert (await ws.execute("open('/workspace/v.txt', 'w').write('kept')")).status == "ok"
    await fill_workspace(ws, 200)
    ws.close()

    log_size = s3_server.log_path.stat().st_size
    snapshot = asyncio.ensure_future(client.request("POST", f"/api/rooms/{room_id}/snapshots", timeout=120))
    for _ in range(3000):  # moto logs each request once answered: the upload has begun
        if snapshot.done() or "/snapshots/" in s3_server.log_path.read_text(errors="replace")[log_size:]:
            break
        await asyncio.sleep(0.01)
    assert not snapshot.done(), (await snapshot).body
    await asyncio.to_thread(s3_server.stop)
    failed = await asyncio.wait_for(snapshot, ANSWER_BOUND + 5)
    assert failed.status == 503 and failed.body["reason"] == "Service Unavailable", failed.body
    assert "S3" in failed.body["message"] or "s3" in failed.body["message"], failed.body
    listed = await answered(client, "GET", f"/api/rooms/{room_id}/snapshots")
    assert listed.status == 200 and listed.body == [], listed.body
    got = await answered(client, "GET", f"/api/rooms/{room_id}")
    assert got.body["storage_status"]["state"] == "degraded", got.body
    read = await answered(client, "GET", f"/api/rooms/{room_id}/contents/v.txt")
    assert read.status == 200 and read.body["content"] == "kept"

    await asyncio.to_thread(s3_server.start)  # back, empty (moto keeps nothing)
    await wait_for(lambda: room_in_state(client, room_id, "ok"), "the room recovers")
    made = await answered(client, "POST", f"/api/rooms/{room_id}/snapshots")
    assert made.status == 201, made.body
    gateway.stop()
    lose_working_copy(gateway, room_id)
    client = start_gateway(*options, like=gateway).client()
    read = await answered(client, "GET", f"/api/rooms/{room_id}/contents/v.txt")
    assert read.status == 200 and read.body["content"] == "kept"
    big = await answered(client, "GET", f"/api/rooms/{room_id}/contents/big.bin?content=0")
    assert big.status == 200 and big.body["size"] == 200 << 20, big.body


async def room_in_state(client, room_id: str, state: str) -> bool:
    got = await answered(client, "GET", f"/api/rooms/{room_id}")
    return got.status == 200 and got.body["storage_status"]["state"] == state


async def test_a_re_adopted_room_kernel_killed_is_revived(docker_engine, start_gateway):
    """After a gateway restart re-adopted the room kernel, its container is killed: the
    user sees the same as before the restart (told, revived in a new container, files
    kept)."""
    gateway = start_gateway("--kernels=docker")
    client = gateway.client()
    room = (await answered(client, "POST", "/api/rooms", {"name": "again", "languages": ["python3"]})).body
    kernel = room["kernels"][0]["id"]
    ws = await client.connect(kernel)
    assert (await ws.execute("open('/workspace/kept.txt', 'w').write('kept')")).status == "ok"
    ws.close()
    gateway.stop(signal.SIGKILL)
    gateway = start_gateway("--kernels=docker", like=gateway)
    client = gateway.client()
    await wait_for(lambda: kernel_state(client, kernel, "idle"), "the kernel is re-adopted")
    [first] = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kernel}"})
    await asyncio.to_thread(first.kill)
    await wait_for(lambda: kernel_state(client, kernel, "restarting"), "the death is seen", every=0.1, tries=600)
    await wait_for(lambda: kernel_state(client, kernel, "idle"), "the kernel is revived")
    [revived] = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kernel}"})
    assert revived.id != first.id
    ws = await client.connect(kernel)
    assert (await ws.execute("print(open('/workspace/kept.txt').read())", timeout=ANSWER_BOUND)).stdout == "kept\n"
    ws.close()
    assert (await answered(client, "DELETE", f"/api/rooms/{room['id']}")).status == 204


LIMITED = """
MiB = 1024 * 1024
c.Tiers.tiers = {
    "low": {"memory": 256 * MiB, "cpus": 0.5, "pids": 128, "exec_timeout": 20,
            "idle_timeout": 600, "tmp_size": 64 * MiB},
    "medium": {"memory": 512 * MiB, "cpus": 1.0, "pids": 256, "exec_timeout": 20,
               "idle_timeout": 900, "tmp_size": 256 * MiB},
    "high": {"memory": 1024 * MiB, "cpus": 2.0, "pids": 512, "exec_timeout": 20,
             "idle_timeout": 1800, "tmp_size": 512 * MiB},
}
c.KernelRegistry.timeout_grace = 2
"""


async def test_an_endless_cell_left_by_a_killed_gateway_keeps_its_time_limit(docker_engine, start_gateway,
                                                                            tmp_path):
    """The gateway is SIGKILLed while a room kernel runs an endless loop; the next
    gateway re-adopts the kernel busy and still stops the loop after the tier's
    exec_timeout: its clients see the notice, the kernel is interrupted (its variables
    stay) and answers again."""
    config = tmp_path / "limited.py"
    config.write_text(LIMITED)
    gateway = start_gateway("--kernels=docker", f"--config={config}")
    client = gateway.client()
    room = (await answered(client, "POST", "/api/rooms", {"name": "loop", "languages": ["python3"]})).body
    kernel = room["kernels"][0]["id"]
    ws = await client.connect(kernel)
    assert (await ws.execute("kept = 41")).status == "ok"
    await ws.send("shell", "execute_request", {"code": "while True: pass", "silent": False})
    await wait_for(lambda: kernel_state(client, kernel, "busy"), "the loop runs")
    ws.close()
    gateway.stop(signal.SIGKILL)

    again = start_gateway("--kernels=docker", f"--config={config}", like=gateway)
    client = again.client()
    assert await kernel_state(client, kernel, "busy")
    ws = await client.connect(kernel)
    told = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while "Execution stopped" not in told:
        msg = await ws.recv(max(0.1, deadline - loop.time()))
        if msg["header"]["msg_type"] == "stream":
            told += msg["content"]["text"]
    assert "longer than 20 s" in told, told
    await wait_for(lambda: kernel_state(client, kernel, "idle"), "the loop is interrupted")
    assert (await ws.execute("print(kept + 1)", timeout=ANSWER_BOUND)).stdout == "42\n"
    ws.close()
    assert (await answered(client, "DELETE", f"/api/rooms/{room['id']}")).status == 204
