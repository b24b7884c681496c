"""Environments on real containers: detection over the API, installs in the install
sandbox, and the room's kernels using what was installed without a network.

The installs fetch from the package registries through the install fence (an internal
network whose only way out is the gateway's allow-listing CONNECT proxy), with the host's
CA bundle; the registries are this machine's pip and npm defaults, read from them."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import docker
import jwt
import pytest

from tests.ci import require

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
    config.write_text(CONFIG + registry_settings())
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
    bad = await alice.request("POST", f"/api/rooms/{rid}/environment/install", {"languages": ["cobol"]})
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


class HostService:
    """A TCP server of the test on every address of the host (the role of a host service:
    the gateway, a database) that records every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("0.0.0.0", 0))
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


LAN_SERVER = """
import socket
s = socket.socket()
s.bind(("0.0.0.0", 8080))
s.listen()
print("LISTENING", flush=True)
while True:
    c, a = s.accept()
    print("ACCEPTED", a[0], flush=True)
    c.close()
"""


class LanHost:
    """A container the test starts on Docker's default bridge, listening on port 8080:
    the role of a LAN machine or metadata server that the default bridge reaches."""

    def __init__(self, docker_engine) -> None:
        from kernelgate.images import ImageBuilder

        self.container = docker_engine.containers.create(
            ImageBuilder().reference("python"), entrypoint=["python3", "-c", LAN_SERVER],
            name=f"kernelgate-test-lan-{os.urandom(4).hex()}", network="bridge",
            user="1000:1000", cap_drop=["ALL"], read_only=True, security_opt=["no-new-privileges"])
        try:  # a container that does not start is removed too
            self.container.start()
            for _ in range(300):
                self.container.reload()
                if b"LISTENING" in self.container.logs():
                    break
                time.sleep(0.1)
            self.ip, self.port = self.container.attrs["NetworkSettings"]["IPAddress"], 8080
            assert self.ip and b"LISTENING" in self.container.logs(), self.container.logs()
        except BaseException:
            self.container.remove(force=True)
            raise

    def accepted(self) -> int:
        return self.container.logs().count(b"ACCEPTED")

    def remove(self) -> None:
        self.container.remove(force=True)


@pytest.fixture
def lan_host(docker_engine):
    host = LanHost(docker_engine)
    yield host
    host.remove()


def registry_settings() -> str:
    """The registries the installs use, from this machine's own package managers (no
    registry is named here): pip's default index and its file host, npm's registry. Where
    this machine resolves one of them to an address that is not public (a registry mirror
    on a private or reserved address), it is named in egress_private_hosts, as an operator
    with such a mirror would do."""
    from pip._internal.models.index import PyPI

    from kernelgate.environment.egress import address_refusal

    npm = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, timeout=120)
    require(None if npm.returncode == 0 and npm.stdout.startswith("http") else f"npm registry: {npm}")
    registry = npm.stdout.strip()
    hosts = {urlsplit(PyPI.simple_url).hostname, PyPI.file_storage_domain, urlsplit(registry).hostname}
    private = sorted(host for host in hosts
                     if any(address_refusal(info[4][0]) for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)))
    return (f"c.EnvironmentService.pip_index_url = {PyPI.simple_url!r}\n"
            f"c.EnvironmentService.npm_registry = {registry!r}\n"
            f"c.EnvironmentService.egress_private_hosts = {private!r}\n"
            f"c.EnvironmentService.egress_hosts = [{PyPI.file_storage_domain!r}]\n")


@pytest.fixture
def fenced_gateway(docker_engine, start_gateway, tmp_path, lan_host):
    """A gateway whose allow-list also names the LAN host (which is private, so the proxy
    must still refuse it)."""
    config = tmp_path / "fenced_config.py"
    config.write_text(CONFIG + registry_settings().replace(
        "egress_hosts = [", f"egress_hosts = [{lan_host.ip + ':8080'!r}, "))
    return start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}")


