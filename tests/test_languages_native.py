"""The maintained third-party kernels (Bash, JavaScript, TypeScript, R, Java, Kotlin),
each in its own image, through a real gateway with Docker kernels.

For every language: hello world; state from an earlier cell; a syntax error and a runtime
error answered with an error reply; stdin where the kernel supports it; interrupting an
infinite loop. Each `Language` records what its kernel really does (its error names, the
reply status after an interrupt); docs/languages-native.md explains the differences.

One gateway serves the whole module and one kernel serves each language's tests (pytest
groups the tests by language), so a language's image is started once. A language whose
image is not built is skipped locally and fails with CI=true, like the other Docker tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import docker.errors
import pytest
import requests
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from kernelgate.images import ImageBuilder
from tests.ci import require
from tests.harness import ROOT, GatewayProcess

#: The user tier (plan) whose kernels may use every tier: Java, Kotlin and R are "high".
PLAN = "team"


@dataclass(frozen=True)
class Language:
    """How to exercise one kernelspec, and what its kernel answers.

    ``hello`` prints ``hello``; ``define`` stores 41 (a variable or a function) that ``use``
    then prints as ``42``; ``read_stdin`` reads one line and prints ``hi <line>`` (None:
    the kernel cannot read stdin, ``no_stdin`` says why, and ``blocked_read`` is a read
    that waits without asking for input until interrupted). Error replies carry
    ``syntax_ename`` / ``runtime_ename``, and the runtime error mentions ``boom``.
    ``interrupted`` is the reply status of an interrupted ``loop``. ``output_after_idle``:
    the kernel may publish a cell's output after its idle status.
    """

    kernel: str
    hello: str
    define: str
    use: str
    syntax_error: str
    syntax_ename: str
    runtime_error: str
    runtime_ename: str
    read_stdin: str | None
    loop: str
    interrupted: str
    no_stdin: str = ""
    blocked_read: str = ""
    output_after_idle: bool = False


LANGUAGES = [
    Language(
        kernel="bash",
        hello="echo hello",
        define="x=41",
        use="echo $((x + 1))",
        syntax_error="if then fi",
        syntax_ename="",  # bash_kernel: ename is always empty, evalue is the exit status
        runtime_error="cat /nonexistent/boom",  # the message arrives on stdout (a pty)
        runtime_ename="",
        read_stdin=None,
        no_stdin="bash_kernel sends no input_request: `read` waits on its pty until interrupted",
        blocked_read="read line",
        loop="while true; do :; done",
        interrupted="abort",
    ),
    Language(
        kernel="javascript",
        hello='console.log("hello")',
        define="function answer() { return 41; }",
        use="console.log(answer() + 1)",
        syntax_error="let = ;",
        syntax_ename="Error",  # evalue "Execution failed": Deno drops the diagnostic
        runtime_error='throw new Error("boom")',
        runtime_ename="Error",
        read_stdin='const name = prompt("who?"); console.log("hi " + name)',
        loop="while (true) {}",
        interrupted="error",
        output_after_idle=True,  # Deno gives its stdout task 5 ms before it reports idle
    ),
    Language(
        kernel="typescript",
        hello='const greeting: string = "hello"; console.log(greeting)',
        define="const x: number = 41;",
        use="console.log(x + 1)",
        syntax_error="const y: = 1;",
        syntax_ename="Error",
        runtime_error='throw new TypeError("boom")',
        runtime_ename="TypeError",
        read_stdin='const name: string | null = prompt("who?"); console.log("hi " + name)',
        loop="while (true) {}",
        interrupted="error",
        output_after_idle=True,
    ),
    Language(
        kernel="r",
        hello='cat("hello\\n")',
        define="x <- 41",
        use='cat(x + 1, "\\n", sep = "")',
        syntax_error="x <- )",
        syntax_ename="ERROR",
        runtime_error='stop("boom")',
        runtime_ename="ERROR",
        read_stdin='name <- readline("who? "); cat("hi ", name, "\\n", sep = "")',
        loop="while (TRUE) {}",
        interrupted="abort",
    ),
    Language(
        kernel="java",
        hello='System.out.println("hello");',
        define="int x = 41;",
        use="System.out.println(x + 1);",
        syntax_error="int y = ;",
        syntax_ename="CompilationException",
        runtime_error='throw new IllegalStateException("boom");',
        runtime_ename="RuntimeException",  # jjava wraps it: evalue names the real class
        read_stdin='String name = new java.util.Scanner(System.in).nextLine();'
        ' System.out.println("hi " + name);',
        loop="while (true) {}",
        interrupted="error",
    ),
    Language(
        kernel="kotlin",
        hello='println("hello")',
        define="fun answer() = 41",
        use="println(answer() + 1)",
        syntax_error="val = 1",
        syntax_ename="org.jetbrains.kotlinx.jupyter.exceptions.ReplCompilerException",
        runtime_error='throw IllegalStateException("boom")',
        runtime_ename="java.lang.IllegalStateException",
        read_stdin='val name = readLine(); println("hi " + name)',
        loop="while (true) {}",
        interrupted="error",
    ),
]


#: Seconds to wait for output published after the idle status (output_after_idle).
OUTPUT_GRACE = 1.0


async def execute(ws, language: Language, code: str, **kwargs):
    """``ws.execute``; for a language with output_after_idle, plus the request's iopub
    messages that arrive within OUTPUT_GRACE seconds after its idle status."""
    run = await ws.execute(code, **kwargs)
    if language.output_after_idle:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OUTPUT_GRACE
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await ws.recv(left)
            except asyncio.TimeoutError:
                break
            if msg["channel"] == "iopub" and msg["parent_header"] == run.reply["parent_header"]:
                run.messages.append(msg)
    return run


def image_of(kernel: str) -> str:
    """The image folder a kernelspec's Docker provisioner config names."""
    spec = json.loads((ROOT / "kernelspecs" / kernel / "kernel.json").read_text())
    return spec["metadata"]["kernel_provisioner"]["config"]["image"]


