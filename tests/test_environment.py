"""Environments on real containers: detection over the API, installs in the install
sandbox, and the room's kernels using what was installed without a network.

The installs fetch from the package registries through the default bridge network, with
the host's CA bundle (the registries themselves are pip's and Deno's defaults)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import jwt
import pytest

SECRET = "environment-test-secret-long-enough-for-hs256"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CONFIG = f"""
c.Plans.plans = {{"pro": {{"kernel_tiers": ["low", "medium"], "max_kernels": 4, "max_rooms": 4, "max_members": 5}}}}
c.Plans.order = ["pro"]
c.EnvironmentService.ca_bundle = {CA_BUNDLE!r}
c.EnvironmentService.timeout = 180
"""


def token(user: str, admin: bool = False) -> str:
    now = int(time.time())
    claims = {"sub": user, "exp": now + 3600, "iat": now, "tier": "pro", **({"roles": ["admin"]} if admin else {})}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def env_gateway(docker_engine, start_gateway, tmp_path):
    config = tmp_path / "environment_config.py"
    config.write_text(CONFIG)
    return start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}")


async def make_room(client, languages) -> dict:
    response = await client.request("POST", "/api/rooms", {"name": "project", "languages": languages})
    assert response.status == 201, response.body
    return response.body


async def put_file(client, room_id: str, path: str, content: str) -> None:
    parent = os.path.dirname(path)
    if parent:
        await client.request("PUT", f"/api/rooms/{room_id}/contents/{parent}", {"type": "directory"})
    response = await client.request("PUT", f"/api/rooms/{room_id}/contents/{path}",
                                    {"type": "file", "format": "text", "content": content})
    assert response.status in (200, 201), response.body


async def install(client, room_id: str, body: dict | None = None) -> tuple[list[dict], dict]:
    """POST install; (progress events, result event) from the NDJSON stream."""
    response = await client.request("POST", f"/api/rooms/{room_id}/environment/install", body or {},
                                    timeout=400)
    assert response.status == 200, response.body
    assert response.headers["Content-Type"] == "application/x-ndjson"
    raw = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
    events = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    assert events[-1]["type"] == "result" and all(e["type"] == "progress" for e in events[:-1])
    return events[:-1], events[-1]


def language(report: dict, name: str) -> dict:
    return next(entry for entry in report["languages"] if entry["language"] == name)


def kernel_of(room: dict, name: str) -> str:
    return next(k["id"] for k in room["kernels"] if k["name"] == name)


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under root (links not followed) -> a digest of what it is."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = "dir"
    return found


async def test_requirements_detected_installed_and_imported_without_network(env_gateway):
    alice = env_gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    await put_file(alice, rid, "requirements.txt", "six==1.16.0\n")
    await put_file(alice, rid, "app.py", "import six\nimport flask\n")

    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    python = language(report, "python")
    assert python["package_manager"] == "pip"
    assert python["packages"] == [{"name": "six", "spec": "==1.16.0", "dev": False, "manifest": "requirements.txt"}]
    assert {"name": "Flask", "evidence": "app.py: flask"} in python["frameworks"]
    assert python["install"]["source"] == "requirements.txt"

    py = await alice.connect(kernel_of(room, "python3"))
    assert (await py.execute("import six")).status == "error"
    py.close()

    progress, result = await install(alice, rid)
    assert result["status"] == "ok", result
    assert result["restarted"] == ["python3"]
    assert any("six" in e["line"] for e in progress)
    assert any(e["step"] == "swap" and "installed into .kernelgate/python" in e["line"] for e in progress)

    py = await alice.connect(kernel_of(room, "python3"))  # the same kernel, in a fresh sandbox
    run = await py.execute("import os, six; print(six.__version__, six.__file__, sorted(os.listdir('/sys/class/net')))")
    assert run.status == "ok", run.reply
    assert run.stdout.split() == ["1.16.0", "/workspace/.kernelgate/python/six.py", "['lo']"]
    py.close()

    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    assert report["last_install"]["status"] == "ok" and not report["installing"]
    audit = (await env_gateway.client(token("root", admin=True)).request("GET", "/api/admin/audit")).body
    entry = next(e for e in audit if e["action"] == "environment.install" and e["target"] == rid)
    assert entry["actor"] == "alice" and entry["details"]["status"] == "ok"


async def test_package_json_installed_and_used_from_javascript(env_gateway):
    alice = env_gateway.client(token("alice"))
    room = await make_room(alice, ["javascript"])
    rid = room["id"]
    await put_file(alice, rid, "package.json", json.dumps({"name": "demo", "dependencies": {"is-number": "7.0.0"}}))
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    js = language(report, "javascript")
    assert js["packages"][0]["name"] == "is-number" and js["install"]["source"] == "package.json"

    progress, result = await install(alice, rid)
    assert result["status"] == "ok", (result, progress[-10:])
    assert result["restarted"] == ["javascript"]
    ws = await alice.connect(kernel_of(room, "javascript"))
    run = await ws.execute('import isNumber from "is-number";\n[isNumber(5), isNumber("x")]')
    assert run.status == "ok", run.reply
    assert run.results == ["[ true, false ]"]
    ws.close()


async def test_project_file_sets_packages_env_and_workdir(env_gateway):
    alice = env_gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    await put_file(alice, rid, "app/main.py", "print('hello')\n")
    await put_file(alice, rid, "kernelgate.toml",
                   'workdir = "app"\n[env]\nGREETING = "hi there"\n[packages]\npython = ["six==1.16.0"]\n')
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    assert report["workdir"] == "app" and report["project_file"]["env"] == {"GREETING": "hi there"}
    assert language(report, "python")["install"] == {"supported": True, "source": "kernelgate.toml",
                                                     "packages": ["six==1.16.0"]}
    _, result = await install(alice, rid, {"languages": ["python"]})
    assert result["status"] == "ok", result
    py = await alice.connect(kernel_of(room, "python3"))
    run = await py.execute("import os, six; print(os.getcwd(), os.environ['GREETING'], six.__version__)")
    assert run.stdout == "/workspace/app hi there 1.16.0\n", run.reply
    py.close()

    await put_file(alice, rid, "kernelgate.toml", '[env]\nLD_PRELOAD = "/x.so"\n')
    refused = await alice.request("POST", f"/api/rooms/{rid}/environment/install", {})
    assert refused.status == 400 and "LD_PRELOAD" in refused.body["message"]


async def test_failed_install_reports_and_leaves_the_workspace(env_gateway):
    alice, bob, carol = (env_gateway.client(token(u)) for u in ("alice", "bob", "carol"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    await alice.request("PUT", f"/api/rooms/{rid}/members/bob", {"role": "participant"})
    await put_file(alice, rid, "requirements.txt", "kernelgate-no-such-package-0f9a==1.0\n")
    workspace = env_gateway.data_dir / "rooms" / rid
    before = tree_digest(workspace)

    assert (await bob.request("GET", f"/api/rooms/{rid}/environment")).status == 200
    denied = await bob.request("POST", f"/api/rooms/{rid}/environment/install", {})
    assert denied.status == 403 and denied.body["reason"] == "Forbidden"
    assert (await carol.request("GET", f"/api/rooms/{rid}/environment")).status == 404
    bad = await alice.request("POST", f"/api/rooms/{rid}/environment/install", {"languages": ["go"]})
    assert bad.status == 400 and "python" in bad.body["message"]

    running = asyncio.ensure_future(install(alice, rid))
    for _ in range(100):
        if (await alice.request("GET", f"/api/rooms/{rid}/environment")).body["installing"]:
            break
        await asyncio.sleep(0.05)
    second = await alice.request("POST", f"/api/rooms/{rid}/environment/install", {})
    assert second.status == 409, second.body
    _, result = await running
    assert result["status"] == "error"
    assert "python install failed" in result["message"] and "kernelgate-no-such-package-0f9a" in result["message"]
    assert "nothing in the workspace changed" in result["message"]
    assert tree_digest(workspace) == before
    assert not list((env_gateway.data_dir / "installs").iterdir())


class LoopbackService:
    """A TCP server on the host's 127.0.0.1 that records every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


