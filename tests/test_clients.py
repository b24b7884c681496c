"""End to end with clients kernelgate did not write.

- `jupyter server --gateway-url=...`: jupyter_server's GatewayClient and its gateway
  kernel, kernelspec and WebSocket managers, driven through the Jupyter server's own REST
  API and kernel WebSocket, as JupyterLab would.
- nbclient executing a notebook with `GatewayKernelManager` (the papermill / nbclient
  route to a gateway), run in a subprocess: GatewayClient is a process-wide singleton,
  it writes KERNEL_LAUNCH_TIMEOUT into os.environ and forwards every KERNEL_* variable
  of its process, and GatewayKernelClient uses a blocking websocket-client socket; none
  of that belongs in the test process.

Both clients can send credentials to the gateway (GatewayClient.auth_token / auth_scheme,
given here as JUPYTER_GATEWAY_AUTH_TOKEN / _SCHEME); the tests pass none while the
gateway runs without authentication.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest
import requests
from nbformat.v4 import new_code_cell, new_notebook

from tests.client import GatewayClient
from tests.harness import free_port

#: The Jupyter server's own token (its clients' credential, not the gateway's).
SERVER_TOKEN = "kernelgate-clients-" + uuid.uuid4().hex


def kernels_mode(gateway) -> str:
    """'docker' or 'local': how the gateway under test runs kernels."""
    return "docker" if "--kernels=docker" in gateway.args else "local"


def gateway_auth_env(auth_token: str | None, auth_scheme: str | None) -> dict[str, str]:
    """GatewayClient's credentials for the gateway, as its environment variables."""
    env = {}
    if auth_token is not None:
        env["JUPYTER_GATEWAY_AUTH_TOKEN"] = auth_token
    if auth_scheme is not None:
        env["JUPYTER_GATEWAY_AUTH_SCHEME"] = auth_scheme
    return env


