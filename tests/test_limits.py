"""Per-execution limits: the tier's wall-clock timeout and the output cap."""

from __future__ import annotations

import asyncio

import pytest

from tests.client import Execution

CONFIG = """
MiB = 1024 * 1024
c.Tiers.tiers = {
    "low": {"memory": 256 * MiB, "cpus": 0.5, "pids": 128, "exec_timeout": 3,
            "idle_timeout": 600, "tmp_size": 64 * MiB},
    "medium": {"memory": 512 * MiB, "cpus": 1.0, "pids": 256, "exec_timeout": 3,
               "idle_timeout": 900, "tmp_size": 256 * MiB},
    "high": {"memory": 1024 * MiB, "cpus": 2.0, "pids": 512, "exec_timeout": 3,
             "idle_timeout": 1800, "tmp_size": 512 * MiB},
}
c.KernelRegistry.max_output = 20000
c.KernelRegistry.timeout_grace = 2
"""


@pytest.fixture(params=["docker", "local"])
def limited_gateway(request, start_gateway, tmp_path):
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    config = tmp_path / "limits_config.py"
    config.write_text(CONFIG)
    return start_gateway(f"--kernels={request.param}", f"--config={config}")


def notices(run) -> str:
    return "".join(m["content"]["text"] for m in run.messages
                   if m["header"]["msg_type"] == "stream" and "[kernelgate]" in m["content"]["text"])


async def test_timeout_interrupts_then_restarts(limited_gateway):
    client = limited_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    await ws.execute("kept = 1")
    run = await ws.execute("import time; time.sleep(60)", timeout=30)
    assert run.status == "error" and run.reply["content"]["ename"] == "KeyboardInterrupt"
    assert "ran longer than 3 s" in notices(run) and "'low' tier" in notices(run)
    assert (await ws.execute("print(kept)")).stdout == "1\n"  # an interrupt keeps the state

    # a cell that ignores SIGINT is stopped by restarting the kernel
    msg_id = await ws.send("shell", "execute_request", {
        "code": "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
        "silent": False,
    })
    texts, states = "", []
    while "restarting" not in states:
        msg = await ws.recv(timeout=30)
        if msg["header"]["msg_type"] == "stream":
            texts += msg["content"]["text"]
        elif msg["header"]["msg_type"] == "status":
            states.append(msg["content"]["execution_state"])
    assert "did not stop" in texts and "restarting the kernel" in texts
    for _ in range(100):
        if (await client.request("GET", f"/api/kernels/{kernel['id']}")).body["execution_state"] == "idle":
            break
        await asyncio.sleep(0.2)
    assert (await ws.execute("print('kept' in globals())")).stdout == "False\n"
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


#: Printed by a flooding cell: 168,890 bytes, with no character JSON escapes.
FLOOD = "for i in range(30000): print(i, end=' ')"
FLOODED = "".join(f"{i} " for i in range(30000))


def assert_cut(stdout: str, messages: int) -> None:
    """The output is the flood's first bytes, up to the cap of 20000 bytes of content
    (each message's JSON envelope, `{"name": "stdout", "text": ""}`, counts too)."""
    assert FLOODED.startswith(stdout), stdout[:200]
    assert 20000 - 64 * messages <= len(stdout) <= 20000, (len(stdout), messages)


async def test_output_is_cut_and_others_stay_served(limited_gateway):
    client = limited_gateway.client()
    flooding = await client.start_kernel()
    quiet = await client.start_kernel()
    flood_ws = await client.connect(flooding["id"])
    quiet_ws = await client.connect(quiet["id"])
    flood_id = await flood_ws.send("shell", "execute_request", {"code": FLOOD, "silent": False})
    # while the flood runs, another kernel's client is served
    for _ in range(5):
        assert (await quiet_ws.execute("1 + 1", timeout=20)).results == ["2"]
    run = await flood_ws.collect(flood_id, timeout=60)
    assert run.status == "ok"
    streams = [m for m in run.messages if m["header"]["msg_type"] == "stream"]
    stdout = [i for i, m in enumerate(streams) if m["content"]["name"] == "stdout"]
    assert_cut(run.stdout, len(stdout))
    cut = [i for i, m in enumerate(streams) if "Output cut" in m["content"]["text"]]
    assert len(cut) == 1 and cut[0] > stdout[-1]  # once, after the output kept
    assert (await flood_ws.execute("print('after')")).stdout == "after\n"  # the next cell has its own budget
    flood_ws.close()
    quiet_ws.close()
    for kernel in (flooding, quiet):
        await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_output_of_a_thread_after_its_cell_is_cut_too(limited_gateway):
    """A thread that prints after its cell ended prints against that cell's budget."""
    client = limited_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    started = await ws.execute(
        "import sys, threading\n"
        "from IPython.display import clear_output\n"
        "go = threading.Event()\n"
        "def flood():\n"
        "    go.wait()\n"
        f"    {FLOOD}\n"
        "    sys.stdout.flush()\n"
        "    clear_output()  # the end, on iopub after the output\n"
        "threading.Thread(target=flood).start()"
    )
    assert started.status == "ok" and started.stdout == ""
    run = await ws.execute("go.set()")  # this cell ends at once; the thread prints on
    messages = list(run.messages)
    while messages[-1]["header"]["msg_type"] != "clear_output":
        messages.append(await ws.recv())
    stdout = [m["content"]["text"] for m in messages
              if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout"]
    assert_cut("".join(stdout), len(stdout))
    assert "Output cut" in notices(Execution({}, messages))
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


@pytest.mark.parametrize("mode", ["docker", "local"])
async def test_a_kernel_frame_over_the_limit_is_never_read(request, start_gateway, mode):
    """Code in a kernel can send the gateway anything: a message with a frame over
    max_kernel_frame is dropped unread, and the kernel keeps working."""
    if mode == "docker":
        request.getfixturevalue("docker_engine")
    gateway = start_gateway(f"--kernels={mode}", "--KernelRegistry.max_kernel_frame=1000000",
                            "--KernelRegistry.max_output=0")
    client = gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    big = await ws.execute("print('x' * 2_000_000, flush=True); print('small')")
    assert big.status == "ok" and big.stdout == "small\n"  # one message each
    assert (await ws.execute("print('still here')")).stdout == "still here\n"
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
    assert "dropped a kernel message with a frame over 1000000 bytes" in gateway.log()
