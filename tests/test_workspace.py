"""Terminals and files inside a kernel's sandbox, served by its agent."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import time

import pytest
import websocket  # websocket-client: an independent client library for terminado frames


class Shell:
    """A terminado-protocol client on websocket-client (blocking, run in a thread)."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=30)
        self.seen = ""

    def send(self, frame: list) -> None:
        self.ws.send(json.dumps(frame))

    def type(self, text: str) -> None:
        self.send(["stdin", text])

    def expect(self, needle: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                frame = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                raise TimeoutError(f"no {needle!r} in {timeout} s; output so far: {self.seen!r}") from None
            if frame[0] == "stdout":
                self.seen += frame[1]
            elif frame[0] == "disconnect":
                raise ConnectionError(f"terminal ended; output so far: {self.seen!r}")
        return self.seen

    def close(self) -> None:
        self.ws.close()


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def open_terminal(gateway, client, kernel_id: str) -> tuple[str, Shell]:
    response = await client.request("POST", "/api/terminals", {"kernel": kernel_id})
    assert response.status == 201, response.body
    name = response.body["name"]
    url = gateway.url.replace("http", "ws") + f"/terminals/websocket/{name}"
    return name, await in_thread(Shell, url)


async def test_terminal_in_the_sandbox(gateway):
    client = gateway.client()
    kernel = await client.start_kernel()
    name, shell = await open_terminal(gateway, client, kernel["id"])
    shell.type("echo answer=$((6*7))\r")
    await in_thread(shell.expect, "answer=42")
    shell.type("mkdir -p sub && cd sub && pwd && ls ..\r")
    await in_thread(shell.expect, "/sub")
    shell.type("read -p \"name$((1+1))? \" who; echo hello-$who\r")
    await in_thread(shell.expect, "name2? ")  # the prompt: the typed line has name$((1+1))
    shell.type("ada\r")
    await in_thread(shell.expect, "hello-ada")
    shell.send(["set_size", 41, 123])
    shell.type("stty size\r")
    await in_thread(shell.expect, "41 123")
    # the job itself says it runs (in the foreground process group, which the tty signals)
    shell.type("sh -c 'echo sleeping-$((2+3)); exec sleep 600'; echo after-sleep\r")
    await in_thread(shell.expect, "sleeping-5")
    shell.type("\x03")  # Ctrl-C: the tty sends SIGINT to the foreground job
    shell.type("echo interrupted-$?\r")
    await in_thread(shell.expect, "interrupted-130")  # 128 + SIGINT: sleep was interrupted
    assert "\nafter-sleep" not in shell.seen  # only the echo of the typed line
    listed = (await client.request("GET", "/api/terminals")).body
    assert [t["name"] for t in listed] == [name]
    # reconnecting shows the same terminal with its recent output
    await in_thread(shell.close)
    again = await in_thread(Shell, gateway.url.replace("http", "ws") + f"/terminals/websocket/{name}")
    await in_thread(again.expect, "answer=42")
    again.type("echo still-$((40+2))-here\r")
    await in_thread(again.expect, "still-42-here")
    assert (await client.request("DELETE", f"/api/terminals/{name}")).status == 204
    with pytest.raises(ConnectionError):
        await in_thread(again.expect, "never printed", 10)
    assert (await client.request("GET", f"/api/terminals/{name}")).status == 404
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


def host_address() -> str:
    """One of this host's own global addresses (a container on `network none` has no
    route to it)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[3].split("/")[0]


async def test_terminal_shares_the_sandbox_limits(docker_gateway):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    _, shell = await open_terminal(docker_gateway, client, kernel["id"])
    shell.type("echo uid=$(id -u) nets=$(ls /sys/class/net | tr '\\n' ,) pids=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max) end=$((6*7))\r")
    output = await in_thread(shell.expect, "end=42")
    assert "uid=1000 nets=lo, pids=128 end=42" in output
    # a listener of this test's on the host: the sandbox cannot reach it
    with socket.create_server((host_address(), 0)) as listener:
        address, port = listener.getsockname()
        shell.type(f"echo ro=$(( $(touch /usr/x 2>&1 | grep -m1 -c Read-only) + 40 ))"
                   f" net=$(( $( (exec 3<>/dev/tcp/{address}/{port}) 2>&1 | grep -m1 -c unreachable) + 40 ))"
                   f" end=$((7*7))\r")
        output = await in_thread(shell.expect, "end=49")
        assert "ro=41 net=41 end=49" in output  # each grep found its error
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    await in_thread(shell.close)
    # the terminal goes when its kernel does
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
    assert (await client.request("GET", "/api/terminals")).body == []


async def test_files_between_contents_api_and_kernel(gateway):
    client = gateway.client()
    kernel = await client.start_kernel()
    base = f"/api/kernels/{kernel['id']}/contents"
    ws = await client.connect(kernel["id"])
    put = await client.request("PUT", f"{base}/notes/a.txt", {"type": "file", "format": "text", "content": "x"})
    assert put.status == 404  # no such directory yet
    assert (await client.request("PUT", f"{base}/notes", {"type": "directory"})).status == 201
    put = await client.request("PUT", f"{base}/notes/a.txt", {"type": "file", "format": "text", "content": "from the API\n"})
    assert put.status == 201 and put.body["type"] == "file" and put.body["content"] is None
    run = await ws.execute("print(open('notes/a.txt').read(), end=''); open('made.txt', 'w').write('by the kernel')")
    assert run.stdout == "from the API\n"
    got = await client.request("GET", f"{base}/made.txt")
    assert got.body["content"] == "by the kernel" and got.body["format"] == "text"
    listing = await client.request("GET", f"{base}/")
    assert {e["name"] for e in listing.body["content"]} >= {"notes", "made.txt"}
    assert (await client.request("PATCH", f"{base}/made.txt", {"path": "notes/moved.txt"})).status == 200
    copy = await client.request("POST", f"{base}/notes", {"copy_from": "notes/moved.txt"})
    assert copy.status == 201 and copy.body["path"] == "notes/moved-Copy1.txt"
    new = await client.request("POST", f"{base}/notes", {"type": "notebook"})
    assert new.body["path"] == "notes/Untitled.ipynb"
    notebook = await client.request("GET", f"{base}/notes/Untitled.ipynb")
    assert notebook.body["type"] == "notebook" and notebook.body["content"]["nbformat"] == 4
    saved = {"cells": [{"cell_type": "code", "source": "1+1", "metadata": {}, "outputs": [],
                        "execution_count": None, "id": "c1"}],
             "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    put = await client.request("PUT", f"{base}/notes/saved.ipynb", {"type": "notebook", "content": saved})
    assert put.status == 201 and put.body["type"] == "notebook"
    assert (await client.request("GET", f"{base}/notes/saved.ipynb")).body["content"] == saved
    bad = await client.request("PUT", f"{base}/notes/bad.ipynb", {"type": "notebook", "content": "x"})
    assert bad.status == 400 and bad.body["message"]
    assert (await client.request("DELETE", f"{base}/notes/moved.txt")).status == 204
    assert (await client.request("GET", f"{base}/notes/moved.txt")).status == 404
    # 10 MB of binary round-trips byte for byte
    blob = os.urandom(10 * 1024 * 1024)
    put = await client.request("PUT", f"{base}/blob.bin", {
        "type": "file", "format": "base64", "content": base64.b64encode(blob).decode()})
    assert put.status == 201 and put.body["size"] == len(blob)
    got = await client.request("GET", f"{base}/blob.bin?format=base64")
    assert base64.b64decode(got.body["content"]) == blob
    run = await ws.execute("import hashlib; print(hashlib.sha256(open('blob.bin','rb').read()).hexdigest())")
    import hashlib

    assert run.stdout.strip() == hashlib.sha256(blob).hexdigest()
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_paths_never_leave_the_workspace(gateway):
    client = gateway.client()
    kernel = await client.start_kernel()
    base = f"/api/kernels/{kernel['id']}/contents"
    ws = await client.connect(kernel["id"])
    await ws.execute(
        "import os\n"
        "os.symlink('/etc/passwd', 'passwd-link')\n"
        "os.symlink('/proc', 'proc-link')\n"
        "os.symlink('/', 'root-link')\n"
        "os.mkdir('inside')"
    )
    for path in ["../etc/passwd", "../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd",
                 "inside/%2E%2E/%2E%2E/etc/passwd", "passwd-link", "proc-link/self/environ",
                 "root-link/etc/passwd", "inside/..%2f..%2fetc/passwd", "%00etc"]:
        response = await client.request("GET", f"{base}/{path}")
        assert response.status in (400, 404), (path, response.status)
        assert "root:" not in json.dumps(response.body), path
    write = await client.request("PUT", f"{base}/root-link/tmp/evil", {"type": "file", "content": "x"})
    assert write.status == 400
    write = await client.request("PUT", f"{base}/passwd-link", {"type": "file", "content": "x"})
    assert write.status == 400
    moved = await client.request("PATCH", f"{base}/inside", {"path": "../escaped"})
    assert moved.status == 400
    # the absolute-looking URL path is inside the workspace, and does not exist there
    assert (await client.request("GET", f"{base}//etc/passwd")).status == 404
    bad = await client.request("PUT", f"{base}/x.bin", {"type": "file", "format": "base64", "content": "!!"})
    assert bad.status == 400
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_file_size_limit_is_413(docker_gateway):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    base = f"/api/kernels/{kernel['id']}/contents"
    big = base64.b64encode(b"\0" * (33 * 1024 * 1024)).decode()  # low tier: 32 MiB per file
    response = await client.request("PUT", f"{base}/big.bin", {"type": "file", "format": "base64", "content": big})
    assert response.status == 413, response.body
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_idle_terminals_are_culled(start_gateway, tmp_path):
    config = tmp_path / "terminals_config.py"
    config.write_text("c.TerminalManager.idle_timeout = 1\nc.TerminalManager.cull_interval = 0.5\n")
    gateway = start_gateway("--kernels=local", f"--config={config}")
    client = gateway.client()
    kernel = await client.start_kernel()
    name, shell = await open_terminal(gateway, client, kernel["id"])
    shell.type("echo hi\r")
    await in_thread(shell.expect, "hi")
    await in_thread(shell.close)  # nobody is connected any more
    for _ in range(40):
        if (await client.request("GET", f"/api/terminals/{name}")).status == 404:
            break
        await asyncio.sleep(0.25)
    assert (await client.request("GET", f"/api/terminals/{name}")).status == 404
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
