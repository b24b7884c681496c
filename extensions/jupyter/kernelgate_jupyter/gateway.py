"""Calls to kernelgate with the Lab server's own GatewayClient credentials.

The active room is the Lab server's `KERNEL_ROOM` environment variable, which GatewayClient
forwards to kernelgate with every kernel it starts; switching room sets it. A room is
active only while `GatewayClient.url` is set. Errors from kernelgate become
`tornado.web.HTTPError`s with kernelgate's status and message, so Lab gets its JSON error.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote, urlencode

from jupyter_server.gateway.gateway_client import GatewayClient
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

ROOM_VARIABLE = "KERNEL_ROOM"
MAX_FRAME = 16 * 1024 * 1024  # terminal frames are small; bound what one upstream frame may hold


def gateway_enabled() -> bool:
    return bool(GatewayClient.instance().gateway_enabled)


def active_room() -> str | None:
    """The room Lab's contents, terminals and new kernels belong to, or None (stock Lab)."""
    room = os.environ.get(ROOM_VARIABLE) or None
    return room if room and gateway_enabled() else None


def set_active_room(room: str | None) -> None:
    if room:
        os.environ[ROOM_VARIABLE] = room
    else:
        os.environ.pop(ROOM_VARIABLE, None)


def room_path(room: str, *parts: str) -> str:
    """`/api/rooms/{room}/...` with every part URL-quoted (slashes inside parts kept)."""
    return "/api/rooms/" + "/".join(quote(p, safe="/") for p in (room, *parts) if p != "")


def _error_message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    if isinstance(parsed, dict):
        return str(parsed.get("message") or parsed.get("reason") or parsed)
    return str(parsed)


async def call(method: str, path: str, body: Any = None, query: dict | str | None = None,
               raw: bytes | None = None) -> tuple[int, Any]:
    """One kernelgate REST call: its status and decoded JSON answer (None when empty).

    `body` is sent as JSON, `raw` as it is. Raises HTTPError with kernelgate's status and
    message when it answers an error, and 502 when it cannot be reached.
    """
    client = GatewayClient.instance()
    url = client.url.rstrip("/") + path
    if query:
        url += "?" + (query if isinstance(query, str) else urlencode({k: v for k, v in query.items() if v is not None}))
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    if data is None and method in ("POST", "PUT", "PATCH"):
        data = b""
    kwargs = client.load_connection_args(headers={"Content-Type": "application/json"})
    request = HTTPRequest(url, method=method, body=data, allow_nonstandard_methods=True, **kwargs)
    try:
        response = await AsyncHTTPClient().fetch(request)
    except HTTPClientError as e:
        if e.response is None or e.code >= 599:
            raise web.HTTPError(502, f"kernelgate did not answer: {e}") from None
        raise web.HTTPError(e.code, _error_message(e.response.body or b""), reason=e.response.reason) from None
    except OSError as e:
        raise web.HTTPError(502, f"kernelgate cannot be reached: {e}") from None
    try:
        return response.code, json.loads(response.body) if response.body else None
    except ValueError:
        raise web.HTTPError(502, f"kernelgate answered {method} {path} with something not JSON") from None


async def fetch(method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
    """`call`'s decoded answer alone."""
    return (await call(method, path, body, query))[1]


async def connect_websocket(path: str) -> WebSocketClientConnection:
    """A WebSocket to kernelgate; HTTPError with kernelgate's status if it refuses."""
    client = GatewayClient.instance()
    kwargs = client.load_connection_args()
    request = HTTPRequest(client.ws_url.rstrip("/") + path, **kwargs)
    try:
        return await websocket_connect(request, max_message_size=MAX_FRAME)
    except HTTPClientError as e:
        message = _error_message(e.response.body or b"") if e.response is not None else str(e)
        raise web.HTTPError(e.code if e.code < 599 else 502, message) from None
    except OSError as e:
        raise web.HTTPError(502, f"kernelgate cannot be reached: {e}") from None

