"""A room's kernel writes the tree the gateway packs on the host (sync, snapshots,
restores), and a snapshot object may be foreign: abuse checklist rows 10 to 12.

The hostile workspace holds 1,500 nested folders (a recursive walk dies at Python's
recursion limit), a 1 TB sparse file (`truncate -s 1T`: packing it reads 1 TB of holes)
and a FIFO. Snapshot, sync, restore and delete each answer in bounded time, report what
they left out, and the room keeps working. A bomb archive put in place of a snapshot
(a sparse member of a few KiB that unpacks to 2 GiB, more bytes or more members than
the limits) is refused by the real restore path, and the room keeps its files.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import tarfile

import pytest

from tests.test_room_storage import put_file

#: Longest an answer may take, seconds (generous: 2 cores, other tests running).
ANSWER_BOUND = 180
DEPTH = 1500  # nested folders the kernel makes
MAX_DEPTH = 128  # RoomStorage.max_archive_depth's default
MAX_BYTES = 8 << 20  # the bomb test's RoomStorage.max_archive_bytes
MAX_MEMBERS = 1000  # the bomb test's RoomStorage.max_archive_members

HOSTILE = f"""
import os
os.chdir('/workspace')
for name in ['deep'] + ['d'] * {DEPTH - 1}:  # os.makedirs recurses, this does not
    os.mkdir(name)
    os.chdir(name)
open('bottom.txt', 'w').write('deepest')
os.chdir('/workspace')
with open('/workspace/huge.bin', 'wb') as f:
    f.truncate(1 << 40)
os.mkfifo('/workspace/pipe')
open('/workspace/notes.txt', 'w').write('kept')
print(os.stat('/workspace/huge.bin').st_size, os.stat('/workspace/huge.bin').st_blocks)
"""

DEPTH_PROBE = """
import os
depth, path = 0, '/workspace/deep'
while os.path.isdir(path):
    depth, path = depth + 1, path + '/d'
