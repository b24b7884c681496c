"""Rooms for kernel clients: POST /api/kernels with KERNEL_ROOM (what JupyterLab's
GatewayClient sends from its server's environment), who ran what, and closing a notebook
without stopping a kernel other members use."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from kernelgate.jwt_auth import mint
from tests.client import GatewayClient
from tests.postgres import free_port

SECRET = "lab-rooms-test-secret-long-enough-for-hs256"


def token(user: str) -> str:
    return mint(SECRET, user, tier="team")


@pytest.fixture
def gateway(docker_engine, start_gateway):
    return start_gateway(f"--jwt-secret={SECRET}", "--kernels=docker")


def users(gateway, *names) -> list[GatewayClient]:
    return [gateway.client(token(name)) for name in names]


async def room_with(owner: GatewayClient, members: dict[str, str], languages=("python3",)) -> dict:
    response = await owner.request("POST", "/api/rooms", {"name": "lab", "languages": list(languages)})
    assert response.status == 201, response.body
    for user, role in members.items():
        added = await owner.request("PUT", f"/api/rooms/{response.body['id']}/members/{user}", {"role": role})
        assert added.status == 200, added.body
    return response.body


def lab_request(room_id, name="python3", **env) -> dict:
    """What GatewayClient sends: the kernelspec and the KERNEL_* of its server's env."""
    return {"name": name, "env": {"KERNEL_ROOM": room_id, "KERNEL_LAUNCH_TIMEOUT": "40",
                                  "KERNEL_WORKING_DIR": "/home/lab/notebooks", **env}}


async def test_kernel_room_answers_with_the_rooms_kernel_by_role(gateway):
    alice, bob, vic, sam = users(gateway, "alice", "bob", "vic", "sam")
    room = await room_with(alice, {"bob": "participant", "vic": "viewer"})
    rid, kid = room["id"], room["kernels"][0]["id"]

    mine = await bob.request("POST", "/api/kernels", lab_request(rid, KERNEL_USERNAME="mallory"))
    assert mine.status == 201, mine.body
    assert mine.body["id"] == kid and mine.body["kernelgate"] == {**mine.body["kernelgate"], "kind": "room", "room": rid}
    assert mine.headers["Location"] == f"/api/kernels/{kid}"
    assert (await alice.request("POST", "/api/kernels", lab_request(rid))).body["id"] == kid

    # a viewer cannot get a kernel to run code; a stranger or an unknown room: no such room
    viewer = await vic.request("POST", "/api/kernels", lab_request(rid))
    assert viewer.status == 403 and "participant" in viewer.body["message"]
    assert (await sam.request("POST", "/api/kernels", lab_request(rid))).status == 404
    assert (await bob.request("POST", "/api/kernels", lab_request(str(uuid.uuid4())))).status == 404
    bad = await bob.request("POST", "/api/kernels", {"name": "python3", "env": {"KERNEL_ROOM": 7}})
    assert bad.status == 400 and set(bad.body) == {"reason", "message"}

    # a language the room does not run: a participant is told which it runs, an admin adds it
    other = await bob.request("POST", "/api/kernels", lab_request(rid, name="bash"))
    assert other.status == 403 and "python3" in other.body["message"], other.body
    assert (await bob.request("POST", "/api/kernels", lab_request(rid, name="cobol"))).status == 404
    added = await alice.request("POST", "/api/kernels", lab_request(rid, name="bash"))
    assert added.status == 201 and added.body["name"] == "bash" and added.body["kernelgate"]["room"] == rid
    assert (await alice.request("GET", f"/api/rooms/{rid}")).body["languages"] == ["bash", "python3"]
    assert (await bob.request("POST", "/api/kernels", lab_request(rid, name="bash"))).body["id"] == added.body["id"]

    # room kernels are not the caller's solo kernels: the plan's kernel count is untouched
    assert (await bob.request("GET", "/api/kernels")).status == 200
    solo = await bob.request("POST", "/api/kernels", {"name": "python3"})
    assert solo.status == 201 and solo.body["kernelgate"]["kind"] == "solo"

    # closing the notebook in Lab (DELETE) leaves the kernel running for the room
    ws = await alice.connect(kid)
    assert (await ws.execute("x = 41")).status == "ok"
    assert (await bob.request("DELETE", f"/api/kernels/{kid}")).status == 204
    assert (await vic.request("DELETE", f"/api/kernels/{kid}")).status == 204
    assert (await sam.request("DELETE", f"/api/kernels/{kid}")).status == 404
    assert [k["id"] for k in (await alice.request("GET", f"/api/rooms/{rid}/kernels")).body if k["name"] == "python3"] == [kid]
    assert (await ws.execute("x + 1")).results == ["42"]  # same kernel, same memory
    # restart from Lab: participants may, viewers may not
    assert (await vic.request("POST", f"/api/kernels/{kid}/restart")).status == 403
    assert (await bob.request("POST", f"/api/kernels/{kid}/restart")).status == 200
    ws.close()
    assert (await bob.request("DELETE", f"/api/kernels/{solo.body['id']}")).status == 204
    assert (await bob.request("GET", f"/api/kernels/{solo.body['id']}")).status == 404

    # an expired room answers as the room API does
    past = await alice.request("PATCH", f"/api/rooms/{rid}", {"expires_at": "2020-01-01T00:00:00Z"})
    assert past.status == 200
    assert (await bob.request("POST", "/api/kernels", lab_request(rid))).status == 409
    assert (await bob.request("GET", f"/api/rooms/{rid}/kernels")).status == 409


