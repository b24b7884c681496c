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
import statistics
import time

from docker_gateway import docker_gateway



async def first_result(client, env: dict | None) -> tuple[float, bool]:
    start = time.perf_counter()
    kernel = await client.start_kernel(env=env)
    ws = await client.connect(kernel["id"])
    await ws.execute("1+1")
    elapsed = (time.perf_counter() - start) * 1000
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
    return elapsed, kernel["kernelgate"]["pooled"]


async def main(runs: int, wait: float) -> None:
    with docker_gateway("pool", 'c.KernelRegistry.pool_sizes = {"python3": 1}\n') as gateway:
        pooled, cold = [], []
        for _ in range(runs):
            await asyncio.sleep(wait)
            elapsed, from_pool = await first_result(gateway.client, None)
            assert from_pool, "the pool was not refilled in time: raise --wait"
            pooled.append(elapsed)
            elapsed, from_pool = await first_result(gateway.client, {"KERNEL_BENCH": "cold"})
            assert not from_pool
            cold.append(elapsed)
        for name, samples in (("warm pool", pooled), ("cold", cold)):
            print(f"{name:9}: POST -> first execute_result p50 {statistics.median(samples):6.0f} ms, "
                  f"max {max(samples):6.0f} ms ({runs} runs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--wait", type=float, default=4.0)
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.wait))
