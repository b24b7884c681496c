"""Kernel lifecycles and the channels WebSocket, for Docker kernels and local kernels."""

from __future__ import annotations

import asyncio
import uuid

import pytest


async def test_start_execute_shutdown(gateway):
    client = gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    run = await ws.execute("print('hello'); 6 * 7")
    assert run.status == "ok"
    assert run.stdout == "hello\n"
    assert run.results == ["42"]
    error = await ws.execute("1 / 0")
    assert error.status == "error" and error.reply["content"]["ename"] == "ZeroDivisionError"
    model = (await client.request("GET", f"/api/kernels/{kernel['id']}")).body
    assert model["connections"] == 1 and model["execution_state"] == "idle"
    ws.close()
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204
    assert (await client.request("GET", f"/api/kernels/{kernel['id']}")).status == 404


@pytest.mark.parametrize("protocol", ["legacy", "v1"])
async def test_both_protocols_with_binary_buffers(gateway, protocol):
    client = gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"], protocol=protocol)
    # a comm target that echoes the sizes and reversed bytes of the buffers it receives
    setup = await ws.execute(
        "def target(comm, msg):\n"
        "    @comm.on_msg\n"
        "    def echo(m):\n"
        "        comm.send({'sizes': [len(b) for b in m['buffers']]},"
        " buffers=[bytes(b)[::-1] for b in m['buffers']])\n"
        "get_ipython().kernel.comm_manager.register_target('echo', target)\n"
    )
    assert setup.status == "ok", setup.reply
    comm_id = uuid.uuid4().hex
    await ws.send("shell", "comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {}})
    payload = bytes(range(256)) * 4
    await ws.send("shell", "comm_msg", {"comm_id": comm_id, "data": {}}, buffers=[payload, b"\x00\xff"])
    while True:
        msg = await ws.recv()
        if msg["header"]["msg_type"] == "comm_msg" and msg["channel"] == "iopub":
            break
    assert msg["content"]["data"] == {"sizes": [1024, 2]}
    assert msg["buffers"] == [payload[::-1], b"\xff\x00"]
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_interrupt_infinite_loop(gateway):
    client = gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    await ws.execute("x = 1")
    msg_id = await ws.send("shell", "execute_request", {"code": "while True: pass", "silent": False})
    while (await ws.recv())["header"]["msg_type"] != "execute_input":
        pass
    await asyncio.sleep(0.5)
    response = await client.request("POST", f"/api/kernels/{kernel['id']}/interrupt")
    assert response.status == 204
    run = await ws.collect(msg_id, timeout=30)
    assert run.status == "error" and run.reply["content"]["ename"] == "KeyboardInterrupt"
    assert (await ws.execute("x + 1")).results == ["2"]  # state survives an interrupt
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_restart_clears_state(gateway):
    client = gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    await ws.execute("secret = 41")
    await ws.execute("open('kept.txt', 'w').write('the sandbox stays')")
    response = await client.request("POST", f"/api/kernels/{kernel['id']}/restart")
    assert response.status == 200 and response.body["id"] == kernel["id"]
    assert response.body["execution_state"] == "idle"
    run = await ws.execute("print('secret' in globals())")  # the same socket keeps working
    assert run.stdout == "False\n"
    # the kernel process restarted inside the same sandbox: its files are still there
    assert (await ws.execute("print(open('kept.txt').read())")).stdout == "the sandbox stays\n"
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_stdin(gateway):
    client = gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"], protocol="v1")
    run = await ws.execute("name = input('who? '); print('hi', name)", stdin=["ada"])
    assert run.stdout == "hi ada\n"
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_reconnect_with_same_session_gets_buffered_output(gateway):
    client = gateway.client()
    kernel = await client.start_kernel()
    session_id = uuid.uuid4().hex
    ws = await client.connect(kernel["id"], session_id=session_id)
    msg_id = await ws.send("shell", "execute_request", {
        "code": "import time\nfor i in range(3):\n    time.sleep(0.3); print('tick', i, flush=True)",
        "silent": False,
    })
    await ws.recv()  # the request is running
    ws.close()
    await asyncio.sleep(2)  # the output is produced while nobody is connected
    again = await client.connect(kernel["id"], session_id=session_id)
    again.session = ws.session  # the same Jupyter session, as a reconnecting client has
    run = await again.collect(msg_id, timeout=30)
    assert run.status == "ok"
    assert run.stdout == "tick 0\ntick 1\ntick 2\n"
    again.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_two_clients_share_iopub(gateway):
    client = gateway.client()
    kernel = await client.start_kernel()
    first = await client.connect(kernel["id"])
    second = await client.connect(kernel["id"], protocol="v1")
    run = await first.execute("print('to everyone')")
    assert run.stdout == "to everyone\n"
    asked = run.reply["parent_header"]["msg_id"]
    # the second client asks something itself: the kernel answers shell requests in order,
    # and the gateway reads them from one socket, so `first`'s execute_reply came before
    info_id = await second.send("shell", "kernel_info_request", {})
    seen = []
    while not (seen and seen[-1]["parent_header"].get("msg_id") == info_id and seen[-1]["channel"] == "shell"):
        seen.append(await second.recv())
    about_execution = [m for m in seen if m["parent_header"].get("msg_id") == asked]
    assert [m["content"]["text"] for m in about_execution if m["header"]["msg_type"] == "stream"] == ["to everyone\n"]
    assert {m["header"]["msg_type"] for m in about_execution} >= {"status", "execute_input", "stream"}
    assert all(m["channel"] == "iopub" for m in about_execution)  # the reply went to `first` only
    assert seen[-1]["header"]["msg_type"] == "kernel_info_reply"
    first.close()
    second.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_many_messages_arrive_complete_and_in_order(gateway):
    """The hub reads waiting kernel messages in batches and writes each client's in one go:
    one message per line, to a legacy and a v1 client at once, must all arrive, in order."""
    client = gateway.client()
    kernel = await client.start_kernel()
    legacy = await client.connect(kernel["id"])
    v1 = await client.connect(kernel["id"], protocol="v1")
    run = await legacy.execute("for i in range(2000): print(i, flush=True)", timeout=120)
    expected = "".join(f"{i}\n" for i in range(2000))
    assert run.stdout == expected
    seen = ""
    while True:
        msg = await v1.recv()
        if msg["header"]["msg_type"] == "stream":
            seen += msg["content"]["text"]
        elif msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle" \
                and msg["parent_header"].get("msg_id") == run.reply["parent_header"]["msg_id"]:
            break
    assert seen == expected
    legacy.close()
    v1.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_large_and_small_client_messages_keep_their_order(gateway):
    """A large legacy message is decoded off the event loop; the small one sent right
    after it must still reach the kernel second."""
    client = gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    first = await ws.send("shell", "execute_request", {
        "code": f"big = '{'x' * 1_000_000}'\nprint(len(big))", "silent": False,
        "store_history": True, "user_expressions": {}, "allow_stdin": False})
    second = await ws.send("shell", "execute_request", {
        "code": "print('after', len(big))", "silent": False,
        "store_history": True, "user_expressions": {}, "allow_stdin": False})
    one, two = await ws.collect(first), await ws.collect(second)
    assert one.stdout == "1000000\n" and two.stdout == "after 1000000\n"
    assert one.reply["content"]["execution_count"] < two.reply["content"]["execution_count"]
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_only_kernel_env_passes_into_a_docker_kernel(docker_engine, start_gateway):
    """Only the client's variables of allowed_client_env reach the sandbox, KERNEL_USERNAME
    is the gateway's, and nothing of the gateway's own environment leaks in."""
    gateway = start_gateway("--kernels=docker", "--KernelRegistry.allowed_client_env=KERNEL_COLOR",
                            env={"GATEWAY_ONLY_SECRET": "hunter2"})
    client = gateway.client()
    kernel = await client.start_kernel(env={
        "KERNEL_COLOR": "blue", "SECRET": "x", "KERNEL_USERNAME": "mallory", "LD_PRELOAD": "/tmp/x.so",
        "KERNEL_SHAPE": "round",
    })
    ws = await client.connect(kernel["id"])
    run = await ws.execute(
        "import os; print(os.environ.get('KERNEL_COLOR'), os.environ.get('SECRET'),"
        " os.environ.get('KERNEL_USERNAME'), os.environ.get('LD_PRELOAD'),"
        " sum('hunter2' in v for v in os.environ.values()), os.environ.get('KERNEL_SHAPE'))"
    )
    assert run.stdout.split() == ["blue", "None", "dev", "None", "0", "None"]
    ws.close()
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204
