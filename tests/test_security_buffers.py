"""What the gateway keeps for its clients is bounded: a client of a kernel or a terminal
that does not read is disconnected (not the kernel, not the gateway), and a kernel keeps
a bounded number of replay buffers for sessions that went away."""

from __future__ import annotations

import asyncio
import json
import uuid

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.client import KernelSocket
from tests.test_workspace import Shell, in_thread

BACKLOG = 4 * 1024 * 1024
#: 48 MB of output: far more than the backlog and the sockets' own buffers, at a pace a
#: client that reads keeps up with.
FLOOD = "import time\nfor _ in range(48): print('x' * 1_000_000, flush=True); time.sleep(0.02)"


async def reply_to(ws: KernelSocket, msg_id: str, timeout: float = 30) -> list[dict]:
    """Every message up to and including the shell reply to `msg_id`."""
    seen = []
    while not (seen and seen[-1]["channel"] == "shell" and seen[-1]["parent_header"].get("msg_id") == msg_id):
        seen.append(await ws.recv(timeout))
    return seen


async def until(condition, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"{condition.__name__}: not within {timeout} s"
        await asyncio.sleep(0.05)


async def test_a_client_that_does_not_read_is_disconnected(docker_engine, start_gateway):
    gateway = start_gateway("--kernels=docker", f"--KernelRegistry.client_backlog={BACKLOG}",
                            "--KernelRegistry.max_output=0")
    client = gateway.client()
    kernel = await client.start_kernel()
    session = uuid.uuid4().hex
    url = gateway.url.replace("http", "ws", 1) + f"/api/kernels/{kernel['id']}/channels?session_id={session}"
    slow = await websocket_connect(HTTPRequest(url))  # reads nothing while the kernel floods
    fast = await client.connect(kernel["id"], protocol="v1")
    run = await fast.execute(FLOOD, timeout=180)
    assert run.status == "ok" and len(run.stdout) == 48 * 1_000_001  # the reader is served in full

    async def dropped():
        return "disconnected a client with" in gateway.log()

    await until(dropped)
    unread = 0
    while (message := await asyncio.wait_for(slow.read_message(), 30)) is not None:
        unread += len(message)
    assert slow.close_code == 1013 and "Too slow" in slow.close_reason
    assert unread < 24_000_000  # what it had not read was not all kept for it
    # the kernel and the gateway go on; the slow session gets what it missed when it returns
    assert (await fast.execute("print(6 * 7)")).stdout == "42\n"
    back = await client.connect(kernel["id"], session_id=session)
    replayed = await reply_to(back, await back.send("shell", "kernel_info_request", {}))
    assert any(m["header"]["msg_type"] == "stream" for m in replayed[:-1])
    fast.close()
    back.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_a_kernel_keeps_a_bounded_number_of_replay_buffers(local_gateway):
    client = local_gateway.client()
    kernel = await client.start_kernel()
    sessions = [uuid.uuid4().hex for _ in range(70)]  # the hub keeps 64
    for session in sessions:  # each one connects and goes away, leaving a buffer
        ws = await client.connect(kernel["id"], session_id=session)
        ws.close()

    async def all_gone():
        model = (await client.request("GET", f"/api/kernels/{kernel['id']}")).body
        return model["connections"] == 0

    await until(all_gone)
    live = await client.connect(kernel["id"])
    assert (await live.execute("print('missed')")).stdout == "missed\n"

    async def replayed(session: str) -> list[str]:
        ws = await client.connect(kernel["id"], session_id=session)
        seen = await reply_to(ws, await ws.send("shell", "kernel_info_request", {}))
        ws.close()
        return [m["content"]["text"] for m in seen if m["header"]["msg_type"] == "stream"]

    assert await replayed(sessions[-1]) == ["missed\n"]  # the newest buffers are kept
    assert await replayed(sessions[0]) == []  # the oldest went first
    live.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_a_terminal_client_that_does_not_read_is_disconnected(docker_engine, start_gateway):
    gateway = start_gateway("--kernels=docker", f"--TerminalManager.client_backlog={BACKLOG}")
    client = gateway.client()
    kernel = await client.start_kernel()
    opened = await client.request("POST", "/api/terminals", {"kernel": kernel["id"]})
    assert opened.status == 201, opened.body
    url = gateway.url.replace("http", "ws", 1) + f"/terminals/websocket/{opened.body['name']}"
    slow = await websocket_connect(HTTPRequest(url))
    # 36 MB of output (the tty writes \r\n) to a client that reads none of it
    await slow.write_message(json.dumps(["stdin", "yes x | head -c 24000000; touch flooded\r"]))

    async def dropped():
        return "disconnected a terminal client with" in gateway.log()

    await until(dropped)
    while await asyncio.wait_for(slow.read_message(), 30) is not None:
        pass
    assert slow.close_code == 1013 and "Too slow" in slow.close_reason

    async def flooded():
        return (await client.request("GET", f"/api/kernels/{kernel['id']}/contents/flooded")).status == 200

    await until(flooded)
    # the terminal goes on, for a client that reads
    shell = await in_thread(Shell, url)
    shell.type("echo alive-$((6*7))\r")
    await in_thread(shell.expect, "alive-42", 60)
    await in_thread(shell.close)
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
