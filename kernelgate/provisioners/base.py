"""What the gateway asks of a kernel's provisioner beyond jupyter_client's
KernelProvisionerBase: declared hooks, with defaults, that the registry calls directly.

Launch keyword arguments the registry hands to `pre_launch` (through `start_kernel` and
`restart_kernel`), besides jupyter_client's own:
- `cwd`: a room's host folder (or a local solo kernel's scratch folder);
- `kernel_prefix`: sandboxes only, the argv put before the kernelspec's (a room's
  project variables and folder, kernelgate.environment.project), resolved by the
  caller: a provisioner reads no workspace files.
"""

from __future__ import annotations

from jupyter_client.provisioning import LocalProvisioner


class KernelgateProvisioner:
    """Mixin of every kernelgate provisioner; put it before the KernelProvisionerBase
    subclass in the bases."""

    async def settle(self) -> None:
        """Called once when a new sandbox's kernel first answers, before anyone can use
        it: take back what was given only for the start (Docker: the start-up CPU
        allowance). If it raises, the gateway kills the sandbox and the start fails."""

    async def exit_reason(self) -> str:
        """Why the kernel's sandbox stopped, in words for users ('' if unknown); called
        after the kernel died."""
        return ""

    async def get_provisioner_info(self) -> dict:
        """jupyter_client's provisioner info, JSON-safe (the store keeps it to re-adopt
        room kernels): the connection info's key as text."""
        info = await super().get_provisioner_info()
        info["connection_info"] = {
            k: v.decode() if isinstance(v, bytes) else v for k, v in info.get("connection_info", {}).items()
        }
        return info


class LocalKernelProvisioner(KernelgateProvisioner, LocalProvisioner):
    """jupyter_client's local provisioner (kernels as local, unsandboxed processes, the
    fallback without Docker) with kernelgate's hooks: nothing to settle, no reason known."""
