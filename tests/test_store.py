"""The store on SQLite (a temp file) and on PostgreSQL (a real server, tests/postgres.py):
every method, migrations, concurrency, and that waiting on the database never blocks the
event loop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.script import ScriptDirectory
from alembic.runtime.migration import MigrationContext
from traitlets import TraitError

from kernelgate.errors import BadRequest, Conflict, NotFound
from kernelgate.store import (
    UNSET,
    AuditRecord,
    MemberRecord,
    RoomKernelRecord,
    SessionRecord,
    SnapshotRecord,
    SoloRecord,
    Store,
)
from kernelgate.store.models import Base
from kernelgate.store.store import migrations_config

TABLES = {"users", "solo_sessions", "rooms", "members", "room_languages", "room_kernels", "audit_log"}
ROOM_CHILDREN = ("members", "room_languages", "room_kernels")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The URL of an empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)


@pytest.fixture
def store(database_url, io_loop):
    """A migrated Store on that database, closed after the test."""
    store = Store(url=database_url)
    io_loop.run_sync(store.migrate)
    yield store
    io_loop.run_sync(store.close)


@pytest.fixture
def db(database_url):
    """A separate synchronous engine on the same database, to look at rows directly."""
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


async def get_room(store: Store, room_id: str):
    """The room with this id, or None, read as the gateway reads rooms (all_rooms)."""
    return next((room for room in await store.all_rooms() if room.id == room_id), None)


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def aware(record) -> None:
    """Every datetime field of the record is in UTC."""
    for value in vars(record).values():
        if isinstance(value, datetime):
            assert value.tzinfo is not None and value.utcoffset() == timedelta(0), record


# -- migrations ---------------------------------------------------------------------


async def test_migrations_are_idempotent_and_match_the_models(store, db):
    await store.migrate()
    await store.migrate()
    assert TABLES <= set(sa.inspect(db).get_table_names())
    with db.connect() as connection:
        context = MigrationContext.configure(connection)
        head = ScriptDirectory.from_config(migrations_config(connection)).get_current_head()
        assert context.get_current_revision() == head
        assert compare_metadata(context, Base.metadata) == []


async def test_concurrent_migrations_of_a_new_database(database_url, db):
    stores = [Store(url=database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(s.migrate() for s in stores))
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert TABLES <= set(sa.inspect(db).get_table_names())


async def test_downgrade_removes_everything_and_upgrade_restores_it(store, db):
    await store.create_room("r", "R", "alice", ["python3"], "vol", None)
    with db.begin() as connection:
        command.downgrade(migrations_config(connection), "base")
    assert not TABLES & set(sa.inspect(db).get_table_names())
    await store.migrate()
    assert await store.all_rooms() == []


# -- users and solo sessions ------------------------------------------------------------


async def test_users_are_recorded_as_last_seen(store):
    await store.touch_user("alice", "Alice", "pro")
    await store.touch_user("bob")
    [first] = [u for u in await store.users() if u.user == "alice"]
    await store.touch_user("alice", "Alice A.", "")
    alice, bob = await store.users()
    assert (alice.user, alice.name, alice.tier) == ("alice", "Alice A.", "")
    assert alice.first_seen == first.first_seen < alice.last_seen
    assert (bob.user, bob.name, bob.tier) == ("bob", "", "")
    aware(alice)
    assert await store.get_user("alice") == alice
    assert await store.get_user("nobody") is None


async def test_solo_sessions(store):
    await store.solo_started("k1", "alice", "python3")
    await store.solo_started("k2", "bob", "python3")
    await store.solo_started("k3", "alice", "r")
    with pytest.raises(Conflict):
        await store.solo_started("k1", "bob", "python3")
    with pytest.raises(NotFound):
        await store.solo_ended("nope", "deleted")

    await store.solo_ended("k1", "culled")
    await store.solo_ended("k1", "deleted")  # the first end counts
    k1, k3 = await store.solo_sessions("alice")
    assert (k1.kernel_id, k1.user, k1.kernelspec, k1.end_reason) == ("k1", "alice", "python3", "culled")
    assert k1.started_at <= k1.ended_at
    assert k3 == SoloRecord("k3", "alice", "r", k3.started_at, None, None)
    aware(k1)

    assert await store.end_open_solo_sessions("gateway stopped") == 2
    assert await store.end_open_solo_sessions("gateway stopped") == 0
    sessions = await store.solo_sessions()
    assert [(s.kernel_id, s.end_reason) for s in sessions] == [
        ("k1", "culled"), ("k2", "gateway stopped"), ("k3", "gateway stopped")
    ]
    assert await store.solo_sessions("carol") == []


# -- rooms ------------------------------------------------------------------------------


async def test_create_and_get_rooms(store):
    expires = datetime.now(timezone.utc) + timedelta(days=1)
    room = await store.create_room("r1", "Algebra", "alice", ["python3", "r", "python3"], "vol-r1", expires)
    assert (room.id, room.name, room.owner, room.storage) == ("r1", "Algebra", "alice", "vol-r1")
    assert room.languages == ("python3", "r")
    assert room.members == (MemberRecord("alice", "owner"),)
    assert room.expires_at == expires and room.stopped_at is None
    assert room.role_of("alice") == "owner" and room.role_of("bob") is None
    aware(room)
    assert await get_room(store, "r1") == room
    assert await get_room(store, "nope") is None

    await store.create_room("r2", "Other", "bob", ["python3"], "vol-r2", None)
    await store.set_member("r2", "alice", "viewer")
    await store.create_room("r3", "Third", "bob", [], "vol-r3", None)
    assert [r.id for r in await store.rooms_of("alice")] == ["r1", "r2"]
    assert [r.id for r in await store.rooms_of("bob")] == ["r2", "r3"]
    assert await store.rooms_of("carol") == []
    assert [r.id for r in await store.all_rooms()] == ["r1", "r2", "r3"]
    assert await store.count_owned_rooms("bob") == 2
    assert await store.count_owned_rooms("carol") == 0


async def test_duplicate_room_id_is_a_conflict_and_changes_nothing(store):
    first = await store.create_room("r", "First", "alice", ["python3"], "vol-1", None)
    with pytest.raises(Conflict):
        await store.create_room("r", "Second", "bob", ["r"], "vol-2", None)
    assert await get_room(store, "r") == first
    assert await store.count_owned_rooms("bob") == 0


async def test_update_room(store):
    await store.create_room("r", "Name", "alice", ["python3"], "vol", None)
    plus_two = timezone(timedelta(hours=2))
    expires = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=plus_two)
    room = await store.update_room("r", expires_at=expires)
    assert room.expires_at == expires and room.expires_at.tzinfo == timezone.utc
    assert room.name == "Name" and room.stopped_at is None

    stopped = datetime.now(timezone.utc)
    room = await store.update_room("r", name="Renamed", stopped_at=stopped)
    assert (room.name, room.expires_at, room.stopped_at) == ("Renamed", expires, stopped)
    room = await store.update_room("r", expires_at=None, stopped_at=UNSET)
    assert (room.expires_at, room.stopped_at) == (None, stopped)
    assert await get_room(store, "r") == room

    with pytest.raises(ValueError):
        await store.update_room("r", stopped_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        await store.create_room("naive", "N", "alice", [], "vol", datetime(2030, 1, 1))
    with pytest.raises(NotFound):
        await store.update_room("nope", name="x")


async def test_languages(store):
    await store.create_room("r", "R", "alice", ["python3", "r"], "vol", None)
    room = await store.set_languages("r", ["r", "javascript", "bash", "javascript"])
    assert room.languages == ("bash", "javascript", "r")
    assert (await get_room(store, "r")).languages == ("bash", "javascript", "r")
    assert (await store.set_languages("r", ["python3"])).languages == ("python3",)
    with pytest.raises(NotFound):
        await store.set_languages("nope", ["python3"])


async def test_members(store):
    await store.create_room("r", "R", "alice", ["python3"], "vol", None)
    await store.set_member("r", "carol", "viewer")
    room = await store.set_member("r", "bob", "participant")
    assert room.members == (
        MemberRecord("alice", "owner"), MemberRecord("bob", "participant"), MemberRecord("carol", "viewer")
    )
    room = await store.set_member("r", "bob", "admin")
    assert room.role_of("bob") == "admin" and len(room.members) == 3
    with pytest.raises(BadRequest):
        await store.set_member("r", "bob", "superuser")
    room = await store.remove_member("r", "carol")
    assert [m.user for m in room.members] == ["alice", "bob"]
    assert await get_room(store, "r") == room
    assert await store.rooms_of("carol") == []
    with pytest.raises(NotFound):
        await store.remove_member("r", "carol")
    with pytest.raises(NotFound):
        await store.set_member("nope", "bob", "viewer")
    with pytest.raises(NotFound):
        await store.remove_member("nope", "bob")


async def test_deleting_a_room_cascades(store, db):
    await store.create_room("r", "R", "alice", ["python3", "r"], "vol", None)
    await store.create_room("kept", "K", "alice", ["python3"], "vol-k", None)
    await store.set_member("r", "bob", "participant")
    await store.save_room_kernel("r", "python3", "k-py", {"key": "secret"})
    await store.save_room_kernel("kept", "python3", "k-kept", {})
    assert [count(db, table) for table in ROOM_CHILDREN] == [3, 3, 2]

    await store.delete_room("r")
    assert await get_room(store, "r") is None
    assert [count(db, table) for table in ROOM_CHILDREN] == [1, 1, 1]
    assert [k.kernel_id for k in await store.room_kernels()] == ["k-kept"]
    with pytest.raises(NotFound):
        await store.delete_room("r")


# -- room kernels -------------------------------------------------------------------------


async def test_room_kernels(store):
    await store.create_room("a", "A", "alice", ["python3", "r"], "vol-a", None)
    await store.create_room("b", "B", "bob", ["python3"], "vol-b", None)
    info = {"connection": {"key": "abc", "transport": "ipc", "shell_port": 1},
            "provisioner": {"container_id": "c1"}}
    await store.save_room_kernel("a", "python3", "k1", info)
    await store.save_room_kernel("a", "r", "k2", {})
    await store.save_room_kernel("b", "python3", "k3", {})
    k1 = (await store.room_kernels("a"))[0]
    assert k1 == RoomKernelRecord("a", "python3", "k1", info, k1.started_at)
    aware(k1)

    await store.save_room_kernel("a", "python3", "k1", {"restarted": True})  # same kernel: new info
    same = (await store.room_kernels("a"))[0]
    assert (same.kernel_id, same.info, same.started_at) == ("k1", {"restarted": True}, k1.started_at)
    await store.save_room_kernel("a", "python3", "k4", {})  # a new kernel replaces it
    new = (await store.room_kernels("a"))[0]
    assert new.kernel_id == "k4" and new.started_at > k1.started_at

    with pytest.raises(Conflict):
        await store.save_room_kernel("a", "python3", "k3", {})  # b's kernel id
    with pytest.raises(TypeError):
        await store.save_room_kernel("a", "python3", "k5", {"key": b"bytes"})
    with pytest.raises(NotFound):
        await store.save_room_kernel("nope", "python3", "k6", {})
    assert [(k.room_id, k.kernelspec, k.kernel_id) for k in await store.room_kernels()] == [
        ("a", "python3", "k4"), ("a", "r", "k2"), ("b", "python3", "k3")
    ]

    await store.remove_room_kernel("a", "python3")
    await store.remove_room_kernel("a", "python3")  # already gone: nothing happens
    assert [k.kernel_id for k in await store.room_kernels("a")] == ["k2"]
    with pytest.raises(NotFound):
        await store.remove_room_kernel("nope", "python3")
    with pytest.raises(NotFound):
        await store.room_kernels("nope")


# -- audit log ----------------------------------------------------------------------------


async def test_audit_log(store):
    await store.audit("alice", "room.delete", "r1", {"reason": "done", "kernels": ["k1"]})
    await store.audit("admin", "user.block", "bob")
    newest, oldest = await store.audit_log()
    assert newest == AuditRecord(newest.id, newest.at, "admin", "user.block", "bob", {})
    assert oldest.details == {"reason": "done", "kernels": ["k1"]}
    assert newest.id > oldest.id and newest.at >= oldest.at
    aware(newest)
    assert await store.audit_log(limit=1) == [newest]
    with pytest.raises(TypeError):
        await store.audit("alice", "x", "y", {"when": datetime.now(timezone.utc)})
    with pytest.raises(BadRequest):
        await store.audit_log(limit=-1)


# -- Jupyter sessions ----------------------------------------------------------------------


async def test_jupyter_sessions(store):
    first = SessionRecord("s1", "alice", "a.ipynb", "a", "notebook", "k1")
    second = SessionRecord("s2", "bob", "", "", "console", "k2")
    await store.save_session(second)
    await store.save_session(first)
    assert await store.kernel_sessions() == [first, second]
    moved = SessionRecord("s1", "alice", "b.ipynb", "b", "notebook", "k3")
    await store.save_session(moved)
    assert await store.kernel_sessions() == [moved, second]
    await store.delete_sessions(["s2", "unknown"])
    await store.delete_sessions([])
    assert await store.kernel_sessions() == [moved]


# -- room storage state --------------------------------------------------------------------


async def test_room_storage_states(store):
    then = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    await store.save_storage_state("r1", "aa", then)
    await store.save_storage_state("r2", "bb", then)
    await store.save_storage_state("r1", "cc", then + timedelta(hours=1))
    assert await store.storage_states() == {"r1": ("cc", then + timedelta(hours=1)), "r2": ("bb", then)}
    await store.delete_storage_state("r2")
    await store.delete_storage_state("r2")
    assert list(await store.storage_states()) == ["r1"]


# -- snapshots ---------------------------------------------------------------------------


async def test_snapshots_outlive_their_room_and_expire(store):
    now = datetime.now(timezone.utc)
    await store.create_room("r", "R", "alice", ["python3"], "local", None)
    old = SnapshotRecord("s1", "r", "local", now - timedelta(days=2), now - timedelta(days=1),
                         "alice", "manual", 10240, 3, "ab" * 32)
    new = SnapshotRecord("s2", "r", "s3", now, now + timedelta(days=1), "kernelgate",
                         "room deleted", 2**40, 0, "cd" * 32)
    await store.add_snapshot(new)
    await store.add_snapshot(old)
    with pytest.raises(Conflict):
        await store.add_snapshot(old)
    await store.delete_room("r")
    assert await store.snapshots("r") == [old, new]  # oldest first; big sizes survive
    assert await store.snapshots() == [old, new]
    assert await store.get_snapshot("s2") == new
    aware(await store.get_snapshot("s1"))
    assert await store.expired_snapshots(now) == [old]
    await store.delete_snapshot("s1")
    await store.delete_snapshot("s1")
    assert await store.get_snapshot("s1") is None
    assert await store.snapshots("other") == []


# -- concurrency and the event loop ---------------------------------------------------------


async def test_concurrent_calls_on_one_store(store):
    await store.create_room("r", "R", "alice", ["python3"], "vol", None)
    results = await asyncio.gather(
        *(store.create_room("dup", "D", f"u{i}", ["python3"], "vol", None) for i in range(8)),
        *(store.set_member("r", f"user{i}", "participant") for i in range(20)),
        *(store.set_languages("r", ["python3", f"lang{i % 3}"]) for i in range(9)),
        *(store.save_room_kernel("r", "python3", f"k{i}", {"i": i}) for i in range(8)),
        *(store.touch_user("newcomer", "New", "pro") for _ in range(8)),
        *(store.audit("alice", "test", str(i)) for i in range(20)),
        *(get_room(store, "r") for _ in range(10)),
        return_exceptions=True,
    )
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, Conflict)]
    assert not unexpected, unexpected
    assert sum(isinstance(r, Conflict) for r in results[:8]) == 7

    room = await get_room(store, "r")
    assert len(room.members) == 21
    assert len(room.languages) == 2 and "python3" in room.languages
    assert len(await store.room_kernels("r")) == 1
    assert [u.user for u in await store.users()] == ["newcomer"]
    assert len(await store.audit_log(limit=100)) == 20


def _hold_write_lock(url: str, locked: threading.Event, seconds: float) -> None:
    """Keep the audit log locked against writers for `seconds`, from another connection."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
    else:
        connection = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
        connection.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
    locked.set()
    time.sleep(seconds)
    connection.rollback()
    connection.close()


