#!/usr/bin/env python
"""Time from POST /api/kernels to the first execute_result, from a warm pool and cold.

Usage: python bench/pool_start.py [--runs 6] [--wait 4]

Starts its own `kernelgate serve --kernels=docker --no-auth` with a pool of one python3
kernel, then, `--runs` times each: waits `--wait` seconds for the pool to refill, starts
a kernel (it must come from the pool), executes `1+1`, deletes the kernel; then the
same with a KERNEL_* variable, which never comes from the pool (cold). Prints p50 and
max of both, in ms. Everything runs on 127.0.0.1 and is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.client import GatewayClient  # noqa: E402 - the project's test client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def first_result(client: GatewayClient, env: dict | None) -> tuple[float, bool]:
    start = time.perf_counter()
    kernel = await client.start_kernel(env=env)
    ws = await client.connect(kernel["id"])
    await ws.execute("1+1")
    elapsed = (time.perf_counter() - start) * 1000
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
    return elapsed, kernel["kernelgate"]["pooled"]


async def main(runs: int, wait: float) -> None:
    port, tmp = free_port(), Path(tempfile.mkdtemp(prefix="kgpool-", dir="/tmp"))
    (tmp / "config.py").write_text('c.KernelRegistry.pool_sizes = {"python3": 1}\n')
    gateway = subprocess.Popen(
        [sys.executable, "-m", "kernelgate", "serve", f"--port={port}", "--no-auth",
         "--kernels=docker", f"--runtime-dir={tmp}/rt", f"--data-dir={tmp}/data",
         f"--gateway-id=bench-pool-{port}", f"--config={tmp}/config.py"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                requests.get(f"http://127.0.0.1:{port}/api", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        client = GatewayClient(f"http://127.0.0.1:{port}")
        pooled, cold = [], []
        for _ in range(runs):
            await asyncio.sleep(wait)
            elapsed, from_pool = await first_result(client, None)
            assert from_pool, "the pool was not refilled in time: raise --wait"
            pooled.append(elapsed)
            elapsed, from_pool = await first_result(client, {"KERNEL_BENCH": "cold"})
            assert not from_pool
            cold.append(elapsed)
        for name, samples in (("warm pool", pooled), ("cold", cold)):
            print(f"{name:9}: POST -> first execute_result p50 {statistics.median(samples):6.0f} ms, "
                  f"max {max(samples):6.0f} ms ({runs} runs)")
    finally:
        gateway.terminate()
        gateway.wait(60)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--wait", type=float, default=4.0)
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.wait))