HOSTILE_SETUP = """
import json, os, socket, sys, time
from urllib.parse import urlsplit
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

def connect(name, host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        report[name] = "connected"
    except OSError as e:
        report[name] = type(e).__name__

def ask(name, proxy, request):
    try:
        s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
        s.sendall(request.encode())
        report[name] = s.recv(200).decode(errors="replace").split("\\r\\n")[0]
        s.close()
    except OSError as e:
        report[name] = type(e).__name__

connect("lan", {lan_ip!r}, {lan_port})
connect("loopback", "127.0.0.1", {host_port})
proxy = urlsplit(os.environ.get("HTTPS_PROXY", ""))
if proxy.hostname:
    connect("host-service", proxy.hostname, {host_port})
    ask("proxy-lan", proxy, "CONNECT {lan_ip}:{lan_port} HTTP/1.1\\r\\n\\r\\n")
    ask("proxy-unlisted", proxy, "CONNECT kernelgate-unlisted.invalid:443 HTTP/1.1\\r\\n\\r\\n")
    ask("proxy-get", proxy, "GET http://{lan_ip}:{lan_port}/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
else:
    report["proxy"] = "none"
print("HOSTILE-REPORT " + json.dumps(report), flush=True)
time.sleep(10)  # the test reads the fence's network and firewall rules meanwhile
sys.exit(1)
"""


def fences(gateway) -> list:
    """This gateway's fence networks (Docker's view)."""
    labels = ["org.kernelgate.install-fence", f"org.kernelgate.gateway={gateway.gateway_id}"]
    return docker.from_env(timeout=60).networks.list(filters={"label": labels})


def rules(program: str, *chain: str) -> list[str]:
    done = subprocess.run([program, "-w", "10", "-S", *chain], capture_output=True, text=True, timeout=60)
    return done.stdout.splitlines() if done.returncode == 0 else []


async def watch_fence(gateway, install_task) -> dict:
    """While the install runs: the fence's network attributes and firewall rules."""
    while not install_task.done():
        found = await asyncio.to_thread(fences, gateway)
        if found:
            network = found[0]
            await asyncio.to_thread(network.reload)
            bridge = network.attrs["Options"]["com.docker.network.bridge.name"]
            return {"attrs": network.attrs, "bridge": bridge,
                    "input": await asyncio.to_thread(rules, "iptables", "INPUT"),
                    "chain": await asyncio.to_thread(rules, "iptables", "KG-" + bridge),
                    "chain6": await asyncio.to_thread(rules, "ip6tables", "KG-" + bridge),
                    "input6": await asyncio.to_thread(rules, "ip6tables", "INPUT"),
                    "isolation": await asyncio.to_thread(rules, "iptables", "DOCKER-ISOLATION-STAGE-1")}
        await asyncio.sleep(0.2)
    return {}


