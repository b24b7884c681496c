"""AgentClient: the gateway's side of the in-sandbox agent (see kernelgate_agent).

Requests go to the agent's ROUTER and are answered on it; terminal output and exits
come from its PUB and are handed to the registered listeners, with the AgentClient they
came through: code in the sandbox holds the key too and can make its agent publish any
event, so a listener trusts an event only for that sandbox's own terminals. Messages are Jupyter
messages signed with the kernel's session key, exactly as on the kernel's own channels.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import zmq
import zmq.asyncio
from jupyter_client.session import Session

from kernelgate.errors import Unavailable
from kernelgate.kernels.hub import tune_reconnect
from kernelgate_agent.wire import endpoints

log = logging.getLogger(__name__)

#: listener(agent, msg_type, content), for each event of the agent's PUB
Listener = Callable[["AgentClient", str, dict], None]


class AgentClient:
    def __init__(self, connection_info: dict, session: Session) -> None:
        self.session = session
        self.listeners: list[Listener] = []
        self._pending: dict[str, asyncio.Future] = {}
        context = zmq.asyncio.Context.instance()
        request_url, publish_url = endpoints(connection_info)
        self._dealer = context.socket(zmq.DEALER)
        self._sub = context.socket(zmq.SUB)
        for sock in (self._dealer, self._sub):
            sock.linger = 0
            tune_reconnect(sock)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._dealer.connect(request_url)
        self._sub.connect(publish_url)
        self._readers = [
            asyncio.ensure_future(self._read(self._dealer, self._on_reply)),
            asyncio.ensure_future(self._read(self._sub, self._on_event)),
        ]

    def send(self, msg_type: str, content: dict) -> None:
        """Fire and forget (terminal input, resize)."""
        self.session.send(self._dealer, msg_type, content)

    async def request(self, msg_type: str, content: dict, buffers: list[bytes] | None = None,
                      timeout: float = 30.0) -> tuple[dict, list[bytes]]:
        """Send a request; its reply's (content, buffers). Unavailable if none comes."""
        msg = self.session.send(self._dealer, msg_type, content, buffers=buffers)
        future = asyncio.get_running_loop().create_future()
        self._pending[msg["header"]["msg_id"]] = future
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise Unavailable(f"The kernel's sandbox did not answer {msg_type}") from None
        finally:
            self._pending.pop(msg["header"]["msg_id"], None)

    async def _read(self, sock: zmq.asyncio.Socket, handle: Callable[[dict], None]) -> None:
        while True:
            try:
                # Wake at least every second: with several requests sent at once, an
                # awaited recv alone was seen to miss replies (ZeroMQ's edge-triggered FD).
                if not await sock.poll(1000, zmq.POLLIN):
                    continue
                raw = await sock.recv_multipart()
            except (asyncio.CancelledError, zmq.ContextTerminated):
                return
            except zmq.ZMQError:
                if sock.closed:
                    return
                continue
            try:
                _, parts = self.session.feed_identities(raw, copy=True)
                handle(self.session.deserialize(parts, content=True, copy=True))
            except Exception as e:  # noqa: BLE001 - a bad message must not stop the reader
                log.warning("dropped a bad agent message: %s", e)

    def _on_reply(self, msg: dict) -> None:
        future = self._pending.get(msg["parent_header"].get("msg_id"))
        if future is not None and not future.done():
            future.set_result((msg["content"], [bytes(b) for b in msg["buffers"]]))

    def _on_event(self, msg: dict) -> None:
        for listener in list(self.listeners):
            listener(self, msg["header"]["msg_type"], msg["content"])

    def close(self) -> None:
        for task in self._readers:
            task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable("The kernel is gone"))
        self._dealer.close(linger=0)
        self._sub.close(linger=0)
