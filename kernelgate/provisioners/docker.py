"""DockerProvisioner: one locked-down container per kernel, reached over ipc sockets.

A kernelspec selects it through its metadata::

    "metadata": {"kernel_provisioner": {"provisioner_name": "docker-provisioner",
                                        "config": {"image": "python", "tier": "low"}}}

`image` names a folder of images/ (resolved to its content-hashed tag), `tier` a
configured tier (kernelgate.tiers). The kernel manager has already chosen the ipc
transport, the kernel's folder and its socket folder (kernelgate.socketdir): the socket
folder is bind-mounted writable into the container at the same path, so the container
needs no network; the connection file beside it, the gateway's, is mounted read-only.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase
from traitlets import Float, Int, Unicode

from kernelgate import socketdir
from kernelgate.engine import KERNEL_LABEL, OWNER_LABEL, DockerEngine, ImageMissing
from kernelgate.environment import project
from kernelgate.images import ImageBuilder, ImageError
from kernelgate.provisioners.base import KernelgateProvisioner
from kernelgate.sandbox import HOME, Mount, SandboxSpec
from kernelgate.tiers import Tiers
from kernelgate.userns import UserNamespace

#: Where a room's shared workspace is mounted (install containers mount it there too).
WORKSPACE = project.MOUNT


class DockerProvisioner(KernelgateProvisioner, KernelProvisionerBase):
    """Runs the kernel in a Docker container: the reference sandbox of kernelgate.

    The container is confined by its tier's SandboxSpec (kernelgate.sandbox): an
    unprivileged user, a read-only root filesystem, no capabilities, no-new-privileges,
    no network, the tier's limits and runtime, tmpfs for /tmp and the home directory,
    docker-init as PID 1 to reap zombies and forward signals to the kernel. It starts
    with the tier's start-up CPU allowance, which `settle` takes away once the kernel
    answers.
    """

    image = Unicode(help="Name of the kernel's image: a folder of images/.").tag(config=True)
    tier = Unicode("", help="Tier whose limits apply; empty = the default tier.").tag(config=True)
    uid = Int(1000, help="Unprivileged uid (and gid) the kernel runs as.").tag(config=True)
    socket_dir_size = Unicode(
        "1m", help="Size of the tmpfs holding a kernel's sockets (when the gateway is root)."
    ).tag(config=True)
    tmp_inodes = Int(
        65536, help="Files each of a kernel's tmpfs (/tmp, home) may hold; 0 = as many as its"
        " memory allows.",
    ).tag(config=True)
    log_size = Unicode("1m", help="Largest container log kept by Docker (json-file max-size).").tag(config=True)
    start_cpus_seconds = Float(
        10.0, help="Longest time a new container keeps its tier's start_cpus when its kernel"
        " has not answered yet (code in a room's workspace can run at a kernel's start).",
    ).tag(config=True)
    agent_python = Unicode(
        "/opt/kernelgate/venv/bin/python", help="The image's Python that runs kernelgate_agent."
    ).tag(config=True)

    container_id: str | None = None
    workspace: str | None = None
    _exit_code: int | None = None
    _starting: asyncio.TimerHandle | None = None  # takes start_cpus back if settle() is late

    @property
    def _registry(self):
        """The KernelRegistry that made this kernel's manager, holding the gateway's
        services (built once by ServeApp.setup).

        The seam: jupyter_client's KernelProvisionerFactory creates provisioners itself,
        from the kernelspec's entry point, with the kernel manager as parent and no
        arguments of ours. KernelRegistry makes every kernel manager with itself as
        parent, so the services are reached up that chain: provisioner -> kernel
        manager -> registry (its `engine`, `tiers` and `images`).
        """
        registry = getattr(self.parent, "parent", None)
        if getattr(registry, "engine", None) is None:
            raise RuntimeError("DockerProvisioner runs only under kernelgate's KernelRegistry")
        return registry

    @property
    def engine(self) -> DockerEngine:
        return self._registry.engine

    @property
    def tiers(self) -> Tiers:
        return self._registry.tiers

    @property
    def images(self) -> ImageBuilder:
        return self._registry.images

    @property
    def has_process(self) -> bool:
        return self.container_id is not None

    async def poll(self) -> int | None:
        """None while the container runs, else its exit code (no API call)."""
        if self.container_id is None:
            return 0
        if self._exit_code is not None:
            return self._exit_code
        return self.engine.exit_code(self.container_id)

    async def wait(self) -> int | None:
        """Wait for the container to stop and return its exit code."""
        if self.container_id is None:
            return 0
        if self._exit_code is not None:
            return self._exit_code
        return await self.engine.wait(self.container_id)

    async def send_signal(self, signum: int) -> None:
        """Deliver a signal to the kernel through the container's init."""
        if self.container_id is not None and signum != 0:
            await self.engine.signal(self.container_id, signum)

    async def kill(self, restart: bool = False) -> None:
        """Remove the container at once (SIGKILL of everything in it)."""
        if self.container_id is not None:
            await self.engine.remove(self.container_id)
            self._exit_code = -signal.SIGKILL

    async def terminate(self, restart: bool = False) -> None:
        """Ask the kernel to stop with SIGTERM."""
        await self.send_signal(signal.SIGTERM)

    @property
    def socket_dir(self) -> str:
        """The kernel's socket folder (the folder of its ipc endpoints)."""
        return os.path.dirname(self.parent.ip)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Prepare a new sandbox: a new, empty socket folder, the connection file, the
        command.

        The connection file is written (once per kernel) by the gateway, in the kernel's
        folder that no sandbox can write, and made readable for the container's user
        through a descriptor (never a path lookup that could follow a link). The command
        is the agent (kernelgate_agent), the `kernel_prefix` launch argument (a room's
        project, resolved by the caller) and the kernelspec's argv with
        `{connection_file}` substituted. It runs inside the image, so the host-side
        rewriting of `python` to the gateway's own interpreter must not apply.
        """
        km = self.parent
        host_uid, host_gid = await UserNamespace(parent=self).ids_async(self.engine, self.uid)
        await socketdir.renew(self.socket_dir, host_uid, self.socket_dir_size, gid=host_gid)
        km.write_connection_file()
        _readable_by_all(km.connection_file)
        self.connection_info = km.get_connection_info()
        tier = self.tiers.get(self.tier)
        self.workspace = kwargs.pop("cwd", None)  # a room's host folder, or none (solo)
        prefix = kwargs.pop("kernel_prefix", None) or []
        cmd = [
            self.agent_python, "-m", "kernelgate_agent", "--connection-file", km.connection_file,
            "--workspace", WORKSPACE if self.workspace else HOME,
            f"--max-file-size={tier.max_file_size}", "--", *prefix,
            *(arg.replace("{connection_file}", km.connection_file) for arg in self.kernel_spec.argv),
        ]
        kwargs.pop("extra_arguments", None)
        kwargs.setdefault("env", {})
        return await super().pre_launch(cmd=cmd, **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Start the container; raises ImageMissing or EngineUnavailable on failure."""
        km = self.parent
        tier = self.tiers.get(self.tier)
        owner = kwargs["env"].get("KERNEL_USERNAME", "")
        spec = self.sandbox_spec().with_mounts(
            Mount(self.socket_dir, self.socket_dir, writable=True),
            Mount(km.connection_file, km.connection_file),
            *([Mount(self.workspace, WORKSPACE, writable=True)] if self.workspace else []),
        )
        options: dict[str, Any] = {
            **spec.run_options(),  # its CPU limit is lowered to tier.cpu_limit by settle()
            "command": cmd,
            "name": f"kernelgate-{self.kernel_id}",
            "hostname": "kernel",
            "environment": kwargs["env"],
            "working_dir": WORKSPACE if self.workspace else HOME,
            "labels": {
                KERNEL_LABEL: self.kernel_id,
                OWNER_LABEL: owner,
            },
        }
        try:
            reference = self.images.reference(self.image)
        except ImageError as e:
            raise ImageMissing(f"Kernel {self.kernel_spec.display_name!r} has no image: {e}") from None
        self._exit_code = None
        try:
            self.container_id = await self.engine.run(reference, **options)
        except ImageMissing:
            raise ImageMissing(
                f"Image {reference} for kernel {self.kernel_spec.display_name!r} is not built;"
                f" run: kernelgate images build {self.image}"
            ) from None
        if tier.cpus_at_start != tier.cpu_limit:
            self._starting = asyncio.get_running_loop().call_later(
                self.start_cpus_seconds, lambda: asyncio.ensure_future(self._settle_late()))
        self.log.info(
            "Kernel %s: container %s from %s (tier %s)",
            self.kernel_id, self.container_id[:12], reference, tier.name,
        )
        return self.connection_info

    def sandbox_spec(self) -> SandboxSpec:
        """The confinement of this kernel's containers (without their mounts)."""
        return SandboxSpec.for_tier(self.tiers.get(self.tier), self.uid, self.log_size, self.tmp_inodes)

    async def settle(self) -> None:
        """Lowers the CPU limit from the tier's start-up allowance to its `cpu_limit`. Raises
        EngineUnavailable if the engine refuses; the kernel is then not handed out."""
        self._forget_allowance_timer()
        tier = self.tiers.get(self.tier)
        if self.container_id is not None and tier.cpus_at_start != tier.cpu_limit:
            await self.engine.set_cpus(self.container_id, tier.cpu_limit)

    async def _settle_late(self) -> None:
        """The kernel took longer than start_cpus_seconds: its start-up allowance ends."""
        container = self.container_id
        try:
            await self.settle()
        except Exception as e:  # noqa: BLE001 - a container that keeps the allowance must go
            self.log.warning("Kernel %s: CPU limit not lowered (%s); removing it", self.kernel_id, e)
            if container is not None:
                await self.engine.remove(container)

    def _forget_allowance_timer(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            self._starting = None

    async def exit_reason(self) -> str:
        """Why the container stopped, in words for users ('' if it is unknown)."""
        state = await self.engine.inspect_state(self.container_id) if self.container_id else None
        if not state:
            return ""
        if state.get("OOMKilled"):
            limit = self.tiers.get(self.tier).memory // (1024 * 1024)
            return f"it ran out of memory (the {limit} MiB limit of its tier)"
        return f"its process exited with code {state.get('ExitCode')}"

    async def cleanup(self, restart: bool = False) -> None:
        """Remove the container (and, unless restarting, the socket folder's tmpfs);
        idempotent."""
        self._forget_allowance_timer()
        if self.container_id is not None:
            await self.engine.remove(self.container_id)
            self.container_id = None
        if not restart:
            await socketdir.release(self.socket_dir)

    async def get_provisioner_info(self) -> dict[str, Any]:
        """Adds the container id, so that a later gateway can re-attach to the kernel."""
        info = await super().get_provisioner_info()
        info["container_id"] = self.container_id
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        """Re-attach to the container; if it stopped while nobody watched, poll() says so."""
        await super().load_provisioner_info(provisioner_info)
        self.container_id = provisioner_info.get("container_id")
        state = await self.engine.inspect_state(self.container_id) if self.container_id else None
        if state is None or not state.get("Running"):
            self._exit_code = (state or {}).get("ExitCode", -1)

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return min(recommended, 2.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return recommended


def _readable_by_all(path: str) -> None:
    """Mode 644 for the gateway's connection file: the container's user is not ours."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
