"""Room storage through the gateway, for each backend (local folder, database, S3 on a
moto server): the durable copy outlives the working copy, snapshots restore exactly,
a deleted room leaves a final snapshot until retention ends, and an S3 outage degrades
a room without losing anything."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sqlite3

import boto3
import pytest

from tests.harness import lose_working_copy
from tests.s3 import ACCESS_KEY, SECRET_KEY

BACKENDS = ["local", "database", "s3"]


@pytest.fixture(params=BACKENDS)
def storage(request):
    """(backend name, extra `kernelgate serve` options)."""
    if request.param == "s3":
        return "s3", request.getfixturevalue("s3_server").gateway_args()
    return request.param, []


@pytest.fixture
def serve(docker_engine, start_gateway, storage):
    """start_gateway with Docker kernels and the backend's options."""
    def start(*args, like=None):
        return start_gateway("--kernels=docker", *storage[1], *args, like=like)
    return start


async def make_room(client, storage: str) -> dict:
    response = await client.request("POST", "/api/rooms", {"name": "stored", "languages": ["python3"],
                                                           "storage": storage})
    assert response.status == 201, response.body
    assert response.body["storage"] == storage
    return response.body


async def put_file(client, room_id: str, path: str, data: bytes) -> None:
    response = await client.request("PUT", f"/api/rooms/{room_id}/contents/{path}", {
        "type": "file", "format": "base64", "content": base64.b64encode(data).decode()})
    assert response.status in (200, 201), response.body


async def put_folder(client, room_id: str, path: str) -> None:
    response = await client.request("PUT", f"/api/rooms/{room_id}/contents/{path}", {"type": "directory"})
    assert response.status in (200, 201), response.body


async def write_project(client, room_id: str) -> None:
    await put_folder(client, room_id, "src")
    await put_folder(client, room_id, "src/pkg")
    await put_folder(client, room_id, "empty")
    await put_file(client, room_id, "README.md", b"# stored\n")
    await put_file(client, room_id, "src/pkg/__init__.py", b"")
    await put_file(client, room_id, "src/pkg/data.bin", os.urandom(1536 * 1024))
    for i in range(20):
        await put_file(client, room_id, f"src/file{i}.txt", os.urandom(i * 700))


async def hashes(client, room_id: str, path: str = "") -> dict[str, str]:
    """path -> sha256 of every file (and "dir" for every folder), through the Contents API."""
    listing = await client.request("GET", f"/api/rooms/{room_id}/contents/{path}")
    assert listing.status == 200, listing.body
    found = {}
    for entry in listing.body["content"]:
        if entry["type"] == "directory":
            found[entry["path"]] = "dir"
            found.update(await hashes(client, room_id, entry["path"]))
        else:
            got = await client.request("GET", f"/api/rooms/{room_id}/contents/{entry['path']}?format=base64")
            assert got.status == 200, got.body
            found[entry["path"]] = hashlib.sha256(base64.b64decode(got.body["content"])).hexdigest()
    return found


async def room_python(client, room: dict):
    kernel = next(k for k in room["kernels"] if k["name"] == "python3")
    return await client.connect(kernel["id"])


async def storage_failures(client) -> float:
    text = (await client.request("GET", "/metrics")).body
    text = text.decode() if isinstance(text, bytes) else str(text)
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('kernelgate_storage_failures_total{backend="s3"}'))


async def test_files_come_back_from_the_backend_when_the_working_copy_is_lost(serve, storage):
    gateway = serve()
    client = gateway.client()
    room = await make_room(client, storage[0])
    await write_project(client, room["id"])
    py = await room_python(client, room)
    assert (await py.execute("open('from_kernel.txt', 'w').write('kernel was here')")).status == "ok"
    py.close()
    before = await hashes(client, room["id"])
    assert len(before) == 27
    gateway.stop()  # syncs every room

    lose_working_copy(gateway, room["id"])
    gateway = serve(like=gateway)
    client = gateway.client()
    assert await hashes(client, room["id"]) == before
    room = (await client.request("GET", f"/api/rooms/{room['id']}")).body
    assert room["storage_status"]["state"] == "ok"
    py = await room_python(client, room)  # a new kernel, on the restored folder
    run = await py.execute("print(open('/workspace/from_kernel.txt').read())")
    assert run.stdout.strip() == "kernel was here"
    py.close()


