"""GET /api/health (no credentials): whether the gateway's backends answer."""

from __future__ import annotations

from kernelgate.handlers.base import APIHandler


class HealthHandler(APIHandler):
    """`{"status": "ok"|"degraded", "checks": {"store", "docker"?, "storage"}}`; always
    200, so that a degraded gateway is told apart from one that does not answer. The
    backends' answers may be up to `HealthCheck.cache_seconds` old."""

    public = True

    async def get(self):
        self.write_json(await self.services.health.report())
