"""GET /api/health (no credentials): whether the gateway's backends answer."""

from __future__ import annotations

import asyncio

from kernelgate.engine import DockerEngine
from kernelgate.handlers.base import APIHandler


class HealthHandler(APIHandler):
    """`{"status": "ok"|"degraded", "checks": {"store", "docker"?, "storage"}}`; always
    200, so that a degraded gateway is told apart from one that does not answer."""

    public = True

    async def get(self):
        services = self.services
        checks: dict = {}
        try:
            await asyncio.wait_for(services.store.ping(), 10)
            checks["store"] = "ok"
        except Exception as e:  # noqa: BLE001 - any failure of the database is the answer
            checks["store"] = f"unavailable: {e.__class__.__name__}"
        if not services.catalog.local_kernels:
            checks["docker"] = "ok" if await DockerEngine.instance().ping() else "unavailable"
        storage = await services.rooms.storage.health()
        checks["storage"] = storage
        healthy = (
            all(v == "ok" for k, v in checks.items() if k != "storage")
            and all(v == "ok" for v in storage["backends"].values())
            and not storage["degraded_rooms"]
        )
        self.write_json({"status": "ok" if healthy else "degraded", "checks": checks})
