"""The web editor page (extensions/editor) at {base_url}editor/, in a real browser against
real gateways with Docker kernels: code, output, tracebacks, terminals, files, rooms shared
live between members, a viewer's read-only page, and the static files' serving rules.

The page's stable hooks are `data-testid` attributes (see extensions/editor/index.html).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from kernelgate.jwt_auth import mint
from tests.browser import browser, page_for  # noqa: F401 - the fixtures

DIST = Path(__file__).resolve().parent.parent / "extensions" / "editor" / "dist"
SECRET = "editor-test-secret-long-enough-for-hs256"
SLOW = 90_000  # ms: a first kernel start on a loaded 2-core machine


@pytest.fixture(autouse=True)
def built_editor():
    if not (DIST / "index.html").is_file():
        message = "extensions/editor is not built (cd extensions/editor && npm ci && npm run build)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def token(user: str) -> str:
    return mint(SECRET, user, tier="team")


def hook(page, name: str):
    return page.locator(f'[data-testid="{name}"]')


def open_editor(page_for, url: str):
    page = page_for()
    page.page.goto(url)
    expect(page.page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
    return page


def type_code(page, code: str) -> None:
    """Replaces the editor's text (fill inserts it as one input, without auto-closing)."""
    hook(page, "editor").locator(".cm-content").fill(code)


def run_code(page, code: str) -> None:
    type_code(page, code)
    hook(page, "editor").locator(".cm-content").press("Control+Enter")


def stdout_text(page, text: str):
    """Stdout output whose whole text is `text` (never the code line that printed it)."""
    return page.locator('[data-testid="output-stdout"]').filter(has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))


def stdout_line(page, text: str):
    return hook(page, "output").locator(stdout_text(page, text))


def printed(page, text: str, timeout: float = SLOW) -> None:
    """Waits for stdout `text` on the page; a failure tells what the page showed instead."""
    try:
        expect(stdout_line(page, text)).to_have_count(1, timeout=timeout)
    except AssertionError as e:
        shown = {name: hook(page, name).inner_text() for name in ("state", "notice", "output")}
        raise AssertionError(f"{text!r} not printed; the page showed {shown}") from e


def block_of(page, text: str):
    """The output block (one execution) that printed `text`."""
    return hook(page, "output").locator('[data-testid="output-block"]').filter(has=stdout_text(page, text))


def test_the_page_runs_python_and_bash_and_shows_a_traceback(docker_gateway, page_for):
    page = open_editor(page_for, docker_gateway.url + "/editor/")
    p = page.page
    assert hook(p, "language").input_value() == "python3"
    options = hook(p, "language").locator("option")
    assert "bash" in options.evaluate_all("options => options.map(o => o.value)")
    expect(hook(p, "state")).to_have_text("no kernel")

    run_code(p, "print(6*7)")
    printed(p, "42")
    expect(hook(p, "state")).to_have_text("idle")
    kernels = requests.get(docker_gateway.url + "/api/kernels", timeout=10).json()
    assert [k["name"] for k in kernels] == ["python3"]

    run_code(p, "def check(n):\n    raise ValueError('bad value %d' % (n * 7))\n\ncheck(6)")
    error = hook(p, "output").locator('[data-testid="output-error"]')
    expect(error).to_contain_text("ValueError: bad value 42", timeout=30_000)
    expect(error).to_contain_text("Traceback")
    expect(error).to_contain_text("----> 4 check(6)")  # the traceback's frames, not just the message
    assert "\x1b" not in error.inner_text()  # ANSI colours stripped
    type_code(p, "print('Hello from Python', 6 * 7)\nfor i in range(3):\n    print('line', i)")
    hook(p, "run").click()
    printed(p, "Hello from Python 42\nline 0\nline 1\nline 2", 30_000)
    page.screenshot("editor-python")

    hook(p, "language").select_option("bash")
    run_code(p, "echo bash-$((6*7))")
    printed(p, "bash-42")
    kernels = requests.get(docker_gateway.url + "/api/kernels", timeout=10).json()
    assert sorted(k["name"] for k in kernels) == ["bash", "python3"]
    hook(p, "language").select_option("python3")  # the same kernel again: its memory is there
    run_code(p, "print('again', check.__name__)")
    printed(p, "again check", 30_000)
    assert len(requests.get(docker_gateway.url + "/api/kernels", timeout=10).json()) == 2
    assert page.errors == []

    page.close()  # the page goes away: its solo kernels are shut down
    expect_no_kernels(docker_gateway, 30_000)


