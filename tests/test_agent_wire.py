"""The agent writes and reads the same frames as jupyter_client's Session, which the
gateway uses on its side (kernelgate.kernels.agent)."""

from __future__ import annotations

import pytest
from jupyter_client.session import Session

from kernelgate_agent.wire import Wire


@pytest.fixture
def pair():
    key = b"0123456789abcdef"
    return Wire(key, "hmac-sha256"), Session(key=key, signature_scheme="hmac-sha256")


def test_the_gateway_reads_what_the_agent_writes(pair):
    wire, session = pair
    request = session.msg("file_request", {"op": "read", "path": "a.txt"})
    _, received = wire.unpack(session.serialize(request))
    frames = wire.pack("file_reply", {"status": "ok", "name": "caf\u00e9"}, parent=received,
                       idents=[b"client"], buffers=[b"\x00bytes"])
    idents, parts = session.feed_identities(frames, copy=True)
    msg = session.deserialize(parts, content=True, copy=True)
    assert idents == [b"client"]
    assert msg["msg_type"] == "file_reply" and msg["content"] == {"status": "ok", "name": "caf\u00e9"}
    assert msg["parent_header"]["msg_id"] == request["header"]["msg_id"]
    assert [bytes(b) for b in msg["buffers"]] == [b"\x00bytes"]
    second = session.deserialize(session.feed_identities(wire.pack("terminal_exit", {}), copy=True)[1])
    assert second["header"]["msg_id"] != msg["header"]["msg_id"]  # Session refuses replays


def test_the_agent_reads_what_the_gateway_writes(pair):
    wire, session = pair
    msg = session.msg("terminal_input", {"name": "1", "data": "ls\n"})
    frames = [b"id", *session.serialize(msg, ident=None)]
    idents, got = wire.unpack(frames)
    assert idents == [b"id"]
    assert got["header"]["msg_id"] == msg["header"]["msg_id"]
    assert got["content"] == {"name": "1", "data": "ls\n"} and got["buffers"] == []


@pytest.mark.parametrize("spoil", ["key", "content", "frames", "delimiter", "not-json"])
def test_the_agent_refuses_what_is_not_signed_with_its_key(pair, spoil):
    wire, session = pair
    sender = Session(key=b"another key" if spoil == "key" else session.key)
    frames = sender.serialize(sender.msg("kernel_restart_request", {}))
    if spoil == "content":
        frames[-1] = b'{"evil": 1}'
    elif spoil == "frames":
        frames = frames[:4]
    elif spoil == "delimiter":
        frames = frames[1:]
    elif spoil == "not-json":
        frames[2:] = [b"[", b"{}", b"{}", b"{}"]
        frames[1] = wire.sign(frames[2:6])
    with pytest.raises(ValueError):
        wire.unpack(frames)


def test_an_unknown_signature_scheme_is_refused():
    with pytest.raises(ValueError):
        Wire(b"k", "rsa-sha256")
