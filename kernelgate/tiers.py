"""Resource tiers: the limits a kernel's container runs under, defined in configuration.

The `untrusted` tier runs its sandboxes under gVisor (the Docker runtime `runsc`, which
scripts/install.sh registers): the kernel's system calls reach gVisor's own kernel,
not the host's, at some cost in speed. It is for code nobody vouches for; a kernelspec
(or a kernelspec override in configuration) names it like any other tier. It has no
start-up CPU allowance: runsc cannot change a running container's limits.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from traitlets import Dict, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

_MIB = 1024 * 1024


@dataclass(frozen=True)
class Tier:
    """One tier's limits.

    memory, tmp_size (each of the /tmp and home tmpfs) and max_file_size (one file
    through the contents API) are bytes, cpus a fraction of cores, exec_timeout and
    idle_timeout seconds (0 = none), runtime a Docker runtime name ("" = the engine's
    default, e.g. "runsc" for gVisor). start_cpus is the CPU limit while a new sandbox
    starts, until its kernel first answers and before anyone can use it (0, or anything
    below cpus, = cpus): a kernel's start is mostly CPU-bound imports.

    burst_cpus (0, or anything not above cpus, = none) makes cpus a share instead of a
    limit: the sandbox may use up to burst_cpus (its CFS quota), and when the CPUs are
    contended it gets CPU in proportion to cpus (cpu.shares 1024 x cpus, against 1024 for
    every other process group). A hard quota below what a kernel uses in a burst of work
    stalls it for the rest of each 100 ms period (docs/benchmarks.md, "Round-trip p99").
    """

    name: str
    memory: int
    cpus: float
    pids: int
    exec_timeout: float
    idle_timeout: float
    tmp_size: int
    max_file_size: int = 32 * _MIB
    runtime: str = ""
    start_cpus: float = 0.0
    burst_cpus: float = 0.0

    @property
    def cpu_limit(self) -> float:
        """The CPU limit (CFS quota) of a running sandbox: burst_cpus or cpus."""
        return max(self.burst_cpus, self.cpus)

    @property
    def cpu_shares(self) -> int:
        """The sandbox's cpu.shares: 1024 x cpus with a burst, 0 (the engine's default,
        1024) without."""
        return max(2, round(1024 * self.cpus)) if self.burst_cpus > self.cpus else 0

    @property
    def cpus_at_start(self) -> float:
        """The CPU limit a new sandbox starts with."""
        return max(self.start_cpus, self.cpu_limit)

    def as_model(self) -> dict:
        """The tier as JSON for API responses."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULT_TIERS = {
    "low": {"memory": 256 * _MIB, "cpus": 0.5, "pids": 128, "exec_timeout": 30,
            "idle_timeout": 600, "tmp_size": 64 * _MIB, "start_cpus": 2.0},
    "medium": {"memory": 512 * _MIB, "cpus": 1.0, "pids": 256, "exec_timeout": 60,
               "idle_timeout": 900, "tmp_size": 256 * _MIB, "start_cpus": 2.0},
    "high": {"memory": 1024 * _MIB, "cpus": 2.0, "pids": 512, "exec_timeout": 120,
             "idle_timeout": 1800, "tmp_size": 512 * _MIB},
    "untrusted": {"memory": 256 * _MIB, "cpus": 0.5, "pids": 128, "exec_timeout": 30,
                  "idle_timeout": 600, "tmp_size": 64 * _MIB, "runtime": "runsc"},
}


class Tiers(LoggingConfigurable):
    """The configured tiers, by name. Shared by provisioners and the API."""

    tiers = Dict(
        default_value=DEFAULT_TIERS,
        config=True,
        help="Tier name -> {memory, cpus, pids, exec_timeout, idle_timeout, tmp_size,"
        " max_file_size, runtime, start_cpus, burst_cpus}."
        " memory and tmp_size in bytes.",
    )
    default_tier = Unicode("low", config=True, help="Tier for kernelspecs that name none.")

    @validate("tiers")
    def _check_tiers(self, proposal):
        for name, spec in proposal["value"].items():
            try:
                Tier(name=name, **spec)
            except TypeError as e:
                raise TraitError(f"tier {name!r}: {e}") from e
        return proposal["value"]

    def get(self, name: str | None) -> Tier:
        """The tier called `name` (the default tier for None); KeyError if unknown."""
        name = name or self.default_tier
        return Tier(name=name, **self.tiers[name])
