"""Room roles and what each may do: pure rules, no I/O."""

from __future__ import annotations

from kernelgate.kernels.codec import Frames

#: From least to most.
ROLES = ("viewer", "participant", "admin", "owner")
#: Roles a member can be given (the owner is the room's creator).
GRANTABLE = ("viewer", "participant", "admin")
#: Shell requests that change nothing, which viewers may send (clients need them).
READ_ONLY_SHELL = {
    "kernel_info_request", "comm_info_request", "inspect_request", "complete_request",
    "history_request", "is_complete_request",
}


def at_least(role: str | None, needed: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def may_send(role: str, frames: Frames) -> bool:
    """Whether a member with `role` may send this message to a kernel.

    Viewers see outputs and may ask read-only questions; they execute nothing, answer
    no input and send nothing on control.
    """
    if at_least(role, "participant"):
        return True
    return frames.channel == "shell" and frames.msg_type in READ_ONLY_SHELL
