"""The Docker sandbox holds: what a kernel can and cannot do inside its container."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from kernelgate.engine import GATEWAY_LABEL, KERNEL_LABEL, OWNER_LABEL


def container_of(docker_engine, kernel_id: str):
    (container,) = docker_engine.containers.list(all=True, filters={"label": f"{KERNEL_LABEL}={kernel_id}"})
    return container


async def test_container_is_locked_down(docker_gateway, docker_engine):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    run = await ws.execute(
        "import os, socket\n"
        "print(os.getuid(), os.getgid())\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2); print('net: yes')\n"
        "except OSError as e:\n"
        "    print('net: no')\n"
        "try:\n"
        "    open('/usr/evil', 'w'); print('rootfs: writable')\n"
        "except OSError:\n"
        "    print('rootfs: read-only')\n"
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "print(open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0])\n"
        "open('/tmp/scratch', 'w').write('ok'); print(open('/tmp/scratch').read())\n"
    )
    lines = run.stdout.splitlines()
    assert lines[0] == "1000 1000"
    assert lines[1] == "['lo']"
    assert lines[2] == "net: no"
    assert lines[3] == "rootfs: read-only"
    assert lines[4] == "0000000000000000"  # no capabilities
    assert lines[5] == "1"  # no-new-privileges
    assert lines[6] == "ok"  # /tmp is a writable tmpfs
    container = container_of(docker_engine, kernel["id"])
    host = container.attrs["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] and host["Init"]
    assert host["Memory"] == 256 * 1024 * 1024 and host["MemorySwap"] == host["Memory"]
    assert host["PidsLimit"] == 128 and (host["CpuQuota"], host["CpuPeriod"]) == (50_000, 100_000)
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    labels = container.labels
    assert labels[OWNER_LABEL] == "dev" and labels[GATEWAY_LABEL] == docker_gateway.gateway_id
    ws.close()
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204
    assert not docker_engine.containers.list(all=True, filters={"label": f"{KERNEL_LABEL}={kernel['id']}"})
    assert not (docker_gateway.runtime_dir / kernel["id"]).exists()


async def test_memory_bomb_is_contained(docker_gateway):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    await ws.send("shell", "execute_request", {
        "code": "x = []\nwhile True: x.append(' ' * 10**7)", "silent": False,
    })
    states, texts = [], ""
    while "restarting" not in states and "dead" not in states:
        msg = await ws.recv(timeout=60)
        if msg["header"]["msg_type"] == "status":
            states.append(msg["content"]["execution_state"])
        elif msg["header"]["msg_type"] == "stream":
            texts += msg["content"]["text"]
    assert "ran out of memory (the 256 MiB limit" in texts
    # the gateway is unharmed, and the kernel came back in a fresh container
    for _ in range(100):
        model = (await client.request("GET", f"/api/kernels/{kernel['id']}")).body
        if model.get("execution_state") == "idle":
            break
        await asyncio.sleep(0.2)
    assert model["execution_state"] == "idle"
    assert (await ws.execute("print('alive')")).stdout == "alive\n"
    assert (await client.request("GET", "/api")).status == 200
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_fork_bomb_is_stopped_by_pids_limit(docker_gateway):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    run = await ws.execute(
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    while children < 10000:\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        children += 1\n"
        "except OSError as e:\n"
        "    print('stopped after', children, 'forks:', e.strerror)\n",
        timeout=120,
    )
    assert "stopped after" in run.stdout, run.stdout
    assert int(run.stdout.split()[2]) < 128
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
    assert (await client.request("GET", "/api")).status == 200


async def test_orphans_of_an_earlier_run_are_removed(docker_engine, start_gateway):
    first = start_gateway("--kernels=docker")
    kernel = await first.client().start_kernel()
    first.stop(sig=signal.SIGKILL)  # a crash: the container is left behind
    assert container_of(docker_engine, kernel["id"]).status == "running"
    start_gateway("--kernels=docker", like=first)
    assert not docker_engine.containers.list(all=True, filters={"label": f"{KERNEL_LABEL}={kernel['id']}"})
    assert not (first.runtime_dir / kernel["id"]).exists()


async def test_dead_container_is_reported_and_cleaned_up(docker_gateway, docker_engine):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    # the container is removed under the gateway's feet, again and again
    for _ in range(150):
        try:
            container_of(docker_engine, kernel["id"]).remove(force=True)
        except ValueError:
            pass
        await asyncio.sleep(0.3)
        if (await client.request("GET", f"/api/kernels/{kernel['id']}")).status == 404:
            break
    assert (await client.request("GET", f"/api/kernels/{kernel['id']}")).status == 404
    states = []
    try:
        while True:
            msg = await ws.recv(timeout=5)
            if msg["header"]["msg_type"] == "status":
                states.append(msg["content"]["execution_state"])
    except (ConnectionError, asyncio.TimeoutError):
        pass
    assert "dead" in states
    assert not docker_engine.containers.list(all=True, filters={"label": f"{KERNEL_LABEL}={kernel['id']}"})


async def test_engine_unreachable_answers_503(start_gateway, tmp_path):
    gateway = start_gateway("--kernels=docker", env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    client = gateway.client()
    response = await client.request("POST", "/api/kernels", {"name": "python3"})
    assert response.status == 503, response.body
    assert "Docker" in response.body["message"]
    assert (await client.request("GET", "/api/kernelspecs")).status == 200
    assert os.path.isdir(tmp_path)


async def test_a_kernel_that_cannot_start_is_a_clean_503(start_gateway, docker_engine, tmp_path):
    import json

    from tests.conftest import ROOT

    specs = tmp_path / "specs"
    for name, image, argv in [("crashing", "python", ["python", "-c", "raise SystemExit(3)"]),
                              ("imageless", "no-such-image", ["python"])]:
        (specs / name).mkdir(parents=True)
        (specs / name / "kernel.json").write_text(json.dumps({
            "argv": argv, "display_name": name, "language": "python",
            "metadata": {"kernel_provisioner": {"provisioner_name": "docker-provisioner",
                                                "config": {"image": image, "tier": "low"}}},
        }))
    config = tmp_path / "config.py"
    config.write_text(f"c.KernelSpecCatalog.kernelspec_dirs = [{str(ROOT / 'kernelspecs')!r}, {str(specs)!r}]\n"
                      "c.KernelRegistry.startup_timeout = 20\n")
    gateway = start_gateway("--kernels=docker", f"--config={config}")
    client = gateway.client()
    crashed = await client.request("POST", "/api/kernels", {"name": "crashing"})
    assert crashed.status == 503 and "exited with code 3" in crashed.body["message"], crashed.body
    missing = await client.request("POST", "/api/kernels", {"name": "imageless"})
    assert missing.status == 503 and "no image" in missing.body["message"], missing.body
    assert (await client.request("GET", "/api/kernels")).body == []


@pytest.mark.parametrize("name, memory, cpus, pids", [
    ("python3", 256, 0.5, 128), ("c", 512, 1.0, 256), ("rust", 1024, 2.0, 512),
])
async def test_each_tier_sets_its_limits(docker_gateway, docker_engine, name, memory, cpus, pids):
    client = docker_gateway.client()
    kernel = await client.start_kernel(name)
    assert kernel["kernelgate"]["tier"] == {256: "low", 512: "medium", 1024: "high"}[memory]
    host = container_of(docker_engine, kernel["id"]).attrs["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == memory * 1024 * 1024
    assert host["CpuQuota"] == int(cpus * host["CpuPeriod"]) and host["PidsLimit"] == pids
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


@pytest.mark.parametrize("delay, quota_at_start", [(0, 200_000), (4, 50_000)])
async def test_a_kernel_starts_with_more_cpu_than_it_runs_with(start_gateway, docker_engine, tmp_path,
                                                               delay, quota_at_start):
    """The low tier starts a sandbox at 2 CPUs (start_cpus) and gives it 0.5 (cpus) once
    the kernel answers, or after start_cpus_seconds (here 2) if it has not answered by then:
    the kernel's first process sees the first, its code the second."""
    import json

    from tests.conftest import ROOT

    quota = ("cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max")
    spec = tmp_path / "specs" / "probe"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["sh", "-c", f"sleep {delay}; ({quota}) > /tmp/start-quota;"
                 " exec python -m ipykernel_launcher -f \"$0\"", "{connection_file}"],
        "display_name": "probe", "language": "python",
        "metadata": {"kernel_provisioner": {"provisioner_name": "docker-provisioner",
                                            "config": {"image": "python", "tier": "low"}}},
    }))
    config = tmp_path / "config.py"
    config.write_text(f"c.KernelSpecCatalog.kernelspec_dirs = [{str(ROOT / 'kernelspecs')!r}, {str(spec.parent)!r}]\n"
                      "c.DockerProvisioner.start_cpus_seconds = 2\n")
    client = start_gateway("--kernels=docker", f"--config={config}").client()
    kernel = await client.start_kernel("probe")
    ws = await client.connect(kernel["id"])
    run = await ws.execute(f"import subprocess\nprint(open('/tmp/start-quota').read().strip())\n"
                           f"print(subprocess.run({quota!r}, shell=True, capture_output=True, text=True).stdout.strip())")
    assert run.stdout.split() == [str(quota_at_start), "50000"], run
    ws.close()
    host = container_of(docker_engine, kernel["id"]).attrs["HostConfig"]
    assert (host["CpuQuota"], host["CpuPeriod"]) == (50_000, 100_000)
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_socket_folder_cannot_fill_the_host(docker_gateway):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    run = await ws.execute(
        "import os\n"
        "from ipykernel import get_connection_file\n"
        "folder = os.path.dirname(get_connection_file())\n"
        "try:\n"
        "    with open(os.path.join(folder, 'fill'), 'wb') as f:\n"
        "        f.write(b'x' * 8 * 1024 * 1024)\n"
        "    print('wrote 8 MB')\n"
        "except OSError as e:\n"
        "    print('refused:', e.strerror)\n"
    )
    assert run.stdout.startswith("refused: No space left on device"), run.stdout
    assert (await ws.execute("print('still fine')")).stdout == "still fine\n"
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
    assert not (docker_gateway.runtime_dir / kernel["id"]).exists()
