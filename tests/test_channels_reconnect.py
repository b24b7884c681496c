"""A kernel WebSocket that reconnects with its session_id while its old connection is still
open: JupyterLab's sequence through jupyter_server's GatewayWebSocketConnection. The
browser's first socket fails its subprotocol handshake and reconnects at once with the
same session_id; the Lab server's first gateway connection, still opening when the
browser went away, is never closed (it leaks)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kernelgate.jwt_auth import mint

SECRET = "reconnect-test-secret-long-enough-for-hs256"
SLOW = "import time; time.sleep(1.5); print('late')"


async def wait_busy(ws, msg_id: str) -> None:
    while True:
        msg = await ws.recv()
        if msg["parent_header"].get("msg_id") == msg_id and msg["header"]["msg_type"] == "status":
            return


async def read_until_closed(ws, timeout: float = 15) -> int | None:
    async def drain():
        while await ws.conn.read_message() is not None:
            pass
    await asyncio.wait_for(drain(), timeout)
    return ws.conn.close_code


async def test_a_reconnection_takes_over_its_old_connection_and_its_replies(docker_gateway):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    session_id = uuid.uuid4().hex
    first = await client.connect(kernel["id"], session_id=session_id)
    msg_id = await first.send("shell", "execute_request", {"code": SLOW, "silent": False})
    await wait_busy(first, msg_id)
    # the client reconnects before its old connection is seen to close (or it never does)
    second = await client.connect(kernel["id"], session_id=session_id)
    second.session = first.session  # one Jupyter session per kernel connection, as in Lab
    run = await second.collect(msg_id, timeout=20)
    assert run.status == "ok" and run.stdout == "late\n"
    assert await read_until_closed(first) == 1000  # the stale connection is closed
    model = (await client.request("GET", f"/api/kernels/{kernel['id']}")).body
    assert model["connections"] == 1
    assert (await second.execute("6 * 7")).results == ["42"]
    second.close()
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


@pytest.fixture
def jwt_gateway(docker_engine, start_gateway):
    return start_gateway(f"--jwt-secret={SECRET}", "--kernels=docker")


async def test_a_session_id_is_its_users_own(jwt_gateway):
    alice = jwt_gateway.client(mint(SECRET, "alice", tier="team"))
    bob = jwt_gateway.client(mint(SECRET, "bob", tier="team"))
    room = await alice.request("POST", "/api/rooms", {"name": "r", "languages": ["python3"]})
    rid, kid = room.body["id"], room.body["kernels"][0]["id"]
    assert (await alice.request("PUT", f"/api/rooms/{rid}/members/bob", {"role": "participant"})).status == 200

    session_id = uuid.uuid4().hex
    mine = await alice.connect(kid, session_id=session_id)
    msg_id = await mine.send("shell", "execute_request", {"code": SLOW, "silent": False})
    await wait_busy(mine, msg_id)
    # bob, with alice's session_id, neither replaces her connection nor gets her replies
    theirs = await bob.connect(kid, session_id=session_id)
    run = await mine.collect(msg_id, timeout=20)
    assert run.stdout == "late\n"
    # and once alice is away, her replay buffer stays hers
    theirs.close()
    while (await alice.request("GET", f"/api/kernels/{kid}")).body["connections"] != 1:
        await asyncio.sleep(0.05)
    msg_id = await mine.send("shell", "execute_request", {"code": SLOW, "silent": False})
    await wait_busy(mine, msg_id)
    mine.close()
    while (await alice.request("GET", f"/api/kernels/{kid}")).body["connections"] != 0:
        await asyncio.sleep(0.05)
    theirs = await bob.connect(kid, session_id=session_id)
    seen = []
    while not (seen and seen[-1]["parent_header"].get("msg_id") == msg_id
               and seen[-1]["header"]["msg_type"] == "status"
               and seen[-1]["content"]["execution_state"] == "idle"):
        seen.append(await theirs.recv(timeout=20))
    assert not [m for m in seen if m["channel"] == "shell"], seen
    back = await alice.connect(kid, session_id=session_id)
    back.session = mine.session
    replayed = await back.collect(msg_id, timeout=20)
    assert replayed.status == "ok" and replayed.stdout == "late\n"
    back.close()
    theirs.close()
