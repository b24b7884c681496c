"""Store: the gateway's persistent state (users, solo and Jupyter sessions, rooms, snapshots,
audit log).

Contract:
- `await store.migrate()` before anything else: it creates or upgrades the schema to the
  newest Alembic revision, and does nothing when it is already there.
- Every public method is a coroutine whose database work runs in the store's own small
  thread pool, one transaction per call, so the event loop never blocks. Calls may
  overlap freely: writes that touch a room lock its row first, so they serialise per
  room (on PostgreSQL with SELECT ... FOR UPDATE; on SQLite every write transaction is
  BEGIN IMMEDIATE).
- Results are frozen dataclasses, never ORM objects.
- A room that does not exist raises NotFound; a duplicate (room id, solo kernel id, a
  kernel id already used by another room kernel) raises Conflict; a role outside ROLES
  raises BadRequest. Timestamps in and out are timezone-aware (UTC out); a naive
  datetime raises ValueError, JSON fields that are not JSON-serialisable raise TypeError.
- The store keeps integrity, not policy: who may do what, quotas and non-empty language
  stacks are the rooms service's business.
- SQLite (the default, `<data_dir>/kernelgate.db`) runs in WAL mode with foreign keys on;
  the file is created readable by its owner only, since room kernels' connection info
  holds their signing keys. PostgreSQL is used through psycopg 3.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial, wraps
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, delete, event, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, selectinload, sessionmaker
from traitlets import Int, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from kernelgate import metrics
from kernelgate.clock import utcnow
from kernelgate.errors import BadRequest, Conflict, NotFound, Unavailable
from kernelgate.store.models import (
    ROLES,
    AuditEntry,
    KernelSession,
    Member,
    Room,
    RoomKernel,
    RoomLanguage,
    RoomStorageState,
    Snapshot,
    SoloSession,
    User,
)

MIGRATIONS = Path(__file__).with_name("migrations")
#: Seconds a SQLite write waits for another one to finish before failing.
SQLITE_BUSY_TIMEOUT = 30.0
#: Key of the PostgreSQL advisory lock that serialises concurrent migrations.
_MIGRATION_LOCK = 0x6B67_0001

T = TypeVar("T")



class StoreUnavailable(Unavailable):
    """The database cannot serve the operation now (503 with Retry-After)."""

    retry_after = 5

class _Unset:
    """The type of UNSET."""

    def __repr__(self) -> str:
        return "UNSET"


#: "Leave this field as it is", for fields where None is a value (update_room).
UNSET: Any = _Unset()


@dataclass(frozen=True)
class UserRecord:
    """A user as last seen in a verified identity."""

    user: str
    name: str
    tier: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class MemberRecord:
    user: str
    role: str


@dataclass(frozen=True)
class RoomRecord:
    """A room with its language stack (sorted) and members (sorted by user)."""

    id: str
    name: str
    owner: str
    storage: str
    created_at: datetime
    expires_at: datetime | None
    stopped_at: datetime | None
    languages: tuple[str, ...]
    members: tuple[MemberRecord, ...]

    def role_of(self, user: str) -> str | None:
        """The user's role in this room; None for a non-member."""
        return next((m.role for m in self.members if m.user == user), None)


@dataclass(frozen=True)
class RoomKernelRecord:
    """A room's kernel for one kernelspec; `info` is what re-attaching to it needs."""

    room_id: str
    kernelspec: str
    kernel_id: str
    info: dict
    started_at: datetime


@dataclass(frozen=True)
class SoloRecord:
    """A solo kernel's session; `ended_at` and `end_reason` are None while it runs."""

    kernel_id: str
    user: str
    kernelspec: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True)
class SessionRecord:
    """A Jupyter session: `user`'s binding of a path (and name, type) to a kernel."""

    id: str
    user: str
    path: str
    name: str
    type: str
    kernel_id: str


@dataclass(frozen=True)
class SnapshotRecord:
    """A snapshot of a room's workspace: an archive of `size` bytes holding `files`
    regular files, kept in the `storage` backend until `expires_at` (None: forever)."""

    id: str
    room_id: str
    storage: str
    created_at: datetime
    expires_at: datetime | None
    created_by: str
    reason: str
    size: int
    files: int
    sha256: str


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict


