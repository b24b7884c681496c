#!/usr/bin/env python
"""Many idle kernels on one machine: how many start, and how REST answers meanwhile.

Usage: python -m bench.many_kernels [--kernels 200] [--parallel 4] [--requests 300]
       [--kernelspec python3] [--source PATH]

Starts its own `kernelgate serve --kernels=docker --no-auth` (from the kernelgate code in
--source, default this checkout), then starts `--kernels` kernels of `--kernelspec`,
`--parallel` at a time, and reports how many started and how long it took. With all of
them idle it times `--requests` REST calls (alternately GET /api/kernels and
GET /api/kernels/{id}) and reports p50/p99; the memory of the kernel containers from
`docker stats`; the gateway's share (its RSS growth divided by the kernels); and, for one
container, each process's private (anonymous) and resident memory from
/proc/<pid>/smaps_rollup. Everything runs on 127.0.0.1 and is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
from pathlib import Path

from bench.docker_gateway import ROOT, docker_gateway



def container_memory_mib(gateway_id: str) -> list[float]:
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=org.kernelgate.gateway={gateway_id}"],
                         capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return []
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{json .}}", *ids],
                         capture_output=True, text=True, check=True).stdout
    sizes = []
    for line in out.splitlines():
        used = json.loads(line)["MemUsage"].split("/")[0].strip()
        number, unit = float(used[:-3]), used[-3:]
        sizes.append(number * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(unit, 1))
    return sizes


#: Prints "<pid> <anonymous kB> <rss kB> <command>" for each process of a container.
PROCESSES = (
    'for p in /proc/[0-9]*; do c=$(tr "\\0" " " < $p/cmdline 2>/dev/null | cut -c1-60);'
    ' [ -n "$c" ] || continue; case "$c" in "sh -c"*) continue;; esac;'
    ' a=$(awk \'/^Anonymous:/{print $2}\' $p/smaps_rollup); r=$(awk \'/^Rss:/{print $2}\' $p/smaps_rollup);'
    ' echo "${p#/proc/} $a $r $c"; done'
)


def rss_mib(pid: int) -> float:
    """A process's resident memory (VmRSS) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def processes(gateway_id: str) -> list[str]:
    """Lines "anon MiB, RSS MiB, command" for the processes of one kernel container."""
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=org.kernelgate.gateway={gateway_id}"],
                         capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return []
    out = subprocess.run(["docker", "exec", ids[0], "sh", "-c", PROCESSES],
                         capture_output=True, text=True, timeout=60).stdout
    lines = []
    for line in out.splitlines():
        pid, anon, rss, command = line.split(" ", 3)
        lines.append(f"  pid {pid}: {int(anon) / 1024:.1f} MiB anonymous, {int(rss) / 1024:.1f} MiB RSS: {command}")
    return lines


async def main(count: int, parallel: int, calls: int, kernelspec: str, source: Path) -> None:
    config = (  # no per-user kernel limit for the one benchmark user
        'c.Plans.plans = {"bench": {"kernel_tiers": ["low", "medium", "high"], "max_kernels": 0}}\n'
        'c.Plans.order = ["bench"]\nc.Plans.admin_plan = "bench"\n'
    )
    with docker_gateway("many", config, source) as gateway:
        await asyncio.sleep(2)
        gateway_before = rss_mib(gateway.pid)
        started, failures, semaphore = [], [], asyncio.Semaphore(parallel)

        async def one():
            async with semaphore:
                response = await gateway.client.request("POST", "/api/kernels", {"name": kernelspec}, timeout=300)
                (started if response.status == 201 else failures).append(response.body)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.perf_counter() - t0
        print(f"started {len(started)} of {count} {kernelspec} kernels in {elapsed:.0f} s "
              f"({len(failures)} failed{': ' + str(failures[0])[:200] if failures else ''})")
        await asyncio.sleep(5)  # all idle
        times = []
        for i in range(calls):
            path = "/api/kernels" if i % 2 == 0 else f"/api/kernels/{started[i % len(started)]['id']}"
            t = time.perf_counter()
            response = await gateway.client.request("GET", path)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status == 200
        times.sort()
        print(f"REST with {len(started)} idle kernels: p50 {statistics.median(times):.1f} ms, "
              f"p99 {times[int(len(times) * 0.99) - 1]:.1f} ms ({calls} calls)")
        memory = container_memory_mib(gateway.gateway_id)
        if memory:
            print(f"kernel containers: {statistics.median(memory):.0f} MiB p50 each, "
                  f"{sum(memory) / 1024:.1f} GiB in all ({len(memory)} containers, docker stats)")
        if started:
            growth = rss_mib(gateway.pid) - gateway_before
            print(f"gateway: RSS {gateway_before:.0f} -> {gateway_before + growth:.0f} MiB, "
                  f"{growth / len(started):.2f} MiB per kernel")
        print("one kernel container's processes (/proc/<pid>/smaps_rollup):", *processes(gateway.gateway_id),
              sep="\n")
        await asyncio.gather(*(gateway.client.request("DELETE", f"/api/kernels/{k['id']}", timeout=300)
                               for k in started))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--kernelspec", default="python3")
    parser.add_argument("--source", type=Path, default=ROOT, help="kernelgate source tree to run")
    options = parser.parse_args()
    asyncio.run(main(options.kernels, options.parallel, options.requests, options.kernelspec,
                     options.source.resolve()))