async def test_hostile_setup_py_is_contained(fenced_gateway, lan_host):
    """A setup.py tries the files, the LAN host, a host service and the proxy: all fail,
    and the fence's network and rules read as documented."""
    gateway = fenced_gateway
    alice = gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    secret = gateway.data_dir / "gateway-secret.txt"
    secret.write_text("the gateway's own file")
    outside = gateway.data_dir / "owned-by-setup-py"
    service = HostService()
    try:
        await put_file(alice, rid, "requirements.txt", "./evil\n")
        await put_file(alice, rid, "evil/setup.py", HOSTILE_SETUP.format(
            outside=str(outside), secret=str(secret), host_port=service.port,
            lan_ip=lan_host.ip, lan_port=lan_host.port))
        workspace = gateway.data_dir / "rooms" / rid
        before = tree_digest(workspace)
        running = asyncio.ensure_future(install(alice, rid))
        fence = await watch_fence(gateway, running)
        progress, result = await running
    finally:
        service.close()
    assert result["status"] == "error"
    line = next(e["line"] for e in progress if "HOSTILE-REPORT" in e["line"])
    report = json.loads(line.split("HOSTILE-REPORT ", 1)[1])
    # the setup.py ran, and every attempt failed
    assert set(report.values()).isdisjoint({"written", "connected", "the gateway's own file"}), report
    assert report["secret"] == "FileNotFoundError"
    assert report["proxy-lan"].startswith("HTTP/1.1 403"), report
    assert report["proxy-unlisted"].startswith("HTTP/1.1 403"), report
    assert report["proxy-get"].startswith("HTTP/1.1 405"), report
    assert service.accepted == 0 and lan_host.accepted() == 0
    refusals = [e["line"] for e in progress if "egress refused" in e["line"]]
    assert any(f"CONNECT {lan_host.ip}:8080: it resolves to {lan_host.ip}, a private address" in r
               for r in refusals), refusals
    assert any("kernelgate-unlisted.invalid:443: not in the allow-list" in r for r in refusals), refusals
    assert f"Install egress refused CONNECT {lan_host.ip}:8080: it resolves to" in gateway.log()
    assert not outside.exists() and not Path("/etc/owned").exists()
    assert tree_digest(workspace) == before

    # the fence, read while the install ran: an internal network without inter-container
    # traffic; Docker drops what leaves its subnet (169.254.169.254, the private ranges);
    # the host (any of its addresses, 172.17.0.1 among them) takes only the proxy's port
    assert fence, "no fence network while the install ran"
    attrs, bridge, chain = fence["attrs"], fence["bridge"], "KG-" + fence["bridge"]
    assert attrs["Internal"] is True and attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    subnet = ipaddress.ip_network(attrs["IPAM"]["Config"][0]["Subnet"])
    gateway_ip = attrs["IPAM"]["Config"][0]["Gateway"]
    for outside_address in ("169.254.169.254", "172.17.0.1", "10.0.0.1", "192.168.1.1", "100.100.100.200"):
        assert ipaddress.ip_address(outside_address) not in subnet
    assert f"-A DOCKER-ISOLATION-STAGE-1 ! -d {subnet} -i {bridge} -j DROP" in fence["isolation"]
    for listing in (fence["input"], fence["input6"]):  # first, or after other fences' jumps only
        jump = listing.index(f"-A INPUT -i {bridge} -j {chain}")
        assert all(" -j KG-kgf-" in rule for rule in listing[1:jump]), listing[:jump + 1]
    proxy_port = re.search(r"--dport (\d+)", fence["chain"][1]).group(1)
    assert fence["chain"] == [f"-N {chain}",
                              f"-A {chain} -d {gateway_ip}/32 -p tcp -m tcp --dport {proxy_port} -j ACCEPT",
                              f"-A {chain} -j DROP"], fence["chain"]
    assert fence["chain6"] == [f"-N {chain}", f"-A {chain} -j DROP"]
    # and nothing of it is left
    assert not fences(gateway)
    assert not any(chain in rule for rule in rules("iptables") + rules("ip6tables"))


@pytest.mark.parametrize("requirements", [
    "--index-url=http://{lan}/simple\n--trusted-host={ip}\nsix==1.16.0\n", "-e /\n", "; rm -rf /\n", "six==1.16.0 ; rm -rf /workspace\n"])
async def test_option_injection_in_requirements_has_no_effect(fenced_gateway, lan_host, requirements):
    """Row 13: options and shell syntax in requirements.txt reach pip as a file it parses
    (argv, no shell): an index redirect meets the fence, the rest fails; nothing changes."""
    alice = fenced_gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    await put_file(alice, rid, "keep.txt", "still here\n")
    await put_file(alice, rid, "requirements.txt", requirements.format(lan=f"{lan_host.ip}:{lan_host.port}", ip=lan_host.ip))
    workspace = fenced_gateway.data_dir / "rooms" / rid
    before = tree_digest(workspace)
    progress, result = await install(alice, rid)
    assert lan_host.accepted() == 0
    assert (workspace / "keep.txt").read_text() == "still here\n"
    assert result["status"] == "error", result
    assert tree_digest(workspace) == before
    if requirements.startswith("--index-url"):
        assert any(f"egress refused GET http://{lan_host.ip}:8080/simple/six/" in e["line"] for e in progress), \
            [e["line"] for e in progress][-15:]


