"""Warm pools: solo kernels started before anyone asks, handed out once, never reused;
served to real start requests (JupyterLab's GatewayClient sends KERNEL_* variables);
sized per kernelspec within min..max by demand, refilled in parallel; on by default."""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import pytest

from kernelgate.engine import GATEWAY_LABEL, KERNEL_LABEL, OWNER_LABEL
from kernelgate.sandbox import HOME
from tests.harness import NO_POOL, GatewayProcess
from tests.test_clients import start_jupyter_server  # noqa: F401 - a fixture
from tests.test_metrics import scrape, value

#: What a kernel reports about its environment, as one printed JSON line.
PROBE = (
    "import json, os; print(json.dumps({'cwd': os.getcwd(), 'uid': os.getuid(), 'env': {k: os.environ.get(k)"
    " for k in ('KERNEL_FOO', 'KERNEL_COLOR', 'KERNEL_WORKING_DIR', 'KERNEL_LAUNCH_TIMEOUT',"
    " 'KERNEL_USERNAME', 'SECRET_TOKEN', 'LD_LIBRARY_PATH', 'LD_PRELOAD', 'PATH', 'HOME')}}))"
)


async def probe(ws) -> dict:
    run = await ws.execute(PROBE)
    assert run.status == "ok", run
    return json.loads(run.stdout)


async def pool_ready(client, name: str = "python3", at_least: int = 1, tries: int = 240) -> dict:
    """The metrics once `name`'s pool holds `at_least` ready kernels."""
    for _ in range(tries):
        samples = await scrape(client)
        if value(samples, "kernelgate_pool_ready", kernelspec=name) >= at_least:
            return samples
        await asyncio.sleep(0.5)
    raise AssertionError(f"the pool of {name} did not reach {at_least}")


def pool_config(tmp_path, text: str):
    config = tmp_path / "pool_config.py"
    config.write_text("c.KernelRegistry.pool_retry = 1\n" + text)
    return config


async def test_pooled_kernels_are_handed_out_once(docker_engine, start_gateway, tmp_path):
    config = pool_config(tmp_path, 'c.KernelRegistry.pool_sizes = {"python3": 1}\n'
                                   'c.KernelRegistry.allowed_client_env = ["KERNEL_COLOR"]\n')
    gateway = start_gateway("--kernels=docker", f"--config={config}")
    mine = {"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"}
    client = gateway.client()
    await pool_ready(client)
    (pooled,) = docker_engine.containers.list(filters=mine)
    assert pooled.labels[OWNER_LABEL] == ""  # no identity before it is handed out
    first = await client.start_kernel()
    assert first["kernelgate"]["pooled"] is True
    assert first["id"] == pooled.labels[KERNEL_LABEL]
    ws = await client.connect(first["id"])
    assert (await ws.execute("print(6 * 7)")).stdout == "42\n"
    ws.close()
    # a request passing an allowed variable needs a kernel started with it
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


