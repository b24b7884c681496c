"""The python image's kernel: what it loads at start (issue 19, memory per idle kernel).

ipykernel imports debugpy (about 140 modules, 7.5 MB of private memory per kernel) to
offer a debugger that kernelgate's kernelspecs do not offer; the python image's
ipython_kernel_config.py starts the kernel without it. These tests run a real python3
kernel in Docker through a gateway.
"""

from __future__ import annotations

import asyncio

#: A cell printing which debugger modules the kernel has loaded (a list, [] if none).
LOADED_DEBUGGER = ("import sys; print(sorted(m for m in sys.modules"
                   " if m.split('.')[0] in ('debugpy', '_pydevd_bundle', '_pydev_bundle')))")


async def kernel_info(ws) -> dict:
    """The content of the kernel's kernel_info_reply."""
    msg_id = await ws.send("shell", "kernel_info_request", {})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        msg = await ws.recv(max(0.1, deadline - loop.time()))
        if msg["channel"] == "shell" and msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]


async def test_python_kernel_starts_without_debugpy_which_stays_importable(start_gateway, docker_engine):
    gateway = start_gateway("--kernels=docker")
    client = gateway.client()
    kernel = await client.start_kernel("python3")
    ws = await client.connect(kernel["id"])
    try:
        run = await ws.execute(LOADED_DEBUGGER, timeout=120)
        assert run.status == "ok", run.reply
        assert run.stdout == "[]\n"  # before the image's config: 70 debugpy/pydevd modules
        info = await kernel_info(ws)
        assert info["status"] == "ok"
        assert "debugger" not in info.get("supported_features", [])
        run = await ws.execute("import debugpy; print(debugpy.__name__)")
        assert run.status == "ok", run.reply
        assert run.stdout == "debugpy\n"
        run = await ws.execute("import IPython; print(type(IPython.get_ipython()).__name__)")
        assert run.stdout == "ZMQInteractiveShell\n"
    finally:
        ws.close()
        response = await client.request("DELETE", f"/api/kernels/{kernel['id']}", timeout=60)
        assert response.status == 204
