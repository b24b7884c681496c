"""Resource side channels between tenants (abuse checklist row 23).

What is defended: CPU. A sandbox's cgroup quota bounds what a CPU hog takes, however many
threads it runs, so its neighbours keep the rest of the machine; measured from the hog's
own cgroup on the host (CPU time used against wall time), not by timing a neighbour.
What is not: cache and timing side channels between tenants sharing cores (tiers are
quotas, not pinned CPU sets); docs/security.md says so.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from kernelgate.engine import KERNEL_LABEL

#: Seconds the hog is measured for.
WINDOW = 4.0


def cgroup_file(pid: int, controller: str, name: str) -> Path:
    """The file `name` of the `controller` cgroup (v1 or v2) holding process `pid`."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup", controller, path.lstrip("/"), name)
    v2 = next(line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.startswith("0::"))
    return Path("/sys/fs/cgroup", v2[3:].lstrip("/"), name)


def cpu_seconds(pid: int) -> float:
    """CPU time used by the cgroup of `pid` so far, in seconds."""
    usage = cgroup_file(pid, "cpuacct", "cpuacct.usage")
    if usage.exists():
        return int(usage.read_text()) / 1e9
    stat = dict(line.split() for line in cgroup_file(pid, "cpu", "cpu.stat").read_text().splitlines())
    return int(stat["usage_usec"]) / 1e6


async def test_a_cpu_hog_gets_no_more_than_its_tiers_cpus(docker_gateway, docker_engine):
    client = docker_gateway.client()
    hog, neighbour = await client.start_kernel(), await client.start_kernel()
    container = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={hog['id']}"})[0]
    pid = container.attrs["State"]["Pid"]
    ws = await client.connect(hog["id"])
    run = await ws.execute(
        "import threading\n"
        "def spin():\n"
        "    while True: pass\n"
        "for _ in range(8): threading.Thread(target=spin, daemon=True).start()\n"
        "print('spinning')")
    assert run.stdout == "spinning\n", run.reply
    await asyncio.sleep(1)  # the threads are running
    container.reload()  # the tier's quota (a new container starts with start_cpus)
    quota = container.attrs["HostConfig"]["CpuQuota"] / container.attrs["HostConfig"]["CpuPeriod"]
    assert 0 < quota < os.cpu_count(), quota  # the rest of the machine is the neighbours'
    used, began = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(WINDOW)
    share = (cpu_seconds(pid) - used) / (time.monotonic() - began)
    assert 0.5 * quota < share <= quota * 1.15, (share, quota)  # it runs, bounded by its quota

    # the neighbour runs code meanwhile
    other = await client.connect(neighbour["id"])
    assert (await other.execute("print(sum(range(1000)))", timeout=60)).stdout == "499500\n"
    other.close()
    ws.close()
