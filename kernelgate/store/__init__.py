"""The gateway's persistent store: SQLAlchemy 2 on SQLite or PostgreSQL, with the schema
managed by Alembic migrations. See `kernelgate.store.store` for the contract."""

from kernelgate.store.models import ROLES
from kernelgate.store.store import (
    UNSET,
    AuditRecord,
    MemberRecord,
    RoomKernelRecord,
    RoomRecord,
    SnapshotRecord,
    SoloRecord,
    Store,
    UserRecord,
)

__all__ = [
    "ROLES", "UNSET", "AuditRecord", "MemberRecord", "RoomKernelRecord", "RoomRecord",
    "SnapshotRecord", "SoloRecord", "Store", "UserRecord",
]