async def test_option_injection_in_project_file_refused(env_gateway):
    """Row 13: kernelgate.toml package names that look like options or shell are refused."""
    alice = env_gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    for language, name in (("python", "--index-url=http://x"), ("python", "-e /"),
                           ("python", "; rm -rf /"), ("javascript", "; rm -rf /"), ("javascript", "--prefix=/")):
        await put_file(alice, rid, "kernelgate.toml", f"[packages]\n{language} = [{name!r}]\n")
        refused = await alice.request("POST", f"/api/rooms/{rid}/environment/install", {})
        assert refused.status == 400 and refused.body["reason"] == "Bad Request", (name, refused.body)
        assert "packages" in refused.body["message"], refused.body


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
    assert go["install"] == {"supported": True, "source": None, "packages": []}  # go.mod is in api/
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
    config.write_text(CONFIG + registry_settings() + 'c.EnvironmentService.disk = "1m"\nc.EnvironmentService.timeout = 8\n')
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


def test_egress_policy_refuses_every_address_that_is_not_public():
    """The proxy's address policy, read without sending a packet: metadata, the Docker
    host, private, shared and loopback ranges (v4, v6, v4-mapped) are refused."""
    from kernelgate.environment.egress import address_refusal, allowed_targets, split_authority

    for address in ("169.254.169.254", "172.17.0.1", "10.1.2.3", "192.168.1.1", "100.100.100.200",
                    "127.0.0.1", "0.0.0.0", "224.0.0.1", "::1", "fd00:ec2::254", "fe80::1",
                    "::ffff:169.254.169.254", "::ffff:10.0.0.1", "240.0.0.1"):
        assert address_refusal(address), address
    assert address_refusal("8.8.8.8") is None and address_refusal("2001:4860:4860::8888") is None
    assert allowed_targets(["https://Index.Example/simple", "http://mirror.example:8080/", "file:///mirror", ""],
                           ["files.example", "other.example:8443", "[2001:db8::1]:443"]) == {
        ("index.example", 443), ("mirror.example", 8080), ("files.example", 443),
        ("other.example", 8443), ("2001:db8::1", 443)}
    for bad in ("a:b", "a:0", "a:70000", "::1:443", "a b:443", "user@a:443", "[::1"):
        with pytest.raises(ValueError):
            split_authority(bad, default_port=443)


