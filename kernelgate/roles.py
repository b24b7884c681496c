"""Room roles and what each may do: pure rules, no I/O."""

from __future__ import annotations

from kernelgate.kernels.codec import Frames

#: From least to most.
ROLES = ("viewer", "participant", "admin", "owner")
#: Roles a member can be given (the owner is the room's creator).
GRANTABLE = ("viewer", "participant", "admin")
#: The shell requests a viewer may send: what a client needs to show a kernel. Not
#: completion, inspection or is_complete: kernels run code to answer them (bash_kernel
#: hands the token to `compgen`, so completing `$(touch f)` runs it; IRkernel and
#: ipykernel evaluate expressions in some inspection paths). Not history: it holds code
#: run before the viewer joined, which they never saw.
VIEWER_SHELL = frozenset({"kernel_info_request", "comm_info_request"})


def at_least(role: str | None, needed: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def may_send(role: str, frames: Frames) -> bool:
    """Whether a member with `role` may send this message to a kernel.

    Viewers see outputs and may ask what the kernel is (VIEWER_SHELL); they run no
    code, answer no input and send nothing on control.
    """
    if at_least(role, "participant"):
        return True
    return frames.channel == "shell" and frames.msg_type in VIEWER_SHELL
