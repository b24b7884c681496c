"""Lab's terminals in the active room's sandbox, or on the Lab server's host.

The handlers take jupyter_server_terminals' routes (`/api/terminals`, `/api/terminals/{name}`,
`/terminals/websocket/{name}`). While a room is active they open, list and end terminals
in kernelgate (`POST /api/terminals {"room"}`) and relay the terminado WebSocket both ways,
frame by frame; otherwise they are jupyter_server_terminals' handlers, unchanged.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server_terminals.api_handlers import TerminalHandler, TerminalRootHandler
from jupyter_server_terminals.handlers import TermSocket
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from . import gateway


async def _room_kernel_ids(room: str) -> set[str]:
    model = await gateway.fetch("GET", gateway.room_path(room))
    return {kernel["id"] for kernel in model.get("kernels", [])}


class RoomTerminalRootHandler(TerminalRootHandler):
    """GET lists the room's terminals; POST opens one in the room's sandbox."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        room = gateway.active_room()
        if room is None:
            return await ensure_async(super().get())
        terminals = await gateway.fetch("GET", "/api/terminals")
        kernels = await _room_kernel_ids(room)
        self.finish(json.dumps([t for t in terminals if t.get("kernel") in kernels]))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        room = gateway.active_room()
        if room is None:
            return await ensure_async(super().post())
        model = await gateway.fetch("POST", "/api/terminals", {"room": room})
        self.finish(json.dumps(model))  # 200, as jupyter_server_terminals answers


class RoomTerminalHandler(TerminalHandler):
    """One terminal of the room: its model, or its end."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        if gateway.active_room() is None:
            return await ensure_async(super().get(name))
        self.finish(json.dumps(await gateway.fetch("GET", f"/api/terminals/{quote(name)}")))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        if gateway.active_room() is None:
            return await ensure_async(super().delete(name))
        await gateway.fetch("DELETE", f"/api/terminals/{quote(name)}")
        self.set_status(204)
        self.finish()


class RoomTermSocket(TermSocket):
    """The terminal's WebSocket, relayed to kernelgate's while a room is active."""

    upstream = None

    async def get(self, *args, **kwargs) -> None:
        if gateway.active_room() is None:
            return await super().get(*args, **kwargs)
        user = self.current_user
        if not user or not await ensure_async(
            self.authorizer.is_authorized(self, user, "execute", self.auth_resource)
        ):
            raise web.HTTPError(403)
        # connect first, so that kernelgate's refusal (404, 403) is this request's answer
        self.upstream = await gateway.connect_websocket(f"/terminals/websocket/{quote(args[0])}")
        try:
            await WebSocketHandler.get(self, *args, **kwargs)
        finally:
            if self.ws_connection is None:  # the upgrade did not happen
                self.upstream.close()

    def open(self, *args, **kwargs) -> None:
        if self.upstream is None:
            return super().open(*args, **kwargs)
        self.term_name = args[0]
        self.write_message(json.dumps(["setup", {}]))  # Lab's terminal waits for it
        self._relay = asyncio.ensure_future(self._relay_upstream())

    async def _relay_upstream(self) -> None:
        while (message := await self.upstream.read_message()) is not None:
            try:
                self.write_message(message)
            except WebSocketClosedError:
                break
        self.close()

    async def on_message(self, message) -> None:
        if self.upstream is None:
            return await super().on_message(message)
        try:
            await self.upstream.write_message(message)
        except WebSocketClosedError:
            self.close()

    def on_close(self) -> None:
        if self.upstream is None:
            return super().on_close()
        self.upstream.close()
