"""HealthCheck: whether the gateway's backends answer, asked at most every `cache_seconds`.

`GET /api/health` needs no credentials (load balancers and orchestrators call it), so
its answer must not cost a database query, an engine ping and a storage request per call:
the backends' answers are kept for `cache_seconds` and only one check runs at a time.
A failed check reads `unavailable`; only `report(details=True)` (for platform admins)
says why, since error texts can name hosts, buckets and paths.
"""

from __future__ import annotations

import asyncio
import time

from traitlets import Float
from traitlets.config import LoggingConfigurable

from kernelgate import logs
from kernelgate.engine import DockerEngine
from kernelgate.kernels.registry import KernelRegistry
from kernelgate.storage.service import RoomStorage
from kernelgate.store import Store


class HealthCheck(LoggingConfigurable):
    cache_seconds = Float(
        5.0, config=True, help="How long the backends' answers are reused by /api/health.",
    )

    def __init__(self, store: Store, storage: RoomStorage, registry: KernelRegistry,
                 engine: DockerEngine | None, images: dict[str, str] | None = None, **kwargs) -> None:
        """`engine`: the one kernels run in, None with local kernels (no docker check);
        `images`: kernelspec -> image reference, checked by `ready` (Docker only). Draining
        is the registry's (`KernelRegistry.draining`, set by its `drain`)."""
        super().__init__(**kwargs)
        self.store = store
        self.storage = storage
        self.registry = registry
        self.engine = engine
        self.images = images or {}
        self._checks: dict | None = None
        self._checked_at = 0.0
        self._running: asyncio.Future | None = None

    async def report(self, details: bool = False) -> dict:
        """`{"status": "ok"|"degraded", "checks": {"store", "docker"?, "storage"}}`; each
        check is "ok" or "unavailable", followed by `: why` with `details`."""
        checks = dict(await self._backends())
        backends = checks.pop("storage")
        checks.pop("images", None)  # readiness only
        if not details:
            checks = {name: _without_details(value) for name, value in checks.items()}
            backends = {name: _without_details(value) for name, value in backends.items()}
        storage = {"backends": backends, "degraded_rooms": len(self.storage.degraded())}
        healthy = (all(v == "ok" for v in checks.values())
                   and all(v == "ok" for v in storage["backends"].values())
                   and not storage["degraded_rooms"])
        return {"status": "ok" if healthy else "degraded", "checks": {**checks, "storage": storage}}

    async def ready(self, details: bool = False) -> tuple[bool, dict]:
        """Readiness: `report`'s checks all ok, every kernelspec's image built, not
        draining. `images` is "ok" or "unavailable" (with `details`: the missing ones)."""
        report = await self.report(details)
        missing = (await self._backends()).get("images", [])
        report["checks"]["images"] = "ok" if not missing else (
            "unavailable" + (f": not built: {', '.join(sorted(missing))}" if details else ""))
        if self.registry.draining:
            report["status"] = "draining"
        ready = report["status"] == "ok" and not missing
        return ready, report

    async def _backends(self) -> dict:
        if self._checks is not None and time.monotonic() - self._checked_at < self.cache_seconds:
            return self._checks
        if self._running is None:
            self._running = logs.background(self._check())
            self._running.add_done_callback(self._keep)
        return await asyncio.shield(self._running)

    def _keep(self, task: asyncio.Future) -> None:
        self._running = None
        if not task.cancelled() and task.exception() is None:
            self._checks, self._checked_at = task.result(), time.monotonic()

    async def _check(self) -> dict:
        checks: dict = {}
        try:
            await asyncio.wait_for(self.store.ping(), 10)
            checks["store"] = "ok"
        except Exception as e:  # noqa: BLE001 - any failure of the database is the answer
            checks["store"] = f"unavailable: {e.__class__.__name__}"
        if self.engine is not None:
            checks["docker"] = "ok" if await self.engine.ping() else (
                "unavailable: the Docker engine does not answer (DOCKER_HOST, "
                "DockerEngine.docker_url); kernel starts answer 503")
        checks["storage"] = await self.storage.health()
        checks["images"] = [name for name, reference in self.images.items()
                            if self.engine is not None and not await _exists(self.engine, reference)]
        return checks


async def _exists(engine: DockerEngine, reference: str) -> bool:
    try:
        return await engine.image_exists(reference)
    except Exception:  # noqa: BLE001 - an engine down is the docker check's answer
        return False


def _without_details(check: str) -> str:
    return check.partition(":")[0]
