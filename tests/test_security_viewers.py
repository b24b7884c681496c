"""A room's viewers watch; they run no code in its kernels, not even through completion.

Kernels run code to answer requests that look read-only: bash_kernel hands the token
to be completed to `compgen`, so completing `$(touch f)` runs `touch f`. A viewer's
shell messages other than kernel_info and comm_info get an error reply with
`ename: PermissionError`, to them alone, and never reach the kernel.
"""

from __future__ import annotations

import time

import jwt
import pytest

from tests.client import KernelSocket

SECRET = "viewers-test-secret-long-enough-for-hs256-signatures"
CONFIG = """
c.Plans.plans = {"pro": {"kernel_tiers": ["low", "medium", "high"], "max_kernels": 4, "max_rooms": 2, "max_members": 5}}
c.Plans.order = ["pro"]
"""

#: Per language: code a member runs first (ordinary code: a property, an active binding),
#: then the code a viewer completes, inspects and executes. Each creates /workspace/ran-LANG
#: if the kernel runs it: completion in bash runs the command substitution, completion
#: in Python runs the property, completion and inspection in R run the active binding.
ATTACKS = {
    "bash": ("", "ls x$(touch${IFS}/workspace/ran-bash)", "x$(touch${IFS}/workspace/ran-bash)",
             "touch /workspace/ran-bash"),
    "python3": ("class Lazy:\n    @property\n    def value(self):\n"
                "        open('/workspace/ran-python3', 'w').close()\n        return ''\nlazy = Lazy()",
                "lazy.value.", "lazy.value", "open('/workspace/ran-python3', 'w').close()"),
    "r": ("makeActiveBinding('lazy', function() { file.create('/workspace/ran-r'); list(a = 1) }, globalenv())",
          "lazy$", "lazy", "file.create('/workspace/ran-r')"),
}
#: Per language: a prefix, and one completion a kernel offers for it.
COMPLETIONS = {"bash": ("ech", "echo"), "python3": ("pri", "print"), "r": ("prin", "print")}


def token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "exp": now + 3600, "iat": now, "tier": "pro"}, SECRET, algorithm="HS256")


@pytest.fixture
def viewers_gateway(docker_engine, start_gateway, tmp_path):
    config = tmp_path / "viewers_config.py"
    config.write_text(CONFIG)
    return start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}")


async def reply_to(ws: KernelSocket, msg_id: str, timeout: float = 30) -> dict:
    """The shell reply to `msg_id` (other messages are skipped)."""
    while True:
        msg = await ws.recv(timeout)
        if msg["channel"] == "shell" and msg["parent_header"].get("msg_id") == msg_id:
            return msg


async def request(ws: KernelSocket, msg_type: str, content: dict) -> dict:
    return await reply_to(ws, await ws.send("shell", msg_type, content))


async def test_viewers_run_no_code_through_any_request(viewers_gateway):
    owner, viewer, participant = (viewers_gateway.client(token(u)) for u in ("olga", "vic", "pat"))
    response = await owner.request("POST", "/api/rooms", {"name": "watched", "languages": list(ATTACKS)})
    assert response.status == 201, response.body
    room = response.body
    for user, role in (("vic", "viewer"), ("pat", "participant")):
        added = await owner.request("PUT", f"/api/rooms/{room['id']}/members/{user}", {"role": role})
        assert added.status == 200, added.body
    kernels = {k["name"]: k["id"] for k in room["kernels"]}
    contents = f"/api/rooms/{room['id']}/contents"

    for language, (setup, completed, inspected, executed) in ATTACKS.items():
        marker = f"{contents}/ran-{language}"
        if setup:
            ws = await owner.connect(kernels[language])
            assert (await ws.execute(setup)).status == "ok"
            ws.close()
        ws = await viewer.connect(kernels[language])
        info = await request(ws, "kernel_info_request", {})
        assert info["content"]["status"] == "ok"  # a viewer's client can show the kernel
        assert (await request(ws, "comm_info_request", {}))["content"]["status"] == "ok"
        replies = {}
        for msg_type, content in [
            ("complete_request", {"code": completed, "cursor_pos": len(completed)}),
            ("inspect_request", {"code": inspected, "cursor_pos": len(inspected), "detail_level": 0}),
            ("execute_request", {"code": executed, "silent": False}),
            ("history_request", {"hist_access_type": "tail", "n": 10, "output": False, "raw": True}),
        ]:
            replies[msg_type] = await request(ws, msg_type, content)
        # a kernel answers shell requests in order: had any above reached it, it ran before this
        assert (await request(ws, "kernel_info_request", {}))["content"]["status"] == "ok"
        assert (await owner.request("GET", marker)).status == 404, language
        for msg_type, refused in replies.items():
            assert refused["header"]["msg_type"] == msg_type.replace("_request", "_reply")
            assert refused["content"]["status"] == "error", (language, msg_type, refused["content"])
            assert refused["content"]["ename"] == "PermissionError"
            assert "viewer" in refused["content"]["evalue"] and msg_type in refused["content"]["evalue"]
        ws.close()

        # a participant's completion works, and runs what the viewer's would have run
        ws = await participant.connect(kernels[language])
        prefix, expected = COMPLETIONS[language]
        completion = await request(ws, "complete_request", {"code": prefix, "cursor_pos": len(prefix)})
        assert completion["content"]["status"] == "ok", completion["content"]
        assert expected in completion["content"]["matches"], completion["content"]
        await request(ws, "complete_request", {"code": completed, "cursor_pos": len(completed)})
        assert (await owner.request("GET", marker)).status == 200, language
        ws.close()
    assert (await owner.request("DELETE", f"/api/rooms/{room['id']}")).status == 204