async def test_waiting_for_the_database_does_not_block_the_event_loop(store, database_url):
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(database_url, locked, 0.8))
    holder.start()
    await asyncio.to_thread(locked.wait, 10)
    ticks = 0

    async def tick_until(done: asyncio.Future) -> None:
        nonlocal ticks
        while not done.done():
            await asyncio.sleep(0.01)
            ticks += 1

    started = time.monotonic()
    write = asyncio.ensure_future(store.audit("alice", "waits", "lock"))
    reads = [await get_room(store, "none") for _ in range(3)]  # readers do not wait for writers
    await asyncio.gather(write, tick_until(write))
    waited = time.monotonic() - started
    holder.join()
    assert reads == [None] * 3
    assert waited >= 0.5, "the write did not wait for the lock"
    assert ticks >= 25, f"the event loop ticked only {ticks} times in {waited:.2f}s"
    assert [e.action for e in await store.audit_log()] == ["waits"]


# -- SQLite specifics, configuration, closing -------------------------------------------------


async def test_default_sqlite_database_in_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    store = Store(data_dir=str(data_dir))
    assert store.database == f"sqlite:///{data_dir}/kernelgate.db"
    await store.migrate()
    await store.create_room("r", "R", "alice", ["python3"], "vol", None)
    await store.close()
    path = data_dir / "kernelgate.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


def test_configuration():
    expected = "/var/lib/kernelgate" if os.geteuid() == 0 else str(Path.home() / ".local/share/kernelgate")
    assert Store().data_dir == expected
    store = Store(url="postgresql://kg:secret@db.example/kernelgate")
    assert store.database == "postgresql+psycopg://kg:***@db.example/kernelgate"
    for url in ("mysql://kg@db/kg", "sqlite://", "sqlite:///:memory:", "not a url"):
        with pytest.raises(TraitError):
            Store(url=url)
    with pytest.raises(TraitError):
        Store(threads=0)


async def test_close(tmp_path):
    store = Store(url=f"sqlite:///{tmp_path / 'db'}")
    await store.migrate()
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError):
        await get_room(store, "r")
