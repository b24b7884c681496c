"""The untrusted tier: kernels under gVisor (Docker runtime `runsc`), and abuse of them.

A test kernelspec runs the python image in the `untrusted` tier. Its kernel must really
run under gVisor (its kernel log is gVisor's, its kernel version is not the host's), in
the same locked-down sandbox as every kernel, and survive a fork bomb, a memory bomb and
attempts to reach the host's network, leaving the gateway unharmed.
"""

from __future__ import annotations

import asyncio
import json
import platform

import pytest

from tests.ci import require
from tests.harness import ROOT
from tests.test_sandbox import PROBE, container_of, host_listener  # noqa: F401 - a fixture

SPEC = {
    "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "display_name": "Python 3 (gVisor)", "language": "python",
    "metadata": {"kernel_provisioner": {"provisioner_name": "docker-provisioner",
                                        "config": {"image": "python", "tier": "untrusted"}}},
}


@pytest.fixture
def gateway(start_gateway, docker_engine, tmp_path):
    if "runsc" not in docker_engine.info().get("Runtimes", {}):
        require("Docker has no runsc runtime (scripts/install.sh registers it)")
    spec = tmp_path / "specs" / "python-untrusted"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps(SPEC))
    config = tmp_path / "config.py"
    config.write_text(
        f"c.KernelSpecCatalog.kernelspec_dirs = [{str(ROOT / 'kernelspecs')!r}, {str(spec.parent)!r}]\n"
        "c.Plans.plans = {p: {'kernel_tiers': ['untrusted'], 'max_kernels': 2} for p in ('free', 'pro', 'team')}\n"
        "c.KernelRegistry.check_interval = 0.5\n")
    return start_gateway("--kernels=docker", f"--config={config}")


async def idle_again(client, kernel_id: str) -> dict:
    for _ in range(300):
        model = (await client.request("GET", f"/api/kernels/{kernel_id}")).body
        if model.get("execution_state") == "idle":
            return model
        await asyncio.sleep(0.2)
    raise AssertionError(f"kernel not idle: {model}")


async def test_an_untrusted_kernel_runs_under_gvisor(gateway, docker_engine, host_listener):  # noqa: F811
    client = gateway.client()
    kernel = await client.start_kernel("python-untrusted")
    assert kernel["kernelgate"]["tier"] == "untrusted"
    assert container_of(docker_engine, kernel["id"]).attrs["HostConfig"]["Runtime"] == "runsc"
    ws = await client.connect(kernel["id"])
    run = await ws.execute("import platform, subprocess\n"
                           "print(subprocess.run(['dmesg'], capture_output=True, text=True).stdout)\n"
                           "print('release', platform.release())\n"
                           "print(sum(range(10)))")
    assert "Starting gVisor" in run.stdout, run.stdout
    release = run.stdout.split("release ")[1].split()[0]
    assert release != platform.release()  # the kernel it sees is gVisor's, not the host's
    assert run.stdout.splitlines()[-1] == "45"
    port, reached = host_listener
    probe = (await ws.execute(PROBE.replace("PORT", str(port)))).stdout.splitlines()
    assert probe == [
        "1000 1000", "['lo']", "0 routes", "host loopback: Connection refused",
        # gVisor checks permissions before the read-only mount: EACCES, not EROFS
        "/evil errno 13", "/usr/evil errno 13", "rootfs read-only True",
        "CapBnd 0000000000000000", "CapEff 0000000000000000", "CapPrm 0000000000000000",
        "NoNewPrivs absent",  # gVisor's /proc does not show it
        "ok",
    ], probe
    assert not reached()
    ws.close()
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204


async def test_untrusted_kernel_survives_a_fork_bomb(gateway, docker_engine):
    """Under gVisor every sandboxed process needs host threads of gVisor's own: the pids
    limit stops the bomb either inside (fork fails) or by ending the sandbox, which the
    gateway then replaces. Either way the kernel works afterwards."""
    client = gateway.client()
    kernel = await client.start_kernel("python-untrusted")
    ws = await client.connect(kernel["id"])
    await ws.send("shell", "execute_request", {"code": (
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    while children < 10000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        children += 1\n"
        "except OSError as e:\n"
        "    print('stopped after', children, 'forks:', e.strerror)\n"), "silent": False})
    texts = ""
    while "stopped after" not in texts and "The kernel died" not in texts:
        msg = await ws.recv(timeout=120)
        if msg["header"]["msg_type"] == "stream":
            texts += msg["content"]["text"]
    if "stopped after" in texts:
        assert int(texts.split("stopped after")[1].split()[0]) < 128
    await idle_again(client, kernel["id"])
    assert (await ws.execute("print('alive')", timeout=60)).stdout == "alive\n"
    ws.close()
    assert (await client.request("GET", "/api")).status == 200
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_untrusted_kernel_survives_a_memory_bomb(gateway):
    client = gateway.client()
    kernel = await client.start_kernel("python-untrusted")
    ws = await client.connect(kernel["id"])
    await ws.send("shell", "execute_request", {"code": "x = []\nwhile True: x.append(' ' * 10**7)",
                                               "silent": False})
    texts = ""
    while "The kernel died" not in texts:
        msg = await ws.recv(timeout=120)
        if msg["header"]["msg_type"] == "stream":
            texts += msg["content"]["text"]
    assert "ran out of memory (the 256 MiB limit" in texts, texts
    await idle_again(client, kernel["id"])
    assert (await ws.execute("print('alive')", timeout=60)).stdout == "alive\n"
    ws.close()
    assert (await client.request("GET", "/api")).status == 200
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
