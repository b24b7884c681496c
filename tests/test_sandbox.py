"""The Docker sandbox holds: what a kernel can and cannot do inside its container."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket

import pytest

from kernelgate.engine import GATEWAY_LABEL, KERNEL_LABEL, OWNER_LABEL
from kernelgate.seccomp import SECURITY_OPT


def container_of(docker_engine, kernel_id: str):
    (container,) = docker_engine.containers.list(all=True, filters={"label": f"{KERNEL_LABEL}={kernel_id}"})
    return container


#: Kernel code probing its sandbox; PORT is a port the test listens on at the host's loopback.
PROBE = (
    "import os, socket\n"
    "print(os.getuid(), os.getgid())\n"
    "print(sorted(os.listdir('/sys/class/net')))\n"
    "print(len(open('/proc/net/route').read().splitlines()) - 1, 'routes')\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', PORT), timeout=2); print('host loopback: reached')\n"
    "except OSError as e:\n"
    "    print('host loopback:', e.strerror)\n"
    "for path in ('/evil', '/usr/evil'):\n"  # EROFS comes before permissions: a uid alone gives EACCES
    "    try:\n"
    "        open(path, 'w'); print(path, 'written')\n"
    "    except OSError as e:\n"
    "        print(path, 'errno', e.errno)\n"
    "root = [line.split() for line in open('/proc/self/mountinfo') if line.split()[4] == '/'][-1]\n"
    "print('rootfs read-only', 'ro' in root[5].split(','))\n"
    "status = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines())\n"
    "for field in ('CapBnd', 'CapEff', 'CapPrm', 'NoNewPrivs'):\n"
    "    print(field, status.get(field, 'absent'))\n"
    "open('/tmp/scratch', 'w').write('ok'); print(open('/tmp/scratch').read())\n"
)


def probe_sandbox(stdout: str) -> None:
    """The PROBE's output shows a locked-down sandbox."""
    assert stdout.splitlines() == [
        "1000 1000",
        "['lo']",  # no network interface but its own loopback
        "0 routes",
        "host loopback: Connection refused",  # its loopback is not the host's
        "/evil errno 30",  # EROFS: the root filesystem is read-only
        "/usr/evil errno 30",
        "rootfs read-only True",
        "CapBnd 0000000000000000",  # no capability can ever be gained
        "CapEff 0000000000000000",
        "CapPrm 0000000000000000",
        "NoNewPrivs 1",
        "ok",  # /tmp is a writable tmpfs
    ], stdout


