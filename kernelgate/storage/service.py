"""Room storage: each room's working copy on this host, its durable copy in the room's
backend, and its snapshots.

The working copy is the folder `rooms_dir/<room id>`, mounted at /workspace in each of
the room's containers. The durable copy is an archive of it in the room's backend, at
`rooms/<id>/current.tar`:
- restored into a missing working copy before the room's kernels start (`prepare`), so a
  room starts on a host that has never seen it;
- written when the working copy changed, every `sync_interval` seconds, when the room's
  kernels stop and when the gateway stops (`sync`). "Changed" compares the working
  copy's fingerprint with the one the durable copy was last written from or restored
  into, which the store keeps: an unchanged workspace is not uploaded again after a
  gateway restart.
Snapshots are archives at `rooms/<id>/snapshots/<snapshot id>.tar`, recorded in the
store, kept for `snapshot_retention` seconds: taken on demand, before a restore
replaces the working copy, and as the final copy of a deleted room.

Quotas come from the plan of the room's owner (`set_plan`): with `workspace_quotas`
"loop" (the default) each working copy is its own ext4 volume of the plan's
workspace_bytes and workspace_inodes (volumes.py), made when the working copy is (room
creation, a restore, the first start on a host) and mounted at the working copy's path (images in `volumes_dir`);
a plan's new quota applies to the volumes made after it. Without root or e2fsprogs,
rooms fail closed: their working copies cannot be made (503). An archive longer than the
plan's snapshot_bytes is refused (TooLarge, nothing stored); a room keeps at most
max_snapshots snapshots, a new one deleting the oldest (never the one being restored).

When a backend fails, the room's storage is "degraded": the working copy is kept and
used as it is, explicit snapshots and restores answer 503 (StorageUnavailable), and a
sync is retried every `retry_interval` seconds until one succeeds, which makes the
room "ok" again. Nothing is deleted while its durable copy cannot be written.

Archives stream between the working copy and the backend through a pipe (archive.py
packs on one thread, the backend reads on another): memory stays small at any size.
Operations on one room are serialised; they run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
import errno
import hashlib
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from traitlets import Bool, Enum, Float, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from kernelgate import logs, metrics
from kernelgate.clock import iso, utcnow
from kernelgate.engine import DockerEngine
from kernelgate.errors import BadRequest, NotFound, TooLarge, Unavailable
from kernelgate.plans import Plan
from kernelgate.storage import volumes
from kernelgate.storage.archive import (
    ArchiveError, ArchiveRefused, ArchiveStats, Limits, fingerprint, pack, remove_tree, unpack,
)
from kernelgate.storage.backend import CHUNK, ObjectMissing, StorageBackend, StorageUnavailable
from kernelgate.storage.database import DatabaseBackend
from kernelgate.storage.local import LocalBackend
from kernelgate.storage.s3 import S3Backend
from kernelgate.store import SnapshotRecord, Store
from kernelgate.userns import UserNamespace


@dataclass
class StorageStatus:
    """A room's storage, as the room model shows it."""

    state: str = "ok"  # "ok" | "degraded"
    error: str | None = None
    synced_at: datetime | None = None
    fingerprint: str | None = None  # of the working copy at the last successful sync
    skipped: dict = field(default_factory=dict)  # what the last archive written left out

    def model(self) -> dict:
        return {"state": self.state, "error": self.error,
                "synced_at": iso(self.synced_at) if self.synced_at else None,
                "skipped": self.skipped}


