"""Rooms: persistent workspaces shared by members with roles, one kernel per language.

The store holds rooms, members, languages and the room kernels to re-adopt. A cache
of the room records serves authorization without I/O. Each room's workspace (its
working copy, a host folder mounted at /workspace in each of the room's containers,
and its durable copy and snapshots in the room's storage backend) belongs to
`RoomStorage`; the files are only ever touched by the agents inside the sandboxes and
by RoomStorage's no-follow archiving.

Room kernels start when the room is created and, after they stopped (gateway restart,
expiry, death), again on first use. Kernel clients (JupyterLab through GatewayClient)
get a room's kernel with `POST /api/kernels` and `env.KERNEL_ROOM` (`client_kernel`). Expired rooms keep their workspace for
`expired_retention` seconds; an admin can extend them, up to the owner's plan's
max_room_lifetime after the room's creation (rooms of the past are cut to it at start).
The owner's plan also sets the workspace's quotas and the snapshot limits (RoomStorage).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from traitlets import Float
from traitlets.config import LoggingConfigurable

from kernelgate import logs
from kernelgate.clock import iso, utcnow
from kernelgate.errors import BadRequest, Conflict, Forbidden, GatewayError, NotFound, TooMany, Unavailable
from kernelgate.identity import Identity
from kernelgate.kernels.registry import Kernel, KernelRegistry
from kernelgate.plans import Plan, Plans
from kernelgate.roles import GRANTABLE, at_least
from kernelgate.storage import RoomStorage, StorageUnavailable
from kernelgate.store import RoomRecord, SnapshotRecord, Store


def _parse_time(value, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{field}' must be an ISO 8601 time or null")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"'{field}' is not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise BadRequest(f"'{field}' needs a timezone (e.g. a trailing Z)")
    return moment


class RoomService(LoggingConfigurable):
    expired_retention = Float(
        7 * 24 * 3600.0, config=True,
        help="Seconds an expired room (and its workspace) is kept before it is deleted.",
    )
    check_interval = Float(30.0, config=True, help="Seconds between expiry checks.")

    def __init__(self, store: Store, registry: KernelRegistry, plans: Plans, storage: RoomStorage,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.storage = storage
        self.registry = registry
        self.plans = plans
        self._rooms: dict[str, RoomRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._expiry: asyncio.Future | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the rooms, re-adopt the room kernels still running from a past run (not
        those whose working copy is gone: they would serve a deleted folder), and start
        syncing the workspaces."""
        for room in await self.store.all_rooms():
            self._rooms[room.id] = await self._apply_plan(room, await self._owner_plan(None, room))

        async def readopt(records: list) -> None:  # one room's, in turn (one volume attach)
            for record in records:
                room = self._rooms.get(record.room_id)
                kernel = None
                if room is not None and not self.expired(room) and await self._present(room):
                    kernel = await self.registry.adopt(
                        record.kernel_id, record.kernelspec, room.owner, room.id, record.info,
                        self.workspace(room.id),
                    )
                if kernel is None:
                    await self.store.remove_room_kernel(record.room_id, record.kernelspec)

        by_room: dict[str, list] = {}
        for record in await self.store.room_kernels():
            by_room.setdefault(record.room_id, []).append(record)
        # rooms at once: each adoption may wait (registry.adopt_timeout), the waits must not add up
        await asyncio.gather(*(readopt(records) for records in by_room.values()))
        self._expiry = logs.background(self._expire_rooms())
        self.registry.on_new_sandbox.append(self._remember_room_kernel)
        await self.storage.start(lambda: [(r.id, r.storage) for r in self._rooms.values()])

    async def stop(self) -> None:
        """Gateway shutdown: remember how to re-attach to each running room kernel, and
        sync every workspace to its backend."""
        if self._expiry is not None:
            self._expiry.cancel()
        for kernel in self._room_kernels():
            try:
                await self._remember(kernel)
            except Unavailable as e:  # the next run starts this kernel afresh: files stay
                self.log.warning("Room kernel %s not remembered for re-adoption: %s", kernel.id, e)
        await self.storage.stop([(r.id, r.storage) for r in self._rooms.values()])

    # -- access ----------------------------------------------------------------------

    def role(self, identity: Identity, room: RoomRecord) -> str | None:
        """The caller's role in the room (platform admins act as owners)."""
        if identity.is_admin:
            return "owner"
        return next((m.role for m in room.members if m.user == identity.user), None)

    def get(self, identity: Identity, room_id: str, needed: str = "viewer") -> RoomRecord:
        """The room, if the caller is a member with at least `needed`.

        NotFound for non-members (the room does not exist for them), Forbidden for a
        role too low.
        """
        room = self._rooms.get(room_id)
        role = self.role(identity, room) if room else None
        if role is None:
            raise NotFound(f"Room not found: {room_id}")
        if not at_least(role, needed):
            raise Forbidden(f"This needs the {needed} role in the room; you are {role}")
        return room

    def kernel_role(self, identity: Identity, kernel: Kernel) -> str | None:
        """The caller's role for a kernel: its room's role, or owner of their solo kernel."""
        if kernel.room is None:
            return "owner" if identity.user == kernel.owner or identity.is_admin else None
        room = self._rooms.get(kernel.room)
        return self.role(identity, room) if room else None

    def all(self) -> list[RoomRecord]:
        return list(self._rooms.values())

    def rooms_of(self, identity: Identity) -> list[RoomRecord]:
        """The rooms the caller is a member of."""
        return [r for r in self._rooms.values() if any(m.user == identity.user for m in r.members)]

    def expired(self, room: RoomRecord) -> bool:
        return room.expires_at is not None and room.expires_at <= utcnow()

    def model(self, room: RoomRecord) -> dict:
        return {
            "id": room.id, "name": room.name, "owner": room.owner,
            "languages": list(room.languages), "storage": room.storage,
            "limits": self.storage.plan(room.id).limits(),
            "created_at": iso(room.created_at),
            "expires_at": iso(room.expires_at) if room.expires_at else None,
            "state": "expired" if self.expired(room) else "active",
            "storage_status": self.storage.status(room.id).model(),
            "members": [{"user": m.user, "role": m.role} for m in room.members],
            "kernels": [k.model() for k in self._room_kernels(room.id)],
        }

    def workspace(self, room_id: str) -> Path:
        """The room's working copy on this host."""
        return self.storage.working_copy(room_id)

    # -- changes ---------------------------------------------------------------------

    async def create(self, identity: Identity, body: dict) -> RoomRecord:
        """A new room with the caller as owner, its kernels running. All or nothing."""
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("'name' is required")
        languages = self._languages(identity, body.get("languages"))
        storage = self.storage.check_name(body.get("storage", "local"))
        expires_in = body.get("expires_in")
        if expires_in is not None and (not isinstance(expires_in, (int, float)) or expires_in <= 0):
            raise BadRequest("'expires_in' must be a positive number of seconds")
        source = await self._source_snapshot(identity, body.get("from_snapshot"))
        plan = self.plans.of(identity)
        if plan.max_rooms and await self.store.count_owned_rooms(identity.user) >= plan.max_rooms:
            raise TooMany(f"Your plan allows {plan.max_rooms} rooms; delete one first")
        if plan.max_room_lifetime:
            if expires_in is not None and expires_in > plan.max_room_lifetime:
                raise Forbidden(f"Rooms of your plan {plan.name!r} live at most {plan.max_room_lifetime} "
                                f"seconds; 'expires_in' is {expires_in}")
            expires_in = expires_in or plan.max_room_lifetime
        expires_at = utcnow() + timedelta(seconds=expires_in) if expires_in else None
        room_id = str(uuid.uuid4())
        room = await self.store.create_room(room_id, name.strip(), identity.user, languages, storage, expires_at)
        self._rooms[room_id] = room
        self.storage.set_plan(room_id, plan)
        try:
            await self.storage.create(room_id, source)
            async with self._lock(room_id):
                await self._start_kernels(room, languages)
        except BaseException:
            await self._remove(room, None)
            raise
        await self.store.audit(identity.user, "room.create", room_id,
                               {"languages": languages, "from_snapshot": source.id if source else None})
        return room

    async def update(self, identity: Identity, room_id: str, body: dict) -> RoomRecord:
        """PATCH {name?, expires_at?} (admins). A future expiry revives an expired room."""
        room = self.get(identity, room_id, "admin")
        changes = {}
        if "name" in body:
            if not isinstance(body["name"], str) or not body["name"].strip():
                raise BadRequest("'name' must be a non-empty string")
            changes["name"] = body["name"].strip()
        if "expires_at" in body:
            changes["expires_at"] = _parse_time(body["expires_at"], "expires_at")
            changes["stopped_at"] = None
            plan = await self._owner_plan(identity, room)
            latest = self._latest_expiry(room, plan)
            if latest is not None and (changes["expires_at"] is None or changes["expires_at"] > latest):
                raise Forbidden(
                    f"Rooms of the owner's plan {plan.name!r} live at most {plan.max_room_lifetime} "
                    f"seconds: this room's expiry can be at most {iso(latest)}"
                )
        room = await self.store.update_room(room_id, **changes)
        self._rooms[room_id] = room
        await self.store.audit(identity.user, "room.update", room_id, {k: str(v) for k, v in changes.items()})
        return room

    async def delete(self, identity: Identity, room_id: str) -> None:
        """DELETE (the owner): kernels stopped, a final snapshot taken, then workspace and
        records removed. StorageUnavailable (and the room kept) if the snapshot fails."""
        room = self.get(identity, room_id, "owner")
        async with self._lock(room_id):
            await self._remove(room, identity.user)
        await self.store.audit(identity.user, "room.delete", room_id)

    async def snapshots(self, identity: Identity, room_id: str) -> list[SnapshotRecord]:
        """The room's snapshots (members)."""
        self.get(identity, room_id)
        return await self.storage.snapshots(room_id)

    async def snapshot(self, identity: Identity, room_id: str) -> SnapshotRecord:
        """A snapshot of the workspace now (admins); StorageUnavailable if the backend fails."""
        room = self.get(identity, room_id, "admin")
        self.storage.set_plan(room_id, await self._owner_plan(identity, room))
        snapshot = await self.storage.snapshot(room_id, room.storage, identity.user)
        await self.store.audit(identity.user, "room.snapshot", room_id, {"snapshot": snapshot.id})
        return snapshot

    async def restore(self, identity: Identity, room_id: str, snapshot_id: str) -> SnapshotRecord:
        """Replace the workspace with a snapshot (admins). The kernels stop (their
        terminals with them) and start again on the restored files. Returns the snapshot
        taken of the workspace just before."""
        room = self.get(identity, room_id, "admin")
        self.storage.set_plan(room_id, await self._owner_plan(identity, room))
        async with self._lock(room_id):
            for kernel in self._room_kernels(room_id):
                await self._stop_kernel(kernel)
            try:
                safety = await self.storage.restore(room_id, room.storage, snapshot_id, identity.user)
            finally:
                if not self.expired(room):
                    await self._start_kernels(room, list(room.languages))
        await self.store.audit(identity.user, "room.restore", room_id,
                               {"snapshot": snapshot_id, "previous": safety.id})
        return safety

    async def set_languages(self, identity: Identity, room_id: str, body: dict) -> RoomRecord:
        """PUT languages (admins): kernels started and stopped to match; serialized."""
        self.get(identity, room_id, "admin")
        languages = self._languages(identity, body.get("languages"))
        async with self._lock(room_id):
            room = await self.store.set_languages(room_id, languages)
            self._rooms[room_id] = room
            for kernel in self._room_kernels(room_id):
                if kernel.name not in languages:
                    await self._stop_kernel(kernel)
            if not self.expired(room):
                await self._start_kernels(room, languages)
        await self.store.audit(identity.user, "room.languages", room_id, {"languages": languages})
        return self._rooms[room_id]

    async def set_member(self, identity: Identity, room_id: str, user: str, body: dict) -> RoomRecord:
        """PUT member (admins; only the owner grants or takes away admin)."""
        room = self.get(identity, room_id, "admin")
        role = body.get("role")
        if role not in GRANTABLE:
            raise BadRequest(f"'role' must be one of {', '.join(GRANTABLE)}")
        current = next((m.role for m in room.members if m.user == user), None)
        if current == "owner":
            raise BadRequest("The owner's role cannot change")
        if "admin" in (role, current) and not at_least(self.role(identity, room), "owner"):
            raise Forbidden("Only the owner grants or removes the admin role")
        if current is None:
            limit = (await self._owner_plan(identity, room)).max_members
            if limit and len(room.members) >= limit:
                raise TooMany(f"The room's plan allows {limit} members")
        room = await self.store.set_member(room_id, user, role)
        self._rooms[room_id] = room
        await self.store.audit(identity.user, "member.set", room_id, {"user": user, "role": role})
        return room

    async def remove_member(self, identity: Identity, room_id: str, user: str) -> RoomRecord:
        """DELETE member: admins, or members leaving; admins only by the owner."""
        room = self.get(identity, room_id)
        current = next((m.role for m in room.members if m.user == user), None)
        if current is None:
            raise NotFound(f"{user} is not a member")
        if current == "owner":
            raise BadRequest("The owner cannot leave or be removed; delete the room instead")
        mine = self.role(identity, room)
        if user != identity.user:
            needed = "owner" if current == "admin" else "admin"
            if not at_least(mine, needed):
                raise Forbidden(f"Removing a member with the {current} role needs the {needed} role")
        room = await self.store.remove_member(room_id, user)
        self._rooms[room_id] = room
        await self.store.audit(identity.user, "member.remove", room_id, {"user": user})
        return room

    async def kernels(self, identity: Identity, room_id: str, needed: str = "viewer") -> list[Kernel]:
        """The room's kernels, started where they are not running (Conflict if expired)."""
        room = self.get(identity, room_id, needed)
        self._check_active(room)
        async with self._lock(room_id):
            await self._start_kernels(room, list(room.languages))
        return self._room_kernels(room_id)

    async def client_kernel(self, identity: Identity, room_id: str, name: str | None) -> Kernel:
        """The room's kernel of kernelspec `name` (default: the room's first) for a client
        that runs code (`POST /api/kernels` with KERNEL_ROOM): participants and above.

        A kernelspec the room does not run is added to the room's languages when the
        caller is an admin; others get Forbidden, naming the room's languages. NotFound
        for an unknown kernelspec or a room the caller cannot see, Conflict if expired.
        """
        room = self.get(identity, room_id, "participant")
        self._check_active(room)
        name = name or room.languages[0]
        if name not in room.languages:
            self.registry.tier_of(name)  # NotFound for an unknown kernelspec
            if not at_least(self.role(identity, room), "admin"):
                raise Forbidden(f"Room {room_id} runs {', '.join(room.languages)}, not {name}; "
                                "a room admin can add it")
            await self.set_languages(identity, room_id, {"languages": [*room.languages, name]})
        return await self.kernel_for(identity, room_id, name, "participant")

    async def kernel_for(self, identity: Identity, room_id: str, language: str | None,
                         needed: str) -> Kernel:
        """The room's kernel of `language` (kernelspec name; default: the first)."""
        kernels = await self.kernels(identity, room_id, needed)
        for kernel in kernels:
            if language in (None, kernel.name, kernel.language):
                return kernel
        raise BadRequest(f"The room has no {language!r} kernel")

    # -- internals ---------------------------------------------------------------------

    def _check_active(self, room: RoomRecord) -> None:
        if self.expired(room):
            raise Conflict(f"Room {room.id} expired at {iso(room.expires_at)}; an admin can extend it")

    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._locks.setdefault(room_id, asyncio.Lock())

    def _languages(self, identity: Identity, value) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest("'languages' must be a list of kernelspec names")
        languages = sorted(set(value))
        if not languages:
            raise BadRequest("A room needs at least one language")
        known = set(self.registry.catalog.find_kernel_specs())
        unknown = [name for name in languages if name not in known]
        if unknown:
            raise BadRequest(f"Unknown languages: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for name in languages:
            self.plans.check_kernel_tier(identity, name, self.registry.tier_of(name))
        return languages

    async def _source_snapshot(self, identity: Identity, snapshot_id) -> SnapshotRecord | None:
        """The snapshot a new room starts from: one of a room where the caller is admin,
        or, for platform admins, any (a deleted room's final snapshot too)."""
        if snapshot_id is None:
            return None
        if not isinstance(snapshot_id, str):
            raise BadRequest("'from_snapshot' must be a snapshot id")
        snapshot = await self.store.get_snapshot(snapshot_id)
        room = self._rooms.get(snapshot.room_id) if snapshot else None
        allowed = snapshot is not None and (
            identity.is_admin or (room is not None and at_least(self.role(identity, room), "admin"))
        )
        if not allowed:
            raise NotFound(f"Snapshot not found: {snapshot_id}")
        self.storage.check_name(snapshot.storage)  # before the room exists
        return snapshot

    async def _owner_plan(self, identity: Identity | None, room: RoomRecord) -> Plan:
        """The plan of the room's owner, which sets the room's size: from their identity
        when they act, else from the tier they last showed (platform admin or not)."""
        if identity is not None and identity.user == room.owner:
            return self.plans.of(identity)
        owner = await self.store.get_user(room.owner)
        return self.plans.of(Identity(room.owner, owner.tier if owner else ""))

    @staticmethod
    def _latest_expiry(room: RoomRecord, plan: Plan) -> datetime | None:
        """The latest expiry the plan allows the room (None: no limit)."""
        if not plan.max_room_lifetime:
            return None
        return room.created_at + timedelta(seconds=plan.max_room_lifetime)

    async def _apply_plan(self, room: RoomRecord, plan: Plan) -> RoomRecord:
        """Give the room's storage the plan's quotas, and cut an expiry past its lifetime."""
        self.storage.set_plan(room.id, plan)
        latest = self._latest_expiry(room, plan)
        if latest is not None and (room.expires_at is None or room.expires_at > latest):
            self.log.warning("Room %s: expiry cut to %s (plan %r's max_room_lifetime)", room.id, iso(latest), plan.name)
            room = await self.store.update_room(room.id, expires_at=latest)
        return room

    async def _present(self, room: RoomRecord) -> bool:
        """Whether the room's working copy is here (its volume attached) to re-adopt its kernels."""
        try:
            return await self.storage.present(room.id)
        except GatewayError as e:
            self.log.warning("Room %s: working copy not attached: %s", room.id, e.message)
            return False

    def _room_kernels(self, room_id: str | None = None) -> list[Kernel]:
        return sorted(
            (k for k in self.registry.kernels.values() if k.room and room_id in (None, k.room)),
            key=lambda k: k.name,
        )

    async def _start_kernels(self, room: RoomRecord, languages: list[str]) -> None:
        """Start the kernels of `languages` that are not running; on any failure, stop
        the ones this call started and raise the first error."""
        running = {k.name for k in self._room_kernels(room.id)}
        missing = [name for name in languages if name not in running]
        if missing:
            await self.storage.prepare(room.id, room.storage)
        results = await asyncio.gather(
            *(self.registry.start(name, room.owner, room=room.id, workspace=self.workspace(room.id))
              for name in missing),
            return_exceptions=True,
        )
        started = [r for r in results if isinstance(r, Kernel)]
        failures = [r for r in results if not isinstance(r, Kernel)]
        if failures:
            for kernel in started:
                await self.registry.shutdown(kernel)
            raise failures[0]
        for kernel in started:
            await self._remember(kernel)

    async def _remember(self, kernel: Kernel) -> None:
        try:
            info = await self.registry.provisioner_info(kernel)
        except GatewayError as e:
            self.log.warning("Kernel %s cannot be re-adopted later: %s", kernel.id, e)
            return
        await self.store.save_room_kernel(kernel.room, kernel.name, kernel.id, info)

    async def _remember_room_kernel(self, kernel: Kernel) -> None:
        """A room kernel in a new container: what re-adopting it needs changed."""
        if kernel.room is not None and kernel.room in self._rooms:
            await self._remember(kernel)

    async def _stop_kernel(self, kernel: Kernel) -> None:
        await self.registry.shutdown(kernel)
        await self.store.remove_room_kernel(kernel.room, kernel.name)

    async def _remove(self, room: RoomRecord, actor: str | None) -> None:
        """Stop the room's kernels and delete its workspace and records (idempotent).
        With an `actor`, a final snapshot is kept first (StorageUnavailable: nothing is
        removed); without, the room never held anything (its creation failed)."""
        for kernel in self._room_kernels(room.id):
            await self.registry.shutdown(kernel)
        if actor is None:
            await self.storage.discard(room.id)
        else:
            await self.storage.remove(room.id, room.storage, actor)
        self._rooms.pop(room.id, None)
        try:
            await self.store.delete_room(room.id)
        except NotFound:
            pass

    async def _expire_rooms(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                await self.expire_due()
            except Exception:  # noqa: BLE001 - the loop must survive one bad round
                self.log.exception("Room expiry round failed")

    async def expire_due(self) -> None:
        """Stop the kernels of rooms past their expiry; delete those past retention."""
        now = utcnow()
        for room in list(self._rooms.values()):
            if not self.expired(room):
                continue
            if now - room.expires_at > timedelta(seconds=self.expired_retention):
                try:
                    async with self._lock(room.id):
                        await self._remove(room, "kernelgate")
                except StorageUnavailable as e:
                    self.log.warning("Room %s kept past retention: no final snapshot (%s)", room.id, e.message)
                    continue
                await self.store.audit("kernelgate", "room.retention_end", room.id)
            elif room.stopped_at is None:
                async with self._lock(room.id):
                    for kernel in self._room_kernels(room.id):
                        await self._stop_kernel(kernel)
                    self._rooms[room.id] = await self.store.update_room(room.id, stopped_at=now)
                await self.storage.sync(room.id, room.storage)
                await self.store.audit("kernelgate", "room.expire", room.id)