async def test_a_gateway_client_start_comes_from_the_pool(docker_engine, start_gateway,
                                                          start_jupyter_server, tmp_path):  # noqa: F811
    """A real `jupyter server --gateway-url` whose environment holds KERNEL_USERNAME, an
    unknown KERNEL_FOO, and (through GatewayClient.allowed_envs) a secret, PATH and
    LD_LIBRARY_PATH; GatewayClient adds KERNEL_WORKING_DIR and KERNEL_LAUNCH_TIMEOUT.
    The notebook's kernel is the pooled one; it works in its sandbox's home as uid 1000,
    belongs to the gateway's caller, and none of those variables is in it. A start that
    passes an allowed variable gets a new kernel with that variable and nothing else."""
    config = pool_config(tmp_path, 'c.KernelRegistry.pool_sizes = {"python3": 1}\n'
                                   'c.KernelRegistry.allowed_client_env = ["KERNEL_COLOR"]\n')
    gateway = start_gateway("--kernels=docker", f"--config={config}")
    gw = gateway.client()
    await pool_ready(gw)
    (pooled,) = docker_engine.containers.list(filters={"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"})
    server = start_jupyter_server(gateway, env={
        "KERNEL_USERNAME": "mallory", "KERNEL_FOO": "bar", "SECRET_TOKEN": "hunter2",
        "JUPYTER_GATEWAY_ALLOWED_ENVS": "SECRET_TOKEN,PATH,LD_LIBRARY_PATH",
        "PATH": f"/tmp/evil-bin:{os.environ['PATH']}", "LD_LIBRARY_PATH": "/tmp/evil-lib",
    })
    (server.root / "work").mkdir()
    js = server.client()
    response = await js.request("POST", "/api/sessions", {
        "path": "work/analysis.ipynb", "name": "analysis.ipynb", "type": "notebook",
        "kernel": {"name": "python3"},
    })
    assert response.status == 201, response.body
    session_id, kernel_id = response.body["id"], response.body["kernel"]["id"]
    assert kernel_id == pooled.labels[KERNEL_LABEL]  # the container that waited in the pool
    samples = await scrape(gw)
    assert value(samples, "kernelgate_kernel_start_seconds_count", kernelspec="python3", source="pool") == 1
    assert value(samples, "kernelgate_kernel_start_seconds_count", kernelspec="python3", source="cold") == 0
    model = (await gw.request("GET", f"/api/kernels/{kernel_id}")).body
    assert model["kernelgate"]["owner"] == "dev" and model["kernelgate"]["pooled"] is True
    ws = await js.connect(kernel_id)
    seen = await probe(ws)
    ws.close()
    assert seen["cwd"] == HOME and seen["uid"] == 1000
    assert seen["env"]["HOME"] == HOME
    assert "/tmp/evil" not in seen["env"]["PATH"]
    for name in ("KERNEL_FOO", "KERNEL_WORKING_DIR", "KERNEL_LAUNCH_TIMEOUT", "KERNEL_USERNAME",
                 "SECRET_TOKEN"):
        assert seen["env"][name] is None, (name, seen)
    # the gateway's own value (where the kernel's C installs go), never the client's
    assert seen["env"]["LD_LIBRARY_PATH"] in (None, f"{HOME}/.kernelgate/c/lib"), seen
    assert "mallory" not in str(seen) and "hunter2" not in str(seen)

    # an allowed variable: a new kernel, which has it, and the same folder and user
    cold = await gw.start_kernel(env={
        "KERNEL_COLOR": "red", "KERNEL_FOO": "bar", "KERNEL_USERNAME": "mallory",
        "KERNEL_WORKING_DIR": "/home/lab/notebooks", "PATH": "/tmp/evil-bin", "LD_PRELOAD": "/tmp/x.so",
    })
    assert cold["kernelgate"]["pooled"] is False
    ws = await gw.connect(cold["id"])
    fresh = await probe(ws)
    ws.close()
    assert fresh["cwd"] == HOME and fresh["uid"] == 1000
    assert fresh["env"]["KERNEL_COLOR"] == "red" and fresh["env"]["KERNEL_USERNAME"] == "dev"
    assert fresh["env"]["KERNEL_FOO"] is None and fresh["env"]["KERNEL_WORKING_DIR"] is None
    assert fresh["env"]["LD_PRELOAD"] is None and "/tmp/evil" not in fresh["env"]["PATH"]
    samples = await scrape(gw)
    assert value(samples, "kernelgate_kernel_start_seconds_count", kernelspec="python3", source="cold") == 1
    bad = await gw.request("POST", "/api/kernels", {"name": "python3", "env": {"KERNEL_COLOR": ["red"]}})
    assert bad.status == 400 and "KERNEL_COLOR" in bad.body["message"], bad.body
    assert (await js.request("DELETE", f"/api/sessions/{session_id}")).status == 204
    assert (await gw.request("DELETE", f"/api/kernels/{cold['id']}")).status == 204