def migrations_config(connection: Connection) -> Config:
    """An Alembic Config (no alembic.ini) that migrates `connection` with our revisions."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _transaction(readonly: bool):
    """Declares a store operation once: `fn(session, *args)` becomes the coroutine method
    `store.fn(*args)`, run in the store's thread pool in one transaction (read-only or
    writing), committed if it returns, rolled back if it raises."""

    def declare(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
        @wraps(fn)
        async def operation(self: "Store", *args, **kwargs) -> T:
            maker = self._reader if readonly else self._writer
            with metrics.STORE.labels(fn.__name__).time():
                return await self._run(_in_transaction, maker, lambda session: fn(session, *args, **kwargs))

        return operation

    return declare


reads = _transaction(readonly=True)
writes = _transaction(readonly=False)


class Store(LoggingConfigurable):
    """The gateway's database. See the module docstring for the contract."""

    url = Unicode(
        "", config=True, help="SQLAlchemy URL of the database: sqlite:////path/to/file.db or "
        "postgresql://user:password@host/db (driver: psycopg). Empty: SQLite at "
        "<data_dir>/kernelgate.db.",
    )
    data_dir = Unicode(
        config=True, help="Folder of the default SQLite database. Default: /var/lib/kernelgate "
        "as root, ~/.local/share/kernelgate otherwise.",
    )
    threads = Int(4, config=True, help="Worker threads, and so database connections, of the store.")

    @default("data_dir")
    def _default_data_dir(self) -> str:
        if os.geteuid() == 0:
            return "/var/lib/kernelgate"
        return str(Path.home() / ".local" / "share" / "kernelgate")

    @validate("url")
    def _supported(self, proposal) -> str:
        if not proposal["value"]:
            return ""
        try:
            url = make_url(proposal["value"])
        except ArgumentError as e:
            raise TraitError(f"Store.url: {e}") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise TraitError(f"Store.url: only sqlite and postgresql are supported, not {url.drivername}")
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise TraitError("Store.url: SQLite needs a file (each connection would get its own "
                             "in-memory database)")
        return proposal["value"]

    @validate("threads")
    def _at_least_one(self, proposal) -> int:
        if proposal["value"] < 1:
            raise TraitError("Store.threads must be at least 1")
        return proposal["value"]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._url = self._effective_url()
        self._engine = self._create_engine(self._url)
        self._writer = sessionmaker(self._engine, expire_on_commit=False)
        self._reader = sessionmaker(
            self._engine.execution_options(kernelgate_readonly=True), expire_on_commit=False
        )
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="kernelgate-store")
        self._closed = False

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for a component doing its own blocking work in its own
        threads on the gateway's database (the database storage backend)."""
        return self._engine

    @property
    def database(self) -> str:
        """The database URL in use, with any password hidden (for logs and messages)."""
        return self._url.render_as_string(hide_password=True)

    # -- lifecycle -------------------------------------------------------------------

    async def migrate(self) -> None:
        """Create or upgrade the schema to the newest revision; idempotent, and safe to run
        from several stores at once."""
        await self._run(self._migrate)

    @reads
    def ping(session: Session) -> None:
        """Return if the database answers a query; raise SQLAlchemy's error otherwise."""
        session.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Wait for running calls, then close every connection. Later calls raise
        RuntimeError; closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._shutdown)

    # -- users and solo sessions -----------------------------------------------------

    @writes
    def touch_user(session: Session, user: str, name: str = "", tier: str = "") -> None:
        """Record that `user` was seen now, with the name and tier of their identity."""
        now = utcnow()
        insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = insert(User).values(id=user, name=name, tier=tier, first_seen=now, last_seen=now)
        session.execute(statement.on_conflict_do_update(
            index_elements=[User.id],
            set_={"name": statement.excluded.name, "tier": statement.excluded.tier,
                  "last_seen": statement.excluded.last_seen},
        ))

    @reads
    def users(session: Session) -> list[UserRecord]:
        """Every user seen so far, by user id."""
        return [_user_record(u) for u in session.scalars(select(User).order_by(User.id))]

    @reads
    def get_user(session: Session, user: str) -> UserRecord | None:
        """The user as last seen, or None if never seen."""
        u = session.get(User, user)
        return _user_record(u) if u else None

    @writes
    def solo_started(session: Session, kernel_id: str, user: str, kernelspec: str) -> None:
        """Record a solo kernel's start; Conflict if the kernel id is already recorded."""
        session.add(SoloSession(kernel_id=kernel_id, user_id=user, kernelspec=kernelspec,
                                started_at=utcnow()))
        _flush(session, f"Kernel {kernel_id} already has a solo session")

    @writes
    def solo_ended(session: Session, kernel_id: str, reason: str) -> None:
        """Record why and when a solo kernel ended ("deleted", "culled", "dead", "gateway
        stopped"...). The first end counts: ending it again changes nothing. NotFound for
        a kernel whose start was never recorded."""
        ended = session.execute(
            update(SoloSession)
            .where(SoloSession.kernel_id == kernel_id, SoloSession.ended_at.is_(None))
            .values(ended_at=utcnow(), end_reason=reason)
        )
        if not ended.rowcount and session.get(SoloSession, kernel_id) is None:
            raise NotFound(f"No solo session for kernel {kernel_id}")

    @writes
    def end_open_solo_sessions(session: Session, reason: str) -> int:
        """End every solo session still open (at start-up: those of a previous run that
        stopped without saying so). Returns how many were ended."""
        return session.execute(
            update(SoloSession).where(SoloSession.ended_at.is_(None))
            .values(ended_at=utcnow(), end_reason=reason)
        ).rowcount

    @reads
    def solo_sessions(session: Session, user: str | None = None) -> list[SoloRecord]:
        """Solo sessions, of one user or of everyone, oldest first."""
        query = select(SoloSession).order_by(SoloSession.started_at, SoloSession.kernel_id)
        if user is not None:
            query = query.where(SoloSession.user_id == user)
        return [
            SoloRecord(s.kernel_id, s.user_id, s.kernelspec, s.started_at, s.ended_at, s.end_reason)
            for s in session.scalars(query)
        ]

    # -- Jupyter sessions ------------------------------------------------------------

    @writes
    def save_session(session: Session, record: SessionRecord) -> None:
        """Record a Jupyter session, or replace the one with its id."""
        session.merge(KernelSession(
            id=record.id, user_id=record.user, path=record.path, name=record.name,
            type=record.type, kernel_id=record.kernel_id,
        ))

    @writes
    def delete_sessions(session: Session, ids: list[str]) -> None:
        """Forget these Jupyter sessions; unknown ids are ignored."""
        if ids:
            session.execute(delete(KernelSession).where(KernelSession.id.in_(ids)))

    @reads
    def kernel_sessions(session: Session) -> list[SessionRecord]:
        """Every Jupyter session, by id."""
        return [
            SessionRecord(s.id, s.user_id, s.path, s.name, s.type, s.kernel_id)
            for s in session.scalars(select(KernelSession).order_by(KernelSession.id))
        ]

    # -- rooms -----------------------------------------------------------------------

    @writes
    def create_room(session: Session, room_id: str, name: str, owner: str, languages: list[str],
                    storage: str, expires_at: datetime | None) -> RoomRecord:
        """Create a room, its owner as member (role "owner") and its languages (duplicates
        collapse), in one transaction; Conflict if the id is taken."""
        _check_aware(expires_at)
        room = Room(
            id=room_id, name=name, owner_id=owner, storage=storage, created_at=utcnow(),
            expires_at=expires_at, stopped_at=None,
            members=[Member(user_id=owner, role="owner")],
            languages=[RoomLanguage(kernelspec=k) for k in sorted(set(languages))],
        )
        session.add(room)
        _flush(session, f"Room {room_id} already exists")
        return _room_record(room)

    @reads
    def rooms_of(session: Session, user: str) -> list[RoomRecord]:
        """The rooms `user` is a member of, oldest first."""
        member_of = select(Member.room_id).where(Member.user_id == user)
        return _rooms(session, _rooms_query().where(Room.id.in_(member_of)))

    @reads
    def all_rooms(session: Session) -> list[RoomRecord]:
        """Every room, oldest first."""
        return _rooms(session, _rooms_query())

    @writes
    def update_room(session: Session, room_id: str, *, name: str | None = None,
                    expires_at: datetime | None | object = UNSET,
                    stopped_at: datetime | None | object = UNSET) -> RoomRecord:
        """Change the given fields (name None and UNSET leave a field as it is; None
        clears expires_at or stopped_at)."""
        room = _locked_room(session, room_id)
        if name is not None:
            room.name = name
        if expires_at is not UNSET:
            _check_aware(expires_at)
            room.expires_at = expires_at
        if stopped_at is not UNSET:
            _check_aware(stopped_at)
            room.stopped_at = stopped_at
        session.flush()
        return _room_record(room)

    @writes
    def delete_room(session: Session, room_id: str) -> None:
        """Delete the room with its members, languages and kernel records."""
        if not session.execute(delete(Room).where(Room.id == room_id)).rowcount:
            raise NotFound(f"Room not found: {room_id}")

    @writes
    def set_languages(session: Session, room_id: str, languages: list[str]) -> RoomRecord:
        """Make the room's language stack exactly `languages` (duplicates collapse). Its
        kernel records are left alone: stopping kernels is the caller's business."""
        room = _locked_room(session, room_id)
        wanted = set(languages)
        for language in [lang for lang in room.languages if lang.kernelspec not in wanted]:
            room.languages.remove(language)
        present = {lang.kernelspec for lang in room.languages}
        room.languages.extend(RoomLanguage(kernelspec=k) for k in sorted(wanted - present))
        session.flush()
        return _room_record(room)

    @writes
    def set_member(session: Session, room_id: str, user: str, role: str) -> RoomRecord:
        """Add `user` to the room with `role`, or change their role; BadRequest for a role
        outside ROLES."""
        if role not in ROLES:
            raise BadRequest(f"Unknown role {role!r}: one of {', '.join(ROLES)}")
        room = _locked_room(session, room_id)
        member = next((m for m in room.members if m.user_id == user), None)
        if member is None:
            room.members.append(Member(user_id=user, role=role))
        else:
            member.role = role
        session.flush()
        return _room_record(room)

    @writes
    def remove_member(session: Session, room_id: str, user: str) -> RoomRecord:
        """Remove `user` from the room; NotFound if they are not a member."""
        room = _locked_room(session, room_id)
        member = next((m for m in room.members if m.user_id == user), None)
        if member is None:
            raise NotFound(f"{user} is not a member of room {room_id}")
        room.members.remove(member)
        session.flush()
        return _room_record(room)

    @reads
    def count_owned_rooms(session: Session, user: str) -> int:
        """How many rooms `user` owns, stopped or expired ones included."""
        return session.scalar(select(func.count()).select_from(Room).where(Room.owner_id == user))

    # -- room kernels ----------------------------------------------------------------

    @writes
    def save_room_kernel(session: Session, room_id: str, kernelspec: str, kernel_id: str,
                         info: dict) -> None:
        """Record the room's kernel for `kernelspec`, replacing the one recorded before.
        `started_at` is now for a new kernel id, and kept when only `info` changes.
        `info` must be JSON-serialisable (decode a bytes key first). Conflict if another
        room kernel has this kernel id."""
        _check_json(info, "info")
        _locked_room(session, room_id)
        kernel = session.get(RoomKernel, (room_id, kernelspec))
        if kernel is None:
            session.add(RoomKernel(room_id=room_id, kernelspec=kernelspec, kernel_id=kernel_id,
                                   info=info, started_at=utcnow()))
        else:
            if kernel.kernel_id != kernel_id:
                kernel.kernel_id, kernel.started_at = kernel_id, utcnow()
            kernel.info = info
        _flush(session, f"Kernel {kernel_id} is already another room kernel")

    @writes
    def remove_room_kernel(session: Session, room_id: str, kernelspec: str) -> None:
        """Forget the room's kernel for `kernelspec`; nothing happens if none is recorded."""
        _locked_room(session, room_id)
        session.execute(
            delete(RoomKernel).where(RoomKernel.room_id == room_id, RoomKernel.kernelspec == kernelspec)
        )

    @reads
    def room_kernels(session: Session, room_id: str | None = None) -> list[RoomKernelRecord]:
        """The kernels of one room, or of every room, by room and kernelspec."""
        query = select(RoomKernel).order_by(RoomKernel.room_id, RoomKernel.kernelspec)
        if room_id is not None:
            if session.get(Room, room_id) is None:
                raise NotFound(f"Room not found: {room_id}")
            query = query.where(RoomKernel.room_id == room_id)
        return [
            RoomKernelRecord(k.room_id, k.kernelspec, k.kernel_id, k.info, k.started_at)
            for k in session.scalars(query)
        ]

    # -- audit log -------------------------------------------------------------------

    @writes
    def audit(session: Session, actor: str, action: str, target: str, details: dict | None = None) -> None:
        """Append an entry to the audit log; `details` must be JSON-serialisable."""
        _check_json(details or {}, "details")
        session.add(AuditEntry(at=utcnow(), actor=actor, action=action, target=target,
                               details=details or {}))

    @reads
    def audit_log(session: Session, limit: int = 100) -> list[AuditRecord]:
        """The `limit` newest audit entries, newest first; BadRequest for a negative limit."""
        if limit < 0:
            raise BadRequest("limit must not be negative")
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        return [
            AuditRecord(e.id, e.at, e.actor, e.action, e.target, e.details)
            for e in session.scalars(query)
        ]

    # -- room storage ----------------------------------------------------------------

    @reads
    def storage_states(session: Session) -> dict[str, tuple[str, datetime]]:
        """room id -> (fingerprint, synced_at) of what each room's durable copy holds."""
        return {s.room_id: (s.fingerprint, _utc(s.synced_at)) for s in session.scalars(select(RoomStorageState))}

    @writes
    def save_storage_state(session: Session, room_id: str, fingerprint: str, synced_at: datetime) -> None:
        """Record what the room's durable copy now holds."""
        _check_aware(synced_at)
        session.merge(RoomStorageState(room_id=room_id, fingerprint=fingerprint, synced_at=synced_at))

    @writes
    def delete_storage_state(session: Session, room_id: str) -> None:
        """Forget it; nothing happens if there is none."""
        session.execute(delete(RoomStorageState).where(RoomStorageState.room_id == room_id))

    # -- snapshots -------------------------------------------------------------------

    @writes
    def add_snapshot(session: Session, snapshot: SnapshotRecord) -> None:
        """Record a snapshot whose archive is stored; Conflict if the id is taken."""
        _check_aware(snapshot.created_at)
        _check_aware(snapshot.expires_at)
        session.add(Snapshot(**{f: getattr(snapshot, f) for f in SnapshotRecord.__dataclass_fields__}))
        _flush(session, f"Snapshot {snapshot.id} exists")

    @reads
    def snapshots(session: Session, room_id: str | None = None) -> list[SnapshotRecord]:
        """The snapshots of one room (deleted or not), or of every room, oldest first."""
        query = select(Snapshot).order_by(Snapshot.created_at, Snapshot.id)
        if room_id is not None:
            query = query.where(Snapshot.room_id == room_id)
        return [_snapshot_record(s) for s in session.scalars(query)]

    @reads
    def get_snapshot(session: Session, snapshot_id: str) -> SnapshotRecord | None:
        """The snapshot, or None if there is none with this id."""
        snapshot = session.get(Snapshot, snapshot_id)
        return _snapshot_record(snapshot) if snapshot else None

    @writes
    def delete_snapshot(session: Session, snapshot_id: str) -> None:
        """Forget a snapshot; nothing happens if there is none with this id."""
        session.execute(delete(Snapshot).where(Snapshot.id == snapshot_id))

    @reads
    def expired_snapshots(session: Session, now: datetime) -> list[SnapshotRecord]:
        """Snapshots whose retention ended at or before `now`, oldest first."""
        _check_aware(now)
        query = (select(Snapshot).where(Snapshot.expires_at <= now)
                 .order_by(Snapshot.created_at, Snapshot.id))
        return [_snapshot_record(s) for s in session.scalars(query)]

    # -- running work in the pool ----------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) in the store's threads. A database that cannot be reached (or fails
        the operation) raises StoreUnavailable: 503, and the caller changes nothing."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))
        except (OperationalError, InterfaceError) as e:
            self.log.warning("Database operation %s failed: %s", getattr(fn, "__name__", fn),
                             str(e.orig if e.orig is not None else e).splitlines()[0])
            raise StoreUnavailable("The database cannot be reached; retry shortly") from None

    # -- engine (worker threads) -----------------------------------------------------

    def _effective_url(self) -> URL:
        if not self.url:
            return URL.create("sqlite", database=str(Path(self.data_dir) / "kernelgate.db"))
        url = make_url(self.url)
        return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url

    def _create_engine(self, url: URL) -> Engine:
        if url.get_backend_name() == "postgresql":
            return create_engine(url, pool_size=self.threads, max_overflow=0, pool_pre_ping=True)
        engine = create_engine(
            url, pool_size=self.threads, max_overflow=0,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine

    def _migrate(self) -> None:
        if self._url.get_backend_name() == "sqlite":
            _create_private_file(Path(self._url.database))
        with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            command.upgrade(migrations_config(connection), "head")
            revision = MigrationContext.configure(connection).get_current_revision()
        self.log.info("Store %s at schema revision %s", self.database, revision)

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True)
        self._engine.dispose()