print(depth, sorted(os.listdir('/workspace')), open('/workspace/notes.txt').read())
"""


async def bounded(coroutine):
    return await asyncio.wait_for(coroutine, ANSWER_BOUND)


async def room_with_kernel(client) -> tuple[dict, object]:
    made = await client.request("POST", "/api/rooms", {"name": "hostile", "languages": ["python3"]})
    assert made.status == 201, made.body
    kernel = next(k["id"] for k in made.body["kernels"] if k["name"] == "python3")
    return made.body, await client.connect(kernel)


async def kernel_of(client, room_id: str):
    room = (await client.request("GET", f"/api/rooms/{room_id}")).body
    return await client.connect(next(k["id"] for k in room["kernels"] if k["name"] == "python3"))


def assert_hostile_skipped(skipped: dict) -> None:
    """The FIFO, the sparse terabyte and the folders below MAX_DEPTH are reported."""
    assert skipped["special"] == {"count": 1, "paths": ["pipe"]}, skipped
    assert skipped["too_large"] == {"count": 1, "paths": ["huge.bin"]}, skipped
    assert skipped["too_deep"]["count"] == 1, skipped
    assert skipped["too_deep"]["paths"][0].startswith("deep/d/d/"), skipped


async def test_a_hostile_workspace_is_snapshotted_synced_and_restored_with_a_report(
        docker_engine, start_gateway):
    gateway = start_gateway("--kernels=docker", "--RoomStorage.sync_interval=1")
    client = gateway.client()
    room, py = await room_with_kernel(client)
    room_id = room["id"]
    run = await py.execute(HOSTILE, timeout=ANSWER_BOUND)
    assert run.status == "ok", run.reply["content"]
    size, blocks = map(int, run.stdout.split())
    assert size == 1 << 40 and blocks < 1024, run.stdout  # sparse: the host holds no terabyte
    py.close()

    # snapshot: answers, archives what fits, says what it left out
    taken = await bounded(client.request("POST", f"/api/rooms/{room_id}/snapshots", timeout=ANSWER_BOUND))
    assert taken.status == 201, taken.body
    assert taken.body["files"] == 1  # notes.txt; bottom.txt is below the depth limit
    assert taken.body["size"] < 1 << 20
    assert_hostile_skipped(taken.body["skipped"])

    # sync (every second): the durable copy is written, and the room model reports the same
    durable = gateway.data_dir / "storage" / "rooms" / room_id / "current.tar"
    for _ in range(ANSWER_BOUND):
        status = (await client.request("GET", f"/api/rooms/{room_id}")).body["storage_status"]
        if status["synced_at"] and status["skipped"] and durable.exists():
            break
        await asyncio.sleep(1)
    else:
        pytest.fail(f"the hostile workspace was never synced: {status}")
    assert status["state"] == "ok", status
    assert_hostile_skipped(status["skipped"])
    assert durable.stat().st_size < 1 << 20

    # restore: the kernels stop, the hostile copy is removed, the snapshot comes back
    restored = await bounded(client.request(
        "POST", f"/api/rooms/{room_id}/snapshots/{taken.body['id']}/restore", timeout=ANSWER_BOUND))
    assert restored.status == 200, restored.body
    assert_hostile_skipped(restored.body["previous"]["skipped"])
    assert restored.body["room"]["storage_status"]["state"] == "ok"
    py = await kernel_of(client, room_id)
    run = await py.execute(DEPTH_PROBE, timeout=ANSWER_BOUND)
    assert run.stdout.split(" ", 1)[0] == str(MAX_DEPTH), run.reply
    assert "huge.bin" not in run.stdout and "pipe" not in run.stdout and run.stdout.endswith("kept\n")
    assert (await py.execute("print(6 * 7)")).stdout == "42\n"
    py.close()
    assert not [p for p in (gateway.data_dir / "rooms").iterdir() if p.name.startswith(".")]

    # the hostile tree again, then delete: the final snapshot and the removal answer
    py = await kernel_of(client, room_id)
    assert (await py.execute("import shutil; shutil.rmtree('/workspace/deep')\n" + HOSTILE,
                             timeout=ANSWER_BOUND)).status == "ok"
    py.close()
    deleted = await bounded(client.request("DELETE", f"/api/rooms/{room_id}", timeout=ANSWER_BOUND))
    assert deleted.status == 204, deleted.body
    assert not (gateway.data_dir / "rooms" / room_id).exists()


# -- bombs ----------------------------------------------------------------------------


def _finish(out: io.BytesIO) -> bytes:
    out.write(b"\0" * 1024)  # end-of-archive blocks
    out.write(b"\0" * (-out.tell() % 10240))
    return out.getvalue()


def sparse_bomb(realsize: int = 2 << 30) -> bytes:
    """One GNU sparse member: a 512-byte data block at the end of `realsize` bytes of
    holes (tarfile writes no sparse members, so the header is built by hand)."""
    info = tarfile.TarInfo("holes.bin")
    info.size = 512
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[386:398] = b"%011o\0" % (realsize - 512)  # sparse[0].offset
    header[398:410] = b"%011o\0" % 512  # sparse[0].numbytes
    header[483:495] = b"%011o\0" % realsize  # realsize
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    out = io.BytesIO()
    out.write(bytes(header))
    out.write(b"x" * 512)
    return _finish(out)


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


BOMBS = {
    "sparse": sparse_bomb,
    "bytes": lambda: tar_of({f"big{i}.bin": os.urandom(4 << 20) for i in range(3)}),
    "members": lambda: tar_of({f"f{i}.txt": b"" for i in range(MAX_MEMBERS + 500)}),
}


@pytest.mark.parametrize("kind", list(BOMBS))
async def test_a_bomb_snapshot_is_refused_and_the_room_keeps_its_files(docker_engine, start_gateway, kind):
    gateway = start_gateway("--kernels=docker", f"--RoomStorage.max_archive_bytes={MAX_BYTES}",
                            f"--RoomStorage.max_archive_members={MAX_MEMBERS}")
    client = gateway.client()
    room, py = await room_with_kernel(client)
    py.close()
    room_id = room["id"]
    await put_file(client, room_id, "notes.txt", b"before the bomb")
    taken = await client.request("POST", f"/api/rooms/{room_id}/snapshots")
    assert taken.status == 201, taken.body
    stored = gateway.data_dir / "storage" / "rooms" / room_id / "snapshots" / f"{taken.body['id']}.tar"
    bomb = BOMBS[kind]()
    assert stored.exists() and len(bomb) < 16 << 20
    stored.write_bytes(bomb)  # a foreign object where the snapshot was

    refused = await bounded(client.request(
        "POST", f"/api/rooms/{room_id}/snapshots/{taken.body['id']}/restore", timeout=ANSWER_BOUND))
    assert refused.status == 413, (refused.status, refused.body)
    assert refused.body["reason"] == "Payload Too Large", refused.body
    assert "limit" in refused.body["message"] or "sparse" in refused.body["message"], refused.body
    # nothing half-restored: the previous files, no leftover folder, no disk filled
    rooms = gateway.data_dir / "rooms"
    assert sorted(p.name for p in rooms.iterdir()) == [room_id]
    assert sum(f.stat().st_size for f in rooms.rglob("*") if f.is_file()) < 1 << 20
    got = await client.request("GET", f"/api/rooms/{room_id}/contents/notes.txt?format=base64")
    assert got.status == 200 and base64.b64decode(got.body["content"]) == b"before the bomb", got.body
    model = (await client.request("GET", f"/api/rooms/{room_id}")).body
    assert model["storage_status"]["state"] == "ok", model["storage_status"]
    py = await kernel_of(client, room_id)  # the kernels started again, on the same files
    run = await py.execute("print(sorted(__import__('os').listdir('/workspace')))")
    assert run.stdout == "['notes.txt']\n", run.reply
    py.close()


# -- below the gateway: the walks' descriptors ---------------------------------------


def open_below(root) -> int:
    """Descriptors of this process open on `root` or anything below it."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        count += target == str(root) or target.startswith(f"{root}/")
    return count


class _CountingSink(io.RawIOBase):
    """A write-only stream recording the most descriptors open below `root` while the
    archive was written to it."""

    def __init__(self, root) -> None:
        self.root, self.most = root, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.most = max(self.most, open_below(self.root))
        return len(data)


def test_walks_of_a_deep_tree_hold_few_descriptors_and_remove_it(tmp_path):
    from kernelgate.storage.archive import fingerprint, pack, remove_tree

    root = tmp_path / "workspace"
    folder = root
    for depth, name in enumerate(["deep"] + ["d"] * (DEPTH - 1), 1):
        folder = folder / name
        folder.mkdir(parents=depth == 1)
        if depth in (64, 100, MAX_DEPTH):  # the archive reaches the sink there (1 MiB buffer)
            (folder / "f.bin").write_bytes(b"x" * (2 << 20))
    sink = _CountingSink(root)
    stats = pack(str(root), sink)
    assert stats.folders == MAX_DEPTH and stats.files == 3
    assert stats.report()["too_deep"]["count"] == 1
    assert 0 < sink.most <= 20, sink.most  # not one per level
    assert open_below(root) == 0
    assert fingerprint(str(root)) == fingerprint(str(root))
    remove_tree(str(root))
    assert not root.exists() and tmp_path.exists()
