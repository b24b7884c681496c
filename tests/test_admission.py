"""Admission control for kernel starts (issue 20): when more cold starts arrive at once
than the gateway lets wait in line, the extra ones are refused at once with 503 (all
users) or 429 (one user), with Retry-After, and never hang; the admitted ones start."""

from __future__ import annotations

import asyncio

import docker

from kernelgate.engine import GATEWAY_LABEL
from tests.test_metrics import parse


async def started_at_once(client, count: int, path: str = "/api/kernels", body=None) -> list:
    """`count` concurrent start requests; the responses in the order they arrived."""
    arrived = []

    async def one():
        response = await client.request("POST", path, body or {"name": "python3"}, timeout=300)
        arrived.append(response)

    await asyncio.gather(*(one() for _ in range(count)))
    return arrived


def assert_refused(response, status: int) -> None:
    assert response.status == status, response.body
    assert int(response.headers["Retry-After"]) >= 1
    assert {"reason", "message"} <= set(response.body), response.body


async def test_starts_beyond_the_line_are_503_at_once_and_the_line_starts(start_gateway, docker_engine):
    """Six starts at once, one launching at a time, two allowed in line: the user sees
    four 503s with Retry-After (each before the admitted starts are done: no wait), two
    kernels that work, and once the line is empty a start is admitted again."""
    gateway = start_gateway("--kernels=docker", "--KernelRegistry.start_parallel=1",
                            "--KernelRegistry.max_pending_starts=2",
                            "--KernelRegistry.max_pending_starts_per_user=0")
    client = gateway.client()
    arrived = await started_at_once(client, 6)
    statuses = [r.status for r in arrived]
    assert sorted(statuses) == [201, 201, 503, 503, 503, 503], [r.body for r in arrived]
    assert statuses[-1] == 201  # the refusals did not wait for the line
    for response in arrived:
        if response.status == 503:
            assert_refused(response, 503)
    kernels = [r.body["id"] for r in arrived if r.status == 201]
    for kernel in kernels:
        ws = await client.connect(kernel)
        assert (await ws.execute("print(6 * 7)")).stdout == "42\n"
        ws.close()
    again = await client.request("POST", "/api/kernels", {"name": "python3"})
    assert again.status == 201, again.body
    kernels.append(again.body["id"])
    engine = docker.from_env(timeout=30)
    running = engine.containers.list(filters={"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"})
    assert len(running) == 3  # refused starts left no container
    samples = parse((await client.request("GET", "/metrics")).body.decode())
    assert samples[("kernelgate_kernel_start_failures_total",
                    frozenset({("kernelspec", "python3"), ("reason", "StartsQueueFull")}))] == 4
    for kernel in kernels:
        assert (await client.request("DELETE", f"/api/kernels/{kernel}")).status == 204


async def test_one_users_starts_beyond_their_line_are_429_and_a_room_is_all_or_nothing(
        start_gateway, docker_engine):
    """One user with at most two starts in line: of four at once, two are 429 with
    Retry-After; a room of three languages needs three starts, is refused (429) and
    leaves nothing behind."""
    gateway = start_gateway("--kernels=docker", "--KernelRegistry.start_parallel=1",
                            "--KernelRegistry.max_pending_starts=0",
                            "--KernelRegistry.max_pending_starts_per_user=2")
    client = gateway.client()
    arrived = await started_at_once(client, 4)
    assert sorted(r.status for r in arrived) == [201, 201, 429, 429], [r.body for r in arrived]
    assert arrived[-1].status == 201
    for response in arrived:
        if response.status == 429:
            assert_refused(response, 429)
    for response in arrived:
        if response.status == 201:
            assert (await client.request("DELETE", f"/api/kernels/{response.body['id']}")).status == 204

    room = await client.request("POST", "/api/rooms", {"name": "wide", "languages": ["python3", "bash", "lua"]})
    assert_refused(room, 429)
    assert (await client.request("GET", "/api/rooms")).body == []
    engine = docker.from_env(timeout=30)
    for _ in range(60):  # the two admitted room kernels are stopped again
        if not engine.containers.list(filters={"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"}):
            break
        await asyncio.sleep(0.5)
    assert engine.containers.list(filters={"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"}) == []
