"""Workspace archives: a workspace packed into a tar stream and unpacked from one, on the
gateway host, never following a symbolic link and never writing outside the target.

Both directions are streams: packing reads one file at a time into the output stream,
unpacking writes each member as it arrives, so memory stays small whatever the size.
Blocking: call these from a worker thread.

Packing walks the tree with directory file descriptors and `openat(O_NOFOLLOW)`: a
symlink is archived as a symlink (its target text, never its target's content), and a
sandbox swapping a folder for a link while the walk runs only makes that entry fail
to open. Regular files, folders and symlinks are archived; FIFOs, sockets and devices
are not. Ownership is not archived: everything unpacks owned by the workspace's user.
A file that changes while it is archived is archived as it was when it was opened,
cut or padded with NUL bytes to its size at that moment (a live workspace has no
better consistency to offer without stopping its kernels).

Unpacking goes into a folder no sandbox can see yet (the caller swaps it in), with
every member's path walked the same no-follow way: absolute paths, `..`, and paths
through a symlink are refused (ArchiveError), so no archive can write outside it.
Hard links and special files in an archive are skipped.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from typing import BinaryIO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class ArchiveError(Exception):
    """The archive cannot be unpacked: a member would leave the target or is malformed."""


@dataclass
class ArchiveStats:
    files: int = 0
    folders: int = 0
    links: int = 0
    bytes: int = 0  # of regular files' content


# -- packing ---------------------------------------------------------------------------


def pack(root: str, out: BinaryIO) -> ArchiveStats:
    """Write the tree under `root` (a folder, itself not a symlink) to `out` as a tar
    stream. Entries that vanish or turn into links while the walk runs are left out."""
    stats = ArchiveStats()
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        with tarfile.open(fileobj=out, mode="w|", bufsize=_CHUNK, format=tarfile.PAX_FORMAT,
                          copybufsize=_CHUNK) as tar:
            _pack_folder(tar, root_fd, "", stats)
    finally:
        os.close(root_fd)
    return stats


def _pack_folder(tar: tarfile.TarFile, folder_fd: int, prefix: str, stats: ArchiveStats) -> None:
    for name in sorted(os.listdir(folder_fd)):
        path = prefix + name
        try:
            st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                child = os.open(name, _DIR_FLAGS, dir_fd=folder_fd)
                try:
                    tar.addfile(_info(path, tarfile.DIRTYPE, os.fstat(child)))
                    stats.folders += 1
                    _pack_folder(tar, child, path + "/", stats)
                finally:
                    os.close(child)
            elif stat.S_ISREG(st.st_mode):
                _pack_file(tar, folder_fd, name, path, stats)
            elif stat.S_ISLNK(st.st_mode):
                info = _info(path, tarfile.SYMTYPE, st)
                info.linkname = os.readlink(name, dir_fd=folder_fd)
                tar.addfile(info)
                stats.links += 1
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
                raise
            # gone, or swapped for a link or a special file since the listing


def _pack_file(tar: tarfile.TarFile, folder_fd: int, name: str, path: str, stats: ArchiveStats) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd)
    with open(fd, "rb", buffering=0) as file:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        info = _info(path, tarfile.REGTYPE, st)
        info.size = st.st_size
        tar.addfile(info, _Exactly(file, st.st_size))
        stats.files += 1
        stats.bytes += st.st_size


def _info(path: str, kind: bytes, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode) & 0o777
    info.mtime = int(st.st_mtime)
    return info


class _Exactly:
    """A file read as exactly `size` bytes: cut if it grew, NUL-padded if it shrank."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file, self.left = file, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.file.read(n) if n else b""
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


# -- unpacking -------------------------------------------------------------------------


