"""The gateway's door against the web: no unsandboxed kernels unless asked for, no
cross-site requests, no DNS rebinding, CORS only for listed origins, no token in the
log, no body read before its sender is known. Every attack runs against a real gateway
process, with real HTTP, WebSocket and socket clients (and a real browser below)."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
import requests
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.browser import browser, page_for  # noqa: F401 - fixtures
from tests.harness import GatewayProcess, free_port

SECRET = "web-security-secret-long-enough-for-hs256-signatures"
EVIL = "http://evil.example"
APP = "http://app.test:3000"
UID_ATTACK = "import os; print(os.getuid(), open('/etc/hostname').read())"


def token(user: str = "alice", admin: bool = False, expires_in: int = 600) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + expires_in, **({"roles": ["admin"]} if admin else {})}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def child_pids(pid: int) -> set[int]:
    """The processes `pid` started (kernels run as its children when local)."""
    found = set()
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(c) for c in children.read_text().split()}
    return found


def raw_exchange(port: int, head: bytes, timeout: float = 5) -> tuple[bytes, float]:
    """Send a request head (no body) on a plain socket; what comes back and how fast."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(timeout)
        sock.sendall(head)
        started = time.monotonic()
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except socket.timeout:
            pass
        return answer, time.monotonic() - started


def ws_url(gateway, path: str) -> str:
    return gateway.url.replace("http", "ws", 1) + path


# -- 1. no engine, authentication on: no local kernels ---------------------------------

async def test_without_docker_an_authenticated_gateway_runs_nothing_on_the_host(start_gateway):
    """kernels=auto with a JWT secret and no engine used to start local kernels as the
    gateway's user (root): a kernel printed uid 0 and read a host file."""
    gateway = start_gateway(f"--jwt-secret={SECRET}", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    client = gateway.client(token())
    started = await client.request("POST", "/api/kernels", {"name": "python3"})
    if started.status == 201:  # the attack: code as the gateway's user, outside any sandbox
        ws = await client.connect(started.body["id"])
        run = await ws.execute(UID_ATTACK)
        pytest.fail(f"an unsandboxed kernel ran on the host: {run.stdout!r}")
    assert started.status == 503, started.body
    assert started.body["reason"] == "Service Unavailable"
    assert "Docker engine unavailable" in started.body["message"]
    session = await client.request("POST", "/api/sessions", {"path": "a.ipynb", "kernel": {"name": "python3"}})
    assert session.status == 503, session.body
    assert child_pids(gateway.proc.pid) == set()
    assert "kernel starts answer 503" in gateway.log()
    assert "LOCAL KERNELS" not in gateway.log()

    # health says why, but only to platform admins
    anonymous = (await gateway.client().request("GET", "/api/health")).body
    user = (await client.request("GET", "/api/health")).body
    admin = (await gateway.client(token("root", admin=True)).request("GET", "/api/health")).body
    assert anonymous["status"] == user["status"] == admin["status"] == "degraded"
    assert anonymous["checks"]["docker"] == user["checks"]["docker"] == "unavailable"
    assert admin["checks"]["docker"].startswith("unavailable: the Docker engine does not answer")


async def test_without_docker_no_auth_development_still_gets_local_kernels(start_gateway):
    gateway = start_gateway(env={"DOCKER_HOST": "unix:///nonexistent.sock"})  # --no-auth, kernels=auto
    assert "LOCAL KERNELS" in gateway.log()
    health = (await gateway.client().request("GET", "/api/health")).body
    assert "docker" not in health["checks"]


# -- 2. cross-site requests and DNS rebinding ----------------------------------------------

async def test_cross_site_requests_are_refused(local_gateway):
    """A page on any site could make the browser start kernels on a --no-auth gateway."""
    client = local_gateway.client()
    own = f"http://127.0.0.1:{local_gateway.port}"
    for origin in (EVIL, "null", f"http://127.0.0.1:{local_gateway.port + 1}"):
        attack = await client.request("POST", "/api/kernels", raw=b'{"name": "python3"}',
                                      headers={"Content-Type": "text/plain", "Origin": origin})
        assert attack.status == 403, (origin, attack.body)
        assert attack.body["reason"] == "Forbidden" and "allow_origins" in attack.body["message"]
    assert (await client.request("GET", "/api/kernels")).body == []
    assert child_pids(local_gateway.proc.pid) == set()

    kernel = await client.start_kernel()  # no Origin: a non-browser client
    same_origin = await client.request("POST", f"/api/kernels/{kernel['id']}/interrupt",
                                       headers={"Origin": own})
    assert same_origin.status == 204, same_origin.body
    delete = await client.request("DELETE", f"/api/kernels/{kernel['id']}", headers={"Origin": EVIL})
    assert delete.status == 403
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(ws_url(local_gateway, f"/api/kernels/{kernel['id']}/channels"),
                                            headers={"Origin": EVIL}))
    assert refused.value.code == 403
    ws = await websocket_connect(HTTPRequest(ws_url(local_gateway, f"/api/kernels/{kernel['id']}/channels"),
                                             headers={"Origin": own}))
    ws.close()
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204


