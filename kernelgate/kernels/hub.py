"""KernelHub: the gateway's one set of ZeroMQ sockets to a kernel, shared by its clients.

Every WebSocket connected to a kernel is a `Client` attached to the kernel's hub. The hub
forwards each client message to the kernel as soon as it arrives and each kernel
message to its clients as soon as it arrives (no timers, no re-encoding of content).
Kernel messages that are already waiting are read together, up to `BATCH` per socket
per event-loop turn (so a flooding kernel takes turns with every other socket and
client), and each client gets them in one `deliver` call:
- iopub goes to every attached client (all members of a room see the same outputs);
- shell, control and stdin replies go to the clients that sent requests in the reply's
  parent session.
A client that disconnects with a `session_id` leaves a bounded buffer behind; a client
that reconnects with the same `session_id` within `buffer_seconds` receives what it
missed, in order. A kernel keeps at most `max_buffers` such buffers, dropping the oldest
first (anyone can connect and leave with a new session_id). A client that attaches
with the `session_id` of a client still attached replaces it: it takes over the old
client's Jupyter sessions (the replies to requests sent on the old connection come to
it) and the old client is closed. A reconnecting client often arrives before its old
connection is seen to close, and some old connections never close (jupyter_server's
GatewayWebSocketConnection leaks the connection it was still opening when its browser
socket went away).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections import deque
from typing import Callable, Protocol

import zmq
import zmq.asyncio
from jupyter_client.session import DELIM, Session

from kernelgate.kernels.codec import Frames, read_json

log = logging.getLogger(__name__)

_SOCKET_TYPES = {"shell": zmq.DEALER, "control": zmq.DEALER, "stdin": zmq.DEALER, "iopub": zmq.SUB}

#: Messages read from one socket in one event-loop turn; more wait for the next turn.
BATCH = 64
#: ZeroMQ reconnect interval to a kernel's sockets, first and largest (ms). A kernel binds
#: its sockets only once it has loaded; ZeroMQ's default backoff, up to 500 ms here
#: before, made the gateway connect up to a third of a second after that.
RECONNECT_MS = (10, 50)
#: How long wait_ready gives iopub after a kernel_info_reply before asking again (s).
IOPUB_GRACE = 0.05

#: Close code of a client replaced by a newer connection of its session (RFC 6455's
#: normal closure: clients such as JupyterLab do not reconnect after it).
REPLACED = 1000

#: Flags as plain ints: combining pyzmq's enum flags builds a new enum member each time.
_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_LAST = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)


def tune_reconnect(sock: zmq.Socket) -> None:
    """Reconnect to a kernel's socket quickly (ipc attempts cost next to nothing)."""
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS[0])
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MS[1])


class Client(Protocol):
    """What the hub needs of a connected client (a WebSocket connection)."""

    session_id: str

    def deliver(self, batch: list[Frames]) -> None:
        """Send messages to the client, in order; must not block."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Disconnect the client (the kernel is gone)."""


class Observer(Protocol):
    """Sees every message through the hub (activity, execution limits)."""

    def to_kernel(self, frames: Frames) -> None:
        """A client's message, just before it is sent to the kernel."""

    def from_kernel(self, frames: Frames) -> bool:
        """A kernel's message, before it is routed; False drops it."""


class _Buffer:
    """Messages kept for a disconnected client session, bounded in count and bytes."""

    def __init__(self, sessions: set[str], max_messages: int, max_bytes: int) -> None:
        self.sessions = sessions
        self.messages: deque[Frames] = deque()
        self.size = 0
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.dropped = 0
        self.expiry: asyncio.TimerHandle | None = None

    def add(self, frames: Frames) -> None:
        self.messages.append(frames)
        self.size += sum(len(p) for p in frames.parts)
        while self.messages and (
            len(self.messages) > self.max_messages or self.size > self.max_bytes
        ):
            old = self.messages.popleft()
            self.size -= sum(len(p) for p in old.parts)
            self.dropped += 1


