"""A wall-clock jump (issue 20): the gateway runs under libfaketime, its wall clock
moved 2 days forward, then back, while the monotonic clock runs on (as an NTP step or
a suspended VM's resume does).

What the user sees: nothing. Solo kernels are not culled (idle_timeout) or stopped
(max_lifetime), idle terminals are not closed, a running cell is not cut by its
exec_timeout: every duration is measured on the monotonic clock. Timestamps the API
shows (last_activity) follow the wall clock. JWTs are judged against the wall clock,
as their issuer's `exp` is a wall time: after the forward jump a token whose exp has
passed on the new clock is refused (401), one minted on the new clock is accepted,
after a jump back before a token's iat that token is refused until the clock
reaches it again.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

from kernelgate.jwt_auth import mint
from tests.ci import require
from tests.test_faults import LIMITED, answered
from tests.test_workspace import Shell, in_thread

#: With FAKETIME_DONT_FAKE_MONOTONIC and an offset, this libfaketime makes time.sleep fail
#: (EINVAL: it shifts clock_nanosleep's absolute monotonic deadline): the gateway's paths
#: here sleep only in its event loop, not with time.sleep.
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
SECRET = "clock-test-secret-with-enough-bytes-for-hs256"
DAY = 86400


def _jump(offset_file: Path, seconds: int) -> None:
    """Move the gateway's wall clock to real time + `seconds` (read at every call)."""
    offset_file.write_text(f"{seconds:+d}s\n")


async def _wall_of(client, kernel_id: str) -> float:
    """The gateway's wall clock as its kernel model shows it, after an execution."""
    ws = await client.connect(kernel_id)
    assert (await ws.execute("1")).status == "ok"
    ws.close()
    model = (await answered(client, "GET", f"/api/kernels/{kernel_id}")).body
    return datetime.strptime(model["last_activity"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


async def test_a_wall_clock_jump_culls_nothing_and_tokens_follow_the_clock(docker_engine, start_gateway,
                                                                          tmp_path):
    if not LIBFAKETIME.exists():
        require("libfaketime is not installed (Debian package: faketime)")
    offset = tmp_path / "faketime"
    _jump(offset, 0)
    config = tmp_path / "limited.py"
    config.write_text(LIMITED + "c.KernelRegistry.max_lifetime = 3600\n"
                      "c.TerminalManager.idle_timeout = 600\nc.TerminalManager.cull_interval = 1\n")
    gateway = start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}", env={
        "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    now_token = mint(SECRET, "ada", expires_in=3600)
    client = gateway.client(now_token)
    kernel = (await answered(client, "POST", "/api/kernels", {"name": "python3"})).body["id"]
    assert abs(await _wall_of(client, kernel) - time.time()) < 600
    made = await answered(client, "POST", "/api/terminals", {"kernel": kernel})
    assert made.status == 201, made.body
    terminal = made.body["name"]
    shell = await in_thread(Shell, gateway.url.replace("http", "ws") + f"/terminals/websocket/{terminal}"
                            f"?token={now_token}")
    shell.type("echo up-$((1+1))\r")
    await in_thread(shell.expect, "up-2")
    shell.close()  # idle, with no client: only idle_timeout would close it
    ws = await client.connect(kernel)
    await ws.send("shell", "execute_request", {"code": "import time; time.sleep(8); print('slept')",
                                               "silent": False})

    _jump(offset, 2 * DAY)
    await asyncio.sleep(4)  # several supervision and cull rounds on the new clock
    refused = await answered(client, "GET", f"/api/kernels/{kernel}")
    assert refused.status == 401, refused.body  # its exp is 2 days ago on the gateway's clock
    later = gateway.client(mint(SECRET, "ada", extra={"iat": int(time.time()) + 2 * DAY,
                                                      "exp": int(time.time()) + 2 * DAY + 3600}))
    model = await answered(later, "GET", f"/api/kernels/{kernel}")
    assert model.status == 200, (model.body, gateway.log()[-3000:])  # not culled (idle, lifetime)
    assert (await answered(later, "GET", f"/api/terminals/{terminal}")).status == 200  # not closed
    told = ""  # the running cell was not cut by its 20 s exec_timeout
    while "slept" not in told:
        msg = await ws.recv(30)
        if msg["header"]["msg_type"] == "stream":
            told += msg["content"]["text"]
    assert "Execution stopped" not in told, told
    ws.close()
    assert abs(await _wall_of(later, kernel) - (time.time() + 2 * DAY)) < 600  # the jump took

    _jump(offset, -DAY)  # and back, past the real time: a token issued later than the clock says
    await asyncio.sleep(4)
    early = await answered(client, "GET", f"/api/kernels/{kernel}")
    assert early.status == 401, early.body  # its iat is in the gateway's future
    _jump(offset, 0)
    model = await answered(client, "GET", f"/api/kernels/{kernel}")
    assert model.status == 200, model.body  # the first token is valid again
    assert (await answered(client, "GET", f"/api/terminals/{terminal}")).status == 200
    ws = await client.connect(kernel)
    assert (await ws.execute("print(6 * 7)", timeout=30)).stdout == "42\n"
    ws.close()
    assert (await answered(client, "DELETE", f"/api/kernels/{kernel}")).status == 204
