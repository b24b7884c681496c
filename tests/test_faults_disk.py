"""The disk holding the gateway's data (room working copies, local snapshots, its
database) full (issue 20): a small ext4 file system, loop-mounted by the test, filled
from outside the gateway.

What the user sees is stated in the test's docstring."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ci import require
from tests.harness import GatewayProcess, mounts_under, remove_containers
from tests.test_faults import answered

SIZE_MB = 160


@pytest.fixture
def disk_gateway(docker_engine, tmp_path):
    """Factory: disk_gateway(*args) -> a started gateway whose data folder is a SIZE_MB
    ext4 file system, loop-mounted; all removed afterwards (the loop device goes with the
    mount). Its log must hold no traceback."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        require("a loop-mounted file system needs root and e2fsprogs")
    made = []

    def start(*args: str) -> GatewayProcess:
        gateway = GatewayProcess(tmp_path, "--kernels=docker", *args)
        image = tmp_path / f"disk-{gateway.port}.img"
        with open(image, "wb") as f:
            f.truncate(SIZE_MB << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
        gateway.data_dir.mkdir()
        subprocess.run(["mount", "-o", "loop", str(image), str(gateway.data_dir)], check=True)
        made.append(gateway)
        return gateway.start()

    yield start
    for gateway in made:
        gateway.stop()
        remove_containers(gateway.gateway_id)
        for mountpoint in mounts_under(gateway.runtime_dir, gateway.data_dir):
            subprocess.run(["umount", "-l", mountpoint], check=False)
        subprocess.run(["umount", "-l", str(gateway.data_dir)], check=False)
        gateway.cleanup()
        assert "Traceback" not in gateway.log(), gateway.log()


def fill(disk: Path) -> Path:
    """A file taking all the free space of `disk`."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
        try:  # the last blocks, a byte at a time is too slow: what fits of 4 KiB pieces
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass
    return filler


async def test_a_full_disk_is_413_and_503_loses_nothing_and_recovers(disk_gateway):
    """The disk fills up while a room is in use (working copies as plain folders,
    RoomStorage.workspace_quotas 'off'). A Contents API write answers 413 "No space left
    on device"; the kernel's own write fails in the cell (OSError ENOSPC); a snapshot
    answers 503 and none is listed; every file saved before reads back intact, kernels
    run, the gateway answers everything else. Once space is freed, writes and snapshots
    work again and the earlier snapshot restores exactly."""
    gateway = disk_gateway("--RoomStorage.workspace_quotas=off")
    data = gateway.data_dir
    client = gateway.client()
    room = (await answered(client, "POST", "/api/rooms", {"name": "full", "languages": ["python3"]})).body
    room_id, kernel = room["id"], room["kernels"][0]["id"]
    assert (data / "rooms" / room_id).is_dir(), list(data.rglob("*"))[:20]  # on the small disk
    put = await answered(client, "PUT", f"/api/rooms/{room_id}/contents/kept.txt",
                         {"type": "file", "format": "text", "content": "kept"})
    assert put.status in (200, 201), put.body
    ws = await client.connect(kernel)
    assert (await ws.execute("open('/workspace/by-kernel.txt', 'w').write('kernel' * 1000)")).status == "ok"
    first = await answered(client, "POST", f"/api/rooms/{room_id}/snapshots")
    assert first.status == 201, first.body

    filler = fill(data)
    put = await answered(client, "PUT", f"/api/rooms/{room_id}/contents/new.txt",
                         {"type": "file", "format": "text", "content": "x" * (1 << 20)})
    assert put.status == 413 and "space" in put.body["message"].lower(), put.body
    run = await ws.execute("open('/workspace/big.bin', 'wb').write(b'x' * (8 << 20))", timeout=60)
    assert run.status == "error" and run.reply["content"]["ename"] == "OSError", run.reply
    assert "No space left" in run.reply["content"]["evalue"], run.reply
    snapshot = await answered(client, "POST", f"/api/rooms/{room_id}/snapshots")
    assert snapshot.status == 503 and "No space left" in snapshot.body["message"], snapshot.body
    listed = await answered(client, "GET", f"/api/rooms/{room_id}/snapshots")
    assert [s["id"] for s in listed.body] == [first.body["id"]], listed.body
    read = await answered(client, "GET", f"/api/rooms/{room_id}/contents/kept.txt")
    assert read.status == 200 and read.body["content"] == "kept", read.body
    assert (await ws.execute("print(len(open('/workspace/by-kernel.txt').read()))")).stdout == "6000\n"
    assert (await answered(client, "GET", "/api/rooms")).status == 200
    assert not list((data / "storage").rglob("*.part")), "a half-written snapshot was left"

    filler.unlink()
    assert (await ws.execute("import os; os.remove('/workspace/big.bin') if os.path.exists('/workspace/big.bin') "
                             "else None")).status == "ok"
    ws.close()
    put = await answered(client, "PUT", f"/api/rooms/{room_id}/contents/new.txt",
                         {"type": "file", "format": "text", "content": "after"})
    assert put.status in (200, 201), put.body
    second = await answered(client, "POST", f"/api/rooms/{room_id}/snapshots")
    assert second.status == 201, second.body
    restored = await answered(client, "POST", f"/api/rooms/{room_id}/snapshots/{first.body['id']}/restore")
    assert restored.status == 200, restored.body
    assert (await answered(client, "GET", f"/api/rooms/{room_id}/contents/new.txt")).status == 404
    read = await answered(client, "GET", f"/api/rooms/{room_id}/contents/kept.txt")
    assert read.body["content"] == "kept", read.body
    assert (await answered(client, "DELETE", f"/api/rooms/{room_id}")).status == 204


SMALL_PLAN = """
c.Plans.plans = {"team": {"kernel_tiers": ["low", "medium", "high"], "max_rooms": 5,
                          "workspace_bytes": 48 << 20}}
c.Plans.order = ["team"]  # the plan of --no-auth's user
c.RoomStorage.preallocate_workspaces = True
"""


async def test_preallocated_workspaces_keep_their_space_on_a_full_disk(disk_gateway, tmp_path):
    """Workspace volumes (workspace_quotas 'loop') with preallocate_workspaces: the disk
    holding the volumes fills up. A room made before keeps its whole quota: the kernel's
    fsynced write and a Contents API write succeed and read back exactly. A new room is
    refused with a JSON 503 ("The host's disk has no room for a 48 MiB workspace"),
    leaving no image behind; a snapshot is 503. Once space is freed a new room is made.
    (With sparse volumes, the default, the same fill made the kernel's write fail and a
    Contents API write answer 201 whose blocks the host disk could not take.)"""
    config = tmp_path / "small_plan.py"
    config.write_text(SMALL_PLAN)
    gateway = disk_gateway(f"--config={config}", f"--Store.url=sqlite:///{tmp_path / 'store.db'}")
    client = gateway.client()
    room = (await answered(client, "POST", "/api/rooms", {"name": "kept", "languages": ["python3"]})).body
    room_id, kernel = room["id"], room["kernels"][0]["id"]
    ws = await client.connect(kernel)

    filler = fill(gateway.data_dir)
    write = ("import hashlib, os\ndata = os.urandom(16 << 20)\nwith open('/workspace/big.bin', 'wb') as f:\n"
             "    f.write(data); f.flush(); os.fsync(f.fileno())\nprint(hashlib.sha256(data).hexdigest())")
    run = await ws.execute(write, timeout=120)
    assert run.status == "ok", run.reply
    digest = run.stdout.strip()
    put = await answered(client, "PUT", f"/api/rooms/{room_id}/contents/api.txt",
                         {"type": "file", "format": "text", "content": "a" * (1 << 20)})
    assert put.status in (200, 201), put.body
    run = await ws.execute("import hashlib\nos.system('sync')\n"
                           "print(hashlib.sha256(open('/workspace/big.bin', 'rb').read()).hexdigest())", timeout=120)
    assert run.stdout.strip() == digest, run.reply
    refused = await answered(client, "POST", "/api/rooms", {"name": "new", "languages": ["python3"]})
    assert refused.status == 503 and "host's disk has no room" in refused.body["message"], refused.body
    assert sorted(p.name for p in (gateway.data_dir / "volumes").iterdir()) == [f"{room_id}.ext4"]
    snapshot = await answered(client, "POST", f"/api/rooms/{room_id}/snapshots")
    assert snapshot.status == 503 and "No space left" in snapshot.body["message"], snapshot.body
    read = await answered(client, "GET", f"/api/rooms/{room_id}/contents/api.txt")
    assert read.status == 200 and read.body["content"] == "a" * (1 << 20)

    filler.unlink()
    ws.close()
    made = await answered(client, "POST", "/api/rooms", {"name": "new", "languages": ["python3"]})
    assert made.status == 201, made.body
    for created in (room_id, made.body["id"]):
        assert (await answered(client, "DELETE", f"/api/rooms/{created}")).status == 204