def expect_no_kernels(gateway, timeout_ms: int) -> None:
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        if requests.get(gateway.url + "/api/kernels", timeout=10).json() == []:
            return
        time.sleep(0.2)  # polling the gateway's own answer: the condition itself
    pytest.fail("the page's solo kernels were not shut down when it went away")


def test_interrupt_and_restart(docker_gateway, page_for):
    page = open_editor(page_for, docker_gateway.url + "/editor/")
    p = page.page
    run_code(p, "kept = 6 * 7\nprint(kept)")
    printed(p, "42")
    run_code(p, "import time\nprint('sleeping', flush=True)\ntime.sleep(600)")
    printed(p, "sleeping", 30_000)
    expect(hook(p, "state")).to_have_text("busy")
    hook(p, "interrupt").click()
    error = hook(p, "output").locator('[data-testid="output-error"]')
    expect(error).to_contain_text("KeyboardInterrupt", timeout=30_000)
    expect(hook(p, "state")).to_have_text("idle")

    hook(p, "restart").click()
    expect(hook(p, "output")).to_contain_text("Restarting the python3 kernel")
    expect(hook(p, "state")).to_have_text("idle", timeout=60_000)
    run_code(p, "print('kept' in globals(), 6 * 7)")  # its memory is gone
    printed(p, "False 42", 60_000)
    assert page.errors == []


def test_a_terminal_runs_a_command(docker_gateway, page_for):
    page = open_editor(page_for, docker_gateway.url + "/editor/")
    p = page.page
    hook(p, "terminal-open").click()
    expect(hook(p, "terminal-state")).to_have_text("connected", timeout=SLOW)
    terminal = hook(p, "terminal")
    terminal.click()
    p.keyboard.type("echo $((6*7)); uname -s\n")
    rows = terminal.locator(".xterm-rows > div")
    expect(rows.filter(has_text=re.compile(r"^\s*42\s*$"))).to_have_count(1, timeout=30_000)
    expect(rows.filter(has_text=re.compile(r"^\s*Linux\s*$"))).to_have_count(1)
    listed = requests.get(docker_gateway.url + "/api/terminals", timeout=10).json()
    kernels = requests.get(docker_gateway.url + "/api/kernels", timeout=10).json()
    assert [t["kernel"] for t in listed] == [k["id"] for k in kernels]  # in the page's kernel
    page.screenshot("editor-terminal")
    assert page.errors == []


def room_with(gateway, owner: str, members: dict[str, str], languages=("python3",)) -> dict:
    created = requests.post(
        gateway.url + "/api/rooms", json={"name": "pair", "languages": list(languages)},
        headers={"Authorization": f"Bearer {token(owner)}"}, timeout=120,
    )
    assert created.status_code == 201, created.text
    room = created.json()
    for user, role in members.items():
        added = requests.put(
            gateway.url + f"/api/rooms/{room['id']}/members/{user}", json={"role": role},
            headers={"Authorization": f"Bearer {token(owner)}"}, timeout=30,
        )
        assert added.status_code == 200, added.text
    return room


def open_room(page_for, gateway, room: dict, user: str):
    page = open_editor(page_for, gateway.url + f"/editor/?room={room['id']}#token={token(user)}")
    assert "token" not in page.page.url  # taken from the fragment, then removed
    return page


@pytest.fixture
def jwt_gateway(docker_engine, start_gateway):
    return start_gateway(f"--jwt-secret={SECRET}", "--kernels=docker")


def test_two_members_see_each_others_output_live(jwt_gateway, page_for):
    room = room_with(jwt_gateway, "alice", {"bob": "participant"}, languages=("bash", "python3"))
    alice = open_room(page_for, jwt_gateway, room, "alice")
    bob = open_room(page_for, jwt_gateway, room, "bob")
    for page in (alice, bob):
        members = hook(page.page, "members").locator("li")
        expect(members).to_have_count(2)
        assert sorted(members.evaluate_all("items => items.map(i => i.dataset.user + ':' + i.dataset.role)")) == [
            "alice:owner", "bob:participant"
        ]
    expect(hook(bob.page, "room")).to_contain_text("you are participant")

    run_code(alice.page, "print('from alice', 6*7)")
    for page in (alice, bob):
        block = block_of(page.page, "from alice 42")
        expect(block).to_have_count(1, timeout=SLOW)
        expect(block.locator('[data-testid="ran-by"]')).to_have_text("alice")

    run_code(bob.page, "print('from bob', 7*6)")
    for page in (alice, bob):
        block = block_of(page.page, "from bob 42")
        expect(block).to_have_count(1, timeout=30_000)
        expect(block.locator('[data-testid="ran-by"]')).to_have_text("bob")

    # another language of the room: alice's bash run shows on bob's page, though he shows python
    hook(alice.page, "language").select_option("bash")
    run_code(alice.page, "echo shell-$((6*7))")
    printed(bob.page, "shell-42")
    hook(alice.page, "language").select_option("python3")
    alice.screenshot("editor-room-alice")
    bob.screenshot("editor-room-bob")
    assert alice.errors == [] and bob.errors == []