async def test_snapshot_restore_brings_back_exactly_the_snapshot(serve, storage):
    gateway = serve()
    client = gateway.client()
    room = await make_room(client, storage[0])
    room_id = room["id"]
    await write_project(client, room_id)
    saved = await hashes(client, room_id)
    taken = await client.request("POST", f"/api/rooms/{room_id}/snapshots")
    assert taken.status == 201, taken.body
    snapshot = taken.body
    assert snapshot["reason"] == "manual" and snapshot["files"] == 23 and snapshot["storage"] == storage[0]

    await put_file(client, room_id, "README.md", b"changed\n")
    assert (await client.request("DELETE", f"/api/rooms/{room_id}/contents/src/file3.txt")).status == 204
    await put_file(client, room_id, "new.txt", b"not in the snapshot")
    py = await room_python(client, room)
    await py.execute("import shutil; shutil.rmtree('/workspace/src/pkg')")
    py.close()
    changed = await hashes(client, room_id)
    assert changed != saved

    restored = await client.request("POST", f"/api/rooms/{room_id}/snapshots/{snapshot['id']}/restore")
    assert restored.status == 200, restored.body
    assert restored.body["previous"]["reason"] == "before restore"
    assert await hashes(client, room_id) == saved
    listed = (await client.request("GET", f"/api/rooms/{room_id}/snapshots")).body
    assert [s["id"] for s in listed] == [snapshot["id"], restored.body["previous"]["id"]]
    # the snapshot taken before the restore holds the changed workspace
    back = await client.request("POST", f"/api/rooms/{room_id}/snapshots/{listed[1]['id']}/restore")
    assert back.status == 200, back.body
    assert await hashes(client, room_id) == changed
    # the kernel runs again, on the restored files
    room = (await client.request("GET", f"/api/rooms/{room_id}")).body
    py = await room_python(client, room)
    assert (await py.execute("print(open('/workspace/new.txt').read())")).stdout.strip() == "not in the snapshot"
    py.close()
    missing = await client.request("POST", f"/api/rooms/{room_id}/snapshots/nope/restore")
    assert missing.status == 404 and missing.body["reason"] == "Not Found"


def stored(kind: str, gateway, key: str, s3_url: str | None) -> bool:
    """Whether the backend still holds an object under `key` (looked at directly)."""
    if kind == "local":
        return (gateway.data_dir / "storage" / key).exists()
    if kind == "database":
        with sqlite3.connect(gateway.data_dir / "kernelgate.db") as db:
            return db.execute("SELECT count(*) FROM storage_objects WHERE key = ?", (key,)).fetchone()[0] == 1
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    return s3.list_objects_v2(Bucket="rooms", Prefix="kernelgate/" + key).get("KeyCount", 0) == 1


async def test_a_deleted_room_leaves_a_final_snapshot_until_retention_ends(serve, storage, request):
    gateway = serve("--RoomStorage.snapshot_retention=6", "--RoomStorage.sync_interval=1")
    s3_url = request.getfixturevalue("s3_server").url if storage[0] == "s3" else None
    client = gateway.client()
    room = await make_room(client, storage[0])
    room_id = room["id"]
    await put_file(client, room_id, "last-words.txt", b"keep me a while")
    assert (await client.request("DELETE", f"/api/rooms/{room_id}")).status == 204
    assert (await client.request("GET", f"/api/rooms/{room_id}")).status == 404
    assert not (gateway.data_dir / "rooms" / room_id).exists()
    final = (await client.request("GET", f"/api/admin/snapshots?room={room_id}")).body
    assert [s["reason"] for s in final] == ["room deleted"] and final[0]["files"] == 1
    key = f"rooms/{room_id}/snapshots/{final[0]['id']}.tar"
    assert stored(storage[0], gateway, key, s3_url)
    assert not stored(storage[0], gateway, f"rooms/{room_id}/current.tar", s3_url)
    # until then, a platform admin can bring it back as a new room
    revived = await client.request("POST", "/api/rooms", {"name": "revived", "languages": ["python3"],
                                                          "from_snapshot": final[0]["id"]})
    assert revived.status == 201, revived.body
    got = await client.request("GET", f"/api/rooms/{revived.body['id']}/contents/last-words.txt")
    assert got.status == 200 and got.body["content"] == "keep me a while"
    unknown = await client.request("POST", "/api/rooms", {"name": "x", "languages": ["python3"],
                                                          "from_snapshot": "nope"})
    assert unknown.status == 404
    for _ in range(60):
        await asyncio.sleep(0.5)
        if not (await client.request("GET", f"/api/admin/snapshots?room={room_id}")).body:
            break
    else:
        pytest.fail("the final snapshot outlived its retention")
    assert not stored(storage[0], gateway, key, s3_url)


async def wait_for_state(client, room_id: str, state: str) -> dict:
    for _ in range(80):
        room = (await client.request("GET", f"/api/rooms/{room_id}")).body
        if room["storage_status"]["state"] == state:
            return room
        await asyncio.sleep(0.25)
    pytest.fail(f"room storage never became {state}: {room['storage_status']}")


