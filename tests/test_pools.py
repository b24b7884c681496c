"""Warm pools: solo kernels started before anyone asks, handed out once, never reused."""

from __future__ import annotations

import asyncio

from kernelgate.engine import GATEWAY_LABEL, KERNEL_LABEL, OWNER_LABEL


async def test_pooled_kernels_are_handed_out_once(docker_engine, start_gateway, tmp_path):
    config = tmp_path / "pool_config.py"
    config.write_text('c.KernelRegistry.pool_sizes = {"python3": 1}\nc.KernelRegistry.pool_retry = 1\n')
    gateway = start_gateway("--kernels=docker", f"--config={config}")
    mine = {"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"}

    async def waiting() -> list:
        for _ in range(100):
            containers = docker_engine.containers.list(filters=mine)
            if containers:
                return containers
            await asyncio.sleep(0.2)
        raise AssertionError("the pool was not filled")

    (pooled,) = await waiting()
    assert pooled.labels[OWNER_LABEL] == ""  # no identity before it is handed out
    await asyncio.sleep(2)  # ready, not just created
    client = gateway.client()
    first = await client.start_kernel()
    assert first["kernelgate"]["pooled"] is True
    assert first["id"] == pooled.labels[KERNEL_LABEL]
    ws = await client.connect(first["id"])
    assert (await ws.execute("print(6 * 7)")).stdout == "42\n"
    ws.close()
    # a request with its own KERNEL_* variables needs a kernel started with them
    own = await client.start_kernel(env={"KERNEL_COLOR": "red"})
    assert own["kernelgate"]["pooled"] is False
    # the pool refills with a new kernel; the handed-out one never goes back
    assert (await client.request("DELETE", f"/api/kernels/{first['id']}")).status == 204
    for _ in range(100):
        ids = {c.labels[KERNEL_LABEL] for c in docker_engine.containers.list(filters=mine)}
        if len(ids - {own["id"]}) == 1:
            break
        await asyncio.sleep(0.2)
    refill = ids - {own["id"]}
    assert len(refill) == 1 and first["id"] not in refill
    await client.request("DELETE", f"/api/kernels/{own['id']}")