async def test_dns_rebinding_hosts_are_refused(start_gateway):
    """evil.example resolving to 127.0.0.1 makes the gateway the attacker's origin."""
    gateway = start_gateway("--kernels=local", "--ServeApp.local_hostnames=localhost",
                            "--ServeApp.local_hostnames=kg.test")
    client = gateway.client()
    for method, path in [("GET", "/api/kernels"), ("POST", "/api/kernels"), ("GET", "/api/health"),
                         ("GET", "/api/status")]:
        attack = await client.request(method, path, headers={"Host": f"evil.example:{gateway.port}"})
        assert attack.status == 403, (method, path, attack.body)
        assert "local_hostnames" in attack.body["message"]
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(ws_url(gateway, "/terminals/websocket/x"),
                                            headers={"Host": f"evil.example:{gateway.port}"}))
    assert refused.value.code == 403
    assert child_pids(gateway.proc.pid) == set()
    for host in (f"127.0.0.1:{gateway.port}", f"localhost:{gateway.port}", f"kg.test:{gateway.port}",
                 f"[::1]:{gateway.port}"):
        assert (await client.request("GET", "/api/kernels", headers={"Host": host})).status == 200, host


def test_any_origin_without_authentication_is_refused(tmp_path):
    gateway = GatewayProcess(tmp_path, "--kernels=local", "--allow-origin=*")
    with pytest.raises(RuntimeError, match="Refusing allow_origins"):
        gateway.start(timeout=20)


# -- 3. CORS -------------------------------------------------------------------------------