class _Socket:
    """One of the hub's ZeroMQ sockets, read by the event loop without zmq.asyncio.

    ZeroMQ's FD signals only that the socket's events may have changed, and only once:
    it is armed again by reading EVENTS (which `drain` does before every read), and a
    send can consume the signal. So the socket is drained whenever the FD signals, after
    every send if EVENTS says a message is waiting, and again on the next loop turn when
    BATCH messages were read. Messages
    the kernel cannot take yet (its high-water mark) wait in `outbox`, in order, until
    the FD signals that it can.
    """

    def __init__(self, sock: zmq.Socket, receive: Callable[[list[list[bytes]]], None],
                 max_frame: int = 0) -> None:
        self.sock = sock
        self.receive = receive
        self.max_frame = max_frame
        self.oversized = 0  # messages dropped for a frame over max_frame
        self.outbox: deque[list] = deque()
        self._loop = asyncio.get_running_loop()
        self._fd = sock.FD
        self._next: asyncio.Handle | None = None
        self._loop.add_reader(self._fd, self.drain)
        self._schedule()  # anything that arrived before the reader was added

    def send(self, parts: list) -> None:
        if not self.outbox:
            try:
                _send_message(self.sock, parts)
            except zmq.Again:
                self.outbox.append(parts)
        else:
            self.outbox.append(parts)
        self._check_events()

    def _check_events(self) -> None:
        """Drain again if the FD's signal may have been used up: a message waits, or the
        outbox has something and the kernel can take it now."""
        events = self.sock.getsockopt(zmq.EVENTS)
        if events & _POLLIN or (self.outbox and events & _POLLOUT):
            self._schedule()

    def _schedule(self) -> None:
        if self._next is None:
            self._next = self._loop.call_soon(self.drain)

    def drain(self) -> None:
        """Send what waits in the outbox, then read up to BATCH messages and hand them on.

        EVENTS is asked before each read (ZeroMQ's documented way to re-arm the FD):
        reading until `zmq.Again` cost more than the read itself, in building the
        exception.
        """
        if self._next is not None:  # called by the reader with a drain already scheduled
            self._next.cancel()
            self._next = None
        if self.sock.closed:
            return
        batch: list[list[bytes]] = []
        read = 0
        try:
            while self.outbox:
                _send_message(self.sock, self.outbox[0])
                self.outbox.popleft()
        except zmq.Again:
            pass
        try:
            while True:
                events = self.sock.getsockopt(zmq.EVENTS)
                if not events & _POLLIN:
                    if self.outbox and events & _POLLOUT:
                        self._schedule()  # the kernel can take the outbox again
                    break
                if read == BATCH:
                    self._schedule()  # more wait: after the other sockets and clients
                    break
                read += 1
                message = _receive_message(self.sock, self.max_frame)
                if message is None:
                    self.oversized += 1
                    if self.oversized == 1:  # a kernel can send them in a loop: once is enough
                        log.warning("dropped a kernel message with a frame over %d bytes (later "
                                    "ones from this socket are dropped silently)", self.max_frame)
                else:
                    batch.append(message)
        except zmq.ZMQError as e:  # the socket or its context is closing
            if not self.sock.closed:
                log.warning("socket error: %s", e)
        if batch:
            self.receive(batch)

    def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
        self._loop.remove_reader(self._fd)
        self.sock.close(linger=0)