HOSTILE_SETUP = """
import json, os, socket, sys
report = {{}}
for path in ["/etc/owned", "/opt/kernelgate/owned", "/workspace/owned", {outside!r}]:
    try:
        with open(path, "w") as f:
            f.write("owned")
        report[path] = "written"
    except OSError as e:
        report[path] = type(e).__name__
try:
    report["secret"] = open({secret!r}).read()
except OSError as e:
    report["secret"] = type(e).__name__
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    report["loopback"] = "connected"
except OSError as e:
    report["loopback"] = type(e).__name__
print("HOSTILE-REPORT " + json.dumps(report), flush=True)
sys.exit(1)
"""


async def test_hostile_setup_py_is_contained(env_gateway):
    alice = env_gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    secret = env_gateway.data_dir / "gateway-secret.txt"
    secret.write_text("the gateway's own file")
    outside = env_gateway.data_dir / "owned-by-setup-py"
    service = LoopbackService()
    try:
        await put_file(alice, rid, "requirements.txt", "./evil\n")
        await put_file(alice, rid, "evil/setup.py", HOSTILE_SETUP.format(
            outside=str(outside), secret=str(secret), port=service.port))
        workspace = env_gateway.data_dir / "rooms" / rid
        before = tree_digest(workspace)
        progress, result = await install(alice, rid)
    finally:
        service.close()
    assert result["status"] == "error"
    line = next(e["line"] for e in progress if "HOSTILE-REPORT" in e["line"])
    report = json.loads(line.split("HOSTILE-REPORT ", 1)[1])
    # the setup.py ran, and every attempt failed
    assert set(report.values()).isdisjoint({"written", "connected", "the gateway's own file"}), report
    assert report["secret"] == "FileNotFoundError"
    assert service.accepted == 0
    assert not outside.exists() and not Path("/etc/owned").exists()
    assert tree_digest(workspace) == before


