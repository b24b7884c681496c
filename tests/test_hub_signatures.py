"""A kernel's hub accepts only messages signed with that kernel's key."""

import pytest
from jupyter_client.session import DELIM, Session

from kernelgate.kernels.hub import _parse_kernel_message


def signed(session: Session, msg_type: str = "stream") -> list[bytes]:
    msg = session.msg(msg_type, {"name": "stdout", "text": "hi"})
    parts = [session.pack(msg[k]) for k in ("header", "parent_header", "metadata", "content")]
    return [DELIM, session.sign(parts), *parts]


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
