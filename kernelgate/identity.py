"""Who is calling: the Identity every handler acts for, and where it comes from.

An IdentityProvider turns a request into an Identity from verified credentials only; a
client-supplied header or parameter naming a user is never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from traitlets import Bool, Unicode
from traitlets.config import LoggingConfigurable


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: user id, plan tier ('' = lowest), platform roles, and when
    the credentials expire (epoch seconds; None = never)."""

    user: str
    tier: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)
    name: str = ""
    expires_at: float | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class IdentityProvider(LoggingConfigurable):
    """Base class: `identify(request)` returns the caller's Identity, or None (-> 401).

    It is a coroutine so that providers may fetch keys or ask an auth service; they
    must not block the event loop while doing so.
    """

    async def identify(self, request) -> Identity | None:
        raise NotImplementedError


class DevIdentityProvider(IdentityProvider):
    """Development only: every request acts as one configured user, with no credentials.

    The app refuses to listen on anything but loopback with this provider.
    """

    user = Unicode("dev", config=True, help="The single user every request acts as.")
    tier = Unicode("", config=True, help="That user's plan tier.")
    admin = Bool(True, config=True, help="Whether that user is a platform admin (all languages).")

    async def identify(self, request) -> Identity:
        return Identity(user=self.user, tier=self.tier, roles=frozenset({"admin"} if self.admin else ()))
