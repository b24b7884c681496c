"""A room's kernel plants non-regular files where the gateway reads the workspace on the
host (abuse checklist rows 10 and 11).

The gateway reads `kernelgate.toml` and the manifests of a room's workspace on the host
(environment detection, the project's prefix for every kernel start). A FIFO there would
block the reading thread forever (open(2) of a FIFO waits for a writer), a device or
socket must not be read either. Each must be refused at once, with the request answered.
"""

from __future__ import annotations

import asyncio

import pytest

from kernelgate.jwt_auth import mint

SECRET = "host-files-test-secret-long-enough-for-hs256"

#: Longest an answer may take, seconds (generous: 2 cores, other tests running).
ANSWER_BOUND = 30


@pytest.fixture
def gateway(docker_engine, start_gateway):
    return start_gateway("--kernels=docker", f"--jwt-secret={SECRET}")


async def test_a_fifo_for_a_project_file_is_refused_without_blocking(gateway):
    alice = gateway.client(mint(SECRET, "alice"))
    made = await alice.request("POST", "/api/rooms", {"name": "fifo", "languages": ["python3"]})
    assert made.status == 201, made.body
    room = made.body
    kernel = next(k["id"] for k in room["kernels"] if k["name"] == "python3")
    ws = await alice.connect(kernel)
    run = await ws.execute(
        "import os\n"
        "os.mkfifo('/workspace/kernelgate.toml')\n"
        "os.mkfifo('/workspace/requirements.txt')\n"
        "print(sorted(os.listdir('/workspace')))")
    assert "kernelgate.toml" in run.stdout, run.reply
    ws.close()

    # Detection reads both names: it answers, and says the project file was not read.
    report = await asyncio.wait_for(
        alice.request("GET", f"/api/rooms/{room['id']}/environment", timeout=ANSWER_BOUND),
        ANSWER_BOUND)
    assert report.status == 200, report.body
    assert report.body.get("project_file") in (None, {}) or "error" in report.body["project_file"]

    # Every kernel start reads the project's prefix: a new language still starts and works.
    added = await asyncio.wait_for(
        alice.request("PUT", f"/api/rooms/{room['id']}/languages", {"languages": ["python3", "bash"]},
                      timeout=ANSWER_BOUND), ANSWER_BOUND)
    assert added.status == 200, added.body
    bash = next(k["id"] for k in added.body["kernels"] if k["name"] == "bash")
    ws = await alice.connect(bash)
    run = await ws.execute("echo $((6 * 7))")
    assert run.stdout == "42\n", run.reply
    ws.close()

    # The file API refuses to read it, at once, with a JSON error.
    read = await asyncio.wait_for(
        alice.request("GET", f"/api/rooms/{room['id']}/contents/kernelgate.toml", timeout=ANSWER_BOUND),
        ANSWER_BOUND)
    assert read.status == 400 and "regular file" in read.body["message"], read.body