# -- helpers (worker threads) ----------------------------------------------------------


def _snapshot_record(snapshot: Snapshot) -> SnapshotRecord:
    return SnapshotRecord(**{
        f: _utc(getattr(snapshot, f)) if f in ("created_at", "expires_at") else getattr(snapshot, f)
        for f in SnapshotRecord.__dataclass_fields__
    })


def _in_transaction(maker: sessionmaker, fn: Callable[[Session], T]) -> T:
    """Run fn(session) in one transaction: committed if it returns, rolled back if it
    raises."""
    with maker.begin() as session:
        return fn(session)


def _flush(session: Session, conflict: str) -> None:
    """Flush; a constraint violation becomes Conflict(conflict)."""
    try:
        session.flush()
    except IntegrityError as e:
        raise Conflict(conflict) from e


def _rooms(session: Session, query) -> list[RoomRecord]:
    return [_room_record(room) for room in session.scalars(query.order_by(Room.created_at, Room.id))]


def _rooms_query():
    return select(Room).options(selectinload(Room.members), selectinload(Room.languages))


def _locked_room(session: Session, room_id: str) -> Room:
    """The room, its row locked until the transaction ends; NotFound if there is none."""
    room = session.scalars(_rooms_query().where(Room.id == room_id).with_for_update()).one_or_none()
    if room is None:
        raise NotFound(f"Room not found: {room_id}")
    return room