@pytest.fixture
def host_listener():
    """A TCP listener on the host's loopback: (port, whether anything connected)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)

    def reached() -> bool:
        try:
            listener.accept()[0].close()
            return True
        except BlockingIOError:
            return False

    yield listener.getsockname()[1], reached
    listener.close()


async def test_container_is_locked_down(docker_gateway, docker_engine, host_listener):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    port, reached = host_listener
    run = await ws.execute(PROBE.replace("PORT", str(port)))
    probe_sandbox(run.stdout)
    assert not reached()
    container = container_of(docker_engine, kernel["id"])
    kernel_dir = docker_gateway.runtime_dir / kernel["id"]
    # its only host mounts: its socket folder, and the gateway's connection file read-only
    assert {(m["Source"], m["Destination"], m["RW"]) for m in container.attrs["Mounts"] if m["Type"] == "bind"} == {
        (str(kernel_dir / "ipc"), str(kernel_dir / "ipc"), True),
        (str(kernel_dir / "connection.json"), str(kernel_dir / "connection.json"), False)}
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


async def test_a_kernel_that_cannot_start_is_a_clean_503(start_gateway, docker_engine, tmp_path):
    import json

    from tests.harness import ROOT

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

    from tests.harness import ROOT

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
        "import json, os\n"
        "from ipykernel import get_connection_file\n"
        "folder = os.path.dirname(json.load(open(get_connection_file()))['ip'])  # the sockets'\n"
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


# -- SandboxSpec: the one description of a container's confinement -----------------------

HARDENING = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges", SECURITY_OPT],
             "init": True}


def test_a_tier_makes_a_kernel_sandbox_spec():
    from kernelgate.sandbox import HOME, Mount, SandboxSpec
    from kernelgate.tiers import Tier

    tier = Tier(name="t", memory=300 << 20, cpus=0.5, pids=99, exec_timeout=0, idle_timeout=0,
                tmp_size=10 << 20, runtime="runsc", start_cpus=2.0)
    spec = SandboxSpec.for_tier(tier, uid=1234, log_size="2m")
    options = spec.with_mounts(Mount("/host/a", "/a", writable=True), Mount("/host/b", "/b")).run_options()
    assert {k: options[k] for k in HARDENING} == HARDENING
    assert options["user"] == "1234:1234" and options["network_mode"] == "none"
    assert options["mem_limit"] == options["memswap_limit"] == 300 << 20  # no swap
    assert (options["cpu_quota"], options["cpu_period"]) == (200_000, 100_000)  # the start-up allowance
    assert options["pids_limit"] == 99 and options["runtime"] == "runsc"
    assert options["tmpfs"] == {"/tmp": f"size={10 << 20},nr_inodes=65536,mode=1777",
                                HOME: f"size={10 << 20},nr_inodes=65536,mode=700,uid=1234,gid=1234,exec"}
    assert options["volumes"] == {"/host/a": {"bind": "/a", "mode": "rw"}, "/host/b": {"bind": "/b", "mode": "ro"}}
    assert options["log_config"]["Config"] == {"max-size": "2m", "max-file": "1"}
    assert "runtime" not in SandboxSpec.for_tier(Tier(**{**tier.__dict__, "runtime": ""})).run_options()
    with pytest.raises(AttributeError):
        spec.network = "bridge"  # a value: frozen


def test_install_containers_differ_from_kernels_only_in_declared_ways():
    from kernelgate.engine import DockerEngine
    from kernelgate.environment.install import EnvironmentService
    from kernelgate.images import ImageBuilder
    from kernelgate.sandbox import SandboxSpec
    from kernelgate.tiers import Tiers

    kernel = SandboxSpec.for_tier(Tiers().get(None)).run_options()
    install = EnvironmentService(None, None, None, DockerEngine(), ImageBuilder()).sandbox_spec("bridge").run_options()
    assert {k: install[k] for k in HARDENING} == HARDENING
    declared = {"network_mode", "mem_limit", "memswap_limit", "cpu_quota", "pids_limit", "tmpfs"}
    assert {k for k in kernel if kernel[k] != install.get(k)} == declared
    assert install["network_mode"] == "bridge" and install["tmpfs"] == {"/tmp": "size=256m,mode=1777,exec"}


async def test_each_sandbox_gets_a_new_socket_folder_that_follows_no_link(tmp_path):
    """socketdir.renew, as the gateway calls it for each new sandbox: what a kernel left in
    its socket folder is gone, and the host cannot follow a link placed there (as root:
    a nosymfollow tmpfs); as non-root, an empty folder of mode 700
    (tests/test_security_socket_folder.py)."""
    import stat

    from kernelgate import socketdir

    (tmp_path / "secret").write_text("host")
    folder = tmp_path / socketdir.SOCKETS
    folder.mkdir()
    tmpfs = await socketdir.renew(str(folder), 1000)
    try:
        assert tmpfs == (os.geteuid() == 0)
        (folder / "left").write_text("by the last sandbox")
        (folder / "link").symlink_to(tmp_path / "secret")
        if tmpfs:
            with pytest.raises(OSError) as refused:
                (folder / "link").read_text()
            assert refused.value.errno == errno.ELOOP
            assert (folder.stat().st_uid, stat.S_IMODE(folder.stat().st_mode)) == (1000, 0o700)
        assert await socketdir.renew(str(folder), 1000) == tmpfs
        assert list(folder.iterdir()) == []
        assert (tmp_path / "secret").read_text() == "host"
        if not tmpfs:
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        await socketdir.release(str(folder))
    assert not os.path.ismount(folder)


async def test_many_small_files_fill_only_the_sandbox(start_gateway, docker_engine, tmp_path):
    """Inode exhaustion (checklist row 4): /tmp holds at most tmp_inodes files (here 2000:
    DockerProvisioner.tmp_inodes), then creating one fails with ENOSPC; the
    kernel and the gateway go on."""
    config = tmp_path / "config.py"
    config.write_text("c.DockerProvisioner.tmp_inodes = 2000\n")
    client = start_gateway("--kernels=docker", f"--config={config}").client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    run = await ws.execute(
        "import os\n"
        "made = 0\n"
        "try:\n"
        "    while made < 100000:\n"
        "        open(f'/tmp/f{made}', 'w').close(); made += 1\n"
        "except OSError as e:\n"
        "    print('stopped after', made, 'files:', e.strerror)\n", timeout=120)
    assert run.stdout.startswith("stopped after") and "No space left on device" in run.stdout, run.stdout
    assert int(run.stdout.split()[2]) < 2000
    assert (await ws.execute("print('still fine')")).stdout == "still fine\n"
    ws.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
