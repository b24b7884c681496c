"""SandboxSpec: how every kernelgate container is confined, in one value.

Kernel containers and install containers run under the same hardening: an unprivileged
uid, a read-only root filesystem, every capability dropped (an empty bounding set),
no-new-privileges, kernelgate's own seccomp profile (`kernelgate.seccomp`: Docker's
default without io_uring, keyrings or AF_VSOCK; never unconfined), docker-init
as PID 1, memory without swap, a CPU quota, a pids limit, size-limited tmpfs for
scratch, and a size-limited json-file log. What differs between them is declared in the
spec's fields: the network (only install fetches have one), the mounts, the limits, a
home tmpfs, exec on /tmp, the runtime (e.g. gVisor's `runsc`). `run_options` turns a
spec into docker SDK `containers.create` keyword arguments; a Swarm or Kubernetes
provisioner would translate the same fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from docker.types import LogConfig

from kernelgate.engine import cpu_quota_options
from kernelgate.seccomp import SECURITY_OPT
from kernelgate.tiers import Tier

#: Where the container user's writable home (a tmpfs) is mounted in kernel containers.
HOME = "/home/kernel"


@dataclass(frozen=True)
class Mount:
    """A host path bind-mounted at `target`, read-only unless `writable`."""

    source: str
    target: str
    writable: bool = False


@dataclass(frozen=True)
class SandboxSpec:
    """The confinement of one container. memory is bytes (no swap on top), cpus a
    fraction of cores, pids the most processes and threads, tmp_size the size of /tmp
    (and of the home tmpfs, if `home`), in bytes or tmpfs syntax ("256m"); a tmpfs's
    files also cost memory, so tmp_inodes caps how many it may hold."""

    uid: int
    memory: int
    cpus: float
    pids: int
    tmp_size: int | str
    network: str = "none"
    runtime: str = ""  # "" = the engine's default runtime
    home: str = ""  # a private tmpfs home at this path, owned by uid; "" = none
    tmp_exec: bool = False  # whether programs may be run from /tmp
    tmp_inodes: int = 65536  # files each tmpfs may hold (0 = as many as memory allows)
    log_size: str = "1m"
    mounts: tuple[Mount, ...] = ()
    cpu_shares: int = 0  # cpu.shares (0 = the engine's default, 1024)

    @classmethod
    def for_tier(cls, tier: Tier, uid: int = 1000, log_size: str = "1m", tmp_inodes: int = 65536) -> SandboxSpec:
        """A kernel's sandbox under `tier`: no network, a tmpfs home, the tier's runtime.
        Its CPU limit is the tier's start-up allowance (`Tier.cpus_at_start`); the
        provisioner lowers it to `Tier.cpu_limit` once the kernel answers."""
        return cls(uid=uid, memory=tier.memory, cpus=tier.cpus_at_start, pids=tier.pids,
                   tmp_size=tier.tmp_size, runtime=tier.runtime, home=HOME, log_size=log_size,
                   tmp_inodes=tmp_inodes, cpu_shares=tier.cpu_shares)

    def with_mounts(self, *mounts: Mount) -> SandboxSpec:
        """This spec with `mounts` added."""
        return dataclasses.replace(self, mounts=self.mounts + mounts)

    def replace(self, **changes: Any) -> SandboxSpec:
        """This spec with some fields changed (install containers: network, limits)."""
        return dataclasses.replace(self, **changes)

    def run_options(self) -> dict[str, Any]:
        """docker SDK `containers.create` options enforcing the spec (no command, name,
        environment, labels or working folder: those are the caller's)."""
        inodes = f",nr_inodes={self.tmp_inodes}" if self.tmp_inodes else ""
        tmpfs = {"/tmp": f"size={self.tmp_size}{inodes},mode=1777" + (",exec" if self.tmp_exec else "")}
        if self.home:
            tmpfs[self.home] = f"size={self.tmp_size}{inodes},mode=700,uid={self.uid},gid={self.uid},exec"
        options: dict[str, Any] = {
            "user": f"{self.uid}:{self.uid}",
            "network_mode": self.network,
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges", SECURITY_OPT],
            "init": True,
            "mem_limit": self.memory,
            "memswap_limit": self.memory,
            **cpu_quota_options(self.cpus),
            "pids_limit": self.pids,
            "tmpfs": tmpfs,
            "volumes": {m.source: {"bind": m.target, "mode": "rw" if m.writable else "ro"} for m in self.mounts},
            # what a container writes to its stdout/stderr must not fill the host's disk
            "log_config": LogConfig(type="json-file", config={"max-size": self.log_size, "max-file": "1"}),
        }
        if self.runtime:
            options["runtime"] = self.runtime
        if self.cpu_shares:
            options["cpu_shares"] = self.cpu_shares
        return options