def _room_record(room: Room) -> RoomRecord:
    """The record of a room loaded or just written (whose datetimes are as the caller
    gave them, so converted to UTC here)."""
    return RoomRecord(
        id=room.id, name=room.name, owner=room.owner_id, storage=room.storage,
        created_at=_utc(room.created_at), expires_at=_utc(room.expires_at),
        stopped_at=_utc(room.stopped_at),
        languages=tuple(sorted(lang.kernelspec for lang in room.languages)),
        members=tuple(sorted((MemberRecord(m.user_id, m.role) for m in room.members),
                             key=lambda m: m.user)),
    )


def _user_record(user: User) -> UserRecord:
    return UserRecord(user.id, user.name, user.tier, _utc(user.first_seen), _utc(user.last_seen))


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(timezone.utc) if moment is not None else None


def _create_private_file(path: Path) -> None:
    """Create the SQLite file (and its folder) readable by its owner only, if missing.
    SQLite gives its -wal and -shm files the same permissions."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _sqlite_connect(dbapi_connection, _record) -> None:
    """Each new SQLite connection: WAL, foreign keys on, and transactions left to us."""
    dbapi_connection.isolation_level = None  # pysqlite's implicit BEGIN is replaced by _sqlite_begin
    cursor = dbapi_connection.cursor()
    for attempt in range(50):  # switching a new file to WAL can meet SQLITE_BUSY with no
        try:                   # busy wait (SQLite avoids a deadlock): retry briefly
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 49:
                raise
            time.sleep(0.1)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Reads take a snapshot (BEGIN); writes take the write lock at once (BEGIN
    IMMEDIATE), so they wait for each other instead of failing as "database is locked"."""
    readonly = connection.get_execution_options().get("kernelgate_readonly", False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


# -- helpers (caller's thread) ---------------------------------------------------------


def _check_aware(moment: datetime | None) -> None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the store needs timezone-aware ones")


def _check_json(value: dict, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serialisable: {e}") from None