def unpack(source: BinaryIO, target: str, uid: int | None) -> ArchiveStats:
    """Unpack the tar stream `source` into the folder `target` (new and empty, seen by no
    sandbox), owned by `uid` (None: the caller's). ArchiveError for a member that would
    leave `target`; what was unpacked before it stays, for the caller to remove."""
    stats = ArchiveStats()
    root_fd = os.open(target, _DIR_FLAGS)
    try:
        with tarfile.open(fileobj=source, mode="r|", bufsize=_CHUNK, copybufsize=_CHUNK) as tar:
            for member in tar:
                _unpack_member(tar, member, root_fd, uid, stats)
    except tarfile.TarError as e:
        raise ArchiveError(f"not a readable tar stream: {e}") from None
    finally:
        os.close(root_fd)
    return stats


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root_fd: int,
                   uid: int | None, stats: ArchiveStats) -> None:
    parts = _parts(member.name)
    if not parts:
        return  # the root itself
    parent = _open_folders(root_fd, parts[:-1], uid)
    name = parts[-1]
    try:
        if member.isdir():
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            fd = _open_at(parent, name, _DIR_FLAGS, member.name)
            try:
                _own(fd, uid, member.mode | 0o700)
            finally:
                os.close(fd)
            stats.folders += 1
        elif member.isreg():
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = _open_at(parent, name, flags, member.name, 0o600)
            with open(fd, "wb", buffering=0) as out:
                _own(fd, uid, member.mode | 0o600)
                data = tar.extractfile(member)
                while chunk := data.read(_CHUNK):
                    out.write(chunk)
                os.utime(fd, (member.mtime, member.mtime))
            stats.files += 1
            stats.bytes += member.size
        elif member.issym():
            try:
                os.symlink(member.linkname, name, dir_fd=parent)
            except FileExistsError:
                raise ArchiveError(f"member {member.name!r} is in the archive twice") from None
            if uid is not None:
                os.chown(name, uid, uid, dir_fd=parent, follow_symlinks=False)
            stats.links += 1
    finally:
        if parent != root_fd:
            os.close(parent)


def _parts(name: str) -> list[str]:
    if "\x00" in name or name.startswith("/"):
        raise ArchiveError(f"member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member {name!r} leaves the workspace")
    return parts


def _open_folders(root_fd: int, parts: list[str], uid: int | None) -> int:
    """The folder `parts` below root, created where missing, walked without following
    a link; the caller closes it unless it is root_fd."""
    fd = root_fd
    for i, part in enumerate(parts):
        try:
            os.mkdir(part, 0o700, dir_fd=fd)
            created = True
        except FileExistsError:
            created = False
        child = _open_at(fd, part, _DIR_FLAGS, "/".join(parts[: i + 1]))
        if created:
            _own(child, uid, 0o700)
        if fd != root_fd:
            os.close(fd)
        fd = child
    return fd


def _open_at(folder_fd: int, name: str, flags: int, path: str, mode: int = 0o777) -> int:
    try:
        return os.open(name, flags, mode, dir_fd=folder_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
            raise ArchiveError(f"member {path!r} goes through a symlink or a file") from None
        raise


def _own(fd: int, uid: int | None, mode: int) -> None:
    if uid is not None:
        os.fchown(fd, uid, uid)
    os.fchmod(fd, mode & 0o777)


# -- fingerprints ----------------------------------------------------------------------


def fingerprint(root: str) -> str:
    """A digest of the tree's names, kinds, sizes, modes, mtimes and link targets (not
    of file contents): it changes when a sync would upload something different."""
    digest = hashlib.sha256()
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        _fingerprint_folder(root_fd, "", digest)
    finally:
        os.close(root_fd)
    return digest.hexdigest()


def _fingerprint_folder(folder_fd: int, prefix: str, digest) -> None:
    for name in sorted(os.listdir(folder_fd)):
        try:
            st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            line = f"{prefix}{name}\0{st.st_mode:o}\0{st.st_size}\0{st.st_mtime_ns}"
            if stat.S_ISLNK(st.st_mode):
                line += "\0" + os.readlink(name, dir_fd=folder_fd)
            digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
            if stat.S_ISDIR(st.st_mode):
                child = os.open(name, _DIR_FLAGS, dir_fd=folder_fd)
                try:
                    _fingerprint_folder(child, f"{prefix}{name}/", digest)
                finally:
                    os.close(child)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                raise
