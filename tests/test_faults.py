"""Faults, with real components: what a user sees, and that nothing saved is lost
(issue 20). A database outage, a kernel container killed mid-execution, the gateway
killed mid-snapshot."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.ci import require
from tests.postgres import PostgresServer, postgres_bindir

#: Longest any answer may take during a fault, seconds.
ANSWER_BOUND = 30


async def answered(client, method: str, path: str, body=None):
    """The response, which must come within ANSWER_BOUND and never be a 500."""
    response = await asyncio.wait_for(client.request(method, path, body, timeout=ANSWER_BOUND), ANSWER_BOUND + 5)
    assert response.status != 500, response.body
    if response.status >= 400:
        assert {"reason", "message"} <= set(response.body), response.body
    return response


@pytest.fixture
def postgres():
    bindir = postgres_bindir()
    if bindir is None:
        require("PostgreSQL is not installed (Debian package: postgresql)")
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


async def test_a_database_outage_is_503_and_loses_nothing(postgres, docker_engine, start_gateway):
    url = postgres.url(postgres.create_database())
    gateway = start_gateway("--kernels=docker", f"--Store.url={url}")
    client = gateway.client()
    room = (await answered(client, "POST", "/api/rooms", {"name": "kept", "languages": ["python3"]})).body
    kernel = room["kernels"][0]["id"]
    ws = await client.connect(kernel)
    assert (await ws.execute("x = 1")).status == "ok"

    postgres.halt()
    listed = await answered(client, "GET", "/api/rooms")  # rooms are known in memory
    assert listed.status == 200 and [r["name"] for r in listed.body] == ["kept"], listed.body
    made = await answered(client, "POST", "/api/rooms", {"name": "during", "languages": ["bash"]})
    assert made.status == 503, made.body
    # running kernels do not need the database
    assert (await ws.execute("print(x + 1)", timeout=ANSWER_BOUND)).stdout == "2\n"

    postgres.resume()
    for _ in range(60):
        listed = await answered(client, "GET", "/api/rooms")
        if listed.status == 200:
            break
        await asyncio.sleep(0.5)
    assert [r["name"] for r in listed.body] == ["kept"]  # nothing lost, nothing half-made
    again = await answered(client, "POST", "/api/rooms", {"name": "after", "languages": ["bash"]})
    assert again.status == 201, again.body
    ws.close()

    # stopped while the database is down: it still exits cleanly (the start_gateway
    # fixture checks its log for tracebacks), and the next run has every room
    postgres.halt()
    gateway.stop()
    assert gateway.proc.returncode == 0, gateway.log()[-2000:]
    postgres.resume()
    client = start_gateway("--kernels=docker", f"--Store.url={url}", like=gateway).client()
    assert sorted(r["name"] for r in (await answered(client, "GET", "/api/rooms")).body) == ["after", "kept"]
