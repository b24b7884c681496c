"""Plans: what a user's tier (the `tier` claim) allows, defined in configuration.

A plan lists the kernel tiers (kernelgate.tiers) whose languages its users may start and
the user's quotas. The rules are pure functions of an Identity and the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from traitlets import Dict, List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from kernelgate.errors import Forbidden
from kernelgate.identity import Identity

GiB = 1 << 30
DAY = 24 * 3600

DEFAULT_PLANS = {
    "free": {"kernel_tiers": ["low"], "max_kernels": 2, "max_rooms": 1, "max_members": 5,
             "workspace_bytes": 1 * GiB, "workspace_inodes": 100_000,
             "max_snapshots": 10, "snapshot_bytes": 2 * GiB, "max_room_lifetime": 30 * DAY},
    "pro": {"kernel_tiers": ["low", "medium"], "max_kernels": 5, "max_rooms": 5, "max_members": 20,
            "workspace_bytes": 10 * GiB, "workspace_inodes": 500_000,
            "max_snapshots": 30, "snapshot_bytes": 20 * GiB, "max_room_lifetime": 365 * DAY},
    "team": {"kernel_tiers": ["low", "medium", "high"], "max_kernels": 10, "max_rooms": 20,
             "max_members": 100, "workspace_bytes": 50 * GiB, "workspace_inodes": 2_000_000,
             "max_snapshots": 100, "snapshot_bytes": 100 * GiB, "max_room_lifetime": 0},
}
#: The smallest workspace quotas a plan may set (an ext4 image needs room for its
#: journal and metadata).
MIN_WORKSPACE_BYTES = 16 << 20
MIN_WORKSPACE_INODES = 64


@dataclass(frozen=True)
class Plan:
    """A plan's rules. The max_* limits and snapshot_bytes: 0 means none; the workspace
    quotas always apply (every room workspace has a byte and an inode limit). A key a
    plan's configuration leaves out takes the default below."""

    name: str
    kernel_tiers: tuple[str, ...]
    max_kernels: int = 0  # concurrent solo kernels
    max_rooms: int = 0  # rooms owned
    max_members: int = 0  # members of each owned room
    workspace_bytes: int = 1 * GiB  # size of each owned room's workspace file system
    workspace_inodes: int = 100_000  # files, folders and links in it
    max_snapshots: int = 10  # kept per room: a new one beyond deletes the oldest
    snapshot_bytes: int = 2 * GiB  # the archive of one snapshot
    max_room_lifetime: int = 0  # seconds from a room's creation to its latest expiry

    @classmethod
    def from_config(cls, name: str, spec: dict) -> "Plan":
        """The plan of configuration `spec`; ValueError naming the key that is wrong."""
        if not isinstance(spec, dict):
            raise ValueError("must be a dict")
        limits = [f for f in cls.__dataclass_fields__ if f not in ("name", "kernel_tiers")]
        unknown = sorted(set(spec) - set(limits) - {"kernel_tiers"})
        if unknown:
            raise ValueError(f"unknown keys {', '.join(unknown)}; known: kernel_tiers, {', '.join(limits)}")
        tiers = spec["kernel_tiers"]
        if not isinstance(tiers, (list, tuple)) or not all(isinstance(t, str) for t in tiers):
            raise ValueError("kernel_tiers must be a list of tier names")
        values = {}
        for key in limits:
            value = spec.get(key, cls.__dataclass_fields__[key].default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
                raise ValueError(f"{key} must be a whole number >= 0, not {value!r}")
            values[key] = int(value)
        if values["workspace_bytes"] < MIN_WORKSPACE_BYTES:
            raise ValueError(f"workspace_bytes must be at least {MIN_WORKSPACE_BYTES} (16 MiB)")
        if values["workspace_inodes"] < MIN_WORKSPACE_INODES:
            raise ValueError(f"workspace_inodes must be at least {MIN_WORKSPACE_INODES}")
        return cls(name=name, kernel_tiers=tuple(tiers), **values)

    def limits(self) -> dict:
        """The room limits, as the room model shows them."""
        return {k: getattr(self, k) for k in ("workspace_bytes", "workspace_inodes", "max_snapshots",
                                               "snapshot_bytes", "max_room_lifetime")}

    def allows(self, kernel_tier: str) -> bool:
        return kernel_tier in self.kernel_tiers


class Plans(LoggingConfigurable):
    """The configured plans and the rules that use them."""

    plans = Dict(
        default_value=DEFAULT_PLANS, config=True,
        help="Plan name (a user tier) -> {kernel_tiers: [...], max_kernels, max_rooms, "
        "max_members, workspace_bytes, workspace_inodes, max_snapshots, snapshot_bytes, "
        "max_room_lifetime (seconds)} (max_* and snapshot_bytes: 0 = none; the workspace "
        "quotas are required, at least 16 MiB and 64 inodes; left out: kernelgate.plans.Plan's "
        "defaults).",
    )
    order = List(
        Unicode(), default_value=["free", "pro", "team"], config=True,
        help="Plans from lowest to highest. A token without a tier claim, or with a tier "
        "that names no plan, gets the lowest.",
    )
    admin_plan = Unicode("team", config=True, help="The plan of platform admins; one that is "
                         "not among plans: the highest plan of order.")

    @validate("plans")
    def _check(self, proposal):
        for name, spec in proposal["value"].items():
            try:
                Plan.from_config(name, spec)
            except (KeyError, TypeError, ValueError) as e:
                raise TraitError(f"plan {name!r}: {e}") from e
        return proposal["value"]

    def check(self) -> None:
        """ValueError unless order names plans only, at least one (checked once every
        setting is read: the traits may be set in any order)."""
        unknown = [name for name in self.order if name not in self.plans]
        if not self.order or unknown:
            raise ValueError(f"Plans.order {self.order!r} must name plans of Plans.plans "
                             f"({', '.join(self.plans) or 'none'}); unknown: {', '.join(unknown) or 'none'}")

    def of(self, identity: Identity) -> Plan:
        """The plan that applies to `identity` (`check` passed)."""
        name = identity.tier if identity.tier in self.plans else self.order[0]
        if identity.is_admin:
            name = self.admin_plan if self.admin_plan in self.plans else self.order[-1]
        return Plan.from_config(name, self.plans[name])

    def check_kernel_tier(self, identity: Identity, kernel_name: str, kernel_tier: str) -> None:
        """Forbidden, naming the plans that would allow it, unless the plan allows the tier."""
        plan = self.of(identity)
        if plan.allows(kernel_tier):
            return
        better = [n for n in self.order if kernel_tier in self.plans.get(n, {}).get("kernel_tiers", [])]
        raise Forbidden(
            f"Kernel {kernel_name} runs in the {kernel_tier!r} tier, which your plan {plan.name!r} does "
            f"not include; plans that include it: {', '.join(better) or 'none'}"
        )
