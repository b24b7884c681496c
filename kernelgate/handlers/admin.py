"""Platform admin API: every kernel, room and snapshot, and the audit log (roles: ["admin"])."""

from __future__ import annotations

from kernelgate.errors import Forbidden
from kernelgate.handlers.base import APIHandler
from kernelgate.handlers.snapshots import snapshot_model


class AdminHandler(APIHandler):
    async def prepare(self):
        await super().prepare()
        if self.request.method != "OPTIONS" and not self.identity.is_admin:
            raise Forbidden("Platform admins only")


class AdminKernelsHandler(AdminHandler):
    async def get(self):
        self.write_json([k.model() for k in self.services.registry.kernels.values()])


class AdminKernelHandler(AdminHandler):
    async def delete(self, kernel_id: str):
        registry = self.services.registry
        kernel = registry.get(kernel_id)
        await registry.shutdown(kernel, "stopped by an admin")
        await self.services.store.audit(self.identity.user, "kernel.delete", kernel_id)
        self.set_status(204)
        self.finish()


class AdminRoomsHandler(AdminHandler):
    async def get(self):
        rooms = self.services.rooms
        self.write_json([rooms.model(r) for r in rooms.all()])


class AdminRoomHandler(AdminHandler):
    async def delete(self, room_id: str):
        await self.services.rooms.delete(self.identity, room_id)
        self.set_status(204)
        self.finish()


class AdminSnapshotsHandler(AdminHandler):
    """Every snapshot, deleted rooms' final snapshots included (`?room=` filters)."""

    async def get(self):
        storage = self.services.rooms.storage
        snapshots = await storage.snapshots(self.get_query_argument("room", None))
        self.write_json([snapshot_model(s, storage.skipped(s.id)) for s in snapshots])


class AdminAuditHandler(AdminHandler):
    async def get(self):
        limit = self.get_query_argument("limit", "100")
        entries = await self.services.store.audit_log(int(limit) if limit.isdigit() else 100)
        self.write_json([
            {"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
             "target": e.target, "details": e.details}
            for e in entries
        ])
