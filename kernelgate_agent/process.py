"""Starting the kernel: the agent's child, in a session of its own, killed with the agent.

This module imports little, so that `python -m kernelgate_agent` starts the kernel before
it loads the rest of the agent (asyncio, zmq): the two then load side by side.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

_PR_SET_PDEATHSIG = 1


def start_kernel(argv: list[str], cwd: str) -> subprocess.Popen:
    """Start the kernel process; OSError if it cannot be executed.

    It gets a session of its own (signals to its group reach none of the agent's other
    children) and is killed if the agent dies (local kernels have no container to take
    them down).
    """
    agent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not in the child

    def in_child() -> None:
        os.setsid()
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != agent:  # the agent died before prctl took effect
            os._exit(1)

    return subprocess.Popen(argv, cwd=cwd, preexec_fn=in_child)


def signal_group(process: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the kernel's process group (a group of its own); gone is fine."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
