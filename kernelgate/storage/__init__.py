"""Room storage: working copies on this host, durable copies and snapshots in a backend
(local folder, S3-compatible object store, or the gateway's database)."""

from kernelgate.storage.backend import ObjectMissing, StorageBackend, StorageUnavailable
from kernelgate.storage.service import RoomStorage, StorageStatus

__all__ = ["ObjectMissing", "RoomStorage", "StorageBackend", "StorageStatus", "StorageUnavailable"]