async def test_egress_proxy_tunnels_only_what_it_allows():
    """The proxy on loopback, with a loopback echo server as the only target: refused while
    loopback is not explicitly allowed, tunnelled once it is; other methods, unlisted ports
    and oversized heads are refused, and each refusal is reported."""
    from kernelgate.environment.egress import MAX_HEAD, EgressProxy

    async def echo(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    refused: list[str] = []

    async def ask(proxy_port: int, request: bytes) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 20), reader, writer

    try:
        for private_ok, expected in (((), b"HTTP/1.1 403"), (("127.0.0.1",), b"HTTP/1.1 200")):
            proxy = EgressProxy({("127.0.0.1", port)}, private_ok, on_refused=refused.append)
            proxy_port = await proxy.start("127.0.0.1")
            try:
                status, reader, writer = await ask(proxy_port, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
                assert status.startswith(expected), status
                if expected.endswith(b"200"):
                    assert await asyncio.wait_for(reader.readline(), 20) == b"\r\n"
                    writer.write(b"through the tunnel\n")
                    assert await asyncio.wait_for(reader.readline(), 20) == b"through the tunnel\n"
                writer.close()
                for request, answer in ((f"CONNECT 127.0.0.1:{port + 1} HTTP/1.1\r\n\r\n".encode(), b"HTTP/1.1 403"),
                                        (f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n".encode(), b"HTTP/1.1 405"),
                                        (b"CONNECT " + b"a" * MAX_HEAD + b":443 HTTP/1.1\r\n\r\n", b"")):
                    status, _, writer = await ask(proxy_port, request)
                    assert status.startswith(answer) and (answer or status == b""), (request[:40], status)
                    writer.close()
            finally:
                await proxy.close()
    finally:
        server.close()
        await server.wait_closed()
    assert any(f"CONNECT 127.0.0.1:{port}: it resolves to 127.0.0.1, a loopback address" in r for r in refused), refused
    assert any(f"CONNECT 127.0.0.1:{port + 1}: not in the allow-list" in r for r in refused), refused
    assert any(r.startswith(f"egress refused GET http://127.0.0.1:{port}/") for r in refused), refused


SLEEPING_SETUP = """
import sys, time
print("SETUP-RAN", flush=True)
time.sleep(600)
sys.exit(1)
"""


def chains_of(bridge: str) -> list[str]:
    return [rule for rule in rules("iptables") + rules("ip6tables") if "KG-" + bridge in rule]


async def test_install_refused_when_the_fence_cannot_be_made(docker_engine, start_gateway, tmp_path, lan_host):
    """Fail closed: with no firewall tool on the gateway's PATH the fence cannot be made, so
    the install is refused before anything runs and nothing of the fence is left; a
    configuration putting installs on the default bridge does not start at all."""
    from tests.harness import GatewayProcess

    config = tmp_path / "fence_config.py"
    config.write_text(CONFIG + registry_settings())
    tools = tmp_path / "sbin-without-firewall"  # the sbin programs, but for iptables and ip6tables
    tools.mkdir()
    folders = os.environ["PATH"].split(":")
    for folder in (f for f in folders if f.rstrip("/").endswith("sbin") and os.path.isdir(f)):
        for entry in os.scandir(folder):
            if not entry.name.startswith(("iptables", "ip6tables")) and not (tools / entry.name).exists():
                (tools / entry.name).symlink_to(entry.path)
    path = ":".join([str(tools)] + [f for f in folders if not f.rstrip("/").endswith("sbin")])
    require(None if shutil.which("iptables", path=path) is None else f"iptables is still on {path}")
    gateway = start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}", env={"PATH": path})
    alice = gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    await put_file(alice, rid, "requirements.txt", "./evil\n")
    await put_file(alice, rid, "evil/setup.py", SLEEPING_SETUP)
    progress, result = await install(alice, rid)
    assert result["status"] == "error", result
    assert "network fence could not be made" in result["message"] and "iptables" in result["message"], result
    assert not any("SETUP-RAN" in e["line"] for e in progress) and lan_host.accepted() == 0
    assert not fences(gateway)
    assert "Install in room" in gateway.log() and "refused" in gateway.log()

    bridged = tmp_path / "bridge_config.py"
    bridged.write_text(CONFIG + 'c.EnvironmentService.network = "bridge"\n')
    refused = GatewayProcess(tmp_path, "--kernels=docker", f"--config={bridged}", f"--jwt-secret={SECRET}")
    try:
        with pytest.raises(RuntimeError, match="would give installs open egress"):
            refused.start()
    finally:
        shutil.rmtree(refused.runtime_dir, ignore_errors=True)


async def test_fence_left_by_a_killed_gateway_is_removed_at_start(env_gateway, start_gateway):
    """A gateway killed mid-install leaves its fence (network, rules); its next start
    removes them with the install container."""
    gateway = env_gateway
    alice = gateway.client(token("alice"))
    room = await make_room(alice, ["python3"])
    rid = room["id"]
    await put_file(alice, rid, "requirements.txt", "./sleeper\n")
    await put_file(alice, rid, "sleeper/setup.py", SLEEPING_SETUP)
    running = asyncio.ensure_future(install(alice, rid))
    fence = await watch_fence(gateway, running)
    assert fence, "no fence network while the install ran"
    gateway.stop(9)
    with pytest.raises(Exception):  # the stream ends with the gateway
        await running
    assert fences(gateway) and chains_of(fence["bridge"])
    start_gateway(*gateway.extra_args, like=gateway)
    assert not fences(gateway) and not chains_of(fence["bridge"])
    labels = ["org.kernelgate.install", f"org.kernelgate.gateway={gateway.gateway_id}"]
    assert not docker.from_env(timeout=60).containers.list(all=True, filters={"label": labels})
