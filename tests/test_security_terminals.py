"""A terminal is reachable only from its own sandbox, and its name cannot be guessed.

The code in a kernel can read its connection file, so it holds its kernel's key and
speaks its agent's protocol: it can make its own agent open a shell under any name and
publish that shell's output and exit. Those events must never reach a terminal of
another sandbox, even one whose name the attacker knows.
"""

from __future__ import annotations

import time

import jwt

from tests.test_workspace import Shell, in_thread

SECRET = "terminals-test-secret-long-enough-for-hs256-signatures"

#: Run in the attacker's kernel: open a shell named TARGET on the kernel's own agent, make
#: it print INJECTED-42 and exit, and wait until the agent has published both (so the
#: gateway has received them too). Prints what the agent published for TARGET.
ATTACK = r'''
import datetime, hashlib, hmac, json, uuid
import zmq
from ipykernel.connect import get_connection_file

info = json.load(open(get_connection_file()))
key = info["key"].encode()
if info["transport"] == "ipc":
    request_url, publish_url = f"ipc://{info['ip']}-agent", f"ipc://{info['ip']}-agent-pub"
else:
    request_url = f"tcp://{info['ip']}:{info['agent_port']}"
    publish_url = f"tcp://{info['ip']}:{info['agent_pub_port']}"

def frames(msg_type, content):
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "mallory",
              "session": uuid.uuid4().hex, "version": "5.3",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    parts = [json.dumps(p).encode() for p in (header, {}, {}, content)]
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return [b"<IDS|MSG>", mac.hexdigest().encode(), *parts]

context = zmq.Context.instance()
dealer, sub = context.socket(zmq.DEALER), context.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
dealer.connect(request_url)
sub.connect(publish_url)
time.sleep(0.5)  # a SUB sees only what is published after its subscription arrives
dealer.send_multipart(frames("terminal_open_request", {"name": TARGET, "rows": 24, "cols": 80}))
dealer.setsockopt(zmq.RCVTIMEO, 10000)
assert json.loads(dealer.recv_multipart()[-1])["status"] == "ok"
dealer.send_multipart(frames("terminal_input", {"name": TARGET, "data": "echo INJECTED-$((6*7)); exit\r"}))
sub.setsockopt(zmq.RCVTIMEO, 10000)
published = []
while "terminal_exit" not in [kind for kind, _ in published]:
    parts = sub.recv_multipart()
    header, content = json.loads(parts[2]), json.loads(parts[5])
    if content.get("name") == TARGET:
        published.append((header["msg_type"], content))
print("".join(c.get("data", "") for _, c in published).count("INJECTED-42"),
      [kind for kind, _ in published][-1])
'''


def token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "exp": now + 3600, "iat": now}, SECRET, algorithm="HS256")


async def test_a_kernel_cannot_reach_another_sandboxs_terminal(docker_engine, start_gateway):
    gateway = start_gateway("--kernels=docker", f"--jwt-secret={SECRET}")
    alice, bob = gateway.client(token("alice")), gateway.client(token("bob"))
    alice_kernel = await alice.start_kernel()
    opened = await alice.request("POST", "/api/terminals", {"kernel": alice_kernel["id"]})
    assert opened.status == 201, opened.body
    name = opened.body["name"]
    url = gateway.url.replace("http", "ws") + f"/terminals/websocket/{name}?token={token('alice')}"
    shell = await in_thread(Shell, url)
    shell.type("echo before-$((2*3))\r")
    await in_thread(shell.expect, "before-6")

    # bob's kernel, knowing alice's terminal name, makes its own agent publish under it
    bob_kernel = await bob.start_kernel()
    own = await bob.request("POST", "/api/terminals", {"kernel": bob_kernel["id"]})
    assert own.status == 201, own.body  # bob's agent's events now reach the gateway's terminals
    ws = await bob.connect(bob_kernel["id"])
    run = await ws.execute(f"import time\nTARGET = {name!r}\n" + ATTACK, timeout=60)
    assert run.status == "ok", run.reply["content"]
    assert run.stdout.split() == ["1", "terminal_exit"]  # the agent did publish both

    # alice's terminal is still hers, alive and untouched
    shell.type("echo after-$((3*5))\r")
    output = await in_thread(shell.expect, "after-15")
    assert "INJECTED-42" not in output
    assert (await alice.request("GET", f"/api/terminals/{name}")).status == 200
    assert (await bob.request("GET", f"/api/terminals/{name}")).status == 404
    await in_thread(shell.close)
    ws.close()
    await alice.request("DELETE", f"/api/kernels/{alice_kernel['id']}")
    await bob.request("DELETE", f"/api/kernels/{bob_kernel['id']}")


async def test_terminal_names_are_unguessable(local_gateway):
    client = local_gateway.client()
    kernel = await client.start_kernel()
    names = []
    for _ in range(3):
        response = await client.request("POST", "/api/terminals", {"kernel": kernel["id"]})
        assert response.status == 201, response.body
        names.append(response.body["name"])
    assert len(set(names)) == 3
    for name in names:
        assert len(name) >= 22 and not name.isdigit(), name  # 128 bits or more, not a counter
        assert (await client.request("GET", f"/api/terminals/{name}")).status == 200
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
