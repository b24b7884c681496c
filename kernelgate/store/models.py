"""The store's tables as SQLAlchemy 2 ORM models: the schema the migrations must produce.

The schema itself is created and changed only by the Alembic migrations in
`kernelgate/store/migrations/versions/`; these models describe it for queries, and
tests/test_store.py checks that both agree. A schema change is a new migration plus the
matching change here.

Every timestamp is a timezone-aware datetime in UTC (`UTCDateTime`): naive datetimes are
refused, and SQLite, which stores no time zone, gets its values back in UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: The roles a room member may have, strongest first.
ROLES = ("owner", "admin", "participant", "viewer")

#: Constraint names are derived, so that migrations and models name them the same way
#: on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timezone-aware datetime, stored in UTC; naive datetimes raise ValueError."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware ones")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite keeps the UTC wall time only
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, str: String}


class User(Base):
    """A user as seen in verified identities."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    tier: Mapped[str]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class SoloSession(Base):
    """One solo kernel's life: who started which kernelspec, when, and how it ended."""

    __tablename__ = "solo_sessions"

    kernel_id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(index=True)
    kernelspec: Mapped[str]
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None]


class Room(Base):
    """A persistent shared workspace. Its members, languages and kernels go with it."""

    __tablename__ = "rooms"

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    owner_id: Mapped[str] = mapped_column(index=True)
    storage: Mapped[str]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]

    members: Mapped[list[Member]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="Member.user_id"
    )
    languages: Mapped[list[RoomLanguage]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="RoomLanguage.kernelspec"
    )


class Member(Base):
    """A user's role in a room (one of ROLES)."""

    __tablename__ = "members"
    __table_args__ = (CheckConstraint(f"role IN {ROLES!r}", name="role"),)

    room_id: Mapped[str] = mapped_column(
        ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(primary_key=True, index=True)
    role: Mapped[str]


class RoomLanguage(Base):
    """A kernelspec in a room's language stack."""

    __tablename__ = "room_languages"

    room_id: Mapped[str] = mapped_column(
        ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
    )
    kernelspec: Mapped[str] = mapped_column(primary_key=True)


class RoomKernel(Base):
    """A room's running kernel for one kernelspec, with what re-attaching to it needs."""

    __tablename__ = "room_kernels"

    room_id: Mapped[str] = mapped_column(
        ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
    )
    kernelspec: Mapped[str] = mapped_column(primary_key=True)
    kernel_id: Mapped[str] = mapped_column(unique=True)
    info: Mapped[dict[str, Any]]
    started_at: Mapped[datetime]


class AuditEntry(Base):
    """One administrative action: who did what to which target, with details."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str]
    action: Mapped[str]
    target: Mapped[str]
    details: Mapped[dict[str, Any]]


class Snapshot(Base):
    """An archive of a room's workspace in the room's storage backend.

    No foreign key to rooms: a deleted room's final snapshot outlives it until its
    retention ends."""

    __tablename__ = "snapshots"

    id: Mapped[str] = mapped_column(primary_key=True)
    room_id: Mapped[str] = mapped_column(index=True)
    storage: Mapped[str]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    created_by: Mapped[str]
    reason: Mapped[str]
    size: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int]
    sha256: Mapped[str]


class StoredObject(Base):
    """An object of the database storage backend. `key` is NULL while it is being
    written, so a half-written object is never read."""

    __tablename__ = "storage_objects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str | None] = mapped_column(unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class StoredChunk(Base):
    """One chunk of a StoredObject's bytes, in order of `seq`."""

    __tablename__ = "storage_chunks"

    object_id: Mapped[int] = mapped_column(
        ForeignKey("storage_objects.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class KernelSession(Base):
    """A Jupyter session (/api/sessions): a user's named binding of a path to a kernel."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(index=True)
    path: Mapped[str]
    name: Mapped[str]
    type: Mapped[str]
    kernel_id: Mapped[str] = mapped_column(index=True)


class RoomStorageState(Base):
    """What a room's durable copy holds: the fingerprint of the working copy it was last
    written from (or restored into), and when. No foreign key: RoomStorage removes it."""

    __tablename__ = "room_storage"

    room_id: Mapped[str] = mapped_column(primary_key=True)
    fingerprint: Mapped[str]
    synced_at: Mapped[datetime]