def test_a_viewers_page_cannot_run(jwt_gateway, page_for):
    room = room_with(jwt_gateway, "alice", {"vic": "viewer"})
    vic = open_room(page_for, jwt_gateway, room, "vic")
    p = vic.page
    expect(hook(p, "room")).to_contain_text("you are viewer")
    for control in ("run", "interrupt", "restart", "file-new", "file-save", "file-rename", "file-delete"):
        expect(hook(p, control)).to_be_disabled()
    content = hook(p, "editor").locator(".cm-content")
    expect(content).to_have_attribute("contenteditable", "false")
    before = content.inner_text()
    content.click()
    p.keyboard.type("print('vic was here')")
    p.keyboard.press("Control+Enter")
    assert content.inner_text() == before

    # what the others run still shows on the viewer's page
    alice = open_room(page_for, jwt_gateway, room, "alice")
    run_code(alice.page, "print('for the viewer', 6*7)")
    printed(p, "for the viewer 42")
    assert hook(p, "output").locator('[data-testid="output-block"]').count() == 1  # nothing of vic's

    # a viewer watches a room terminal but cannot open or type in one
    hook(p, "terminal-open").click()
    expect(hook(p, "terminal-state")).to_contain_text("a viewer cannot open one")
    hook(alice.page, "terminal-open").click()
    expect(hook(alice.page, "terminal-state")).to_have_text("connected", timeout=SLOW)
    hook(alice.page, "terminal").click()
    alice.page.keyboard.type("echo shared-$((6*7))\n")
    hook(p, "terminal-open").click()
    rows = hook(p, "terminal").locator(".xterm-rows > div")
    expect(rows.filter(has_text=re.compile(r"^\s*shared-42\s*$"))).to_have_count(1, timeout=30_000)
    hook(p, "terminal").click()
    p.keyboard.type("echo typed-by-vic-$((1+1))\n")
    alice.page.keyboard.type("echo after-$((2*2))\n")
    alice_rows = hook(alice.page, "terminal").locator(".xterm-rows > div")
    expect(alice_rows.filter(has_text=re.compile(r"^\s*after-4\s*$"))).to_have_count(1, timeout=30_000)
    expect(alice_rows.filter(has_text="typed-by-vic")).to_have_count(0)
    assert vic.errors == []


def test_files_are_created_saved_and_reopened(docker_gateway, page_for):
    page = open_editor(page_for, docker_gateway.url + "/editor/")
    p = page.page
    hook(p, "file-name").fill("hello.py")
    hook(p, "file-new").click()  # starts the page's kernel: its workspace holds the files
    tree = hook(p, "files")
    expect(tree.locator('[data-path="hello.py"]')).to_have_count(1, timeout=SLOW)
    expect(hook(p, "file-current")).to_have_text("hello.py")
    type_code(p, "print('saved', 6 * 7)\n")
    hook(p, "file-save").click()
    expect(hook(p, "file-current")).to_have_text("hello.py (saved)")

    hook(p, "file-name").fill("other.py")
    hook(p, "file-new").click()
    expect(hook(p, "file-current")).to_have_text("other.py")
    assert hook(p, "editor").locator(".cm-content").inner_text().strip() == ""
    tree.locator('[data-path="hello.py"]').click()
    expect(hook(p, "editor").locator(".cm-content")).to_have_text("print('saved', 6 * 7)")
    [kernel] = requests.get(docker_gateway.url + "/api/kernels", timeout=10).json()
    stored = requests.get(docker_gateway.url + f"/api/kernels/{kernel['id']}/contents/hello.py", timeout=10).json()
    assert stored["content"] == "print('saved', 6 * 7)\n"

    run_code(p, "exec(open('hello.py').read())")  # the kernel sees the same file
    printed(p, "saved 42")

    hook(p, "file-name").fill("renamed.py")
    hook(p, "file-rename").click()
    expect(tree.locator('[data-path="renamed.py"]')).to_have_count(1)
    expect(tree.locator('[data-path="hello.py"]')).to_have_count(0)
    p.once("dialog", lambda dialog: dialog.accept())
    hook(p, "file-delete").click()
    expect(tree.locator('[data-path="renamed.py"]')).to_have_count(0)
    names = [e["name"] for e in requests.get(
        docker_gateway.url + f"/api/kernels/{kernel['id']}/contents", timeout=10).json()["content"]]
    assert "renamed.py" not in names and "other.py" in names
    assert page.errors == []


