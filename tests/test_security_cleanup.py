"""A kernel's processes end with its sandbox (abuse checklist row 15): a daemon that
double-forks into a session of its own and ignores SIGTERM and SIGHUP does not outlive
the kernel's deletion, on the host or anywhere."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

DAEMON = (
    "import os, signal, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
    "        os.execvp('python', ['python', '-c', 'import time; time.sleep(3600)', MARKER])\n"
    "    os._exit(0)\n"
    "time.sleep(0.5)\n"
    "print(sum(MARKER in open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()))\n"
)


def host_processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass  # it ended meanwhile
    return found


async def test_a_daemonised_process_ends_with_its_kernel(docker_gateway):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    marker = f"kernelgate-daemon-{uuid.uuid4().hex}"
    ws = await client.connect(kernel["id"])
    run = await ws.execute(DAEMON.replace("MARKER", repr(marker)))
    ws.close()
    assert run.stdout == "1\n", run.stdout  # the daemon runs, in the sandbox
    assert host_processes_with(marker)  # and is a host process, under the container
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204
    for _ in range(50):  # the engine reaps the container's processes as it removes it
        if not host_processes_with(marker):
            break
        await asyncio.sleep(0.1)
    assert host_processes_with(marker) == []


async def test_nothing_a_solo_kernel_leaves_reaches_the_next(docker_gateway):
    """Files planted in /tmp, /dev/shm and the home folder are gone for the next solo
    kernel (row 14): each has a fresh container, and those folders go with it."""
    client = docker_gateway.client()
    places = ["/tmp/planted", "/dev/shm/planted", "/home/kernel/planted"]
    first = await client.start_kernel()
    ws = await client.connect(first["id"])
    run = await ws.execute(f"for p in {places!r}:\n    open(p, 'w').write('x')\n"
                           f"import os\nprint(all(os.path.exists(p) for p in {places!r}))")
    ws.close()
    assert run.stdout == "True\n", run.stdout
    await client.request("DELETE", f"/api/kernels/{first['id']}")
    second = await client.start_kernel()
    ws = await client.connect(second["id"])
    run = await ws.execute(f"import os\nprint([p for p in {places!r} if os.path.exists(p)])")
    ws.close()
    assert run.stdout == "[]\n", run.stdout
    await client.request("DELETE", f"/api/kernels/{second['id']}")
