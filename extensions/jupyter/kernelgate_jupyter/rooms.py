"""The rooms panel's REST routes, under `/kernelgate/`.

- `GET /kernelgate/state`: `{"gateway": bool, "room": active room id or null}`.
- `PUT /kernelgate/state {"room": id|null}`: switches Lab's room (contents, terminals, new
  kernels); the room must be one kernelgate shows the caller (404 otherwise).
- `/kernelgate/api/rooms...` and `/kernelgate/api/languages`: kernelgate's own routes,
  called with the GatewayClient's credentials, so the browser never holds the gateway token.
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from . import gateway


class StateHandler(APIHandler):
    auth_resource = "kernelgate"

    def _state(self) -> dict:
        return {"gateway": gateway.gateway_enabled(), "room": gateway.active_room()}

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps(self._state()))

    @web.authenticated
    @authorized
    async def put(self) -> None:
        body = self.get_json_body()
        room = body.get("room", "") if isinstance(body, dict) else ""
        if not (room is None or (isinstance(room, str) and room)):
            raise web.HTTPError(400, "The body must be {\"room\": a room id or null}")
        if room is not None:
            if not gateway.gateway_enabled():
                raise web.HTTPError(409, "Lab is not using a gateway (GatewayClient.url is not set)")
            await gateway.fetch("GET", gateway.room_path(room))  # 404 unless the caller may see it
        gateway.set_active_room(room)
        self.log.info("kernelgate: the active room is now %s", room)
        self.finish(json.dumps(self._state()))


class GatewayProxyHandler(APIHandler):
    """kernelgate's `/api/{rooms...|languages}`, with its status and JSON answer."""

    auth_resource = "kernelgate"

    async def _forward(self, path: str) -> None:
        if not gateway.gateway_enabled():
            raise web.HTTPError(409, "Lab is not using a gateway (GatewayClient.url is not set)")
        if any(part in ("", ".", "..") for part in path.split("/")):
            raise web.HTTPError(400, f"Invalid path {path!r}")
        raw = self.request.body if self.request.method in ("POST", "PUT", "PATCH") else None
        status, answer = await gateway.call(self.request.method, f"/api/{path}", query=self.request.query, raw=raw)
        self.set_status(status)
        self.finish(json.dumps(answer) if answer is not None else None)

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def post(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def put(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def patch(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def delete(self, path: str) -> None:
        await self._forward(path)


def handlers() -> list[tuple[str, type]]:
    return [
        (r"/kernelgate/state", StateHandler),
        (r"/kernelgate/api/((?:rooms|languages)(?:/.*)?)", GatewayProxyHandler),
    ]
