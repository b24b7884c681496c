"""Execute requests are rate limited per user (abuse checklist row 20).

A user who floods execute_requests gets, beyond the burst, error replies (ename
RateLimited, with when to retry) that never reach the kernel; more sockets do not raise
the limit; other users are not affected; after waiting, the user runs code again.
A Lab-style client sees the refusal end its request: an iopub error and an idle status.
"""

from __future__ import annotations

import asyncio

import pytest

from kernelgate.jwt_auth import mint
from kernelgate.ratelimit import ExecuteRateLimit

SECRET = "rate-limit-test-secret-long-enough-for-hs256"
BURST = 4


@pytest.fixture
def gateway(docker_engine, start_gateway, tmp_path):
    config = tmp_path / "config.py"
    config.write_text(f"c.ExecuteRateLimit.per_minute = 30\nc.ExecuteRateLimit.burst = {BURST}\n")
    return start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}")


async def flood(ws, count: int) -> list[dict]:
    """Send `count` executions at once (each appends to a file); for each, its shell reply
    and the iopub message types it got, in order, until its idle status."""
    ids = [await ws.send("shell", "execute_request", {
        "code": "open('/tmp/ran', 'a').write('x')", "silent": False}) for _ in range(count)]
    runs = {msg_id: {"reply": None, "iopub": [], "idle": False} for msg_id in ids}
    while not all(run["reply"] and run["idle"] for run in runs.values()):
        msg = await ws.recv(60)
        run = runs.get(msg["parent_header"].get("msg_id"))
        if run is None:
            continue
        if msg["channel"] == "shell":
            run["reply"] = msg["content"]
        elif msg["channel"] == "iopub":
            run["iopub"].append(msg["header"]["msg_type"])
            run["idle"] = run["idle"] or msg["content"].get("execution_state") == "idle"
    return [runs[msg_id] for msg_id in ids]


async def test_a_user_beyond_the_limit_is_refused_and_the_kernel_never_runs_it(gateway):
    alice, bob = gateway.client(mint(SECRET, "alice")), gateway.client(mint(SECRET, "alice-colleague"))
    kernel = await alice.start_kernel("python3")
    first, second = await alice.connect(kernel["id"]), await alice.connect(kernel["id"])

    runs = await flood(first, BURST + 3) + await flood(second, 2)
    statuses = [run["reply"]["status"] for run in runs]
    assert statuses.count("ok") == BURST, statuses  # the second socket shares the bucket
    refused = [run for run in runs if run["reply"]["status"] == "error"]
    for run in refused:
        assert run["reply"]["ename"] == "RateLimited"
        assert "retry in" in run["reply"]["evalue"]
        # what a frontend shows in the cell: the error on iopub, then idle
        assert run["iopub"] == ["error", "status"], run

    # another user's kernel runs at once
    other = await bob.start_kernel("python3")
    ws = await bob.connect(other["id"])
    assert (await ws.execute("print('free')")).stdout == "free\n"
    ws.close()

    # the refused ones never reached the kernel; after a wait (30/min: one per 2 s), code runs
    await asyncio.sleep(2.5)
    check = await first.execute("print(len(open('/tmp/ran').read()))")
    assert check.stdout == f"{BURST}\n", check.reply
    first.close()
    second.close()


def test_the_bucket_refills_at_the_configured_rate():
    limit = ExecuteRateLimit(per_minute=60, burst=2)
    assert [limit.take("u", now=100.0) for _ in range(2)] == [0.0, 0.0]
    assert limit.take("u", now=100.0) == pytest.approx(1.0)
    assert limit.take("u", now=101.0) == 0.0  # one second later: one more
    assert ExecuteRateLimit(per_minute=0).take("u") == 0.0


def test_forgotten_users_are_bounded():
    limit = ExecuteRateLimit(per_minute=60, burst=1, max_users=3)
    for user in "abcde":
        limit.take(user, now=0.0)
    assert limit.take("a", now=0.0) == 0.0  # forgotten: a full burst again
    assert limit.take("e", now=0.0) > 0