async def test_cors_answers_listed_origins_only(start_gateway):
    gateway = start_gateway("--kernels=local", f"--jwt-secret={SECRET}", f"--ServeApp.allow_origins={APP}",
                            "--allow-origin=http://legacy.test")  # Kernel Gateway's single value
    client = gateway.client(token())
    preflight_headers = {"Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "authorization,content-type"}
    for origin in (APP, "http://legacy.test"):
        preflight = await gateway.client().request("OPTIONS", "/api/kernels",
                                                   headers={"Origin": origin, **preflight_headers})
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == origin
        assert "Origin" in preflight.headers["Vary"]
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    started = await client.request("POST", "/api/kernels", {"name": "python3"}, headers={"Origin": APP})
    assert started.status == 201, started.body
    assert started.headers["Access-Control-Allow-Origin"] == APP
    assert "Location" in started.headers["Access-Control-Expose-Headers"]

    other = await gateway.client().request("OPTIONS", "/api/kernels", headers={"Origin": EVIL, **preflight_headers})
    assert other.status == 403 and "Access-Control-Allow-Origin" not in other.headers
    post = await client.request("POST", "/api/kernels", {"name": "python3"}, headers={"Origin": EVIL})
    assert post.status == 403 and "Access-Control-Allow-Origin" not in post.headers
    read = await client.request("GET", "/api/kernels", headers={"Origin": EVIL})
    assert read.status == 200 and "Access-Control-Allow-Origin" not in read.headers  # unreadable to it
    assert len(read.body) == 1
    await client.request("DELETE", f"/api/kernels/{started.body['id']}")


# -- 3. GET /api/status ----------------------------------------------------------------------

async def test_api_status_counts_the_callers_kernels(start_gateway):
    gateway = start_gateway("--kernels=local", f"--jwt-secret={SECRET}")
    alice, bob = gateway.client(token("alice")), gateway.client(token("bob"))
    assert (await gateway.client().request("GET", "/api/status")).status == 401
    before = (await alice.request("GET", "/api/status")).body
    assert set(before) == {"started", "last_activity", "kernels", "connections"}
    assert before["kernels"] == before["connections"] == 0
    assert before["last_activity"] == before["started"]
    kernel = await alice.start_kernel()
    ws = await alice.connect(kernel["id"])
    await ws.execute("1")
    status = (await alice.request("GET", "/api/status")).body
    assert (status["kernels"], status["connections"]) == (1, 1)
    started, last = (datetime.strptime(status[k], "%Y-%m-%dT%H:%M:%S.%fZ") for k in ("started", "last_activity"))
    assert last > started and status["started"] == before["started"]
    other = (await bob.request("GET", "/api/status")).body
    assert (other["kernels"], other["connections"]) == (0, 0)
    ws.close()
    await alice.request("DELETE", f"/api/kernels/{kernel['id']}")


# -- 5. tokens out of logs --------------------------------------------------------------------

async def test_tokens_never_reach_the_log(start_gateway):
    gateway = start_gateway("--kernels=local", f"--jwt-secret={SECRET}", "--log-level=DEBUG")
    valid = token()
    kernel = await gateway.client(valid).start_kernel()
    ws = await websocket_connect(ws_url(gateway, f"/api/kernels/{kernel['id']}/channels?session_id=s&token={valid}"))
    ws.close()
    forged = token().rsplit(".", 1)[0] + ".forged-signature-that-must-not-be-logged"
    assert (await gateway.client().request("GET", f"/api/kernels?token={forged}")).status == 401
    assert (await gateway.client().request("GET", f"/api/nowhere?a=1&TOKEN={forged}")).status == 404
    await gateway.client(valid).request("DELETE", f"/api/kernels/{kernel['id']}")
    log = gateway.log()
    assert "token=[secret]" in log and "TOKEN=[secret]" in log
    for secret in (valid, forged, valid.split(".")[2], forged.split(".")[2]):
        assert secret not in log


# -- 7. bodies before authentication, timeouts ---------------------------------------------

async def test_a_large_body_is_refused_before_it_is_read(start_gateway):
    gateway = start_gateway("--kernels=local", f"--jwt-secret={SECRET}",
                            "--ServeApp.idle_connection_timeout=1")
    head = (f"POST /api/kernels HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 10000000\r\n").encode()
    answer, took = raw_exchange(gateway.port, head + b"\r\n")  # not a byte of the 10 MB sent
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["reason"] == "Unauthorized"
    assert took < 2
    socket_head = (f"GET /terminals/websocket/x HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
                   "Content-Length: 10000000\r\n\r\n").encode()
    answer, took = raw_exchange(gateway.port, socket_head)  # routes that take no body at all
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert took < 2
    authed = head + f"Authorization: Bearer {token()}\r\n\r\n".encode()
    answer, took = raw_exchange(gateway.port, authed)  # known caller, but not a file: 256 KiB at most
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert took < 2

    client = gateway.client(token())
    kernel = await client.start_kernel()
    big = {"type": "file", "format": "text", "content": "x" * 2_000_000}  # file contents may be large
    saved = await client.request("PUT", f"/api/kernels/{kernel['id']}/contents/big.txt", big)
    assert saved.status == 201, saved.body
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")

    with socket.create_connection(("127.0.0.1", gateway.port)) as idle:  # sends nothing
        idle.settimeout(10)
        started = time.monotonic()
        assert idle.recv(1) == b""  # closed by the gateway
        assert time.monotonic() - started < 5


# -- in a real browser ----------------------------------------------------------------------
# (last in the module: sync Playwright's event loop would break async tests after them)

class _Page(BaseHTTPRequestHandler):
    html = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args):
        pass


def serve_page(html: str) -> tuple[ThreadingHTTPServer, str]:
    """A page of another origin (another port of 127.0.0.1), served by the test."""
    handler = type("Page", (_Page,), {"html": html.encode()})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


