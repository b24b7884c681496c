"""Terminals: jupyter_server's REST API (/api/terminals) and terminado's WebSocket frames
(/terminals/websocket/{name}): ["stdin", text] and ["set_size", rows, cols] in,
["stdout", text] and ["disconnect", code] out."""

from __future__ import annotations

import json
import logging

from tornado.websocket import WebSocketClosedError, WebSocketHandler

from kernelgate.errors import BadRequest
from kernelgate.handlers.backlog import CLOSE_TOO_SLOW, Backlog
from kernelgate.handlers.base import APIHandler, GatewayMixin
from kernelgate.handlers.kernels import KernelAccess

log = logging.getLogger("kernelgate.terminals")


class TerminalsHandler(KernelAccess, APIHandler):
    async def get(self):
        self.write_json([t.model() for t in self.services.terminals.list(self.identity)])

    async def post(self):
        """{"kernel": id} or {"room": id, "language"?}: a shell in that sandbox."""
        body = self.json_body()
        if isinstance(body.get("room"), str):
            language = body.get("language")
            if language is not None and not isinstance(language, str):
                raise BadRequest("'language' must be a kernelspec name")
            kernel = await self.services.rooms.kernel_for(self.identity, body["room"], language, "participant")
        elif isinstance(body.get("kernel"), str):
            kernel = self.visible_kernel(body["kernel"], "participant")
        else:
            raise BadRequest("'kernel' (a kernel id) or 'room' (a room id) is required")
        terminal = await self.services.terminals.open(kernel, self.identity.user)
        self.write_json(terminal.model(), status=201)


class TerminalHandler(APIHandler):
    async def get(self, name: str):
        self.write_json(self.services.terminals.get(name, self.identity).model())

    async def delete(self, name: str):
        terminals = self.services.terminals
        await terminals.close(terminals.get(name, self.identity, "participant"))
        self.set_status(204)
        self.finish()


class TerminalSocketHandler(GatewayMixin, WebSocketHandler):
    terminal = None

    async def get(self, name: str):
        self.terminal = self.services.terminals.get(name, self.identity)
        await super().get(name)

    def open(self, name: str):
        self.set_nodelay(True)
        self.backlog = Backlog(self.services.terminals.client_backlog)
        self.close_at_expiry()
        self.send_frame(["setup", {}])  # terminado's first frame: clients wait for it
        self.services.terminals.attach(self.terminal, self)

    def on_message(self, message):
        try:
            frame = json.loads(message)
            kind = frame[0]
            if kind == "stdin":
                if self.services.terminals.role_of(self.identity, self.terminal.kernel) in (None, "viewer"):
                    return  # viewers watch a shared terminal; they do not type
                self.services.terminals.input(self.terminal, str(frame[1]))
            elif kind == "set_size":
                self.services.terminals.resize(self.terminal, int(frame[1]), int(frame[2]))
        except (ValueError, TypeError, IndexError, KeyError):
            return  # not a terminado frame: ignored

    def send_frame(self, frame: list) -> None:
        message = json.dumps(frame)  # ASCII: its length is its size
        if not self.backlog.admits(len(message)):
            log.warning("kernel %s: disconnected a terminal client with %d bytes unread "
                        "(client_backlog: %d)", self.terminal.kernel.id, self.backlog.unsent,
                        self.backlog.limit)
            self.services.terminals.detach(self.terminal, self)
            self.close(CLOSE_TOO_SLOW, "Too slow: more output unread than the gateway keeps")
            return
        try:
            self.backlog.track(self.write_message(message), len(message))
        except WebSocketClosedError:
            self.services.terminals.detach(self.terminal, self)

    def on_close(self):
        self.cancel_expiry()
        if self.terminal is not None:
            self.services.terminals.detach(self.terminal, self)