class RoomStorage(LoggingConfigurable):
    """The working copies, durable copies and snapshots of every room (module doc)."""

    rooms_dir = Unicode(config=True, help="Host folder holding each room's working copy. "
                        "Default: <data_dir>/rooms.")
    volumes_dir = Unicode(config=True, help="Host folder holding the image of each room's "
                          "workspace volume (workspace_quotas 'loop'). Default: <data_dir>/volumes.")
    workspace_uid = Int(1000, config=True, help="Owner (uid) of working copies: the sandboxes' user, "
                        "as a container uid (its host uid is derived: kernelgate.userns).")
    max_archive_bytes = Int(
        16 << 30, config=True,
        help="Bytes of file content one archive (sync, snapshot) may hold, files counted at "
        "their apparent size (a sparse file at its full size). Packing leaves out the files "
        "that do not fit and reports them; a restore of an archive holding more is refused (413).",
    )
    max_archive_members = Int(
        1_000_000, config=True,
        help="Entries (files, folders, links) one archive may hold: packing stops there and "
        "reports it; a restore of an archive with more is refused (413).",
    )
    max_archive_depth = Int(
        128, config=True,
        help="Folders nested deeper than this are left out of archives (reported); a restore "
        "of an archive with deeper paths is refused (413).",
    )
    sync_interval = Float(60.0, config=True, help="Seconds between syncs of changed working copies.")
    retry_interval = Float(10.0, config=True, help="Seconds between sync attempts of degraded rooms.")
    sweep_after = Float(
        3600.0, config=True,
        help="At start, backends remove what writes interrupted longer ago than this left "
        "(a killed gateway's half-written snapshot); younger leftovers may be another "
        "gateway's write in progress.")
    snapshot_retention = Float(
        30 * 24 * 3600.0, config=True,
        help="Seconds a snapshot is kept, a deleted room's final snapshot included.",
    )
    workspace_quotas = Enum(
        ["loop", "off"], "loop", config=True,
        help="'loop': each room's working copy is an ext4 image of its owner's plan's "
        "workspace_bytes and workspace_inodes, loop-mounted (needs root and e2fsprogs; "
        "without them rooms cannot be created or started: 503). 'off': plain folders "
        "with no byte or inode limit (trusted users only).",
    )

    preallocate_workspaces = Bool(
        False, config=True,
        help="With workspace_quotas 'loop': reserve each new volume's workspace_bytes on "
        "the host's disk when it is made (a room that does not fit is refused, 503). "
        "Without, volumes are sparse: a host disk that fills up fails the rooms' writes "
        "(and may lose writes already acknowledged), whatever their quotas.",
    )

    def __init__(self, store: Store, engine: DockerEngine | None, **kwargs) -> None:
        """`engine`: the one whose user namespace maps workspace_uid to the working copies'
        host owner (None: no engine, the uid as it is)."""
        super().__init__(**kwargs)
        self.store = store
        self.engine = engine
        local = LocalBackend(parent=self)
        if not local.root:
            local.root = str(Path(store.data_dir) / "storage")
        self.backends: dict[str, StorageBackend] = {
            "local": local, "database": DatabaseBackend(store.engine, parent=self),
        }
        s3 = S3Backend(parent=self)
        if s3.bucket:
            self.backends["s3"] = s3
        self._status: dict[str, StorageStatus] = {}
        self._skipped: OrderedDict[str, dict] = OrderedDict()  # snapshot id -> report, latest _KEPT_REPORTS
        self._plans: dict[str, Plan] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop_task: asyncio.Future | None = None

    @default("rooms_dir")
    def _default_rooms_dir(self) -> str:
        return str(Path(self.store.data_dir) / "rooms")

    @default("volumes_dir")
    def _default_volumes_dir(self) -> str:
        return str(Path(self.store.data_dir) / "volumes")

    # -- queries ---------------------------------------------------------------------

    def check_name(self, storage: object) -> str:
        """The storage name if a backend of that name is configured; BadRequest otherwise."""
        if storage not in self.backends:
            raise BadRequest(f"Storage {storage!r} is not available; available: {', '.join(self.backends)}")
        return storage

    @property
    def limits(self) -> Limits:
        return Limits(self.max_archive_bytes, self.max_archive_members, self.max_archive_depth)

    def skipped(self, snapshot_id: str) -> dict | None:
        """What packing left out of a snapshot taken since this gateway started (None: unknown)."""
        return self._skipped.get(snapshot_id)

    def working_copy(self, room_id: str) -> Path:
        return Path(self.rooms_dir) / room_id

    def set_plan(self, room_id: str, plan: Plan) -> None:
        """The plan whose quotas the room's storage gets from now on (its owner's)."""
        self._plans[room_id] = plan

    def plan(self, room_id: str) -> Plan:
        return self._plans.get(room_id) or Plan("default", ())

    async def present(self, room_id: str) -> bool:
        """Whether the room's working copy is on this host (its volume mounted)."""
        return await asyncio.to_thread(self._present, room_id)

    def status(self, room_id: str) -> StorageStatus:
        return self._status.setdefault(room_id, StorageStatus())

    def degraded(self) -> list[str]:
        return [room_id for room_id, s in self._status.items() if s.state == "degraded"]

    async def health(self) -> dict:
        """{backend name: "ok" or the error}, each backend asked now."""
        checks = {}
        for name, backend in self.backends.items():
            try:
                await asyncio.wait_for(asyncio.to_thread(backend.check), 10)
                checks[name] = "ok"
            except (StorageUnavailable, asyncio.TimeoutError) as e:
                checks[name] = f"unavailable: {getattr(e, 'message', 'no answer')}"
        return checks

    async def snapshots(self, room_id: str | None = None) -> list[SnapshotRecord]:
        return await self.store.snapshots(room_id)

    # -- working copies --------------------------------------------------------------

    async def create(self, room_id: str, source: SnapshotRecord | None = None) -> None:
        """A new room's working copy: an empty folder, or the content of `source` (a
        snapshot of any room, in any backend)."""
        async with self._lock(room_id):
            if source is None:
                await asyncio.to_thread(self._new_working_copy, room_id)
            else:
                await self._download_snapshot(room_id, source)

    async def _download_snapshot(self, room_id: str, snapshot: SnapshotRecord) -> None:
        """Unpack `snapshot` (of any room, in its backend) as the room's working copy;
        BadRequest if its backend is not configured (lock held)."""
        backend = self.backends[self.check_name(snapshot.storage)]
        key = _snapshot_key(snapshot.room_id, snapshot.id)
        await self._guard(room_id, snapshot.storage, self._download(backend, key, room_id))

    async def prepare(self, room_id: str, storage: str) -> None:
        """Make sure the working copy exists: restore the durable copy where it is missing
        (empty if there is none yet). StorageUnavailable if it is missing and the backend
        cannot say what it held."""
        async with self._lock(room_id):
            await self._prepare(room_id, storage)

    async def sync(self, room_id: str, storage: str) -> bool:
        """Write the working copy to the durable copy if it changed since the last sync
        (or the last attempt failed). True if it was written. Failures degrade the room
        and are logged, never raised: the next sync retries."""
        async with self._lock(room_id):
            return await self._sync(room_id, storage)

    # -- snapshots -------------------------------------------------------------------

    async def snapshot(self, room_id: str, storage: str, actor: str, reason: str = "manual") -> SnapshotRecord:
        """Archive the working copy as a new snapshot; StorageUnavailable if the backend
        fails (the room is then degraded)."""
        async with self._lock(room_id):
            await self._prepare(room_id, storage)
            return await self._snapshot(room_id, storage, actor, reason)

    async def restore(self, room_id: str, storage: str, snapshot_id: str, actor: str) -> SnapshotRecord:
        """Replace the working copy with a snapshot's content, after snapshotting it
        ("before restore", returned). The room's kernels must be stopped: their mounts
        hold the folder being replaced. NotFound for a snapshot not of this room."""
        snapshot = await self.store.get_snapshot(snapshot_id)
        if snapshot is None or snapshot.room_id != room_id:
            raise NotFound(f"Snapshot not found: {snapshot_id}")
        self.check_name(snapshot.storage)  # before anything changes
        async with self._lock(room_id):
            await self._prepare(room_id, storage)
            safety = await self._snapshot(room_id, storage, actor, "before restore", keep=snapshot_id)
            await self._download_snapshot(room_id, snapshot)
            self.status(room_id).fingerprint = None
            await self._sync(room_id, storage)
        return safety

    async def remove(self, room_id: str, storage: str, actor: str) -> SnapshotRecord | None:
        """A deleted room: final snapshot, then the durable and working copies go. The
        final snapshot stays until its retention ends. StorageUnavailable (and nothing
        removed) if it cannot be written."""
        async with self._lock(room_id):
            final = None
            if not await self.present(room_id):
                await self._prepare(room_id, storage)
            if await self.present(room_id):
                try:
                    final = await self._snapshot(room_id, storage, actor, "room deleted")
                except TooLarge as e:
                    self.log.warning("Room %s deleted without a final snapshot: %s", room_id, e.message)
            await self._guard(room_id, storage, asyncio.to_thread(self.backends[storage].delete, _current_key(room_id)))
            await asyncio.to_thread(self._remove_working_copy, room_id)
            await self.store.delete_storage_state(room_id)
            self._status.pop(room_id, None)
        self._locks.pop(room_id, None)
        self._plans.pop(room_id, None)
        return final

    async def discard(self, room_id: str) -> None:
        """A room whose creation failed: its working copy goes, nothing is kept."""
        await asyncio.to_thread(self._remove_working_copy, room_id)
        await self.store.delete_storage_state(room_id)
        self._status.pop(room_id, None)
        self._plans.pop(room_id, None)

    async def expire_snapshots(self) -> int:
        """Delete the snapshots whose retention ended (those of unreachable backends wait
        for the next round). Returns how many went."""
        removed = 0
        for snapshot in await self.store.expired_snapshots(utcnow()):
            removed += await self._delete_snapshot(snapshot)
        return removed

    # -- background work -------------------------------------------------------------

    async def start(self, rooms: Callable[[], Iterable[tuple[str, str]]]) -> None:
        """Load what each durable copy holds, then sync and expire in the background;
        `rooms()` gives (room id, storage) pairs."""
        for room_id, (digest, synced_at) in (await self.store.storage_states()).items():
            self._status[room_id] = StorageStatus(synced_at=synced_at, fingerprint=digest)
        for name, backend in self.backends.items():
            try:
                swept = await asyncio.to_thread(backend.sweep, self.sweep_after)
            except StorageUnavailable as e:
                self.log.warning("%s storage not swept: %s", name, e.message)
                continue
            if swept:
                self.log.info("%s storage: removed %d object(s) an interrupted write left", name, swept)
        self._loop_task = logs.background(self._background(rooms))

    async def stop(self, rooms: Iterable[tuple[str, str]]) -> None:
        """Gateway shutdown: stop the background work, then sync every room and detach
        its volume (room kernels still running keep theirs: module doc of volumes.py)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        for room_id, storage in rooms:
            await self.sync(room_id, storage)
            if self.workspace_quotas == "loop":
                async with self._lock(room_id):
                    try:
                        await asyncio.to_thread(volumes.detach, self.working_copy(room_id))
                    except volumes.VolumeError as e:
                        self.log.warning("Room %s: %s", room_id, e.message)

    async def _background(self, rooms) -> None:
        tick = min(self.sync_interval, self.retry_interval)
        since_sync = 0.0
        while True:
            await asyncio.sleep(tick)
            since_sync += tick
            full = since_sync >= self.sync_interval
            if full:
                since_sync = 0.0
            try:
                for room_id, storage in list(rooms()):
                    if full or self.status(room_id).state == "degraded":
                        await self.sync(room_id, storage)
                if full:
                    await self.expire_snapshots()
            except Exception:  # noqa: BLE001 - the loop must survive one bad round
                self.log.exception("Storage round failed")

    # -- internals (under the room's lock) ---------------------------------------------

    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._locks.setdefault(room_id, asyncio.Lock())

    async def _prepare(self, room_id: str, storage: str) -> None:
        if await self.present(room_id):
            return
        backend = self.backends[self.check_name(storage)]
        try:
            await self._guard(room_id, storage, self._download(backend, _current_key(room_id), room_id))
            self.log.info("Room %s: working copy restored from %s storage", room_id, storage)
            await self._synced(room_id)  # the two copies are alike now
        except ObjectMissing:
            await asyncio.to_thread(self._new_working_copy, room_id)

    async def _sync(self, room_id: str, storage: str) -> bool:
        working = self.working_copy(room_id)
        status = self.status(room_id)
        if not await self.present(room_id):  # nothing to write; a degraded room recovers once the backend answers
            if status.state == "degraded":
                with contextlib.suppress(StorageUnavailable):
                    await self._guard(room_id, storage, asyncio.to_thread(self.backends[storage].check))
            return False
        current = await asyncio.to_thread(fingerprint, str(working), self.limits)
        if current == status.fingerprint and status.state == "ok":
            return False
        try:
            with metrics.STORAGE_SYNC.labels(storage).time():
                _, _, stats = await self._guard(
                    room_id, storage, self._upload(self.backends[storage], _current_key(room_id), working))
        except StorageUnavailable as e:
            self.log.warning("Room %s: sync to %s storage failed: %s", room_id, storage, e.message)
            return False
        try:
            await self._synced(room_id, current)
        except Unavailable as e:  # the database: written anyway; the next run may upload again
            self.log.warning("Room %s: synced, but its state was not recorded: %s", room_id, e.message)
        self._report(room_id, "sync", stats)
        return True

    async def _synced(self, room_id: str, digest: str | None = None) -> None:
        """Record that the durable copy now holds the working copy (of fingerprint
        `digest`, computed when not given)."""
        if digest is None:
            digest = await asyncio.to_thread(fingerprint, str(self.working_copy(room_id)), self.limits)
        status = self.status(room_id)
        status.fingerprint, status.synced_at = digest, utcnow()
        await self.store.save_storage_state(room_id, digest, status.synced_at)

    async def _snapshot(self, room_id: str, storage: str, actor: str, reason: str,
                        keep: str | None = None) -> SnapshotRecord:
        """A new snapshot within the plan's limits: TooLarge (nothing stored) past
        snapshot_bytes; the oldest snapshots but `keep` deleted past max_snapshots."""
        plan = self.plan(room_id)
        snapshot_id = str(uuid.uuid4())
        key = _snapshot_key(room_id, snapshot_id)
        try:
            size, digest, stats = await self._guard(
                room_id, storage, self._upload(self.backends[storage], key, self.working_copy(room_id),
                                      plan.snapshot_bytes or None)
            )
        except _TooLong:
            raise TooLarge(
                f"The snapshot's archive exceeds the {plan.snapshot_bytes} bytes the room's plan "
                f"{plan.name!r} allows for one snapshot; nothing was stored"
            ) from None
        now = utcnow()
        record = SnapshotRecord(
            snapshot_id, room_id, storage, now, now + timedelta(seconds=self.snapshot_retention),
            actor, reason, size, stats.files, digest,
        )
        await self.store.add_snapshot(record)
        self._report(room_id, f"snapshot {snapshot_id}", stats)
        self._skipped[snapshot_id] = stats.report()
        while len(self._skipped) > _KEPT_REPORTS:
            self._skipped.popitem(last=False)
        if plan.max_snapshots:
            kept = await self.store.snapshots(room_id)  # oldest first
            older = [s for s in kept if s.id not in (snapshot_id, keep)]
            for old in older[:max(0, len(kept) - plan.max_snapshots)]:
                await self._delete_snapshot(old)
        return record

    async def _delete_snapshot(self, snapshot: SnapshotRecord) -> bool:
        """Delete a snapshot's archive, then its record; False (logged) if the backend fails."""
        backend = self.backends.get(snapshot.storage)
        if backend is None:
            return False
        try:
            await asyncio.to_thread(backend.delete, _snapshot_key(snapshot.room_id, snapshot.id))
        except StorageUnavailable as e:
            self.log.warning("Snapshot %s not deleted yet: %s", snapshot.id, e.message)
            return False
        await self.store.delete_snapshot(snapshot.id)
        return True

    def _report(self, room_id: str, what: str, stats: ArchiveStats) -> None:
        """Show what an archive of the room's working copy left out (room model, log)."""
        self.status(room_id).skipped = report = stats.report()
        if report:
            self.log.warning("Room %s: %s left out %s", room_id, what,
                             ", ".join(f"{r['count']} {reason}" for reason, r in report.items()))

    async def _guard(self, room_id: str, storage: str, operation):
        """Await an operation on the backend named `storage`: a StorageUnavailable
        degrades the room, is counted (kernelgate_storage_failures_total) and is raised;
        success makes the room ok."""
        status = self.status(room_id)
        try:
            result = await operation
        except StorageUnavailable as e:
            status.state, status.error = "degraded", e.message
            metrics.STORAGE_FAILURES.labels(storage).inc()
            raise
        status.state, status.error = "ok", None
        return result

    async def _upload(self, backend: StorageBackend, key: str, folder: Path, limit: int | None = None):
        return await asyncio.to_thread(_upload, backend, key, folder, limit, limits=self.limits)

    async def _download(self, backend: StorageBackend, key: str, room_id: str) -> None:
        await asyncio.to_thread(self._download_blocking, backend, key, room_id)

    def _download_blocking(self, backend: StorageBackend, key: str, room_id: str) -> None:
        """Unpack the object into a new hidden folder (a new volume), then swap it in for
        the working copy. TooLarge if it does not fit the plan's quotas."""
        if self.workspace_quotas == "loop":
            return self._download_volume(backend, key, room_id)
        working = self.working_copy(room_id)
        fresh = working.with_name(f".restore-{room_id}-{uuid.uuid4().hex[:8]}")
        self._new_folder(fresh)
        try:
            self._unpack(backend, key, fresh, room_id)
            old = working.with_name(f".old-{room_id}-{uuid.uuid4().hex[:8]}")
            if working.exists():
                os.rename(working, old)
            os.rename(fresh, working)
            _remove_folder(old)
        finally:
            _remove_folder(fresh)

    def _download_volume(self, backend: StorageBackend, key: str, room_id: str) -> None:
        self._check_volumes()
        plan, tag = self.plan(room_id), uuid.uuid4().hex[:8]
        image = self._image(room_id)
        fresh_image = image.with_name(f".{room_id}-{tag}.ext4")
        fresh = self.working_copy(room_id).with_name(f".restore-{room_id}-{tag}")
        try:
            volumes.make(fresh_image, fresh, plan.workspace_bytes, plan.workspace_inodes, self._uid(),
                         self.preallocate_workspaces)
            try:
                self._unpack(backend, key, fresh, room_id)
            finally:
                volumes.detach(fresh)
            volumes.detach(self.working_copy(room_id))
            os.replace(fresh_image, image)
            volumes.attach(image, self.working_copy(room_id))
        finally:
            volumes.remove(fresh_image, fresh)

    def _unpack(self, backend: StorageBackend, key: str, folder: Path, room_id: str) -> None:
        try:
            with backend.open(key) as source:
                stats = unpack(source, str(folder), self._uid(), self.limits)
                if stats.skipped:
                    self.log.warning("Room %s: unpacking %s skipped %s", room_id, key,
                                     ", ".join(f"{r['count']} {reason}" for reason, r in stats.report().items()))
        except ArchiveRefused as e:
            raise TooLarge(f"The archive {key} is beyond this gateway's limits: {e}; "
                           "nothing changed") from None
        except ArchiveError as e:
            raise StorageUnavailable(f"The archive {key} is damaged: {e}") from e
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            plan = self.plan(room_id)
            raise TooLarge(
                f"The archive {key} does not fit the room's workspace (plan {plan.name!r}: "
                f"{plan.workspace_bytes} bytes, {plan.workspace_inodes} inodes); nothing changed"
            ) from None

    def _present(self, room_id: str) -> bool:
        if self.workspace_quotas == "off":
            return self.working_copy(room_id).exists()
        if not self._image(room_id).exists():
            return False
        self._check_volumes()
        volumes.attach(self._image(room_id), self.working_copy(room_id))
        return True

    def _new_working_copy(self, room_id: str) -> None:
        """An empty working copy (a new volume of the plan's quotas)."""
        if self.workspace_quotas == "off":
            return self._new_folder(self.working_copy(room_id))
        self._check_volumes()
        plan = self.plan(room_id)
        volumes.make(self._image(room_id), self.working_copy(room_id), plan.workspace_bytes,
                     plan.workspace_inodes, self._uid(), self.preallocate_workspaces)

    def _remove_working_copy(self, room_id: str) -> None:
        if self.workspace_quotas == "loop":
            volumes.remove(self._image(room_id), self.working_copy(room_id))
        _remove_folder(self.working_copy(room_id))

    def _image(self, room_id: str) -> Path:
        return Path(self.volumes_dir) / f"{room_id}.ext4"

    def _check_volumes(self) -> None:
        reason = volumes.problem()
        if reason:
            raise Unavailable(
                f"Room workspaces cannot get their quotas: {reason}. Run the gateway as root "
                "with e2fsprogs, or set c.RoomStorage.workspace_quotas = 'off' (no byte or inode "
                "limits: trusted users only)"
            )

    def _new_folder(self, folder: Path) -> None:
        folder.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
        uid = self._uid()
        if uid is not None:
            os.chown(folder, uid, uid)

    def _uid(self) -> int | None:
        """Blocking: the host uid owning working copies (workspace_uid as the engine maps
        it, kernelgate.userns); None when the gateway is not root (it cannot chown)."""
        if os.geteuid() != 0:
            return None
        return UserNamespace(parent=self).ids(self.engine, self.workspace_uid)[0]