async def test_go_and_cargo_projects_detected(env_gateway):
    alice = env_gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    await put_file(alice, rid, "api/go.mod",
                   "module example.com/api\n\ngo 1.22\n\nrequire (\n\tgithub.com/gin-gonic/gin v1.9.1\n"
                   "\tgolang.org/x/net v0.25.0 // indirect\n)\n")
    await put_file(alice, rid, "api/go.sum", "")
    await put_file(alice, rid, "api/main.go",
                   'package main\n\nimport (\n\t"fmt"\n\t"github.com/gin-gonic/gin"\n)\n')
    await put_file(alice, rid, "engine/Cargo.toml",
                   '[package]\nname = "engine"\nversion = "0.1.0"\n\n[dependencies]\naxum = "0.7"\n'
                   'tokio = { version = "1", features = ["full"] }\n\n[dev-dependencies]\nproptest = "1"\n')
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    go = language(report, "go")
    assert go["package_manager"] == "go" and go["lockfiles"] == ["api/go.sum"]
    assert [(p["name"], p["spec"], p["dev"]) for p in go["packages"]] == [
        ("github.com/gin-gonic/gin", "v1.9.1", False), ("golang.org/x/net", "v0.25.0", True)]
    assert [f["name"] for f in go["frameworks"]] == ["Gin"]
    assert go["imports"] == ["github.com/gin-gonic/gin"]
    assert go["install"]["supported"] is False
    rust = language(report, "rust")
    assert rust["package_manager"] == "cargo" and rust["manifests"] == [
        {"path": "engine/Cargo.toml", "package_manager": "cargo"}]
    assert {(p["name"], p["spec"], p["dev"]) for p in rust["packages"]} == {
        ("axum", "0.7", False), ("tokio", "1", False), ("proptest", "1", True)}
    assert {f["name"] for f in rust["frameworks"]} == {"Axum", "Tokio"}


async def test_solo_kernel_environment_read_only_through_its_sandbox(env_gateway):
    alice, bob = env_gateway.client(token("alice")), env_gateway.client(token("bob"))
    kernel = await alice.start_kernel("python3")
    ws = await alice.connect(kernel["id"])
    run = await ws.execute(
        "import json, os\n"
        "os.makedirs('web', exist_ok=True)\n"
        "json.dump({'dependencies': {'react': '^18', 'next': '14.2.0'}}, open('web/package.json', 'w'))\n"
        "open('web/package-lock.json', 'w').write('{}')\n"
        "os.symlink('/etc/passwd', 'requirements.txt')\n"
        "os.symlink('/opt/kernelgate/venv', 'venvlink')\n")
    assert run.status == "ok", run.reply
    ws.close()
    report = (await alice.request("GET", f"/api/kernels/{kernel['id']}/environment")).body
    js = language(report, "javascript")
    assert js["package_manager"] == "npm"
    assert {f["name"] for f in js["frameworks"]} == {"React", "Next.js"}
    assert [entry["language"] for entry in report["languages"]] == ["javascript"]
    assert sorted(report["scan"]["links_not_followed"]) == ["requirements.txt", "venvlink"]
    assert (await bob.request("GET", f"/api/kernels/{kernel['id']}/environment")).status == 404


FILLING_SETUP = """
import json, sys, time
if {sleep}:
    time.sleep(600)
report = {{}}
try:
    with open("/install/fill", "wb") as f:
        for _ in range(64):
            f.write(b"x" * 65536)
    report["fill"] = "written"
except OSError as e:
    report["fill"] = e.strerror
print("LIMITS-REPORT " + json.dumps(report), flush=True)
sys.exit(1)
"""


async def test_install_disk_and_time_limits(docker_engine, start_gateway, tmp_path):
    config = tmp_path / "limits_config.py"
    config.write_text(CONFIG + 'c.EnvironmentService.disk = "1m"\nc.EnvironmentService.timeout = 8\n')
    gateway = start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}")
    alice = gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    await put_file(alice, rid, "requirements.txt", "./filler\n")
    workspace = gateway.data_dir / "rooms" / rid

    await put_file(alice, rid, "filler/setup.py", FILLING_SETUP.format(sleep=False))
    before = tree_digest(workspace)
    progress, result = await install(alice, rid)
    assert result["status"] == "error", result
    line = next(e["line"] for e in progress if "LIMITS-REPORT" in e["line"])
    assert json.loads(line.split("LIMITS-REPORT ", 1)[1]) == {"fill": "No space left on device"}
    assert tree_digest(workspace) == before

    await put_file(alice, rid, "filler/setup.py", FILLING_SETUP.format(sleep=True))
    before = tree_digest(workspace)
    started = time.monotonic()
    _, result = await install(alice, rid)
    assert time.monotonic() - started < 60
    assert result["status"] == "error" and "longer than 8 s" in result["message"], result
    assert tree_digest(workspace) == before
    labels = ["org.kernelgate.install", f"org.kernelgate.gateway={gateway.gateway_id}"]
    assert not docker_engine.containers.list(all=True, filters={"label": labels})
