"""The kernel channels WebSocket: /api/kernels/{id}/channels.

Speaks the legacy JSON protocol when the client offers no subprotocol (jupyter_server's
GatewayClient forces it) and `v1.kernel.websocket.jupyter.org` when offered. Each open
socket is a client of the kernel's KernelHub, under its `?session_id=` scoped by the
caller's user name (one user cannot take over another's connection or its replay buffer).
Every client message is stamped with the caller's user name (`header.username`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from kernelgate.handlers.backlog import CLOSE_TOO_SLOW, Backlog
from kernelgate.handlers.base import GatewayMixin
from kernelgate.handlers.kernels import KernelAccess
from kernelgate.kernels.codec import (
    V1_PROTOCOL,
    Frames,
    MessageError,
    decode_legacy,
    decode_v1,
    encode_legacy,
    encode_v1,
)
from kernelgate.kernels.registry import Kernel
from kernelgate.roles import may_send

log = logging.getLogger("kernelgate.channels")

#: A legacy client message larger than this (bytes) is decoded in a thread.
LARGE_LEGACY = 64 * 1024
#: Close code when the credentials of an open socket expire or its user leaves the room
#: (RFC 6455: policy violation).
CLOSE_EXPIRED = 1008


class ChannelsHandler(KernelAccess, GatewayMixin, WebSocketHandler):
    kernel: Kernel | None = None
    session_id = ""
    backlog: Backlog | None = None
    _expiry = None

    async def get(self, kernel_id: str):
        """Authorize and find the kernel before the upgrade (404 as JSON, not a socket)."""
        self.kernel = self.visible_kernel(kernel_id)
        session_id = self.get_query_argument("session_id", "")
        self.session_id = json.dumps([self.identity.user, session_id]) if session_id else ""
        await super().get(kernel_id)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return V1_PROTOCOL if V1_PROTOCOL in subprotocols else None

    def get_compression_options(self):
        return None  # compression costs more latency than it saves on a local network

    def open(self, kernel_id: str):
        self.set_nodelay(True)
        self._v1 = self.selected_subprotocol == V1_PROTOCOL
        self.backlog = Backlog(self.services.registry.client_backlog)
        if self.identity.expires_at is not None:
            delay = max(0.0, self.identity.expires_at - time.time())
            self._expiry = IOLoop.current().call_later(delay, self.close, CLOSE_EXPIRED, "Token expired")
        self.kernel.hub.attach(self)

    def on_message(self, message: str | bytes):
        """Decode a client message and forward it to the kernel.

        The legacy protocol parses the whole message: one over LARGE_LEGACY bytes is
        decoded in a thread. Tornado reads the next message only once the coroutine
        returned here is done, so messages keep their order.
        """
        if not self._v1 and len(message) > LARGE_LEGACY:
            return self._forward_large(message)
        try:
            user = self.identity.user
            frames = decode_v1(message, user) if self._v1 else decode_legacy(message, user)
        except MessageError as e:
            log.warning("kernel %s: dropped a malformed client message: %s", self.kernel.id, e)
            return None
        self._forward(frames)
        return None

    async def _forward_large(self, message: str | bytes) -> None:
        try:
            frames = await asyncio.to_thread(decode_legacy, message, self.identity.user)
        except MessageError as e:
            log.warning("kernel %s: dropped a malformed client message: %s", self.kernel.id, e)
            return
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            self._forward(frames)  # not after the socket (or the kernel) closed meanwhile

    def _forward(self, frames: Frames) -> None:
        role = self.services.rooms.kernel_role(self.identity, self.kernel)  # roles change live
        if role is None:
            self.close(CLOSE_EXPIRED, "No longer a member")
        elif not may_send(role, frames):
            self.kernel.hub.refuse(self, frames, f"A {role} of the room may not send {frames.msg_type}")
        elif frames.msg_type == "execute_request" and (wait := self.services.execute_limit.take(self.identity.user)):
            limit = self.services.execute_limit
            self.kernel.hub.refuse(
                self, frames, f"More than {limit.per_minute} executions per minute "
                f"(burst {limit.burst}): retry in {wait:.1f} s", ename="RateLimited")
        else:
            self.kernel.hub.send(self, frames)

    def deliver(self, batch: list[Frames]) -> None:
        """Send kernel messages to this client, one WebSocket message each, in order
        (called by the hub, never blocks).

        What the client has not read waits in the gateway, up to
        KernelRegistry.client_backlog bytes beyond the batch it was given when it had
        read everything (a replay can be larger): a client further behind is disconnected
        (CLOSE_TOO_SLOW), and what it missed is kept for its session's reconnection.
        """
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            self.kernel.hub.detach(self, batch)  # kept for the session's reconnection
            return
        if self._v1:
            payloads = [(encode_v1(frames), True) for frames in batch]
        else:
            payloads = [encode_legacy(frames) for frames in batch]
        size = sum(len(payload) for payload, _ in payloads)
        if not self.backlog.admits(size):
            self._drop_slow(batch)
            return
        written = None
        for sent, (payload, binary) in enumerate(payloads):
            try:
                written = self.write_message(payload, binary=binary)
            except WebSocketClosedError:
                self.kernel.hub.detach(self, batch[sent:])  # kept for the reconnection
                break
        if written is not None:  # the stream sends in order: its last write is enough
            self.backlog.track(written, size)

    def _drop_slow(self, undelivered: list[Frames]) -> None:
        """Disconnect a client that leaves too much unread; its session's buffer keeps the
        rest, for when it comes back."""
        log.warning("kernel %s: disconnected a client with %d bytes unread (client_backlog: %d)",
                    self.kernel.id, self.backlog.unsent, self.backlog.limit)
        self.kernel.hub.detach(self, undelivered)
        self.close(CLOSE_TOO_SLOW, "Too slow: more output unread than the gateway keeps")

    def on_close(self):
        if self._expiry is not None:
            IOLoop.current().remove_timeout(self._expiry)
        if self.kernel and self.kernel.hub:
            self.kernel.hub.detach(self)