def test_the_page_works_under_a_base_url(docker_engine, start_gateway, page_for):
    gateway = start_gateway("--kernels=docker", "--base-url=/x/")
    assert requests.get(gateway.url + "/editor/", timeout=10).status_code == 404
    moved = requests.get(gateway.url + "/x/editor", allow_redirects=False, timeout=10)
    assert moved.status_code == 301 and moved.headers["Location"] == "/x/editor/"
    page = open_editor(page_for, gateway.url + "/x/editor")
    p = page.page
    assert p.url == gateway.url + "/x/editor/"
    run_code(p, "print(6*7)")
    printed(p, "42")
    assert page.errors == []


def raw_get(gateway, path: str) -> tuple[int, dict, bytes]:
    """GET with the path sent exactly as written (no client-side normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_the_editor_files_are_served_public_typed_and_confined(docker_engine, start_gateway, tmp_path):
    gateway = start_gateway(f"--jwt-secret={SECRET}", "--kernels=docker")
    assert requests.get(gateway.url + "/api/kernels", timeout=10).status_code == 401
    status, headers, body = raw_get(gateway, "/editor/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'data-testid="editor"' in body
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assets = re.findall(rb'(?:src|href)="\./(assets/[^"]+)"', body)
    types = {Path(a.decode()).suffix: raw_get(gateway, "/editor/" + a.decode())[1]["Content-Type"] for a in assets}
    assert types[".js"].startswith("text/javascript") and types[".css"].startswith("text/css")

    for escape in ("/editor/..%2f..%2fsetup.py", "/editor/%2e%2e/%2e%2e/setup.py", "/editor/../../setup.py",
                   "/editor/assets/", "/editor/assets", "/editor/missing.js"):
        status, headers, body = raw_get(gateway, escape)
        if status == 301:  # a folder without its slash: then the same answer as with it
            status, headers, body = raw_get(gateway, headers["Location"])
        assert status in (403, 404), (escape, status)
        assert headers["Content-Type"] == "application/json"
        error = json.loads(body)
        assert set(error) == {"reason", "message"} and str(DIST.parent) not in error["message"]

    empty = tmp_path / "no-build"
    empty.mkdir()
    unbuilt = start_gateway("--kernels=docker", f"--ServeApp.editor_dir={empty}")
    answer = requests.get(unbuilt.url + "/editor/", timeout=10)
    assert answer.status_code == 503
    assert answer.json()["reason"] == "Editor Not Built" and "npm run build" in answer.json()["message"]



class CuttableProxy:
    """A TCP forwarder on loopback in front of the gateway, as a network the test can break:
    `cut()` ends every connection and refuses new ones until `mend()`."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.broken = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.broken.is_set():
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.broken.set()
        with self.lock:
            cut, self.sockets = self.sockets, []
        for end in cut:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def mend(self) -> None:
        self.broken.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_output_survives_a_network_blip(docker_gateway, page_for):
    proxy = CuttableProxy(docker_gateway.port)
    try:
        page = open_editor(page_for, proxy.url + "/editor/")
        p = page.page
        run_code(p, "print(6*7)")
        printed(p, "42")
        run_code(p, "import time\nfor i in range(6):\n    print('tick', i, flush=True)\n    time.sleep(0.5)")
        expect(hook(p, "output").locator('[data-testid="output-stdout"]').filter(has_text="tick 0")).to_have_count(1)
        proxy.cut()
        expect(hook(p, "state")).to_have_text("reconnecting")
        proxy.mend()
        expect(hook(p, "state")).to_have_text("idle", timeout=60_000)
        # what the kernel printed while the page was away came back, once and in order
        printed(p, "\n".join(f"tick {i}" for i in range(6)), 30_000)
        run_code(p, "print('after', 6*7)")
        printed(p, "after 42", 30_000)
    finally:
        proxy.close()