async def test_every_member_sees_who_ran_each_execution(gateway):
    alice, bob = users(gateway, "alice", "bob")
    room = await room_with(alice, {"bob": "participant"})
    kid = room["kernels"][0]["id"]
    for bob_protocol, alice_protocol in (("v1", "legacy"), ("legacy", "v1")):
        bob_ws = await bob.connect(kid, bob_protocol)
        alice_ws = await alice.connect(kid, alice_protocol)
        forged = bob_ws.message("shell", "execute_request", {"code": "print('from bob')", "silent": False})
        forged["header"]["username"] = "alice"  # the client cannot write another member's name
        await bob_ws.send_message(forged)
        seen = None
        while seen is None:
            msg = await alice_ws.recv()
            if msg["parent_header"].get("msg_id") == forged["header"]["msg_id"] and msg["header"]["msg_type"] == "stream":
                seen = msg
        assert seen["content"]["text"] == "from bob\n"
        assert seen["parent_header"]["username"] == "bob"
        run = await alice_ws.execute("1 + 1")  # the test client sends username "test"
        assert run.reply["parent_header"]["username"] == "alice"
        assert {m["parent_header"]["username"] for m in run.messages} == {"alice"}
        bob_ws.close()
        alice_ws.close()


def _jupyter_server(tmp: Path, gateway_url: str, gateway_token: str, room_id: str):
    """A real `jupyter server --gateway-url` with KERNEL_ROOM in its environment, as a
    Lab server would be started for a room."""
    port, lab_token = free_port(), secrets.token_hex(8)
    root = tmp / "notebooks"
    root.mkdir()
    env = {**os.environ, "KERNEL_ROOM": room_id, "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime")}
    log = open(tmp / "jupyter-server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={lab_token}", f"--ServerApp.root_dir={root}",
         f"--gateway-url={gateway_url}", "--GatewayClient.auth_scheme=Bearer",
         f"--GatewayClient.auth_token={gateway_token}"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp / "jupyter-server.log").read_text()
        try:
            requests.get(f"{url}/api/status", headers={"Authorization": f"token {lab_token}"}, timeout=1)
            return proc, GatewayClient(url, lab_token, scheme="token")
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("jupyter server did not start")


async def test_jupyter_servers_gateway_client_gets_the_rooms_kernel_and_workspace(gateway, tmp_path):
    alice, bob = users(gateway, "alice", "bob")
    room = await room_with(alice, {"bob": "participant"})
    rid, kid = room["id"], room["kernels"][0]["id"]
    written = await alice.request("PUT", f"/api/rooms/{rid}/contents/hello.txt",
                                  {"type": "file", "format": "text", "content": "from the room's files"})
    assert written.status == 201, written.body
    proc, lab = await asyncio.to_thread(_jupyter_server, tmp_path, gateway.url, token("bob"), rid)
    try:
        session = await lab.request("POST", "/api/sessions", {
            "path": "t.ipynb", "type": "notebook", "name": "t.ipynb", "kernel": {"name": "python3"}})
        assert session.status == 201, session.body
        assert session.body["kernel"]["id"] == kid  # the room's kernel, through GatewayClient
        ws = await lab.connect(kid, session_id=uuid.uuid4().hex)  # through Lab's proxy
        run = await ws.execute("print(open('/workspace/hello.txt').read())")
        assert run.stdout == "from the room's files\n"
        assert run.reply["parent_header"]["username"] == "bob"
        ws.close()
        # closing the notebook shuts its kernel down in Lab: the room's kernel runs on
        assert (await lab.request("DELETE", f"/api/sessions/{session.body['id']}")).status == 204
        kernels = (await alice.request("GET", f"/api/rooms/{rid}/kernels")).body
        assert [k["id"] for k in kernels] == [kid]
        alice_ws = await alice.connect(kid)
        assert (await alice_ws.execute("6 * 7")).results == ["42"]
        alice_ws.close()
    finally:
        proc.terminate()
        proc.wait(30)