def client_env(tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    """An environment for a Jupyter client process: no inherited Jupyter configuration or
    KERNEL_* variables (GatewayClient forwards those to every kernel), private dirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "KERNEL_"))}
    for name in ("config", "data", "runtime"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    env.update(extra)
    return env


class JupyterServerProcess:
    """`jupyter server --gateway-url=<gateway>` in a subprocess, its log in a file."""

    def __init__(self, tmp: Path, gateway_url: str, auth_token: str | None = None,
                 auth_scheme: str | None = None, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = tmp / f"jupyter-server-{self.port}"
        self.root = self.home / "root"
        self.root.mkdir(parents=True)
        self.log_path = self.home / "server.log"
        self.args = [
            sys.executable, "-m", "jupyter_server",
            "--ip=127.0.0.1", f"--port={self.port}", "--port-retries=0",
            "--no-browser", "--allow-root", f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={SERVER_TOKEN}",
            f"--gateway-url={gateway_url}",
        ]
        self.env = client_env(self.home, {**gateway_auth_env(auth_token, auth_scheme), **(env or {})})
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> JupyterServerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited: {self.log()}")
            try:  # GET /api asks nothing of the gateway (/api/status would list its kernels)
                if requests.get(self.url + "/api", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"jupyter server did not start: {self.log()}")

    def stop(self) -> None:
        """SIGTERM: the server shuts its kernels down through the gateway, then exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> GatewayClient:
        """A client of the Jupyter server's REST API and kernel WebSocket."""
        return GatewayClient(self.url, SERVER_TOKEN, scheme="token")


@pytest.fixture
def start_jupyter_server(start_gateway, tmp_path):
    """Factory: start_jupyter_server(gateway, auth_token=..., auth_scheme=..., env=...).

    Depends on start_gateway so that every Jupyter server is stopped before the
    gateways; its log must hold no traceback.
    """
    started: list[JupyterServerProcess] = []

    def start(gateway, auth_token: str | None = None, auth_scheme: str | None = None,
              env: dict | None = None) -> JupyterServerProcess:
        server = JupyterServerProcess(tmp_path, gateway.url, auth_token, auth_scheme, env)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
    for server in started:
        assert "Traceback" not in server.log(), server.log()


async def gateway_kernel_ids(gateway) -> list[str]:
    response = await gateway.client().request("GET", "/api/kernels")
    assert response.status == 200, response.body
    return [k["id"] for k in response.body]


# -- jupyter server --gateway-url ---------------------------------------------------


async def test_jupyter_server_kernelspecs_come_from_the_gateway(gateway, start_jupyter_server):
    server = start_jupyter_server(gateway)
    js, gw = server.client(), gateway.client()
    response = await js.request("GET", "/api/kernelspecs")
    assert response.status == 200, response.body
    listing = (await gw.request("GET", "/api/kernelspecs")).body
    # the gateway's specs, nothing else (not the host's own ipykernel spec)
    assert set(response.body["kernelspecs"]) == set(listing["kernelspecs"])
    assert response.body["default"] == listing["default"] == "python3"
    spec, own = response.body["kernelspecs"]["python3"], listing["kernelspecs"]["python3"]
    assert spec["spec"] == own["spec"]
    provisioner = spec["spec"]["metadata"]["kernel_provisioner"]["provisioner_name"]
    assert provisioner == {"docker": "docker-provisioner", "local": "kernelgate-local-provisioner"}[kernels_mode(gateway)]
    one = await js.request("GET", "/api/kernelspecs/python3")
    assert one.status == 200 and one.body["spec"] == own["spec"]
    # the logo, proxied by the Jupyter server from the gateway
    logo = await js.request("GET", spec["resources"]["logo-64x64"])
    assert logo.status == 200, logo.body
    assert logo.body == (await gw.request("GET", own["resources"]["logo-64x64"])).body
    assert logo.body[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kernels", ["docker", "local"])
async def test_jupyter_server_runs_kernels_on_the_gateway(kernels, request, start_gateway, start_jupyter_server):
    if kernels == "docker":
        request.getfixturevalue("docker_engine")
    # a client variable reaches a kernel only when the gateway allows it (docs/api.md)
    gateway = start_gateway(f"--kernels={kernels}", "--KernelRegistry.allowed_client_env=KERNEL_CLIENTS_MARK")
    server = start_jupyter_server(gateway, env={"KERNEL_CLIENTS_MARK": "via-jupyter-server"})
    js, gw = server.client(), gateway.client()
    response = await js.request("POST", "/api/kernels", {"name": "python3"})
    assert response.status == 201, response.body
    kernel_id = response.body["id"]
    deleted = False
    try:
        assert kernel_id in await gateway_kernel_ids(gateway)
        # The kernel WebSocket of the Jupyter server, proxied to the gateway's (legacy
        # protocol: GatewayWebSocketConnection forces it).
        ws = await js.connect(kernel_id, session_id=uuid.uuid4().hex)
        run = await ws.execute("import os\nanswer = 6 * 7\nprint(answer)\nos.environ.get('KERNEL_CLIENTS_MARK')")
        assert run.status == "ok", run.reply
        assert run.stdout == "42\n"
        assert run.results == ["'via-jupyter-server'"]  # the server's allowed KERNEL_* variable reached the kernel
        model = (await gw.request("GET", f"/api/kernels/{kernel_id}")).body
        assert model["connections"] == 1 and model["execution_state"] == "idle", model
        mine = await js.request("GET", f"/api/kernels/{kernel_id}")
        assert mine.status == 200 and mine.body["name"] == "python3", mine.body
        assert kernel_id in [k["id"] for k in (await js.request("GET", "/api/kernels")).body]

        # interrupt through the Jupyter server
        msg_id = await ws.send("shell", "execute_request", {"code": "while True: pass", "silent": False})
        while (await ws.recv())["header"]["msg_type"] != "execute_input":
            pass
        interrupt = await js.request("POST", f"/api/kernels/{kernel_id}/interrupt")
        assert interrupt.status == 204, interrupt.body
        stopped = await ws.collect(msg_id, timeout=30)
        assert stopped.status == "error" and stopped.reply["content"]["ename"] == "KeyboardInterrupt"
        assert (await ws.execute("answer + 1")).results == ["43"]

        # restart through the Jupyter server; the same socket keeps working
        restart = await js.request("POST", f"/api/kernels/{kernel_id}/restart")
        assert restart.status == 200, restart.body
        assert (await ws.execute("print('answer' in globals())")).stdout == "False\n"
        ws.close()

        deleted = (await js.request("DELETE", f"/api/kernels/{kernel_id}")).status == 204
        assert deleted
        assert (await gw.request("GET", f"/api/kernels/{kernel_id}")).status == 404
        assert kernel_id not in [k["id"] for k in (await js.request("GET", "/api/kernels")).body]
    finally:
        if not deleted:
            await gw.request("DELETE", f"/api/kernels/{kernel_id}")


async def test_jupyter_server_sessions_start_kernels_on_the_gateway(gateway, start_jupyter_server):
    """What JupyterLab does when a notebook opens: POST /api/sessions on its server."""
    server = start_jupyter_server(gateway)
    (server.root / "work").mkdir()
    js, gw = server.client(), gateway.client()
    response = await js.request("POST", "/api/sessions", {
        "path": "work/analysis.ipynb", "name": "analysis.ipynb", "type": "notebook",
        "kernel": {"name": "python3"},
    })
    assert response.status == 201, response.body
    session_id, kernel_id = response.body["id"], response.body["kernel"]["id"]
    try:
        assert kernel_id in await gateway_kernel_ids(gateway)
        ws = await js.connect(kernel_id, session_id=uuid.uuid4().hex)
        run = await ws.execute("import os; 'KERNEL_WORKING_DIR' in os.environ")
        # GatewayClient sends KERNEL_WORKING_DIR (a folder of its machine): no kernel gets it
        assert run.results == ["False"]
        ws.close()
        assert (await js.request("DELETE", f"/api/sessions/{session_id}")).status == 204
        assert (await gw.request("GET", f"/api/kernels/{kernel_id}")).status == 404
    finally:
        await gw.request("DELETE", f"/api/kernels/{kernel_id}")


# -- nbclient + GatewayKernelManager -----------------------------------------------

NBCLIENT_SCRIPT = """
import sys
import nbformat
from nbclient import NotebookClient
from jupyter_server.gateway.managers import GatewayKernelManager

notebook = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(
    notebook, kernel_manager_class=GatewayKernelManager, kernel_name="python3",
    timeout=60, startup_timeout=60,
).execute()
nbformat.write(notebook, sys.argv[2])
"""


def run_notebook(gateway, notebook, tmp: Path, auth_token: str | None = None,
                 auth_scheme: str | None = None, timeout: float = 240):
    """Execute `notebook` with nbclient against the gateway (GatewayClient configured by
    JUPYTER_GATEWAY_URL) in a subprocess; return the executed notebook."""
    source, target = tmp / "in.ipynb", tmp / "out.ipynb"
    nbformat.write(notebook, source)
    env = client_env(tmp / "nbclient", {
        "JUPYTER_GATEWAY_URL": gateway.url, **gateway_auth_env(auth_token, auth_scheme),
    })
    try:
        done = subprocess.run(
            [sys.executable, "-c", NBCLIENT_SCRIPT, str(source), str(target)],
            env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"nbclient did not finish in {timeout}s: {e.stderr}")
    assert done.returncode == 0, f"nbclient failed:\n{done.stderr}\n--- gateway log ---\n{gateway.log()}"
    return nbformat.read(target, as_version=4)


async def test_nbclient_executes_a_notebook_through_the_gateway(gateway, tmp_path):
    notebook = new_notebook(cells=[
        new_code_cell("answer = 6 * 7"),
        new_code_cell("print('the answer is', answer)"),
        new_code_cell("from IPython.display import HTML, display\ndisplay(HTML(f'<b>{answer}</b>'))"),
        new_code_cell("answer + 1"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    executed = run_notebook(gateway, notebook, tmp_path)
    define, show, html, result = executed.cells
    assert define.outputs == []
    assert [(o.output_type, o.name, o.text) for o in show.outputs] == [("stream", "stdout", "the answer is 42\n")]
    assert [o.output_type for o in html.outputs] == ["display_data"]
    assert html.outputs[0].data["text/html"] == "<b>42</b>"
    assert [o.output_type for o in result.outputs] == ["execute_result"]
    assert result.outputs[0].data["text/plain"] == "43"
    assert [c.execution_count for c in executed.cells] == [1, 2, 3, 4]
    assert await gateway_kernel_ids(gateway) == []  # nbclient shut its kernel down


async def test_jupyter_server_with_a_jwt(docker_engine, start_gateway, start_jupyter_server):
    """`jupyter server --gateway-url ... --GatewayClient.auth_scheme=Bearer
    --GatewayClient.auth_token=<jwt>` against a gateway that verifies JWTs."""
    import time

    import jwt

    secret = "clients-test-secret-long-enough-for-hs256-signatures"
    gateway = start_gateway("--kernels=docker", f"--jwt-secret={secret}")
    now = int(time.time())
    alice = jwt.encode({"sub": "alice", "exp": now + 600, "tier": "team"}, secret, algorithm="HS256")
    bob = jwt.encode({"sub": "bob", "exp": now + 600, "tier": "team"}, secret, algorithm="HS256")
    server = start_jupyter_server(gateway, auth_token=alice, auth_scheme="Bearer")
    js = server.client()
    response = await js.request("POST", "/api/kernels", {"name": "python3"})
    assert response.status == 201, response.body
    kernel_id = response.body["id"]
    ws = await js.connect(kernel_id, session_id=uuid.uuid4().hex)
    run = await ws.execute("import os; print(os.environ['KERNEL_USERNAME'])")
    assert run.stdout == "alice\n"  # from the token, whatever the server's env says
    ws.close()
    alice_view = (await gateway.client(alice).request("GET", "/api/kernels")).body
    assert [k["id"] for k in alice_view] == [kernel_id]
    assert (await gateway.client(bob).request("GET", "/api/kernels")).body == []
    assert (await js.request("DELETE", f"/api/kernels/{kernel_id}")).status == 204