#: Snapshots whose skipped report is kept in memory (for their answers).
_KEPT_REPORTS = 1000


def _current_key(room_id: str) -> str:
    return f"rooms/{room_id}/current.tar"


def _snapshot_key(room_id: str, snapshot_id: str) -> str:
    return f"rooms/{room_id}/snapshots/{snapshot_id}.tar"


def _remove_folder(folder: Path) -> None:
    """Remove a folder tree without following links, at any depth (archive.remove_tree)."""
    remove_tree(str(folder))


class _TooLong(Exception):
    """The archive grew past the upload's limit (the backend stored nothing)."""


def _upload(backend: StorageBackend, key: str, folder: Path,
            limit: int | None = None,
            limits: Limits = Limits()) -> tuple[int, str, ArchiveStats]:
    """Pack `folder` into `backend` under `key` within `limits` through a pipe: (bytes, sha256, stats).
    _TooLong, and nothing stored, once the archive passes `limit` bytes."""
    read_fd, write_fd = os.pipe()
    outcome: dict = {}

    def produce() -> None:
        try:
            with open(write_fd, "wb", buffering=CHUNK) as out:
                outcome["stats"] = pack(str(folder), out, limits)
        except BaseException as e:  # noqa: BLE001 - handed to the reading side
            outcome["error"] = e

    producer = threading.Thread(target=produce, name=f"pack-{key}", daemon=True)
    producer.start()
    source = _PipeSource(open(read_fd, "rb", buffering=0), producer, outcome, limit)
    try:
        size = backend.put(key, source)
    finally:
        source.close()
        producer.join()
    if "error" in outcome:  # the backend stopped reading before EOF, then the packer failed
        raise StorageUnavailable(f"Packing the workspace failed: {outcome['error']}")
    return size, source.digest.hexdigest(), outcome["stats"]


class _PipeSource:
    """The reading end of the packing pipe: full reads, a running sha256, and the
    packer's error raised at EOF, so a backend never stores a cut archive as whole."""

    def __init__(self, pipe: BinaryIO, producer: threading.Thread, outcome: dict,
                 limit: int | None = None) -> None:
        self.pipe, self.producer, self.outcome, self.limit = pipe, producer, outcome, limit
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int | None = -1) -> bytes:
        everything = n is None or n < 0
        parts, got = [], 0
        while everything or got < n:
            data = self.pipe.read(CHUNK if everything else n - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        if everything or got < n:  # EOF: the packer is done, well or not
            self.producer.join()
            if "error" in self.outcome:
                error = self.outcome["error"]
                raise StorageUnavailable(f"Packing the workspace failed: {error}") from error
        data = b"".join(parts)
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise _TooLong(self.limit)
        self.digest.update(data)
        return data

    def close(self) -> None:
        self.pipe.close()
