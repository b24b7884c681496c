"""JupyterLab against kernelgate with the kernelgate_jupyter extension, in a real Chromium.

One gateway (JWT auth, Docker kernels) and one room (python3 and bash) per module; a real
`jupyter lab` subprocess in that room (`KERNEL_ROOM` in its environment). Lab's notebook,
terminal and file browser are driven in the browser;
what they did is checked against the room through kernelgate's own REST and WebSocket API.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from kernelgate.jwt_auth import mint
from tests.browser import browser, page_for  # noqa: F401 - fixtures
from tests.harness import GatewayProcess, free_port
from tests.client import GatewayClient

pytest.importorskip("kernelgate_jupyter", reason="the JupyterLab extension is not installed (pip install ./extensions/jupyter)")

SECRET = "lab-test-secret-long-enough-for-hs256-signatures"
LAB_START_TIMEOUT = 90
UI_TIMEOUT = 60_000  # ms


def token(user: str) -> str:
    return mint(SECRET, user, tier="team")


def run(coroutine):
    """Run a coroutine of tests/client.py beside Playwright's own event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def execute_in(gateway_url: str, user_token: str, kernel_id: str, code: str) -> str:
    socket = await GatewayClient(gateway_url, user_token).connect(kernel_id)
    try:
        execution = await socket.execute(code)
    finally:
        socket.close()
    assert execution.status == "ok", execution.reply
    return execution.stdout


class LabProcess:
    """`jupyter lab` against the gateway, in its own root_dir and Jupyter folders."""

    def __init__(self, tmp: Path, gateway: GatewayProcess, user_token: str, room: str | None) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = tmp / "root"
        self.root.mkdir(parents=True)
        self.log_path = tmp / "lab.log"
        env = {k: v for k, v in os.environ.items() if k != "KERNEL_ROOM"}
        env.update({"JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
                    "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
                    "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")})
        if room:
            env["KERNEL_ROOM"] = room
        args = [
            str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--allow-root",
            "--ip=127.0.0.1", f"--port={self.port}", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}", f"--gateway-url={gateway.url}",
            "--GatewayClient.auth_scheme=Bearer", f"--GatewayClient.auth_token={user_token}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        self.proc = subprocess.Popen(args, env=env, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + LAB_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log()}")
            try:
                if self.get("/api/status").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start: {self.log()}")
            time.sleep(0.2)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def page_url(self, path: str = "") -> str:
        return f"{self.url}/lab{path}?reset&token={self.token}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def gateway(docker_engine, tmp_path_factory):
    gw = GatewayProcess(tmp_path_factory.mktemp("gateway"), f"--jwt-secret={SECRET}", "--kernels=docker").start()
    yield gw
    gw.stop()
    gw.cleanup()
    assert "Traceback" not in gw.log(), gw.log()


def gw_request(gateway: GatewayProcess, user: str, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, gateway.url + path, json=body, timeout=120,
                            headers={"Authorization": f"Bearer {token(user)}"})


@pytest.fixture(scope="module")
def room(gateway):
    made = gw_request(gateway, "alice", "POST", "/api/rooms", {"name": "lab-room", "languages": ["python3", "bash"]})
    assert made.status_code == 201, made.text
    room = made.json()
    added = gw_request(gateway, "alice", "PUT", f"/api/rooms/{room['id']}/members/bob", {"role": "participant"})
    assert added.status_code == 200, added.text
    return room


def room_kernel(room: dict, name: str) -> str:
    return next(k["id"] for k in room["kernels"] if k["name"] == name)


@pytest.fixture(scope="module")
def lab(gateway, room, tmp_path_factory):
    """Lab in alice's room, through KERNEL_ROOM."""
    process = LabProcess(tmp_path_factory.mktemp("lab"), gateway, token("alice"), room["id"])
    yield process
    process.stop()


def open_lab(page_for, lab: LabProcess, path: str = ""):
    page = page_for()
    page.page.goto(lab.page_url(path))
    page.page.wait_for_selector("#jp-main-dock-panel", timeout=UI_TIMEOUT)
    return page


def notebook(kernelspec: str, language: str) -> dict:
    return {"type": "notebook", "content": {
        "cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [], "execution_count": None}],
        "metadata": {"kernelspec": {"name": kernelspec, "display_name": kernelspec, "language": language}},
        "nbformat": 4, "nbformat_minor": 5,
    }}


@pytest.mark.parametrize("kernelspec, language, code, expected", [
    ("python3", "python", "print(6 * 7, open('/workspace/nb-python3.ipynb').read()[:1])", "42 {"),
    ("bash", "bash", "echo $((6 * 7)) $(head -c 1 /workspace/nb-bash.ipynb)", "42 {"),
])
def test_notebook_runs_a_cell_typed_at_once(lab, page_for, kernelspec, language, code, expected):
    """The notebook lives in the room; its kernel is the room's, which reads it in /workspace."""
    name = f"nb-{kernelspec}.ipynb"
    saved = lab.request("PUT", f"/api/contents/{name}", json=notebook(kernelspec, language))
    assert saved.status_code == 201, saved.text
    assert not (lab.root / name).exists()  # in the room's workspace, not on Lab's disk
    page = open_lab(page_for, lab, f"/tree/{name}")
    editor = page.page.locator(".jp-Notebook .jp-Cell .cm-content").first
    editor.wait_for(timeout=UI_TIMEOUT)
    editor.click()
    page.page.keyboard.type(code)
    page.page.keyboard.press("Shift+Enter")
    output = page.page.locator(".jp-OutputArea-output").first
    output.wait_for(timeout=UI_TIMEOUT)
    page.page.wait_for_function(
        "expected => [...document.querySelectorAll('.jp-OutputArea-output')].some(o => o.innerText.includes(expected))",
        arg=expected, timeout=UI_TIMEOUT,
    )
    page.screenshot(f"lab-notebook-{kernelspec}")
    assert expected in output.inner_text()


