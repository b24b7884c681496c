"""The local backend: one file per key below a folder of the gateway host."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from traitlets import Unicode

from kernelgate.storage.backend import CHUNK, ObjectMissing, StorageBackend, StorageUnavailable, check_key


class LocalBackend(StorageBackend):
    """Objects as files under `root`; a put writes a temporary file, fsyncs it and
    renames it over the key's file, so a key always names a whole object."""

    name = "local"
    root = Unicode(config=True, help="Folder holding the local backend's objects. "
                   "Default: <data_dir>/storage.")

    def put(self, key: str, source: BinaryIO) -> int:
        path = self._path(key)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        size = 0
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(temp, "xb") as out:
                os.fchmod(out.fileno(), 0o600)
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except OSError as e:
            raise StorageUnavailable(f"Local storage cannot write {key}: {e.strerror}") from e
        finally:
            temp.unlink(missing_ok=True)
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        except OSError as e:
            raise StorageUnavailable(f"Local storage cannot read {key}: {e.strerror}") from e

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as e:
            raise StorageUnavailable(f"Local storage cannot delete {key}: {e.strerror}") from e

    def check(self) -> None:
        root = Path(self.root)
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StorageUnavailable(f"Local storage folder {root}: {e.strerror}") from e
        if not os.access(root, os.W_OK):
            raise StorageUnavailable(f"Local storage folder {root} is not writable")

    def sweep(self, older_than: float) -> int:
        """Remove the temporary files (`.<name>.<hex>.part`) of puts that never ended;
        fresher ones may be a put of another gateway sharing the folder, and stay."""
        limit, removed = time.time() - older_than, 0
        for folder, _, files in os.walk(self.root):  # the gateway's own folder: no links followed
            for name in files:
                if not (name.startswith(".") and name.endswith(".part")):
                    continue
                path = os.path.join(folder, name)
                try:
                    if os.lstat(path).st_mtime < limit:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise StorageUnavailable(f"Local storage cannot sweep {path}: {e.strerror}") from e
        return removed

    def _path(self, key: str) -> Path:
        return Path(self.root) / check_key(key)
