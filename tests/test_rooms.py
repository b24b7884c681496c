"""Rooms: shared multi-language workspaces, driven as several users over REST and WebSocket."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import jwt
import pytest

from kernelgate.engine import GATEWAY_LABEL, KERNEL_LABEL

SECRET = "rooms-test-secret-long-enough-for-hs256-signatures"
CONFIG = """
c.Plans.plans = {
    "free": {"kernel_tiers": ["low"], "max_kernels": 1, "max_rooms": 1, "max_members": 2},
    "pro": {"kernel_tiers": ["low", "medium", "high"], "max_kernels": 3, "max_rooms": 2, "max_members": 5},
}
c.Plans.order = ["free", "pro"]
c.RoomService.check_interval = 1
c.KernelRegistry.check_interval = 0.5
MiB = 1024 * 1024
c.Tiers.tiers = {
    "low": {"memory": 256 * MiB, "cpus": 0.5, "pids": 128, "exec_timeout": 60,
            "idle_timeout": 4, "tmp_size": 64 * MiB},
    "medium": {"memory": 512 * MiB, "cpus": 1.0, "pids": 256, "exec_timeout": 60,
               "idle_timeout": 900, "tmp_size": 256 * MiB},
    "high": {"memory": 1024 * MiB, "cpus": 2.0, "pids": 512, "exec_timeout": 60,
             "idle_timeout": 1800, "tmp_size": 512 * MiB},
}
"""


def token(user: str, tier: str = "pro") -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "exp": now + 3600, "iat": now, "tier": tier}, SECRET, algorithm="HS256")


@pytest.fixture
def rooms_gateway(docker_engine, start_gateway, tmp_path):
    config = tmp_path / "rooms_config.py"
    config.write_text(CONFIG)
    return start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}")


def users(gateway, *names):
    return [gateway.client(token(name)) for name in names]


async def make_room(client, languages=("python3", "bash"), **extra) -> dict:
    response = await client.request("POST", "/api/rooms", {"name": "pair", "languages": list(languages), **extra})
    assert response.status == 201, response.body
    return response.body


async def add(owner, room, user, role):
    response = await owner.request("PUT", f"/api/rooms/{room['id']}/members/{user}", {"role": role})
    assert response.status == 200, response.body


def kernel_of(room: dict, name: str) -> str:
    return next(k["id"] for k in room["kernels"] if k["name"] == name)


async def test_two_languages_share_a_workspace_and_outputs(rooms_gateway):
    alice, bob = users(rooms_gateway, "alice", "bob")
    room = await make_room(alice)
    assert room["owner"] == "alice" and room["languages"] == ["bash", "python3"]
    assert {k["name"] for k in room["kernels"]} == {"python3", "bash"}
    assert all(k["kernelgate"]["kind"] == "room" for k in room["kernels"])
    await add(alice, room, "bob", "participant")

    py = await alice.connect(kernel_of(room, "python3"))
    run = await py.execute("open('/workspace/shared.txt', 'w').write('written by python')")
    assert run.status == "ok"
    sh = await bob.connect(kernel_of(room, "bash"))
    assert "written by python" in (await sh.execute("cat shared.txt")).stdout
    # collaborative: bob sees alice's execution live on the same kernel
    bob_py = await bob.connect(kernel_of(room, "python3"))
    await py.execute("print('for everyone')")
    seen = []
    while not any(m["header"]["msg_type"] == "stream" for m in seen):
        seen.append(await bob_py.recv())
    stream = next(m for m in seen if m["header"]["msg_type"] == "stream")
    assert stream["content"]["text"] == "for everyone\n"
    # the files API sees the same workspace
    got = await bob.request("GET", f"/api/rooms/{room['id']}/contents/shared.txt")
    assert got.body["content"] == "written by python"
    # a member chooses the language whose container a terminal opens in
    terminal = await bob.request("POST", "/api/terminals", {"room": room["id"], "language": "bash"})
    assert terminal.status == 201 and terminal.body["kernel"] == kernel_of(room, "bash")
    other = await bob.request("POST", "/api/terminals", {"room": room["id"], "language": "python3"})
    assert other.body["kernel"] == kernel_of(room, "python3")
    assert (await bob.request("POST", "/api/terminals", {"room": room["id"], "language": "go"})).status == 400
    for ws in (py, sh, bob_py):
        ws.close()
    assert (await alice.request("DELETE", f"/api/rooms/{room['id']}")).status == 204
    assert (await alice.request("GET", f"/api/rooms/{room['id']}")).status == 404
    assert (await alice.request("GET", f"/api/kernels/{kernel_of(room, 'bash')}")).status == 404


async def test_roles(rooms_gateway):
    owner, admin, part, viewer, stranger = users(rooms_gateway, "olga", "adam", "pat", "vic", "sam")
    room = await make_room(owner, ["python3"])
    rid = room["id"]
    await add(owner, room, "adam", "admin")
    await add(owner, room, "pat", "participant")
    await add(owner, room, "vic", "viewer")
    kid = kernel_of(room, "python3")

    # strangers: the room does not exist
    for method, path in [("GET", f"/api/rooms/{rid}"), ("GET", f"/api/rooms/{rid}/kernels"),
                         ("GET", f"/api/kernels/{kid}"), ("GET", f"/api/rooms/{rid}/contents/"),
                         ("DELETE", f"/api/rooms/{rid}")]:
        assert (await stranger.request(method, path)).status == 404, (method, path)
    assert (await stranger.request("GET", "/api/rooms")).body == []

    # a viewer reads and watches, executes nothing, writes nothing
    assert (await viewer.request("GET", f"/api/rooms/{rid}")).status == 200
    vws = await viewer.connect(kid)
    msg_id = await vws.send("shell", "execute_request", {"code": "import os; os.system('touch /workspace/v')", "silent": False})
    shown = await vws.recv()  # first what a frontend shows in the cell, as from a kernel
    assert shown["parent_header"]["msg_id"] == msg_id and shown["header"]["msg_type"] == "error"
    refused = await vws.recv()
    assert refused["parent_header"]["msg_id"] == msg_id and refused["channel"] == "shell"
    assert refused["content"]["status"] == "error" and refused["content"]["ename"] == "PermissionError"
    info_id = await vws.send("shell", "kernel_info_request", {})
    reply = None
    while reply is None:
        msg = await vws.recv()
        if msg["parent_header"].get("msg_id") == info_id and msg["channel"] == "shell":
            reply = msg
    assert (await viewer.request("GET", f"/api/rooms/{rid}/contents/v")).status == 404
    assert (await viewer.request("PUT", f"/api/rooms/{rid}/contents/v.txt", {"type": "file", "content": "x"})).status == 403
    assert (await viewer.request("POST", f"/api/kernels/{kid}/interrupt")).status == 403
    assert (await viewer.request("POST", "/api/terminals", {"room": rid})).status == 403

    # a participant executes and writes, but does not delete or change the stack
    assert (await part.request("PUT", f"/api/rooms/{rid}/contents/p.txt", {"type": "file", "content": "x"})).status == 201
    assert (await part.request("DELETE", f"/api/rooms/{rid}/contents/p.txt")).status == 403
    assert (await part.request("PUT", f"/api/rooms/{rid}/languages", {"languages": ["bash"]})).status == 403
    assert (await part.request("PUT", f"/api/rooms/{rid}/members/sam", {"role": "viewer"})).status == 403
    terminal = await part.request("POST", "/api/terminals", {"room": rid})
    assert terminal.status == 201
    assert (await viewer.request("GET", f"/api/terminals/{terminal.body['name']}")).status == 200
    assert (await stranger.request("GET", f"/api/terminals/{terminal.body['name']}")).status == 404

    # an admin deletes files and manages members, but does not grant admin or delete the room
    assert (await admin.request("DELETE", f"/api/rooms/{rid}/contents/p.txt")).status == 204
    assert (await admin.request("PUT", f"/api/rooms/{rid}/members/sam", {"role": "viewer"})).status == 200
    assert (await admin.request("PUT", f"/api/rooms/{rid}/members/sam", {"role": "admin"})).status == 403
    assert (await admin.request("DELETE", f"/api/rooms/{rid}/members/sam")).status == 204
    assert (await admin.request("DELETE", f"/api/rooms/{rid}")).status == 403
    assert (await admin.request("PATCH", f"/api/rooms/{rid}", {"name": "renamed"})).body["name"] == "renamed"
    # members may leave; the owner may not
    assert (await viewer.request("DELETE", f"/api/rooms/{rid}/members/vic")).status == 204
    assert (await viewer.request("GET", f"/api/rooms/{rid}")).status == 404
    assert (await owner.request("DELETE", f"/api/rooms/{rid}/members/olga")).status == 400
    vws.close()
    assert (await owner.request("DELETE", f"/api/rooms/{rid}")).status == 204


async def test_language_stack_and_bad_input(rooms_gateway, docker_engine):
    (alice,) = users(rooms_gateway, "alice")
    bad = [
        ({"name": "x", "languages": ["cobol"]}, "cobol"),
        ({"name": "x", "languages": []}, "at least one"),
        ({"name": "x", "languages": "python3"}, "list"),
        ({"languages": ["python3"]}, "name"),
        ({"name": "x", "languages": ["python3"], "storage": "tape"}, "tape"),
        ({"name": "x", "languages": ["python3"], "expires_in": -5}, "expires_in"),
    ]
    for body, word in bad:
        response = await alice.request("POST", "/api/rooms", body)
        assert response.status == 400 and word in response.body["message"], (body, response.body)
    room = await make_room(alice, ["python3", "python3"])  # duplicates collapse
    assert room["languages"] == ["python3"]
    rid = room["id"]
    # concurrent stack changes serialize: one kernel per language, no duplicates
    responses = await asyncio.gather(*(
        alice.request("PUT", f"/api/rooms/{rid}/languages", {"languages": ["python3", "bash"]}) for _ in range(3)))
    assert {r.status for r in responses} == {200}
    kernels = (await alice.request("GET", f"/api/rooms/{rid}/kernels")).body
    assert sorted(k["name"] for k in kernels) == ["bash", "python3"]
    changed = await alice.request("PUT", f"/api/rooms/{rid}/languages", {"languages": ["bash"]})
    assert [k["name"] for k in changed.body["kernels"]] == ["bash"]
    assert (await alice.request("PUT", f"/api/rooms/{rid}/languages", {"languages": []})).status == 400
    labels = {c.labels[KERNEL_LABEL] for c in docker_engine.containers.list(filters={"label": KERNEL_LABEL})}
    assert kernel_of(room, "python3") not in labels
    await alice.request("DELETE", f"/api/rooms/{rid}")


async def test_failed_creation_leaves_nothing(rooms_gateway, start_gateway, tmp_path, docker_engine):
    specs = tmp_path / "specs"
    (specs / "broken").mkdir(parents=True)
    (specs / "broken" / "kernel.json").write_text(json.dumps({
        "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Broken", "language": "python",
        "metadata": {"kernel_provisioner": {"provisioner_name": "docker-provisioner",
                                            "config": {"image": "no-such-image", "tier": "low"}}},
    }))
    from tests.harness import ROOT

    config = tmp_path / "broken_config.py"
    config.write_text(CONFIG + f"\nc.KernelSpecCatalog.kernelspec_dirs = [{str(ROOT / 'kernelspecs')!r}, {str(specs)!r}]\n")
    gateway = start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}")
    (alice,) = users(gateway, "alice")
    response = await alice.request("POST", "/api/rooms", {"name": "x", "languages": ["python3", "broken"]})
    assert response.status == 503, response.body
    assert (await alice.request("GET", "/api/rooms")).body == []
    assert (await alice.request("GET", "/api/kernels")).body == []
    mine = {"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"}
    assert docker_engine.containers.list(all=True, filters=mine) == []
    assert not any((gateway.data_dir / "rooms").iterdir())


async def test_expiry_and_revival(rooms_gateway):
    (alice,) = users(rooms_gateway, "alice")
    room = await make_room(alice, ["python3"], expires_in=2)
    rid = room["id"]
    for _ in range(40):
        model = (await alice.request("GET", f"/api/rooms/{rid}")).body
        if model["state"] == "expired" and not model["kernels"]:
            break
        await asyncio.sleep(0.5)
    assert model["state"] == "expired" and model["kernels"] == []
    assert (await alice.request("GET", f"/api/rooms/{rid}/kernels")).status == 409
    assert (await alice.request("POST", "/api/terminals", {"room": rid})).status == 409
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    assert (await alice.request("PATCH", f"/api/rooms/{rid}", {"expires_at": later})).status == 200
    kernels = (await alice.request("GET", f"/api/rooms/{rid}/kernels")).body
    assert [k["name"] for k in kernels] == ["python3"]  # started again on first use
    bad = await alice.request("PATCH", f"/api/rooms/{rid}", {"expires_at": "tomorrow"})
    assert bad.status == 400
    await alice.request("DELETE", f"/api/rooms/{rid}")


async def test_quotas_and_solo_culling(rooms_gateway):
    (alice,) = users(rooms_gateway, "alice")
    first = await make_room(alice, ["python3"])
    second = await make_room(alice, ["python3"])
    third = await alice.request("POST", "/api/rooms", {"name": "x", "languages": ["python3"]})
    assert third.status == 429
    # the owner's plan (pro: 5 members) sizes the room, not that of the admin who adds
    await add(alice, first, "boss", "admin")
    boss = rooms_gateway.client(token("boss", tier="free"))  # free: 2 members
    for user in ("b1", "b2", "b3"):
        await add(boss, first, user, "viewer")
    response = await boss.request("PUT", f"/api/rooms/{first['id']}/members/b4", {"role": "viewer"})
    assert response.status == 429 and "5 members" in response.body["message"]
    # a solo kernel idle past its tier's idle_timeout (4 s here) is culled; room kernels are not
    solo = await alice.start_kernel()
    for _ in range(40):
        if (await alice.request("GET", f"/api/kernels/{solo['id']}")).status == 404:
            break
        await asyncio.sleep(0.5)
    assert (await alice.request("GET", f"/api/kernels/{solo['id']}")).status == 404
    assert len((await alice.request("GET", f"/api/rooms/{first['id']}/kernels")).body) == 1
    for room in (first, second):
        await alice.request("DELETE", f"/api/rooms/{room['id']}")


async def test_room_kernel_survives_a_gateway_restart(rooms_gateway, start_gateway, tmp_path):
    (alice,) = users(rooms_gateway, "alice")
    room = await make_room(alice, ["python3"])
    kid = kernel_of(room, "python3")
    ws = await alice.connect(kid)
    await ws.execute("memory = 'still here'\nopen('/workspace/f.txt', 'w').write('file kept')")
    ws.close()
    # Jupyter sessions live as long as their kernel: the room kernel's session survives
    on_room = await alice.request("POST", "/api/sessions", {"path": "a.ipynb", "kernel": {"id": kid}})
    assert on_room.status == 201, on_room.body
    on_solo = await alice.request("POST", "/api/sessions", {"path": "b.ipynb", "kernel": {"name": "python3"}})
    assert on_solo.status == 201, on_solo.body
    rooms_gateway.stop(signal.SIGTERM)
    again = start_gateway(*rooms_gateway.extra_args, like=rooms_gateway)
    (alice,) = users(again, "alice")
    model = (await alice.request("GET", f"/api/rooms/{room['id']}")).body
    assert [k["id"] for k in model["kernels"]] == [kid], again.log()  # the same kernel, re-adopted
    sessions = (await alice.request("GET", "/api/sessions")).body
    assert [(s["id"], s["path"], s["kernel"]["id"]) for s in sessions] == [(on_room.body["id"], "a.ipynb", kid)]
    ws = await alice.connect(kid)
    assert (await ws.execute("print(memory)")).stdout == "still here\n"
    ws.close()
    got = await alice.request("GET", f"/api/rooms/{room['id']}/contents/f.txt")
    assert got.body["content"] == "file kept"
    await alice.request("DELETE", f"/api/rooms/{room['id']}")


async def test_admin_api(rooms_gateway):
    now = int(time.time())
    root = rooms_gateway.client(jwt.encode(
        {"sub": "root", "exp": now + 600, "roles": ["admin"]}, SECRET, algorithm="HS256"))
    (alice,) = users(rooms_gateway, "alice")
    room = await make_room(alice, ["python3"])
    solo = await alice.start_kernel()
    assert (await alice.request("GET", "/api/admin/kernels")).status == 403
    kernels = (await root.request("GET", "/api/admin/kernels")).body
    assert {solo["id"], kernel_of(room, "python3")} <= {k["id"] for k in kernels}
    assert [r["id"] for r in (await root.request("GET", "/api/admin/rooms")).body] == [room["id"]]
    assert (await root.request("DELETE", f"/api/admin/kernels/{solo['id']}")).status == 204
    assert (await root.request("DELETE", f"/api/admin/rooms/{room['id']}")).status == 204
    assert (await alice.request("GET", "/api/rooms")).body == []
    audit = (await root.request("GET", "/api/admin/audit")).body
    assert [e["action"] for e in audit[:3]] == ["room.delete", "kernel.delete", "room.create"]


async def test_a_room_starts_from_a_snapshot_its_creator_may_read(rooms_gateway):
    alice, bob = users(rooms_gateway, "alice", "bob")
    room = await make_room(alice, ["python3"])
    put = await alice.request("PUT", f"/api/rooms/{room['id']}/contents/plan.txt",
                              {"type": "file", "format": "text", "content": "the plan"})
    assert put.status == 201, put.body
    snapshot = (await alice.request("POST", f"/api/rooms/{room['id']}/snapshots")).body
    body = {"name": "copy", "languages": ["python3"], "from_snapshot": snapshot["id"]}
    assert (await bob.request("POST", "/api/rooms", body)).status == 404  # not his room
    await add(alice, room, "bob", "participant")
    assert (await bob.request("GET", f"/api/rooms/{room['id']}/snapshots")).status == 200
    assert (await bob.request("POST", f"/api/rooms/{room['id']}/snapshots")).status == 403
    assert (await bob.request("POST", "/api/rooms", body)).status == 404  # admins only
    await add(alice, room, "bob", "admin")
    copy = await bob.request("POST", "/api/rooms", body)
    assert copy.status == 201, copy.body
    got = await bob.request("GET", f"/api/rooms/{copy.body['id']}/contents/plan.txt")
    assert got.body["content"] == "the plan"
    for owner, rid in ((alice, room["id"]), (bob, copy.body["id"])):
        assert (await owner.request("DELETE", f"/api/rooms/{rid}")).status == 204


async def test_a_revived_room_kernel_is_re_adopted_after_a_gateway_crash(rooms_gateway, start_gateway,
                                                                          docker_engine):
    (alice,) = users(rooms_gateway, "alice")
    room = await make_room(alice, ["python3"])
    kid = kernel_of(room, "python3")

    def container():
        [found] = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kid}"})
        return found

    first = container()
    first.kill()  # the supervisor revives the kernel in a new container
    for _ in range(60):
        await asyncio.sleep(0.5)
        running = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kid}"})
        model = (await alice.request("GET", f"/api/kernels/{kid}")).body
        if running and running[0].id != first.id and model["execution_state"] == "idle":
            break
    else:
        pytest.fail("the room kernel was not revived")
    revived = container()
    assert revived.attrs["HostConfig"]["CpuQuota"] == 50_000  # the start-up allowance is taken back
    ws = await alice.connect(kid)
    await ws.execute("memory = 'in the new container'")
    ws.close()
    rooms_gateway.stop(signal.SIGKILL)  # no clean stop: the store must already know the new container
    again = start_gateway(*rooms_gateway.extra_args, like=rooms_gateway)
    (alice,) = users(again, "alice")
    model = (await alice.request("GET", f"/api/rooms/{room['id']}")).body
    assert [k["id"] for k in model["kernels"]] == [kid], again.log()
    assert container().id == revived.id
    ws = await alice.connect(kid)
    assert (await ws.execute("print(memory)")).stdout == "in the new container\n"
    ws.close()
    await alice.request("DELETE", f"/api/rooms/{room['id']}")
