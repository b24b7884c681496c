"""Terminals: jupyter_server's REST API (/api/terminals) and terminado's WebSocket frames
(/terminals/websocket/{name}): ["stdin", text] and ["set_size", rows, cols] in,
["stdout", text] and ["disconnect", code] out."""

from __future__ import annotations

import json

from tornado.websocket import WebSocketClosedError, WebSocketHandler

from kernelgate.errors import BadRequest
from kernelgate.handlers.base import APIHandler, GatewayMixin
from kernelgate.handlers.kernels import KernelAccess


class TerminalsHandler(KernelAccess, APIHandler):
    async def get(self):
        self.write_json([t.model() for t in self.services.terminals.list(self.identity.user)])

    async def post(self):
        """{"kernel": id}: a shell in that kernel's sandbox."""
        body = self.json_body()
        kernel_id = body.get("kernel")
        if not isinstance(kernel_id, str):
            raise BadRequest("'kernel' (the id of your kernel whose sandbox the shell runs in) is required")
        terminal = await self.services.terminals.open(self.visible_kernel(kernel_id), self.identity.user)
        self.write_json(terminal.model(), status=201)


class TerminalHandler(APIHandler):
    async def get(self, name: str):
        self.write_json(self.services.terminals.get(name, self.identity.user).model())

    async def delete(self, name: str):
        terminals = self.services.terminals
        await terminals.close(terminals.get(name, self.identity.user))
        self.set_status(204)
        self.finish()


class TerminalSocketHandler(GatewayMixin, WebSocketHandler):
    terminal = None

    async def get(self, name: str):
        self.terminal = self.services.terminals.get(name, self.identity.user)
        await super().get(name)

    def open(self, name: str):
        self.set_nodelay(True)
        self.services.terminals.attach(self.terminal, self)

    def on_message(self, message):
        try:
            frame = json.loads(message)
            kind = frame[0]
            if kind == "stdin":
                self.services.terminals.input(self.terminal, str(frame[1]))
            elif kind == "set_size":
                self.services.terminals.resize(self.terminal, int(frame[1]), int(frame[2]))
        except (ValueError, TypeError, IndexError, KeyError):
            return  # not a terminado frame: ignored

    def send_frame(self, frame: list) -> None:
        try:
            self.write_message(json.dumps(frame))
        except WebSocketClosedError:
            self.services.terminals.detach(self.terminal, self)

    def on_close(self):
        if self.terminal is not None:
            self.services.terminals.detach(self.terminal, self)
