"""File operations confined to a workspace, never following a symbolic link.

Every path is relative to the workspace root. It is split into components and walked one
directory at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`, so `..`, absolute paths, NUL
bytes and symlinks (anywhere in the path) are refused instead of resolved: a path can
name nothing outside the workspace, whatever the workspace's contents.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from dataclasses import dataclass

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileError(Exception):
    """An operation failed; `code` is an errno name (ENOENT, EEXIST, EINVAL, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _components(path: str) -> list[str]:
    if "\x00" in path:
        raise FileError("EINVAL", "path contains a NUL byte")
    if path.startswith("/"):
        raise FileError("EINVAL", "absolute paths are not allowed")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise FileError("EINVAL", "'..' is not allowed in paths")
    return parts


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _oserror(e: OSError, path: str) -> FileError:
    code = errno.errorcode.get(e.errno, "EIO")
    if e.errno in (errno.ELOOP, errno.ENOTDIR):
        return FileError(code, f"{path}: a symbolic link or a file where a directory is expected")
    return FileError(code, f"{path}: {e.strerror}")


@dataclass
class Entry:
    name: str
    type: str
    size: int
    mtime: float
    writable: bool

    def as_dict(self) -> dict:
        return self.__dict__.copy()


class Workspace:
    """The file operations an agent offers, inside one root directory."""

    def __init__(self, root: str, max_file_size: int = 0) -> None:
        self.root = root
        self.max_file_size = max_file_size

    # -- walking ---------------------------------------------------------------------

    def _open_dir(self, parts: list[str]) -> int:
        """An fd for the directory named by parts (no symlinks anywhere)."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = next_fd
        except OSError:
            os.close(fd)
            raise
        return fd

    def _parent(self, path: str) -> tuple[int, str]:
        """(fd of the parent directory, last component); the root itself has no parent."""
        parts = _components(path)
        if not parts:
            raise FileError("EINVAL", "the workspace root cannot be the target")
        try:
            return self._open_dir(parts[:-1]), parts[-1]
        except OSError as e:
            raise _oserror(e, path) from None

    def _entry(self, name: str, st: os.stat_result) -> Entry:
        return Entry(name, _kind(st.st_mode), st.st_size, st.st_mtime, bool(st.st_mode & stat.S_IWUSR))

    # -- operations ------------------------------------------------------------------

    def stat(self, path: str) -> dict:
        parts = _components(path)
        if not parts:
            return self._entry("", os.stat(self.root)).as_dict()
        fd, name = self._parent(path)
        try:
            return self._entry(name, os.stat(name, dir_fd=fd, follow_symlinks=False)).as_dict()
        except OSError as e:
            raise _oserror(e, path) from None
        finally:
            os.close(fd)

    def list(self, path: str) -> list[dict]:
        try:
            fd = self._open_dir(_components(path))
        except OSError as e:
            raise _oserror(e, path) from None
        try:
            entries = []
            for name in sorted(os.listdir(fd)):
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                entries.append(self._entry(name, st).as_dict())
            return entries
        finally:
            os.close(fd)

    def read(self, path: str) -> bytes:
        """The bytes of a regular file, never more than max_file_size (EFBIG) nor more than
        its size when opened. A FIFO, socket or device is refused without blocking: it is
        opened with O_NONBLOCK and rejected by fstat before any read."""
        fd, name = self._parent(path)
        try:
            file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                              dir_fd=fd)
        except OSError as e:
            raise _oserror(e, path) from None
        finally:
            os.close(fd)
        with os.fdopen(file_fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise FileError("EISDIR", f"{path}: not a regular file")
            limit = self.max_file_size or st.st_size
            if self.max_file_size and st.st_size > limit:
                raise FileError("EFBIG", f"{path}: larger than {self.max_file_size} bytes")
            data = f.read(limit + 1)
            if len(data) > limit:
                if self.max_file_size:
                    raise FileError("EFBIG", f"{path}: larger than {self.max_file_size} bytes")
                data = data[:limit]
            return data

    def write(self, path: str, data: bytes) -> dict:
        """Replace (or create) a file atomically: a temporary file renamed over it."""
        if self.max_file_size and len(data) > self.max_file_size:
            raise FileError("EFBIG", f"{path}: larger than {self.max_file_size} bytes")
        fd, name = self._parent(path)
        temp = f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            try:
                existing = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISREG(existing.st_mode):
                    raise FileError("EISDIR", f"{path}: exists and is not a regular file")
            except FileNotFoundError:
                pass
            file_fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o644, dir_fd=fd)
            try:
                with os.fdopen(file_fd, "wb") as f:
                    f.write(data)
                os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                try:
                    os.unlink(temp, dir_fd=fd)
                except OSError:
                    pass
                raise
            return self._entry(name, os.stat(name, dir_fd=fd, follow_symlinks=False)).as_dict()
        except OSError as e:
            raise _oserror(e, path) from None
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> dict:
        fd, name = self._parent(path)
        try:
            os.mkdir(name, 0o755, dir_fd=fd)
            return self._entry(name, os.stat(name, dir_fd=fd, follow_symlinks=False)).as_dict()
        except OSError as e:
            raise _oserror(e, path) from None
        finally:
            os.close(fd)

    def rename(self, path: str, new_path: str) -> dict:
        src_fd, src = self._parent(path)
        try:
            dst_fd, dst = self._parent(new_path)
        except FileError:
            os.close(src_fd)
            raise
        try:
            try:
                os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
                raise FileError("EEXIST", f"{new_path}: already exists")
            except FileNotFoundError:
                pass
            os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            return self._entry(dst, os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)).as_dict()
        except OSError as e:
            raise _oserror(e, path) from None
        finally:
            os.close(src_fd)
            os.close(dst_fd)

    def copy(self, path: str, new_path: str) -> dict:
        """Copy a regular file (never a directory, never through a link)."""
        try:
            self.stat(new_path)
            raise FileError("EEXIST", f"{new_path}: already exists")
        except FileError as e:
            if e.code != "ENOENT":
                raise
        return self.write(new_path, self.read(path))

    def delete(self, path: str) -> None:
        """Remove a file, a link, or a directory with everything in it."""
        fd, name = self._parent(path)
        try:
            self._remove(fd, name)
        except OSError as e:
            raise _oserror(e, path) from None
        finally:
            os.close(fd)

    def _remove(self, dir_fd: int, name: str) -> None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            return
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            for child in os.listdir(fd):
                self._remove(fd, child)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