class KernelHub:
    """Routes messages between one kernel's ZeroMQ sockets and its attached clients,
    showing each to the `observer` first.

    With `max_frame`, a kernel message with a frame larger than that many bytes is
    dropped as it is read, with a warning: the code in a kernel can send anything, and
    the gateway does not verify, decode, buffer or forward what no client could take.
    (ZeroMQ's own MAXMSGSIZE would drop it earlier, but it also ends the connection for
    good: it is not reconnected.)
    """

    def __init__(
        self,
        connection_info: dict,
        session: Session,
        observer: Observer,
        buffer_seconds: float = 60.0,
        buffer_messages: int = 10_000,
        buffer_bytes: int = 32 * 1024 * 1024,
        max_frame: int = 0,
        max_buffers: int = 64,
    ) -> None:
        self.session = session
        self.observer = observer
        self.buffer_seconds = buffer_seconds
        self.buffer_messages = buffer_messages
        self.buffer_bytes = buffer_bytes
        self.max_buffers = max_buffers
        self.clients: list[Client] = []
        self._client_sessions: dict[int, set[str]] = {}
        self._buffers: dict[str, _Buffer] = {}
        self._ready_waiters: list[tuple[str, asyncio.Future]] = []
        self._iopub_seen = asyncio.Event()
        self._outgoing: dict[int, tuple[Client, list[Frames]]] = {}
        self._sockets: dict[str, _Socket] = {}
        context = zmq.asyncio.Context.instance()  # the gateway's one context; plain sockets
        identity = uuid.uuid4().hex.encode()
        for channel, kind in _SOCKET_TYPES.items():
            sock = zmq.Socket(context, kind)
            sock.linger = 0
            tune_reconnect(sock)
            if kind == zmq.SUB:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            else:  # shell and stdin share an identity: the kernel sends input_request
                sock.setsockopt(zmq.IDENTITY, identity)  # to the shell requester's
            sock.connect(_endpoint(connection_info, channel))
            self._sockets[channel] = _Socket(
                sock, lambda batch, c=channel: self._receive(c, batch), max_frame
            )

    # -- clients -----------------------------------------------------------------

    def attach(self, client: Client) -> None:
        """Attach a client, in place of an attached client with its session_id; replay
        what its session missed while it was away."""
        sessions: set[str] = set()
        for old in [c for c in self.clients if client.session_id and c.session_id == client.session_id]:
            self.clients.remove(old)
            sessions |= self._client_sessions.pop(id(old))
            old.close(REPLACED, "Replaced by a newer connection of its session")
        self.clients.append(client)
        self._client_sessions[id(client)] = sessions
        buffer = self._buffers.pop(client.session_id, None) if client.session_id else None
        if buffer is not None:
            if buffer.expiry:
                buffer.expiry.cancel()
            sessions |= buffer.sessions
            if buffer.dropped:
                log.warning(
                    "session %s: %d buffered messages dropped", client.session_id, buffer.dropped
                )
            if buffer.messages:
                client.deliver(list(buffer.messages))

    def detach(self, client: Client, undelivered: list[Frames] | None = None) -> None:
        """Detach a client; buffer for its session_id if it gave one, starting with
        `undelivered`, the batch it was being given when it turned out to be closing."""
        if client not in self.clients:
            return
        self.clients.remove(client)
        sessions = self._client_sessions.pop(id(client), set())
        if client.session_id and not any(c.session_id == client.session_id for c in self.clients):
            buffer = _Buffer(sessions, self.buffer_messages, self.buffer_bytes)
            buffer.expiry = asyncio.get_running_loop().call_later(
                self.buffer_seconds, self._buffers.pop, client.session_id, None
            )
            self._buffers[client.session_id] = buffer
            while len(self._buffers) > self.max_buffers:  # dicts keep insertion order
                self._drop_buffer(next(iter(self._buffers)))
            for frames in undelivered or ():
                buffer.add(frames)

    def _drop_buffer(self, session_id: str) -> None:
        buffer = self._buffers.pop(session_id)
        if buffer.expiry:
            buffer.expiry.cancel()
        log.info("session %s: its buffer was dropped for a newer one", session_id)

    def send(self, client: Client, frames: Frames) -> None:
        """Sign and forward a client's message to the kernel now (from a client that was
        just replaced too: its replies go to no one, its iopub to everyone)."""
        sessions = self._client_sessions.get(id(client))
        if sessions is not None:
            sessions.add(frames.header["session"])
        self.observer.to_kernel(frames)
        self.send_to_kernel(frames)

    def send_to_kernel(self, frames: Frames) -> None:
        """Sign and send a message on its channel (no client bookkeeping)."""
        signature = self.session.sign(frames.parts[:4])
        self._sockets[frames.channel].send([DELIM, signature, *frames.parts])

    # -- readiness ---------------------------------------------------------------

    async def wait_ready(self, timeout: float, alive: Callable[[], "asyncio.Future[bool]"]) -> dict:
        """Wait until the kernel answers kernel_info on shell and iopub is flowing.

        Returns the kernel_info_reply content. Raises TimeoutError after `timeout`
        seconds, RuntimeError if `alive()` says the kernel died meanwhile.
        """
        self._iopub_seen.clear()
        deadline = time.monotonic() + timeout
        interval = 0.05
        while True:
            frames = self._request("kernel_info_request")
            future = asyncio.get_running_loop().create_future()
            self._ready_waiters.append((frames.header["msg_id"], future))
            try:
                reply = await asyncio.wait_for(asyncio.shield(future), interval)
            except asyncio.TimeoutError:
                interval = min(interval * 2, 1.0)
            else:  # the kernel answers; iopub shows this request's status unless its
                try:  # subscription is still on its way: then the next request's will
                    await asyncio.wait_for(self._iopub_seen.wait(), IOPUB_GRACE)
                    return reply
                except asyncio.TimeoutError:
                    pass
            if not await alive():
                raise RuntimeError("the kernel died while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kernel_info_reply within {timeout} s")

    def _request(self, msg_type: str, content: dict | None = None) -> Frames:
        msg = self.session.msg(msg_type, content or {})
        parts = [self.session.pack(msg[k]) for k in ("header", "parent_header", "metadata", "content")]
        frames = Frames("shell", parts, msg["header"])
        self.send_to_kernel(frames)
        return frames

    def publish(self, msg_type: str, content: dict, parent: dict | None = None) -> None:
        """Send a message of the gateway's own to every client on iopub."""
        msg = self.session.msg(msg_type, content, parent=parent or {})
        parts = [self.session.pack(msg[k]) for k in ("header", "parent_header", "metadata", "content")]
        self._route(Frames("iopub", parts, msg["header"]), parent_session=None)
        self._flush()  # with whatever a batch being received routed before it, in order

    def refuse(self, client: Client, frames: Frames, reason: str, ename: str = "PermissionError") -> None:
        """Answer a request the kernel never gets with an error reply, to the client alone.

        As a kernel would: an execute_request also gets an iopub `error` (what frontends
        show in the cell), and every shell request an iopub `idle` status, so that the
        client's request ends (JupyterLab waits for both the reply and the idle)."""
        if not frames.msg_type.endswith("_request"):
            return
        error = {"ename": ename, "evalue": reason, "traceback": [f"{ename}: {reason}"]}
        messages = []
        if frames.msg_type == "execute_request":
            messages.append(("iopub", "error", error))
        messages.append((frames.channel, frames.msg_type[: -len("_request")] + "_reply",
                         {"status": "error", **error}))
        if frames.channel == "shell":
            messages.append(("iopub", "status", {"execution_state": "idle"}))
        batch = []
        for channel, msg_type, content in messages:
            msg = self.session.msg(msg_type, content, parent=frames.header)
            parts = [self.session.pack(msg[k]) for k in ("header", "parent_header", "metadata", "content")]
            batch.append(Frames(channel, parts, msg["header"]))
        client.deliver(batch)

    def publish_status(self, state: str) -> None:
        """Tell every client on iopub that the kernel is `state` (restarting, dead)."""
        self.publish("status", {"execution_state": state})

    # -- kernel -> clients -------------------------------------------------------

    def _receive(self, channel: str, batch: list[list[bytes]]) -> None:
        for raw in batch:
            try:
                frames = _parse_kernel_message(channel, raw, self.session)
            except (ValueError, KeyError, UnicodeDecodeError) as e:
                log.warning("dropped a malformed %s message from a kernel: %s", channel, e)
                continue
            if channel == "iopub":
                self._iopub_seen.set()
            elif frames.msg_type == "kernel_info_reply" and self._ready_waiters:
                self._resolve_ready(frames.parent.get("msg_id"), frames)
            if self.observer.from_kernel(frames):
                self._route(frames, frames.parent.get("session"))
        self._flush()

    def _resolve_ready(self, msg_id: str | None, frames: Frames) -> None:
        for i, (waited, future) in enumerate(self._ready_waiters):
            if waited == msg_id:
                del self._ready_waiters[: i + 1]
                if not future.done():
                    future.set_result(json.loads(frames.parts[3]))  # exact: returned to callers
                return

    def _route(self, frames: Frames, parent_session: str | None) -> None:
        """Queue a message for its clients (sent by `_flush`) and buffer it for absent ones."""
        if frames.channel == "iopub":
            for client in self.clients:
                self._queue(client, frames)
            for buffer in self._buffers.values():
                buffer.add(frames)
            return
        for client in self.clients:
            if parent_session in self._client_sessions[id(client)]:
                self._queue(client, frames)
        for buffer in self._buffers.values():
            if parent_session in buffer.sessions:
                buffer.add(frames)

    def _queue(self, client: Client, frames: Frames) -> None:
        queued = self._outgoing.get(id(client))
        if queued is None:
            self._outgoing[id(client)] = (client, [frames])
        else:
            queued[1].append(frames)

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, {}
        for client, batch in outgoing.values():
            client.deliver(batch)

    def close(self) -> None:
        """Close the sockets, disconnect every client and stop routing."""
        for client in list(self.clients):
            client.close(1001, "Kernel shut down")
        self.clients.clear()
        self._outgoing.clear()
        for sock in self._sockets.values():
            sock.close()
        for buffer in self._buffers.values():
            if buffer.expiry:
                buffer.expiry.cancel()
        self._buffers.clear()
        for _, future in self._ready_waiters:
            future.cancel()
        self._ready_waiters.clear()


