"""The agent: the sandbox's main process. It starts the language kernel as its child and
serves terminals, files and kernel control to the gateway.

It speaks the Jupyter wire protocol, signed with the kernel's session key, on two
sockets beside the kernel's (for the ipc transport: `{ip}-agent` and `{ip}-agent-pub`):
- a ROUTER answering requests:
  - terminal_open_request {name, rows, cols}
  - terminal_input {name, data}
  - terminal_resize {name, rows, cols}
  - terminal_close_request {name}
  - file_request {op, path, new_path?}, with file data in buffers[0]
  - kernel_interrupt_request
  - kernel_restart_request
  Each *_request gets a *_reply with status ok|error (ename and evalue on error).
- a PUB carrying terminal_output {name, data} and terminal_exit {name, code}.

When the kernel exits by itself the agent exits with its code, so the container stops
and the gateway sees the kernel die.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess

import zmq
import zmq.asyncio

from kernelgate_agent.files import FileError, Workspace
from kernelgate_agent.process import signal_group, start_kernel
from kernelgate_agent.terminals import Terminal
from kernelgate_agent.wire import Wire, endpoints

log = logging.getLogger("kernelgate.agent")

#: The operations of a file_request.
_FILE_OPS = ("list", "stat", "read", "write", "mkdir", "rename", "copy", "delete")


class Agent:
    """Serves one sandbox whose kernel process, `kernel`, was started from `kernel_argv`
    before the agent loaded (kernelgate_agent.start); a restart starts it again."""

    def __init__(self, connection_file: str, workspace: str, kernel_argv: list[str],
                 kernel: subprocess.Popen, shell: str = "/bin/bash", max_file_size: int = 0) -> None:
        with open(connection_file) as f:
            self.info = json.load(f)
        self.wire = Wire(self.info["key"].encode(), self.info["signature_scheme"])
        self.workspace = Workspace(workspace, max_file_size)
        self.kernel_argv = kernel_argv
        self.shell = shell
        self.kernel = kernel
        self.terminals: dict[str, Terminal] = {}
        self._restarting = False
        self._done: asyncio.Future | None = None
        context = zmq.asyncio.Context.instance()
        self.router = context.socket(zmq.ROUTER)
        self.pub = context.socket(zmq.PUB)

    async def run(self) -> int:
        """Serve until the kernel exits (or SIGTERM); returns the exit code."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        request_url, publish_url = endpoints(self.info)
        self.router.bind(request_url)
        self.pub.bind(publish_url)
        loop.add_signal_handler(signal.SIGINT, self.interrupt_kernel)
        loop.add_signal_handler(signal.SIGTERM, lambda: self._finish(0))
        asyncio.ensure_future(self._watch_kernel(self.kernel))
        serving = asyncio.ensure_future(self._serve())
        code = await self._done
        serving.cancel()
        for terminal in list(self.terminals.values()):
            terminal.close()
        if self.kernel.poll() is None:
            self._signal_kernel(signal.SIGKILL)
        self.router.close(linger=0)
        self.pub.close(linger=200)
        return code

    # -- the kernel ----------------------------------------------------------------

    def _start_kernel(self) -> None:
        self.kernel = start_kernel(self.kernel_argv, self.workspace.root)
        asyncio.ensure_future(self._watch_kernel(self.kernel))

    async def _watch_kernel(self, process: subprocess.Popen) -> None:
        code = await asyncio.to_thread(process.wait)
        if process is self.kernel and not self._restarting:
            log.info("kernel exited with %s", code)
            self._finish(code)

    def _signal_kernel(self, sig: int) -> None:
        signal_group(self.kernel, sig)

    def interrupt_kernel(self) -> None:
        """SIGINT to the kernel's process group (not to terminals, not to the agent)."""
        self._signal_kernel(signal.SIGINT)

    async def restart_kernel(self) -> None:
        """Kill the kernel process group and start the kernel again, in this sandbox."""
        self._restarting = True
        try:
            self._signal_kernel(signal.SIGKILL)
            await asyncio.to_thread(self.kernel.wait)
            self._start_kernel()
        finally:
            self._restarting = False

    def _finish(self, code: int) -> None:
        if self._done and not self._done.done():
            self._done.set_result(code)

    # -- requests ------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            raw = await self.router.recv_multipart()
            try:
                idents, msg = self.wire.unpack(raw)
            except ValueError as e:  # malformed or badly signed (JSON and UTF-8 errors included)
                log.warning("dropped a bad request: %s", e)
                continue
            try:
                await self._dispatch(idents, msg)
            except Exception as e:  # noqa: BLE001
                log.exception("request %s failed", msg["header"].get("msg_type"))
                self._reply(idents, msg, {"status": "error", "ename": "EIO", "evalue": str(e)})

    async def _dispatch(self, idents: list[bytes], msg: dict) -> None:
        kind = msg["header"]["msg_type"]
        content = msg["content"]
        if kind == "terminal_input":
            terminal = self.terminals.get(content.get("name"))
            if terminal:
                terminal.write(content.get("data", "").encode())
            return
        if kind == "terminal_resize":
            terminal = self.terminals.get(content.get("name"))
            if terminal:
                terminal.resize(int(content["rows"]), int(content["cols"]))
            return
        if kind == "terminal_open_request":
            self._open_terminal(content)
            self._reply(idents, msg, {"status": "ok"})
        elif kind == "terminal_close_request":
            terminal = self.terminals.get(content.get("name"))
            if terminal:
                terminal.close()
            self._reply(idents, msg, {"status": "ok"})
        elif kind == "file_request":
            self._file(idents, msg)
        elif kind == "kernel_interrupt_request":
            self.interrupt_kernel()
            self._reply(idents, msg, {"status": "ok"})
        elif kind == "kernel_restart_request":
            await self.restart_kernel()
            self._reply(idents, msg, {"status": "ok"})
        else:
            self._reply(idents, msg, {"status": "error", "ename": "EINVAL", "evalue": f"unknown request {kind}"})

    def _reply(self, idents, parent: dict, content: dict, buffers: list[bytes] | None = None) -> None:
        kind = parent["header"]["msg_type"].replace("_request", "_reply")
        self.router.send_multipart(self.wire.pack(kind, content, parent, idents, buffers))

    def _open_terminal(self, content: dict) -> None:
        name = str(content["name"])
        if name in self.terminals:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("JPY_")}
        env.update(TERM="xterm-256color", PWD=self.workspace.root)
        self.terminals[name] = Terminal(
            name, [self.shell, "-i"], self.workspace.root, env,
            int(content.get("rows", 24)), int(content.get("cols", 80)),
            self._publish_output, self._terminal_exited,
        )

    def _publish_output(self, name: str, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        self.pub.send_multipart(self.wire.pack("terminal_output", {"name": name, "data": text}))

    def _terminal_exited(self, name: str, code: int) -> None:
        self.terminals.pop(name, None)
        self.pub.send_multipart(self.wire.pack("terminal_exit", {"name": name, "code": code}))

    def _file(self, idents, msg: dict) -> None:
        content = msg["content"]
        op, path = content.get("op"), content.get("path")
        if op not in _FILE_OPS or not isinstance(path, str):
            self._reply(idents, msg, {"status": "error", "ename": "EINVAL", "evalue": "bad file request"})
            return
        ws, buffers, result = self.workspace, None, {}
        try:
            if op == "read":
                buffers = [ws.read(path)]
                result = ws.stat(path)
            elif op == "write":
                result = ws.write(path, bytes(msg["buffers"][0]) if msg["buffers"] else b"")
            elif op == "list":
                result = {"entries": ws.list(path), **ws.stat(path)}
            elif op in ("rename", "copy"):
                result = getattr(ws, op)(path, str(content.get("new_path", "")))
            elif op == "delete":
                ws.delete(path)
            else:
                result = getattr(ws, op)(path)
        except FileError as e:
            self._reply(idents, msg, {"status": "error", "ename": e.code, "evalue": str(e)})
            return
        self._reply(idents, msg, {"status": "ok", **result}, buffers)

