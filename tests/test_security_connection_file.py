"""A kernel attacks the files the gateway shares with its sandbox (abuse checklist row 10).

The kernel replaces its connection file (with a link to a host file, a FIFO, garbage),
or its socket files (with links to a host socket), then asks for a restart, or has its
container killed so that the supervisor revives it. Whatever it did: the host file keeps
its owner, mode and content, nothing connects to the host socket, and the kernel comes
back working (or the restart is a JSON error) within a bounded time, with no traceback in
the gateway's log (the start_gateway fixture checks that).
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat

import pytest

from kernelgate.engine import KERNEL_LABEL

#: Longest a restart may take to answer, seconds (the gateway's startup_timeout is 20).
RESTART_BOUND = 45

#: What the kernel puts where its connection file was; HOST is a host path the test made.
ATTACKS = {
    "symlink": "os.symlink(HOST, target)",
    "fifo": "os.mkfifo(target)",
    "garbage": "open(target, 'w').write('{not json')",
}


def attack_code(host_path: str, replace: str, targets: str) -> str:
    """Kernel code replacing each path of `targets` (an expression) with `replace`."""
    return (
        "import glob, json, os\n"
        "from ipykernel import get_connection_file\n"
        f"HOST = {host_path!r}\n"
        "folder = os.path.dirname(json.load(open(get_connection_file()))['ip'])  # the sockets'\n"
        f"for target in {targets}:\n"
        "    try:\n"
        "        os.unlink(target)\n"
        f"        {replace}\n"
        "        print('replaced', target)\n"
        "    except OSError as e:\n"
        "        print('refused', target, e.strerror)\n"
    )


@pytest.fixture
def gateway(start_gateway, docker_engine, tmp_path):
    config = tmp_path / "config.py"
    config.write_text("c.KernelRegistry.startup_timeout = 20\nc.KernelRegistry.check_interval = 0.5\n")
    return start_gateway("--kernels=docker", f"--config={config}")


@pytest.fixture
def host_file(tmp_path):
    """A root-only host file the kernel must not reach: (path, its stat)."""
    path = tmp_path / "host-secret"
    path.write_text("host secret\n")
    path.chmod(0o600)
    return path, path.stat()


def assert_untouched(path, before: os.stat_result) -> None:
    after = os.stat(path, follow_symlinks=False)
    assert stat.S_ISREG(after.st_mode)
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == \
        (before.st_uid, before.st_gid, stat.S_IMODE(before.st_mode))
    assert path.read_text() == "host secret\n"


def container_id(docker_engine, kernel_id: str) -> str | None:
    running = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kernel_id}"})
    return running[0].id if running else None


async def restart_answers(client, kernel_id: str) -> None:
    """POST restart answers in bounded time: a model, or a JSON error that is not a 500."""
    response = await asyncio.wait_for(
        client.request("POST", f"/api/kernels/{kernel_id}/restart"), RESTART_BOUND)
    if response.status != 200:
        assert response.status != 500 and {"reason", "message"} <= set(response.body), response


async def works_again(client, kernel_id: str, old_container: str | None, docker_engine) -> None:
    """The kernel answers code again (in a new container if `old_container` is given)."""
    for _ in range(300):
        model = (await client.request("GET", f"/api/kernels/{kernel_id}")).body
        current = container_id(docker_engine, kernel_id)
        if model.get("execution_state") == "idle" and current and current != old_container:
            break
        await asyncio.sleep(0.2)
    assert model.get("execution_state") == "idle", model
    ws = await client.connect(kernel_id)
    try:
        assert (await ws.execute("print(6 * 7)", timeout=30)).stdout == "42\n"
    finally:
        ws.close()


@pytest.mark.parametrize("attack", ATTACKS)
async def test_a_replaced_connection_file_harms_neither_restart_nor_host(
        gateway, docker_engine, host_file, attack):
    client = gateway.client()
    kernel = await client.start_kernel()
    path, before = host_file
    ws = await client.connect(kernel["id"])
    code = attack_code(str(path), ATTACKS[attack], "[get_connection_file()]")
    await ws.execute(code)
    ws.close()
    # the kernel restarts in its sandbox
    await restart_answers(client, kernel["id"])
    await works_again(client, kernel["id"], None, docker_engine)
    assert_untouched(path, before)
    # again, and now its container dies: the supervisor revives it in a new one
    ws = await client.connect(kernel["id"])
    await ws.execute(code)
    ws.close()
    old = container_id(docker_engine, kernel["id"])
    docker_engine.containers.get(old).kill()
    await works_again(client, kernel["id"], old, docker_engine)
    assert_untouched(path, before)
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204
    assert_untouched(path, before)


async def test_the_gateway_never_follows_a_link_in_the_socket_folder(gateway, docker_engine, tmp_path):
    """The kernel points its socket files at a host socket: the gateway, reconnecting
    after the kernel's restart, must not connect to it."""
    client = gateway.client()
    kernel = await client.start_kernel()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "host.sock"))
    listener.listen(16)
    listener.setblocking(False)
    try:
        ws = await client.connect(kernel["id"])
        run = await ws.execute(attack_code(
            str(tmp_path / "host.sock"), ATTACKS["symlink"],
            "[p for p in glob.glob(os.path.join(folder, '*')) if p != get_connection_file()]"))
        ws.close()
        assert "replaced" in run.stdout, run.stdout  # the sandbox owns its socket folder
        await restart_answers(client, kernel["id"])
        await works_again(client, kernel["id"], None, docker_engine)
        old = container_id(docker_engine, kernel["id"])
        ws = await client.connect(kernel["id"])
        await ws.execute(attack_code(
            str(tmp_path / "host.sock"), ATTACKS["symlink"],
            "[p for p in glob.glob(os.path.join(folder, '*')) if p != get_connection_file()]"))
        ws.close()
        docker_engine.containers.get(old).kill()
        await works_again(client, kernel["id"], old, docker_engine)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
