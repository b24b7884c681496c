"""Jupyter messages between their ZeroMQ form and the two WebSocket protocols.

A message in transit is `Frames`: the channel name and the serialized parts
`[header, parent_header, metadata, content, *buffers]` exactly as the kernel's ZeroMQ
sockets carry them (without identities, delimiter and signature). Keeping the parts as
bytes lets the gateway forward kernel output without decoding and re-encoding content.

WebSocket protocols (jupyter_server's names):
- legacy (no subprotocol): one JSON text frame `{header, parent_header, metadata,
  content, buffers: [], channel}`; a message with buffers travels as one binary frame:
  big-endian uint32 count, uint32 offsets, the JSON, then the buffers.
- v1 (`v1.kernel.websocket.jupyter.org`): one binary frame: little-endian uint64 count of
  offsets, the offsets, the channel name, then the parts.

A client message's `header.username` is set to the user the gateway identified
(`username`), whatever the client wrote: in a room, every member sees who ran what in
`parent_header.username`, and nobody can write another member's name there.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import orjson

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CHANNELS = ("shell", "iopub", "stdin", "control")
#: The channels a client may send on.
CLIENT_CHANNELS = ("shell", "stdin", "control")


class MessageError(ValueError):
    """A frame from a client is not a well-formed Jupyter message."""


@dataclass(slots=True)
class Frames:
    """One message: its channel, parts as bytes, and its decoded header."""

    channel: str
    parts: list[bytes]  # header, parent_header, metadata, content, *buffers
    header: dict
    parent: dict = field(default_factory=dict)  # decoded for kernel messages only

    @property
    def msg_type(self) -> str:
        return self.header.get("msg_type", "")

    @property
    def buffers(self) -> list[bytes]:
        return self.parts[4:]


def read_json(raw: bytes | str):
    """Parse JSON to read fields from it, as `json.loads` would (ValueError if it is not
    JSON), about five times faster: the gateway reads the header and parent of every
    kernel message. orjson parses, and json parses what orjson refuses (NaN, lone
    surrogates). Never for a value the gateway serializes again: orjson reads integers
    past 64 bits as floats."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except RecursionError:  # nested deeper than json's recursion allows
        raise ValueError("JSON nested too deeply") from None


def _object(raw: bytes | str, what: str) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise MessageError(f"{what} is not JSON: {e}") from None
    except RecursionError:
        raise MessageError(f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise MessageError(f"{what} is not a JSON object")
    return value


def _checked(channel: str, header: dict, parts: list[bytes]) -> Frames:
    """Validate a client message's channel and (decoded) header; parts are kept as given
    (the header already carries the caller's username).

    Only the header is the gateway's business (routing, roles, limits); the kernel
    validates the other parts, as it does for any client.
    """
    if channel not in CLIENT_CHANNELS:
        raise MessageError(f"unknown channel {channel!r}")
    if len(parts) < 4:
        raise MessageError("a message needs header, parent_header, metadata and content")
    for key in ("msg_id", "msg_type", "session"):
        if not isinstance(header.get(key), str):
            raise MessageError(f"header.{key} is missing")
    return Frames(channel, parts, header)


# -- legacy JSON protocol --------------------------------------------------------


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)  # json.dumps with options builds one per call


def _dump(value) -> bytes:
    return _ENCODER.encode(value).encode()


def decode_legacy(message: str | bytes, username: str) -> Frames:
    """A client's legacy frame (text JSON, or binary with buffers) as Frames, sent by
    `username`. Every part is serialized again here, so the stamp costs nothing."""
    buffers: list[bytes] = []
    if isinstance(message, bytes):
        if len(message) < 8:
            raise MessageError("binary frame too short")
        count = struct.unpack("!I", message[:4])[0]
        if count < 1 or 4 * (count + 1) > len(message):
            raise MessageError("binary frame has a bad offset table")
        offsets = list(struct.unpack("!" + "I" * count, message[4 : 4 * (count + 1)]))
        offsets.append(len(message))
        if offsets != sorted(offsets) or offsets[0] < 4 * (count + 1):
            raise MessageError("binary frame has a bad offset table")
        chunks = [message[a:b] for a, b in zip(offsets, offsets[1:])]
        message, buffers = chunks[0], chunks[1:]
    msg = _object(message, "message")
    channel = msg.get("channel") or "shell"  # jupyter_server's rule, which GatewayClient relies on
    values = [msg.get(key, {}) for key in ("header", "parent_header", "metadata", "content")]
    for key, value in zip(("header", "parent_header", "metadata", "content"), values):
        if not isinstance(value, dict):
            raise MessageError(f"{key} is not an object")
    values[0]["username"] = username
    return _checked(channel, values[0], [_dump(v) for v in values] + buffers)


def encode_legacy(frames: Frames) -> tuple[bytes, bool]:
    """Frames as a legacy WebSocket frame: (payload, is_binary).

    A text frame of JSON, or a binary frame when the message has buffers. The parts are
    spliced into the JSON as they are (they are JSON already), and text is returned as
    UTF-8 bytes, ready for the socket. Like jupyter_server, the message also carries the
    header's msg_id and msg_type at its top level (GatewayClient reads them there).
    """
    head, parent, metadata, content = frames.parts[:4]
    body = b"".join((
        b'{"msg_id":', _dump(frames.header.get("msg_id", "")),
        b',"msg_type":', _dump(frames.msg_type), b',"header":', head, b',"parent_header":', parent, b',"metadata":', metadata,
        b',"content":', content, b',"buffers":[],"channel":"', frames.channel.encode(), b'"}',
    ))
    buffers = frames.buffers
    if not buffers:
        return body, False
    chunks = [body, *buffers]
    offsets = [4 * (len(chunks) + 1)]
    for chunk in chunks[:-1]:
        offsets.append(offsets[-1] + len(chunk))
    table = struct.pack("!" + "I" * (len(chunks) + 1), len(chunks), *offsets)
    return table + b"".join(chunks), True


# -- v1 binary protocol ----------------------------------------------------------


def decode_v1(message: bytes, username: str) -> Frames:
    """A client's v1 binary frame as Frames, sent by `username`. Its parts are kept as
    they came, but for a header naming someone else, which is serialized again."""
    if not isinstance(message, bytes) or len(message) < 8:
        raise MessageError("v1 frames are binary")
    count = int.from_bytes(message[:8], "little")
    if count < 6 or 8 * (count + 1) > len(message):
        raise MessageError("v1 frame has a bad offset table")
    offsets = [int.from_bytes(message[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    if offsets != sorted(offsets) or offsets[0] != 8 * (count + 1) or offsets[-1] > len(message):
        raise MessageError("v1 frame has a bad offset table")
    try:
        channel = message[offsets[0] : offsets[1]].decode()
    except UnicodeDecodeError:
        raise MessageError("v1 channel name is not UTF-8") from None
    parts = [message[offsets[i] : offsets[i + 1]] for i in range(1, count - 1)]
    header = _object(parts[0], "header")  # json, not orjson: a header becomes a parent
    if header.get("username") != username:
        header["username"] = username
        parts[0] = _dump(header)
    return _checked(channel, header, parts)


def encode_v1(frames: Frames) -> bytes:
    """Frames as one v1 binary WebSocket frame."""
    channel = frames.channel.encode()
    offsets = [8 * (len(frames.parts) + 3)]
    offsets.append(offsets[-1] + len(channel))
    for part in frames.parts:
        offsets.append(offsets[-1] + len(part))
    table = b"".join(o.to_bytes(8, "little") for o in offsets)
    return len(offsets).to_bytes(8, "little") + table + channel + b"".join(frames.parts)