@pytest.fixture(scope="module")
def native_gateway(docker_engine, tmp_path_factory):
    """One gateway with Docker kernels for the module; its log must hold no traceback."""
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("gateway"), "--kernels=docker", f"--DevIdentityProvider.tier={PLAN}"
    ).start()
    yield gateway
    gateway.stop()
    gateway.cleanup()
    assert "Traceback" not in gateway.log(), gateway.log()


@dataclass(frozen=True)
class RunningKernel:
    """A kernel of ``language`` running in ``gateway``."""

    language: Language
    kernel_id: str
    gateway: GatewayProcess

    async def connect(self):
        """A new WebSocket (KernelSocket) to the kernel."""
        return await self.gateway.client().connect(self.kernel_id)


@pytest.fixture(scope="module", params=LANGUAGES, ids=lambda language: language.kernel)
def kernel(request, native_gateway, docker_engine) -> RunningKernel:
    """A running kernel of each language in turn, deleted after that language's tests."""
    language = request.param
    image = image_of(language.kernel)
    reference = ImageBuilder().reference(image)
    try:
        docker_engine.images.get(reference)
    except docker.errors.ImageNotFound:
        problem = f"image {reference} not built (run: kernelgate images build {image})"
        require(problem)
    url = native_gateway.url
    response = requests.post(url + "/api/kernels", json={"name": language.kernel}, timeout=180)
    assert response.status_code == 201, response.text
    kernel_id = response.json()["id"]
    yield RunningKernel(language, kernel_id, native_gateway)
    requests.delete(f"{url}/api/kernels/{kernel_id}", timeout=60)


async def test_hello_world(kernel):
    language, ws = kernel.language, await kernel.connect()
    run = await execute(ws, language, language.hello, timeout=120)  # the first cell: JVMs warm up
    assert run.status == "ok", run.reply
    assert run.stdout == "hello\n"
    ws.close()


async def test_state_from_an_earlier_cell(kernel):
    language, ws = kernel.language, await kernel.connect()
    assert (await execute(ws, language, language.define, timeout=120)).status == "ok"
    run = await execute(ws, language, language.use)
    assert run.status == "ok", run.reply
    assert run.stdout == "42\n"
    ws.close()


async def test_syntax_error_is_an_error_reply(kernel):
    language, ws = kernel.language, await kernel.connect()
    run = await execute(ws, language, language.syntax_error, timeout=120)
    assert run.status == "error"
    assert run.reply["content"]["ename"] == language.syntax_ename
    assert (await execute(ws, language, language.hello)).stdout == "hello\n"  # the kernel goes on
    ws.close()


async def test_runtime_error_is_an_error_reply(kernel):
    language, ws = kernel.language, await kernel.connect()
    run = await execute(ws, language, language.runtime_error, timeout=120)
    assert run.status == "error"
    content = run.reply["content"]
    assert content["ename"] == language.runtime_ename
    assert "boom" in content["evalue"] + "\n".join(content.get("traceback", [])) + run.stdout
    ws.close()