def test_terminal_is_a_shell_in_the_rooms_sandbox(gateway, room, lab, page_for):
    marker = f"kernel-made-{secrets.token_hex(4)}.txt"
    run(execute_in(gateway.url, token("alice"), room_kernel(room, "python3"),
                   f"open('/workspace/{marker}', 'w').write('from the kernel')"))
    page = open_lab(page_for, lab)
    sockets, received = [], []

    def watch(ws):
        if "/terminals/websocket/" in ws.url:
            sockets.append(ws)
            ws.on("framereceived", lambda frame: received.append(frame if isinstance(frame, str) else frame.decode()))

    def output() -> str:
        return "".join(f[1] for f in map(json.loads, received) if f[0] == "stdout")

    def wait_for_output(condition) -> None:
        deadline = time.monotonic() + 30
        while not condition(output()):
            remaining = deadline - time.monotonic()
            assert remaining > 0, output()
            sockets[0].wait_for_event("framereceived", timeout=remaining * 1000)

    page.page.on("websocket", watch)
    page.page.evaluate("window.jupyterapp.commands.execute('terminal:create-new')")
    terminal = page.page.locator(".jp-Terminal")
    terminal.wait_for(timeout=UI_TIMEOUT)
    page.page.wait_for_function("() => !!document.querySelector('.jp-Terminal .xterm')", timeout=UI_TIMEOUT)
    page.page.wait_for_function("() => true")  # lets Playwright deliver the socket's events
    assert sockets, "Lab opened no terminal WebSocket"
    wait_for_output(bool)  # the shell's prompt: it is ready
    terminal.click()
    page.page.keyboard.type("echo uid=$(id -u) && ls /workspace")
    page.page.keyboard.press("Enter")
    wait_for_output(lambda text: "uid=1000" in text and marker in text)
    page.screenshot("lab-terminal")
    assert "uid=1000" in output(), output()
    assert marker in output(), output()
    # the terminal is the room's: kernelgate lists it on one of the room's kernels
    terminals = gw_request(gateway, "alice", "GET", "/api/terminals").json()
    assert {t["kernel"] for t in terminals} & {k["id"] for k in room["kernels"]}


def test_file_saved_in_lab_is_read_by_a_room_kernel(gateway, room, lab, page_for):
    name = f"from-lab-{secrets.token_hex(4)}.txt"
    text = secrets.token_hex(8)
    saved = lab.request("PUT", f"/api/contents/{name}", json={"type": "file", "format": "text", "content": text})
    assert saved.status_code == 201, saved.text
    assert not (lab.root / name).exists()
    page = open_lab(page_for, lab)
    page.page.locator(f".jp-DirListing-item[title^='Name: {name}']").wait_for(timeout=UI_TIMEOUT)
    read = run(execute_in(gateway.url, token("bob"), room_kernel(room, "bash"), f"cat /workspace/{name}"))
    assert read.strip() == text


def test_kernelgate_refusals_reach_lab_as_json_errors(lab):
    for name in ("first.txt", "second.txt"):
        made = lab.request("PUT", f"/api/contents/{name}", json={"type": "file", "format": "text", "content": name})
        assert made.status_code == 201, made.text
    clash = lab.request("PATCH", "/api/contents/first.txt", json={"path": "second.txt"})
    assert clash.status_code == 409 and "already exists" in clash.json()["message"], clash.text
    escape = lab.get("/api/contents/..%2F..%2Fetc%2Fpasswd")
    assert escape.status_code == 404 and "root:" not in escape.text


def test_rooms_panel_shows_the_room_its_members_and_languages(lab, room, page_for):
    """The left-area panel (widget kernelgate-rooms) lists alice's room as the active one,
    with bob as a participant and the room's languages."""
    page = open_lab(page_for, lab)
    page.page.evaluate("window.jupyterapp.shell.activateById('kernelgate-rooms')")
    entry = page.page.locator(f"[data-testid='kg-room-{room['id']}']")
    entry.wait_for(timeout=UI_TIMEOUT)
    assert "lab-room" in entry.inner_text()
    active = page.page.locator("[data-testid='kg-active']")
    assert active.get_attribute("data-room") == room["id"]
    detail = page.page.locator(f"[data-testid='kg-room-detail'][data-room-id='{room['id']}']")
    detail.wait_for(timeout=UI_TIMEOUT)
    assert page.page.locator("[data-testid='kg-member-bob']").get_attribute("data-role") == "participant"
    assert page.page.locator("[data-testid='kg-languages']").inner_text() == ", ".join(room["languages"])
    assert page.page.locator("[data-testid='kg-error']").count() == 0
    page.screenshot("lab-rooms-panel")