async def test_health_reuses_the_backends_answers_for_a_while(start_gateway, s3_server):
    """Anyone may call /api/health: within cache_seconds it asks no backend again."""
    gateway = start_gateway("--kernels=local", *s3_server.gateway_args(), "--HealthCheck.cache_seconds=10")
    client = gateway.client(token=None)
    first = await asyncio.gather(*(client.request("GET", "/api/health") for _ in range(20)))
    assert {r.status for r in first} == {200}
    assert {r.body["checks"]["storage"]["backends"]["s3"] for r in first} == {"ok"}
    s3_server.stop()
    assert (await client.request("GET", "/api/health")).body["status"] == "ok"  # the kept answer
    for _ in range(80):
        await asyncio.sleep(0.25)
        health = (await client.request("GET", "/api/health")).body
        if health["status"] == "degraded":
            break
    else:
        pytest.fail("the outage never showed")
    assert health["checks"]["storage"]["backends"]["s3"].startswith("unavailable")
    s3_server.start()


async def test_an_s3_outage_degrades_the_room_and_loses_nothing(docker_engine, start_gateway, s3_server):
    options = ["--kernels=docker", *s3_server.gateway_args(),
               "--RoomStorage.sync_interval=2", "--RoomStorage.retry_interval=0.5",
               "--HealthCheck.cache_seconds=0"]
    gateway = start_gateway(*options)
    client = gateway.client()
    room = await make_room(client, "s3")
    room_id = room["id"]
    await put_file(client, room_id, "before.txt", b"written before the outage")
    assert (await client.request("POST", f"/api/rooms/{room_id}/snapshots")).status == 201

    s3_server.stop()
    await put_file(client, room_id, "during.txt", b"written during the outage")
    room = await wait_for_state(client, room_id, "degraded")
    assert room["storage_status"]["error"]
    health = (await client.request("GET", "/api/health")).body
    assert health["status"] == "degraded"
    assert health["checks"]["storage"]["degraded_rooms"] == 1
    assert health["checks"]["storage"]["backends"]["s3"].startswith("unavailable")
    failures = await storage_failures(client)
    snap = await client.request("POST", f"/api/rooms/{room_id}/snapshots")
    assert snap.status == 503 and snap.body["reason"] == "Service Unavailable", snap.body
    assert await storage_failures(client) > failures  # the snapshot's failure is counted too
    deleted = await client.request("DELETE", f"/api/rooms/{room_id}")
    assert deleted.status == 503  # no final snapshot, no deletion
    # the working copy is kept and served
    got = await client.request("GET", f"/api/rooms/{room_id}/contents/during.txt")
    assert got.status == 200 and got.body["content"] == "written during the outage"

    s3_server.start()  # back (empty: moto keeps nothing across restarts)
    await wait_for_state(client, room_id, "ok")
    assert (await client.request("GET", "/api/health")).body["status"] == "ok"
    gateway.stop()
    lose_working_copy(gateway, room_id)
    gateway = start_gateway(*options, like=gateway)
    client = gateway.client()
    for name, text in [("before.txt", "written before the outage"), ("during.txt", "written during the outage")]:
        got = await client.request("GET", f"/api/rooms/{room_id}/contents/{name}")
        assert got.status == 200 and got.body["content"] == text


async def test_an_unchanged_workspace_is_not_uploaded_again_after_a_restart(docker_engine, start_gateway):
    options = ["--kernels=docker", "--RoomStorage.sync_interval=0.5"]
    gateway = start_gateway(*options)
    client = gateway.client()
    room = await make_room(client, "local")
    await put_file(client, room["id"], "notes.txt", b"written once")
    durable = gateway.data_dir / "storage" / "rooms" / room["id"] / "current.tar"
    for _ in range(40):
        await asyncio.sleep(0.25)
        status = (await client.request("GET", f"/api/rooms/{room['id']}")).body["storage_status"]
        if status["synced_at"] and durable.exists():
            break
    else:
        pytest.fail("the workspace was never synced")
    await asyncio.sleep(1.5)  # a sync of the empty workspace may have come first
    status = (await client.request("GET", f"/api/rooms/{room['id']}")).body["storage_status"]
    written = durable.stat().st_mtime_ns
    gateway.stop()
    gateway = start_gateway(*options, like=gateway)
    client = gateway.client()
    await asyncio.sleep(2)  # four sync rounds
    assert durable.stat().st_mtime_ns == written
    after = (await client.request("GET", f"/api/rooms/{room['id']}")).body["storage_status"]
    assert after["synced_at"] == status["synced_at"]
    await put_file(client, room["id"], "notes.txt", b"changed")  # and a change still syncs
    for _ in range(40):
        await asyncio.sleep(0.25)
        if durable.stat().st_mtime_ns != written:
            break
    else:
        pytest.fail("a change was not synced")