async def test_stdin(kernel):
    language = kernel.language
    ws = await kernel.connect()
    if language.read_stdin is None:  # what is true instead: no input_request, an interrupt ends it
        msg_id = await ws.send("shell", "execute_request", {
            "code": language.blocked_read, "silent": False, "allow_stdin": True})
        await asyncio.sleep(2)
        interrupt = await kernel.gateway.client().request("POST", f"/api/kernels/{kernel.kernel_id}/interrupt")
        assert interrupt.status == 204
        run = await ws.collect(msg_id, timeout=30)
        assert run.status == language.interrupted, (language.no_stdin, run.reply)
        ws.close()
        return
    run = await execute(ws, language, language.read_stdin, timeout=120, stdin=["ada"])
    assert run.status == "ok", run.reply
    assert run.stdout == "hi ada\n"
    ws.close()


async def test_interrupt_infinite_loop(kernel):
    language, ws = kernel.language, await kernel.connect()
    client = kernel.gateway.client()
    assert (await execute(ws, language, language.define, timeout=120)).status == "ok"
    msg_id = await ws.send("shell", "execute_request", {"code": language.loop, "silent": False})
    while True:  # the loop is running once the kernel reports busy for it
        msg = await ws.recv()
        if (msg["parent_header"].get("msg_id") == msg_id and msg["header"]["msg_type"] == "status"
                and msg["content"]["execution_state"] == "busy"):
            break
    await asyncio.sleep(1)
    response = await client.request("POST", f"/api/kernels/{kernel.kernel_id}/interrupt")
    assert response.status == 204
    run = await ws.collect(msg_id, timeout=30)
    assert run.status == language.interrupted, run.reply
    assert (await execute(ws, language, language.use)).stdout == "42\n"  # state survives
    ws.close()


# -- kernelgate-relay, on the host: the same script the relay image installs ----------------

RELAY = ROOT / "images" / "relay" / "kernelgate_relay.py"


def start_relay(tmp_path, *kernel_argv: str) -> tuple[subprocess.Popen, str, dict]:
    """The relay on a fresh ipc connection file in tmp_path: (process, file, its info)."""
    connection_file, info = write_connection_file(
        str(tmp_path / "kernel.json"), transport="ipc", ip=str(tmp_path / "k"), key=b"relay-test"
    )
    relay = subprocess.Popen([sys.executable, str(RELAY), connection_file, "--", *kernel_argv])
    return relay, connection_file, info


def wait_ready(client: BlockingKernelClient, timeout: float = 60) -> None:
    """Ask for kernel_info until it is answered and its iopub status has arrived too (so
    that iopub is connected); TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg_id = client.kernel_info()
        try:
            client.get_shell_msg(timeout=2)
            while client.get_iopub_msg(timeout=1)["parent_header"].get("msg_id") != msg_id:
                pass
            return
        except queue.Empty:
            continue
    raise TimeoutError("the kernel did not answer kernel_info")


def test_relay_bridges_ipc_to_a_tcp_kernel(tmp_path):
    relay, connection_file, info = start_relay(
        tmp_path, sys.executable, "-m", "ipykernel_launcher", "-f", "{tcp_connection_file}"
    )
    client = BlockingKernelClient(connection_file=connection_file)
    client.load_connection_file()
    client.start_channels(hb=False)
    try:
        wait_ready(client)
        outputs = []
        reply = client.execute_interactive(
            "print('over the relay')", timeout=30, output_hook=outputs.append
        )
        assert reply["content"]["status"] == "ok"
        assert [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"] == ["over the relay\n"]
        sockets = [f"{info['ip']}-{info[port]}" for port in ("shell_port", "iopub_port", "stdin_port",
                                                          "control_port", "hb_port")]
        assert all(os.path.exists(path) for path in sockets)
        msg_id = client.execute("while True: pass")
        time.sleep(1)
        relay.send_signal(signal.SIGINT)  # forwarded to the kernel's process group
        reply = client.get_shell_msg(timeout=30)
        while reply["parent_header"]["msg_id"] != msg_id:  # a late kernel_info reply
            reply = client.get_shell_msg(timeout=30)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        client.stop_channels()
        relay.send_signal(signal.SIGTERM)  # forwarded too: the kernel exits, then the relay
    assert relay.wait(30) == 128 + signal.SIGTERM
    assert not any(os.path.exists(path) for path in sockets)


def test_relay_exits_with_the_kernel(tmp_path):
    relay, _, _ = start_relay(tmp_path, sys.executable, "-c", "import sys; sys.exit(3)")
    assert relay.wait(30) == 3
    assert os.listdir(tmp_path) == ["kernel.json"]  # no socket file left behind
