"""GET /api/health (no credentials): whether the gateway's backends answer; GET /api/ready:
whether it can take work (readiness)."""

from __future__ import annotations

from kernelgate.errors import GatewayError
from kernelgate.handlers.base import APIHandler


class HealthHandler(APIHandler):
    """`{"status": "ok"|"degraded", "checks": {"store", "docker"?, "storage"}}`; always
    200, so that a degraded gateway is told apart from one that does not answer. The
    backends' answers may be up to `HealthCheck.cache_seconds` old. Why a check fails
    is told to platform admins only (with --no-auth, the one user is one)."""

    public = True

    async def get(self):
        try:
            identity = await self.services.identity_provider.identify(self.request)
        except GatewayError:  # the auth service is down: answer without details
            identity = None
        details = identity is not None and identity.is_admin
        self.write_json(await self.services.health.report(details))


class ReadyHandler(APIHandler):
    """Readiness: 200 `{"status": "ok", "checks": ...}` when the store, the Docker engine,
    the storage backends answer, every kernelspec's image is built and the gateway is not
    draining; 503 with the same body otherwise. Details for platform admins only."""

    public = True

    async def get(self):
        try:
            identity = await self.services.identity_provider.identify(self.request)
        except GatewayError:
            identity = None
        ready, report = await self.services.health.ready(identity is not None and identity.is_admin)
        self.write_json(report, 200 if ready else 503)
