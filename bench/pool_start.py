#!/usr/bin/env python
"""Time from POST /api/kernels to the first execute_result: from a warm pool and cold,
with no variables and with what JupyterLab's GatewayClient sends.

Usage: python -m bench.pool_start [--runs 6] [--wait 30]

Starts its own `kernelgate serve --kernels=docker --no-auth` with a pool of one python3
kernel and KERNEL_BENCH in allowed_client_env, then, `--runs` times each, in turn:
- pool, no env: a plain start (it must come from the pool);
- pool, GatewayClient env: KERNEL_WORKING_DIR, KERNEL_LAUNCH_TIMEOUT, KERNEL_USERNAME and an
  unknown KERNEL_FOO, as GatewayClient sends them (it must come from the pool);
- cold, GatewayClient env: the same plus the allowed KERNEL_BENCH, which only a new
  kernel can have (it must not come from the pool).
Each start executes `1+1` and deletes the kernel; before each pooled start the bench waits
(at most `--wait` seconds) until the pool is refilled. Prints p50 and max of each, in ms.
Everything runs on 127.0.0.1 and is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.docker_gateway import docker_gateway

#: What GatewayClient (jupyter_server) sends for a notebook in a Lab server whose
#: environment has KERNEL_USERNAME and some other KERNEL_* variable.
GATEWAY_CLIENT_ENV = {
    "KERNEL_WORKING_DIR": "/home/lab/notebooks/project",
    "KERNEL_LAUNCH_TIMEOUT": "40",
    "KERNEL_USERNAME": "lab-user",
    "KERNEL_FOO": "bar",
}

CONFIG = ('c.KernelRegistry.pool_sizes = {"python3": 1}\n'
          'c.KernelRegistry.allowed_client_env = ["KERNEL_BENCH"]\n'
          "c.KernelRegistry.pool_retry = 1\n")


async def first_result(client, env: dict | None) -> tuple[float, bool]:
    start = time.perf_counter()
    kernel = await client.start_kernel(env=env)
    ws = await client.connect(kernel["id"])
    await ws.execute("1+1")
    elapsed = (time.perf_counter() - start) * 1000
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
    return elapsed, kernel["kernelgate"]["pooled"]


async def pool_refilled(client, wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        text = (await client.request("GET", "/metrics")).body
        text = text.decode() if isinstance(text, bytes) else str(text)
        if 'kernelgate_pool_ready{kernelspec="python3"} 1.0' in text:
            return
        await asyncio.sleep(0.2)
    raise SystemExit("the pool was not refilled in time: raise --wait")


async def main(runs: int, wait: float) -> None:
    kinds = {
        "pool, no env": (None, True),
        "pool, GatewayClient env": (GATEWAY_CLIENT_ENV, True),
        "cold, GatewayClient env": ({**GATEWAY_CLIENT_ENV, "KERNEL_BENCH": "cold"}, False),
    }
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    with docker_gateway("pool", CONFIG) as gateway:
        for _ in range(runs):
            for kind, (env, pooled) in kinds.items():
                await pool_refilled(gateway.client, wait)
                await asyncio.sleep(1)  # the refill's container settles
                elapsed, from_pool = await first_result(gateway.client, env)
                assert from_pool is pooled, f"{kind}: pooled={from_pool}"
                samples[kind].append(elapsed)
    for kind, values in samples.items():
        print(f"{kind:24}: POST -> first execute_result p50 {statistics.median(values):6.0f} ms, "
              f"max {max(values):6.0f} ms ({runs} runs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--wait", type=float, default=30.0)
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.wait))