ATTACK_PAGE = """<!doctype html><script>
window.done = (async () => {
  const gateway = "%s", results = {};
  try {
    await fetch(gateway + "/api/kernels", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: '{"name": "python3"}'});
    results.fetch = "sent";
  } catch (e) { results.fetch = String(e); }
  try {
    const r = await fetch(gateway + "/api/kernels", {method: "POST", body: '{"name": "python3"}',
      headers: {"Content-Type": "application/json"}});
    results.cors = r.status + " " + await r.text();
  } catch (e) { results.cors = "blocked"; }
  results.ws = await new Promise(resolve => {
    const ws = new WebSocket(gateway.replace("http", "ws") + "/terminals/websocket/x");
    ws.onopen = () => resolve("open"); ws.onerror = () => resolve("refused");
  });
  return results;
})();
</script>"""


def test_a_page_on_another_origin_cannot_start_kernels_in_a_browser(start_gateway, page_for):
    gateway = start_gateway("--kernels=local")
    server, url = serve_page(ATTACK_PAGE % gateway.url)
    try:
        page = page_for()
        page.page.goto(url)
        results = page.page.evaluate("window.done")
    finally:
        server.shutdown()
    assert results == {"fetch": "sent", "cors": "blocked", "ws": "refused"}, results
    assert requests.get(gateway.url + "/api/kernels", timeout=10).json() == []
    assert gateway.log().count("403 POST /api/kernels") == 1  # the no-cors one
    assert gateway.log().count("403 OPTIONS /api/kernels") == 1  # the other's preflight


ALLOWED_PAGE = """<!doctype html><script>
window.done = (async () => {
  const r = await fetch("%s/api/kernels", {method: "POST", body: '{"name": "python3"}',
    headers: {"Content-Type": "application/json", "Authorization": "Bearer %s"}});
  return {status: r.status, id: (await r.json()).id, location: r.headers.get("Location")};
})();
</script>"""


def test_a_listed_origin_uses_the_api_from_a_browser(start_gateway, page_for):
    page_server, url = serve_page("")
    origin = url.rstrip("/")
    gateway = start_gateway("--kernels=local", f"--jwt-secret={SECRET}", f"--ServeApp.allow_origins={origin}")
    page_server.RequestHandlerClass.html = (ALLOWED_PAGE % (gateway.url, token())).encode()
    try:
        page = page_for()
        page.page.goto(url)
        results = page.page.evaluate("window.done")
    finally:
        page_server.shutdown()
    assert results["status"] == 201 and results["location"].endswith(results["id"]), results
    headers = {"Authorization": f"Bearer {token()}"}
    assert [k["id"] for k in requests.get(gateway.url + "/api/kernels", headers=headers, timeout=10).json()] == [results["id"]]
    requests.delete(f"{gateway.url}/api/kernels/{results['id']}", headers=headers, timeout=30)


SAME_ORIGIN_SCRIPT = """async () => {
  const r = await fetch("/api/kernels", {method: "POST", body: '{"name": "python3"}',
    headers: {"Content-Type": "application/json"}});
  const kernel = await r.json();
  const ws = await new Promise(resolve => {
    const socket = new WebSocket(location.origin.replace("http", "ws") + "/api/kernels/" + kernel.id + "/channels");
    socket.onopen = () => { socket.close(); resolve("open"); }; socket.onerror = () => resolve("refused");
  });
  return {status: r.status, id: kernel.id, ws};
}"""


def test_the_gateways_own_pages_keep_working_in_a_browser(start_gateway, page_for):
    """A page of the gateway's origin (as /editor/ is) sends its Origin and is served."""
    gateway = start_gateway("--kernels=local")
    page = page_for()
    for origin in (gateway.url, f"http://localhost:{gateway.port}"):
        page.page.goto(origin + "/api")
        results = page.page.evaluate(SAME_ORIGIN_SCRIPT)
        assert results["status"] == 201 and results["ws"] == "open", (origin, results)
        assert requests.delete(f"{gateway.url}/api/kernels/{results['id']}", timeout=30).status_code == 204
