"""Room snapshots: /api/rooms/{id}/snapshots (members list, admins take and restore)."""

from __future__ import annotations

from kernelgate.clock import iso
from kernelgate.handlers.base import APIHandler
from kernelgate.store import SnapshotRecord


def snapshot_model(snapshot: SnapshotRecord, skipped: dict | None = None) -> dict:
    """The API's snapshot; `skipped`: what packing left out (None: not known, e.g. taken
    before this gateway started)."""
    return {
        "id": snapshot.id, "room": snapshot.room_id, "storage": snapshot.storage,
        "created_at": iso(snapshot.created_at),
        "expires_at": iso(snapshot.expires_at) if snapshot.expires_at else None,
        "created_by": snapshot.created_by, "reason": snapshot.reason,
        "size": snapshot.size, "files": snapshot.files, "sha256": snapshot.sha256,
        "skipped": skipped,
    }


class RoomSnapshotsHandler(APIHandler):
    async def get(self, room_id: str):
        snapshots = await self.services.rooms.snapshots(self.identity, room_id)
        storage = self.services.rooms.storage
        self.write_json([snapshot_model(s, storage.skipped(s.id)) for s in snapshots])

    async def post(self, room_id: str):
        snapshot = await self.services.rooms.snapshot(self.identity, room_id)
        self.write_json(snapshot_model(snapshot, self.services.rooms.storage.skipped(snapshot.id)), status=201)


class RoomSnapshotRestoreHandler(APIHandler):
    async def post(self, room_id: str, snapshot_id: str):
        previous = await self.services.rooms.restore(self.identity, room_id, snapshot_id)
        rooms = self.services.rooms
        self.write_json({"room": rooms.model(rooms.get(self.identity, room_id)),
                         "previous": snapshot_model(previous, rooms.storage.skipped(previous.id))})
