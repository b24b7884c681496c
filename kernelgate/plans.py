"""Plans: what a user's tier (the `tier` claim) allows, defined in configuration.

A plan lists the kernel tiers (kernelgate.tiers) whose languages its users may start and
the user's quotas. The rules are pure functions of an Identity and the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from traitlets import Dict, List, TraitError, Unicode, validate
from traitlets.config import SingletonConfigurable

from kernelgate.errors import Forbidden
from kernelgate.identity import Identity

DEFAULT_PLANS = {
    "free": {"kernel_tiers": ["low"], "max_kernels": 2, "max_rooms": 1, "max_members": 5},
    "pro": {"kernel_tiers": ["low", "medium"], "max_kernels": 5, "max_rooms": 5, "max_members": 20},
    "team": {"kernel_tiers": ["low", "medium", "high"], "max_kernels": 10, "max_rooms": 20,
             "max_members": 100},
}


@dataclass(frozen=True)
class Plan:
    """A plan's rules; every limit 0 means none."""

    name: str
    kernel_tiers: tuple[str, ...]
    max_kernels: int = 0  # concurrent solo kernels
    max_rooms: int = 0  # rooms owned
    max_members: int = 0  # members of each owned room

    @classmethod
    def from_config(cls, name: str, spec: dict) -> "Plan":
        return cls(name=name, kernel_tiers=tuple(spec["kernel_tiers"]),
                   **{k: int(spec.get(k, 0)) for k in ("max_kernels", "max_rooms", "max_members")})

    def allows(self, kernel_tier: str) -> bool:
        return kernel_tier in self.kernel_tiers


class Plans(SingletonConfigurable):
    """The configured plans and the rules that use them."""

    plans = Dict(
        default_value=DEFAULT_PLANS, config=True,
        help="Plan name (a user tier) -> {kernel_tiers: [...], max_kernels, max_rooms, "
        "max_members} (limits: 0 = none).",
    )
    order = List(
        Unicode(), default_value=["free", "pro", "team"], config=True,
        help="Plans from lowest to highest. A token without a tier claim, or with a tier "
        "that names no plan, gets the lowest.",
    )
    admin_plan = Unicode("team", config=True, help="The plan of platform admins.")

    @validate("plans")
    def _check(self, proposal):
        for name, spec in proposal["value"].items():
            try:
                Plan.from_config(name, spec)
            except (KeyError, TypeError, ValueError) as e:
                raise TraitError(f"plan {name!r}: {e}") from e
        return proposal["value"]

    def of(self, identity: Identity) -> Plan:
        """The plan that applies to `identity`."""
        name = identity.tier if identity.tier in self.plans else self.order[0]
        if identity.is_admin:
            name = self.admin_plan
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
