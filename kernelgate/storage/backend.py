"""The storage backend contract: a flat namespace of keys, each naming a stream of bytes.

A backend holds the durable copies of room workspaces (as archives, see archive.py).
Every method blocks: callers run them in worker threads. Implementations:
`kernelgate.storage.local.LocalBackend` (a folder tree, the reference implementation),
`kernelgate.storage.s3.S3Backend` (any S3-compatible object store) and
`kernelgate.storage.database.DatabaseBackend` (blobs in the gateway's SQL database).

Keys are made by the gateway, never by users: `rooms/<room id>/current.tar`,
`rooms/<room id>/snapshots/<snapshot id>.tar` (KEY_PATTERN).
"""

from __future__ import annotations

import re
from abc import ABCMeta, abstractmethod
from typing import BinaryIO

from traitlets.config import LoggingConfigurable

from kernelgate.errors import Unavailable

KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
#: Bytes a backend reads from a source, or serves, at a time.
CHUNK = 4 << 20


class StorageUnavailable(Unavailable):
    """The backend cannot be reached or refused the operation (503)."""


class ObjectMissing(Exception):
    """No object has this key."""


class _BackendMeta(ABCMeta, type(LoggingConfigurable)):
    """Abstract methods on a configurable class."""


class StorageBackend(LoggingConfigurable, metaclass=_BackendMeta):
    """Where durable copies live; configured through traitlets as its own class. Methods
    block; errors other than ObjectMissing are StorageUnavailable, with the backend's own
    error as the cause."""

    #: The name rooms choose it by ("storage" in the room model).
    name: str

    @abstractmethod
    def put(self, key: str, source: BinaryIO) -> int:
        """Store everything `source.read()` gives until EOF under `key`, replacing what
        was there only once all of it is stored: if reading or storing fails, the key
        keeps its old content (or stays absent). Returns the bytes stored. Reads in
        chunks: never holds the whole stream in memory."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object's bytes (close it when done); ObjectMissing
        if there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; nothing happens if there is none."""

    @abstractmethod
    def check(self) -> None:
        """Return if the backend answers, raise StorageUnavailable otherwise."""

    def sweep(self, older_than: float) -> int:
        """Remove what writes interrupted more than `older_than` seconds ago left behind
        (a killed gateway's half-written objects, never listed, never read); returns how
        many. Called at gateway start; the default has nothing to sweep."""
        return 0


def check_key(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key) or ".." in key.split("/"):
        raise ValueError(f"not a storage key: {key!r}")
    return key
