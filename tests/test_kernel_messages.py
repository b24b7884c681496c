"""What the gateway accepts from a kernel: only messages signed with that kernel's key,
JSON by json's rules, and status messages whatever their content."""

import json

import pytest
from jupyter_client.session import DELIM, Session

from kernelgate.kernels.codec import Frames, MessageError, decode_legacy, read_json
from kernelgate.kernels.hub import _parse_kernel_message
from kernelgate.kernels.watch import KernelWatch


def signed(session: Session, msg_type: str = "stream", content: dict | None = None) -> list[bytes]:
    msg = session.msg(msg_type, {"name": "stdout", "text": "hi"} if content is None else content)
    parts = [session.pack(msg[k]) for k in ("header", "parent_header", "metadata", "content")]
    return [DELIM, session.sign(parts), *parts]


def resigned(session: Session, raw: list[bytes]) -> list[bytes]:
    return [DELIM, session.sign(raw[2:6]), *raw[2:]]


def test_own_signature_accepted_other_rejected():
    mine, other = Session(key=b"k" * 32), Session(key=b"x" * 32)
    frames = _parse_kernel_message("iopub", signed(mine), mine)
    assert frames.msg_type == "stream"
    with pytest.raises(ValueError, match="signature"):
        _parse_kernel_message("iopub", signed(other), mine)
    forged = signed(mine)
    forged[-1] = b'{"name": "stdout", "text": "changed"}'
    with pytest.raises(ValueError, match="signature"):
        _parse_kernel_message("iopub", forged, mine)


def test_headers_are_read_as_json_reads_them():
    """orjson reads headers fast; what it refuses and json accepts is still accepted."""
    session = Session(key=b"k" * 32)
    raw = signed(session)
    header = json.loads(raw[2])
    header["odd"] = float("nan")
    header["name"] = "\ud800"  # a lone surrogate, as json.dumps escapes it
    raw[2] = json.dumps(header).encode()
    frames = _parse_kernel_message("iopub", resigned(session, raw), session)
    assert frames.msg_type == "stream" and frames.header["name"] == "\ud800"
    raw[2] = b'{"msg_type": "stream", '
    with pytest.raises(ValueError):
        _parse_kernel_message("iopub", resigned(session, raw), session)
    raw[2] = b'["not", "an", "object"]'
    with pytest.raises(ValueError, match="objects"):
        _parse_kernel_message("iopub", resigned(session, raw), session)


DEEP = b"[" * 100_000 + b"]" * 100_000  # past orjson's depth limit and json's recursion


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'{"execution_state": 3}', DEEP])
def test_a_status_with_odd_content_is_forwarded_and_changes_nothing(content):
    watch = KernelWatch(publish=lambda *a: None, interrupt=None, restart=None, tier="low",
                        exec_timeout=0, max_output=0)
    watch.execution_state = "idle"
    header = {"msg_id": "1", "msg_type": "status", "session": "s"}
    frames = Frames("iopub", [json.dumps(header).encode(), b"{}", b"{}", content], header, {})
    assert watch.from_kernel(frames) is True
    assert watch.execution_state == "idle"


def test_a_client_message_nested_too_deeply_is_a_message_error():
    with pytest.raises(MessageError, match="nested"):
        decode_legacy('{"header": ' + DEEP.decode() + "}", "alice")
    with pytest.raises(ValueError):
        read_json(DEEP)


def test_the_gateways_own_probes_do_not_change_the_kernels_state():
    watch = KernelWatch(publish=lambda *a: None, interrupt=None, restart=None, tier="low",
                        exec_timeout=0, max_output=0, own_session="gateway")
    watch.execution_state = "idle"

    def status(state: str, parent_session: str) -> Frames:
        header = {"msg_id": "2", "msg_type": "status", "session": "k"}
        parent = {"msg_id": "1", "msg_type": "kernel_info_request", "session": parent_session}
        content = json.dumps({"execution_state": state}).encode()
        return Frames("iopub", [json.dumps(header).encode(), json.dumps(parent).encode(), b"{}", content],
                      header, parent)

    assert watch.from_kernel(status("busy", "gateway")) is True  # still forwarded
    assert watch.execution_state == "idle"
    watch.from_kernel(status("busy", "a client"))
    assert watch.execution_state == "busy"
