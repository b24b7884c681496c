"""A test client for the gateway's REST and WebSocket API.

It encodes and decodes WebSocket frames with jupyter_server's own functions, so the
gateway's codec is checked against an implementation it does not share.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

V1 = "v1.kernel.websocket.jupyter.org"


@dataclass
class Response:
    status: int
    body: object
    headers: dict


@dataclass
class Execution:
    reply: dict
    messages: list[dict] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    @property
    def stdout(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.messages
            if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )

    @property
    def results(self) -> list[str]:
        return [
            m["content"]["data"]["text/plain"] for m in self.messages
            if m["header"]["msg_type"] == "execute_result"
        ]


class GatewayClient:
    def __init__(self, url: str, token: str | None = None, scheme: str = "Bearer") -> None:
        self.url = url
        self.headers = {"Authorization": f"{scheme} {token}"} if token else {}

    async def request(self, method: str, path: str, body=None, raw: bytes | None = None,
                      headers: dict | None = None, timeout: float = 120) -> Response:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        request = HTTPRequest(
            self.url + path, method=method, body=data, headers={**self.headers, **(headers or {})},
            request_timeout=timeout, allow_nonstandard_methods=True,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            response = e.response
            if response is None:
                raise
        text = response.body or b""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Response(response.code, parsed, dict(response.headers))

    async def start_kernel(self, name: str = "python3", env: dict | None = None) -> dict:
        body = {"name": name}
        if env is not None:
            body["env"] = env
        response = await self.request("POST", "/api/kernels", body)
        assert response.status == 201, response.body
        return response.body

    async def connect(self, kernel_id: str, protocol: str = "legacy",
                      session_id: str | None = None) -> KernelSocket:
        url = self.url.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
        if session_id:
            url += f"?session_id={session_id}"
        request = HTTPRequest(url, headers=self.headers)
        subprotocols = [V1] if protocol == "v1" else None
        conn = await websocket_connect(request, subprotocols=subprotocols)
        return KernelSocket(conn, protocol == "v1")


class KernelSocket:
    """One kernel WebSocket, with a Jupyter session of its own."""

    def __init__(self, conn, v1: bool) -> None:
        self.conn = conn
        self.v1 = v1
        self.session = uuid.uuid4().hex

    def message(self, channel: str, msg_type: str, content: dict, buffers=None) -> dict:
        return {
            "header": {
                "msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": self.session,
                "username": "test", "version": "5.3",
                "date": datetime.now(timezone.utc).isoformat(),
            },
            "parent_header": {}, "metadata": {}, "content": content,
            "buffers": list(buffers or []), "channel": channel,
        }

    async def send(self, channel: str, msg_type: str, content: dict, buffers=None) -> str:
        msg = self.message(channel, msg_type, content, buffers)
        await self.send_message(msg)
        return msg["header"]["msg_id"]

    async def send_message(self, msg: dict) -> None:
        if self.v1:
            pack = lambda v: json.dumps(v).encode()  # noqa: E731
            parts = [pack(msg[k]) for k in ("header", "parent_header", "metadata", "content")]
            await self.conn.write_message(
                serialize_msg_to_ws_v1(parts + msg["buffers"], msg["channel"]), binary=True
            )
        elif msg["buffers"]:
            await self.conn.write_message(serialize_binary_message(msg), binary=True)
        else:
            plain = {k: v for k, v in msg.items() if k != "buffers"}
            await self.conn.write_message(json.dumps(plain))

    async def recv(self, timeout: float = 30) -> dict:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            raise ConnectionError("WebSocket closed")
        if self.v1:
            channel, parts = deserialize_msg_from_ws_v1(raw)
            msg = {k: json.loads(p) for k, p in zip(
                ("header", "parent_header", "metadata", "content"), parts[:4])}
            msg.update(channel=channel, buffers=[bytes(b) for b in parts[4:]])
            return msg
        if isinstance(raw, bytes):
            msg = deserialize_binary_message(raw)
            msg["buffers"] = [bytes(b) for b in msg["buffers"]]
            return msg
        return json.loads(raw)

    async def execute(self, code: str, timeout: float = 60, stdin: list[str] | None = None) -> Execution:
        """Run code; collect its iopub messages until idle, answering input_requests."""
        msg_id = await self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": stdin is not None, "stop_on_error": True,
        })
        return await self.collect(msg_id, timeout, stdin)

    async def collect(self, msg_id: str, timeout: float = 60, stdin: list[str] | None = None) -> Execution:
        reply, messages, idle = None, [], False
        pending = list(stdin or [])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while reply is None or not idle:
            msg = await self.recv(max(0.1, deadline - loop.time()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["channel"] == "shell":
                reply = msg
            elif msg["channel"] == "stdin" and msg["header"]["msg_type"] == "input_request":
                await self.send("stdin", "input_reply", {"value": pending.pop(0)})
            elif msg["channel"] == "iopub":
                messages.append(msg)
                if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
        return Execution(reply, messages)

    def close(self) -> None:
        self.conn.close()