def _send_message(sock: zmq.Socket, parts: list) -> None:
    """`send_multipart(parts, NOBLOCK, copy=False)` for the hub's hot path: zmq.Again
    if the kernel cannot take the message now (ZeroMQ decides on its first frame)."""
    for part in parts[:-1]:
        sock.send(part, _MORE, copy=False)
    sock.send(parts[-1], _LAST, copy=False)


def _receive_message(sock: zmq.Socket, max_frame: int = 0) -> list[bytes] | None:
    """`recv_multipart(NOBLOCK)` for a socket known to have a message waiting (ZeroMQ
    makes a message readable only once all its frames are there), without pyzmq's
    Python-level option lookup per frame: each frame says whether more follow.
    None, with no frame copied, if a frame is larger than `max_frame` (0: no limit)."""
    parts: list[bytes] | None = []
    while True:
        frame = sock.recv(_LAST, copy=False)
        if max_frame and len(frame) > max_frame:
            parts = None
        if parts is not None:
            parts.append(frame.bytes)
        if not frame.more:
            return parts


def _endpoint(info: dict, channel: str) -> str:
    port = info[f"{channel}_port"]
    if info["transport"] == "ipc":
        return f"ipc://{info['ip']}-{port}"
    return f"{info['transport']}://{info['ip']}:{port}"


def _parse_kernel_message(channel: str, raw: list[bytes], session: Session) -> Frames:
    """Split a kernel's multipart message into Frames, with header and parent decoded.

    The signature must be this kernel's: the socket files live in a folder the sandbox
    can write, so a socket path could be made to lead to another kernel, whose messages
    (signed with another key) must never reach this kernel's clients.
    """
    idx = raw.index(DELIM)
    signature, parts = raw[idx + 1], raw[idx + 2 :]
    if len(parts) < 4:
        raise ValueError("too few parts")
    if session.auth is not None and not hmac.compare_digest(session.sign(parts[:4]), signature):
        raise ValueError("bad signature")
    header = read_json(parts[0])
    parent = read_json(parts[1]) if parts[1] != b"{}" else {}
    if not isinstance(header, dict) or not isinstance(parent, dict):
        raise ValueError("header and parent_header must be objects")
    return Frames(channel, parts, header, parent)