@pytest.mark.parametrize("name", ["LD_PRELOAD", "PATH", "HOME", "KERNEL_USERNAME"])
def test_only_client_kernel_variables_can_be_allowed(name, tmp_path):
    """A gateway configured to pass PATH, HOME, LD_* (or the gateway's own KERNEL_USERNAME)
    from clients into sandboxes refuses to start."""
    config = pool_config(tmp_path, f'c.KernelRegistry.allowed_client_env = ["KERNEL_FOO", "{name}"]\n')
    gateway = GatewayProcess(tmp_path, "--kernels=local", f"--config={config}")
    try:
        with pytest.raises(RuntimeError, match="gateway exited"):
            gateway.start()
        assert f"allowed_client_env: '{name}' is not a client KERNEL_* variable" in gateway.log()
    finally:
        gateway.stop()
        shutil.rmtree(gateway.runtime_dir, ignore_errors=True)


async def test_a_small_pool_is_on_by_default_with_docker(docker_engine, start_gateway):
    gateway = start_gateway("--kernels=docker", env={NO_POOL: None})
    client = gateway.client()
    samples = await pool_ready(client)
    assert value(samples, "kernelgate_pool_ready", kernelspec="python3") == 1
    kernel = await client.start_kernel(env={"KERNEL_WORKING_DIR": "/home/lab", "KERNEL_LAUNCH_TIMEOUT": "40"})
    assert kernel["kernelgate"]["pooled"] is True
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204


async def test_pools_grow_with_demand_in_parallel_and_shrink(docker_engine, start_gateway, tmp_path):
    """min 1, max 3: three starts within pool_window make the pool want three ready
    kernels, started two at a time (pool_parallel); once the starts leave the window,
    the pool is back to one."""
    config = pool_config(tmp_path, 'c.KernelRegistry.pool_sizes = {"python3": {"min": 1, "max": 3}}\n'
                                   "c.KernelRegistry.pool_window = 40\nc.KernelRegistry.pool_parallel = 2\n")
    gateway = start_gateway("--kernels=docker", f"--config={config}")
    client = gateway.client()
    unowned = {"label": [f"{GATEWAY_LABEL}={gateway.gateway_id}", f"{OWNER_LABEL}="]}
    await pool_ready(client)
    (first,) = docker_engine.containers.list(filters=unowned)  # its labels stay: owner ""
    starting_at_once, history = 0, []

    async def watch_fills() -> float:
        nonlocal starting_at_once
        for _ in range(600):
            # listed first: a kernel ready by the scrape was listed ready or starting
            containers = await asyncio.to_thread(docker_engine.containers.list, filters=unowned)
            ready = value(await scrape(client), "kernelgate_pool_ready", kernelspec="python3")
            waiting = [c for c in containers if c.id != first.id]
            starting_at_once = max(starting_at_once, len(waiting) - ready)
            history.append((len(waiting), ready))
            if ready == 3:
                return ready
            await asyncio.sleep(0.1)
        return ready

    watcher = asyncio.ensure_future(watch_fills())
    kernels = await asyncio.gather(*(client.start_kernel() for _ in range(3)))
    assert [k["id"] for k in kernels if k["kernelgate"]["pooled"]] == [first.labels[KERNEL_LABEL]]
    assert await watcher == 3
    assert starting_at_once == 2, history  # two fills at once, never more
    for kernel in kernels:
        assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204
    for _ in range(240):  # a pool kernel let go is removed after it left the pool
        ready = value(await scrape(client), "kernelgate_pool_ready", kernelspec="python3")
        containers = await asyncio.to_thread(docker_engine.containers.list, filters=unowned)
        if ready == len(containers) == 1:
            break
        await asyncio.sleep(0.5)
    assert ready == len(containers) == 1
