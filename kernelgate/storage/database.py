"""The database backend: objects as chunked blobs in the gateway's own SQL database
(SQLite or PostgreSQL), for small deployments without an object store.

An object is a `storage_objects` row and its `storage_chunks` rows (CHUNK bytes each).
A put writes a keyless object chunk by chunk, one transaction per chunk, then gives it
the key in one short transaction that also drops the object the key named before: a
reader sees the old object or the new one, never a part. Keyless leftovers of a put
interrupted by a crash are removed by a put at least PARTIAL_TTL later (not sooner:
they may be another put still running). Reading fetches one chunk at a time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import BinaryIO

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from kernelgate.clock import utcnow
from kernelgate.storage.backend import CHUNK, ObjectMissing, StorageBackend, StorageUnavailable, check_key
from kernelgate.store.models import StoredChunk, StoredObject

PARTIAL_TTL = timedelta(hours=6)


class DatabaseBackend(StorageBackend):
    name = "database"

    def __init__(self, engine: Engine, **kwargs) -> None:
        super().__init__(**kwargs)
        self.engine = engine

    def put(self, key: str, source: BinaryIO) -> int:
        check_key(key)
        try:
            with self.engine.begin() as db:
                db.execute(delete(StoredObject).where(
                    StoredObject.key.is_(None), StoredObject.created_at < utcnow() - PARTIAL_TTL
                ))
                object_id = db.execute(
                    insert(StoredObject).values(key=None, size=0, created_at=utcnow())
                    .returning(StoredObject.id)
                ).scalar_one()
            size = seq = 0
            try:
                while chunk := source.read(CHUNK):
                    with self.engine.begin() as db:
                        db.execute(insert(StoredChunk).values(object_id=object_id, seq=seq, data=chunk))
                    size += len(chunk)
                    seq += 1
                with self.engine.begin() as db:
                    db.execute(delete(StoredObject).where(StoredObject.key == key))
                    db.execute(update(StoredObject).where(StoredObject.id == object_id)
                               .values(key=key, size=size))
            except BaseException:
                with self.engine.begin() as db:
                    db.execute(delete(StoredObject).where(StoredObject.id == object_id))
                raise
        except SQLAlchemyError as e:
            raise StorageUnavailable(f"Database storage cannot write {key}: {e.__class__.__name__}") from e
        return size

    def open(self, key: str) -> BinaryIO:
        check_key(key)
        try:
            with self.engine.connect() as db:
                found = db.execute(
                    select(StoredObject.id, StoredObject.size).where(StoredObject.key == key)
                ).one_or_none()
        except SQLAlchemyError as e:
            raise StorageUnavailable(f"Database storage cannot read {key}: {e.__class__.__name__}") from e
        if found is None:
            raise ObjectMissing(key)
        return _ChunkReader(self.engine, found.id, found.size, key)

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            with self.engine.begin() as db:
                db.execute(delete(StoredObject).where(StoredObject.key == key))
        except SQLAlchemyError as e:
            raise StorageUnavailable(f"Database storage cannot delete {key}: {e.__class__.__name__}") from e

    def check(self) -> None:
        try:
            with self.engine.connect() as db:
                db.execute(select(StoredObject.id).limit(1))
        except SQLAlchemyError as e:
            raise StorageUnavailable(f"Database storage is unreachable: {e.__class__.__name__}") from e


class _ChunkReader:
    """The chunks of one object, fetched one at a time as they are read; an object
    replaced or deleted meanwhile ends in StorageUnavailable, never in a short read."""

    def __init__(self, engine: Engine, object_id: int, size: int, key: str) -> None:
        self.engine, self.object_id, self.left, self.key = engine, object_id, size, key
        self.seq, self.buffer, self.done = 0, b"", False

    def read(self, n: int = -1) -> bytes:
        while not self.done and (n < 0 or len(self.buffer) < n):
            chunk = self._fetch()
            if chunk is None:
                if self.left:
                    raise StorageUnavailable(f"Database storage lost {self.key} while sending it")
                self.done = True
            else:
                self.left -= len(chunk)
                self.buffer += chunk
        if n < 0:
            n = len(self.buffer)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _fetch(self) -> bytes | None:
        try:
            with self.engine.connect() as db:
                chunk = db.execute(select(StoredChunk.data).where(
                    StoredChunk.object_id == self.object_id, StoredChunk.seq == self.seq
                )).scalar_one_or_none()
        except SQLAlchemyError as e:
            raise StorageUnavailable(f"Database storage stopped sending {self.key}") from e
        self.seq += 1
        return chunk

    def close(self) -> None:
        self.done, self.buffer = True, b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
