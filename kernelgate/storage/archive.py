"""Workspace archives: a workspace packed into a tar stream and unpacked from one, on the
gateway host, never following a symbolic link and never writing outside the target.

A room's kernel writes the tree the host packs, so every walk here assumes a hostile
tree (abuse checklist rows 10 to 12):
- Walks are iterative at any depth and hold at most `_HELD` + 2 folder descriptors
  (deeper folders are reopened, by `..` or from a held ancestor, and checked to be the
  same folder by device and inode).
- Nothing is opened but folders (O_DIRECTORY|O_NOFOLLOW) and regular files
  (O_NOFOLLOW|O_NONBLOCK, then fstat S_ISREG): a FIFO, socket or device is never read.
- `Limits` bound one archive: packing leaves out what does not fit and reports it in
  `ArchiveStats.skipped`; unpacking refuses an archive beyond them (ArchiveRefused)
  before writing the member that would cross them.

Both directions are streams: packing reads one file at a time into the output stream,
unpacking writes each member as it arrives, so memory stays small whatever the size.
Blocking: call these from a worker thread.

Packing archives regular files, folders and symlinks (a symlink as its target text,
never its target's content); a sandbox swapping a folder for a link while the walk runs
only makes that entry fail to open. Left out, each counted in `skipped` under its
reason: "special" (FIFOs, sockets, devices), "too_large" (a regular file whose apparent
size would take the archive past `max_bytes`: a sparse file counts at its full size, so
a 1 TB hole is left out, never read), "too_deep" (a folder nested deeper than
`max_depth`, with its content) and "too_many" (the walk stops at `max_members`
entries; the count is a lower bound). Ownership is not archived: everything unpacks
owned by the workspace's user. A file that changes while it is archived is archived as
it was when it was opened, cut or padded with NUL bytes to its size at that moment.

Unpacking goes into a folder no sandbox can see yet (the caller swaps it in), with
every member's path walked the same no-follow way: absolute paths, `..`, and paths
through a symlink are refused (ArchiveError), so no archive can write outside it. An
archive holding more than `max_members` members or `max_bytes` of file content, a path
deeper than `max_depth`, an oversized header or a sparse member (a few KiB that unpack
to terabytes; kernelgate never writes them) is refused (ArchiveRefused). Hard links and
special files in an archive are skipped and reported ("hard_link", "special").
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass, field
from itertools import islice
from typing import BinaryIO, Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20
_HELD = 16  # folders a walk keeps open; deeper ones are reopened when the walk returns
_MAX_HEADER = 1 << 20  # bytes of one pax or GNU long-name header
_EXAMPLES = 10  # paths kept per skip reason
_PATH_CHARS = 256  # characters kept of each such path
_BATCH = 1024  # names listed at a time when removing
# the entry vanished, or was swapped for a link, a file or a special file since its listing
_GONE = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO)


class ArchiveError(Exception):
    """The archive cannot be unpacked: a member would leave the target or is malformed."""


class ArchiveRefused(ArchiveError):
    """The archive is beyond the limits (members, bytes, depth, header size) or holds a
    sparse member: refused before the member that crosses them is written."""


@dataclass(frozen=True)
class Limits:
    """What one archive may hold. Packing leaves the rest out (reported); unpacking
    refuses an archive beyond them, so whatever was packed can be unpacked."""

    max_bytes: int = 16 << 30  # regular files' content, at apparent size
    max_members: int = 1_000_000  # entries of any kind
    max_depth: int = 128  # folders nested below the root


@dataclass
class Skipped:
    count: int = 0
    paths: list[str] = field(default_factory=list)  # the first _EXAMPLES, shortened


@dataclass
class ArchiveStats:
    files: int = 0
    folders: int = 0
    links: int = 0
    bytes: int = 0  # of regular files' content
    skipped: dict[str, Skipped] = field(default_factory=dict)  # reason -> what was left out

    def skip(self, reason: str, path: str, count: int = 1) -> None:
        entry = self.skipped.setdefault(reason, Skipped())
        entry.count += count
        if len(entry.paths) < _EXAMPLES:
            text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            entry.paths.append(text if len(text) <= _PATH_CHARS else text[:_PATH_CHARS] + "…")

    def report(self) -> dict:
        """{reason: {"count", "paths"}}, empty when nothing was left out (JSON-ready)."""
        return {reason: {"count": s.count, "paths": list(s.paths)} for reason, s in sorted(self.skipped.items())}


# -- bounded folder walks --------------------------------------------------------------


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


@dataclass
class _Frame:
    parts: tuple[str, ...]  # path below the root
    fd: int | None  # None: closed, reopened when the walk comes back
    ident: tuple[int, int]  # (st_dev, st_ino) of the folder when first opened
    names: list[str] = field(default_factory=list)  # walks: names left, last first


class _Stack:
    """The open folders from a root down to the current one, at most _HELD + 2 of them
    holding a descriptor. The root's descriptor belongs to the caller."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.frames = [_Frame((), root_fd, _ident(root_fd))]

    def push(self, name: str) -> _Frame:
        """Open the folder `name` of the current one (no-follow) as the current one;
        OSError if it is not a folder (any more)."""
        top = self.frames[-1]
        fd = os.open(name, _DIR_FLAGS, dir_fd=top.fd)
        frame = _Frame(top.parts + (name,), fd, _ident(fd))
        if len(self.frames) > _HELD:  # never the root
            os.close(top.fd)
            top.fd = None
        self.frames.append(frame)
        return frame

    def pop(self) -> _Frame | None:
        """Leave the current folder: its parent, reopened if needed, becomes current
        (None once the root is left). A parent that cannot be reopened as the same
        folder (moved or removed meanwhile) is left too, with its remaining entries."""
        child = self.frames.pop()
        hint = child.fd
        try:
            while self.frames:
                parent = self.frames[-1]
                if parent.fd is None:
                    parent.fd = self._reopen(len(self.frames) - 1, hint)
                    hint = None
                if parent.fd is not None:
                    return parent
                self.frames.pop()
            return None
        finally:
            if child.fd is not None and child.fd != self.root_fd:
                os.close(child.fd)

    def _reopen(self, index: int, child_fd: int | None) -> int | None:
        frame = self.frames[index]
        if child_fd is not None:  # usually the parent of the folder just left
            fd = os.open("..", _DIR_FLAGS, dir_fd=child_fd)
            if _ident(fd) == frame.ident:
                return fd
            os.close(fd)
        base = max(i for i in range(index) if self.frames[i].fd is not None)
        fd = self.frames[base].fd
        for i in range(base + 1, index + 1):
            try:
                step = os.open(self.frames[i].parts[-1], _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno not in _GONE:
                    raise
                step = None
            if fd != self.frames[base].fd:
                os.close(fd)
            if step is None:
                return None
            if _ident(step) != self.frames[i].ident:
                os.close(step)
                return None
            fd = step
        return fd

    def close(self) -> None:
        for frame in self.frames:
            if frame.fd is not None and frame.fd != self.root_fd:
                os.close(frame.fd)
        self.frames = []


def _listing(fd: int, limit: int) -> list[str]:
    """Up to `limit` names of the folder `fd`, sorted last first (for pop())."""
    with os.scandir(fd) as entries:
        return sorted((e.name for e in islice(entries, max(limit, 1))), reverse=True)


def _walk(root_fd: int, limits: Limits, stats: ArchiveStats) -> Iterator[tuple[str, int, str, os.stat_result]]:
    """(path, folder fd, name, lstat) of every entry below the root, depth first in
    name order, a folder before its content; the fd is valid until the next entry.
    Folders deeper than max_depth are left out, and the walk stops at max_members
    entries, both reported in `stats`."""
    stack = _Stack(root_fd)
    frame: _Frame | None = stack.frames[0]
    frame.names = _listing(root_fd, limits.max_members + 1)
    seen = 0
    try:
        while frame is not None:
            if not frame.names:
                frame = stack.pop()
                continue
            name = frame.names.pop()
            path = "/".join(frame.parts + (name,))
            try:
                st = os.stat(name, dir_fd=frame.fd, follow_symlinks=False)
            except OSError as e:
                if e.errno not in _GONE:
                    raise
                continue
            if seen >= limits.max_members:
                stats.skip("too_many", path, 1 + sum(len(f.names) for f in stack.frames))
                return
            folder = stat.S_ISDIR(st.st_mode)
            if folder and len(frame.parts) >= limits.max_depth:
                stats.skip("too_deep", path)
                continue
            seen += 1
            yield path, frame.fd, name, st
            if folder:
                try:
                    child = stack.push(name)
                except OSError as e:
                    if e.errno not in _GONE:
                        raise
                    continue
                child.names = _listing(child.fd, limits.max_members - seen + 1)
                frame = child
    finally:
        stack.close()


def remove_tree(path: str) -> None:
    """Remove the folder `path` and everything below it, never following a link, at any
    depth with bounded descriptors. Nothing happens if `path` is missing or is not a
    folder (a link to one included)."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        parent_fd = os.open(parent, _DIR_FLAGS)
    except FileNotFoundError:
        return
    try:
        try:
            top_fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as e:
            if e.errno in _GONE:
                return
            raise
        stack = _Stack(top_fd)
        try:
            frame: _Frame | None = stack.frames[0]
            while frame is not None:
                names = _listing(frame.fd, _BATCH)
                if not names:
                    done, frame = frame, stack.pop()
                    if frame is not None:
                        _ignore_gone(os.rmdir, done.parts[-1], dir_fd=frame.fd)
                    continue
                for entry in names:
                    try:
                        st = os.stat(entry, dir_fd=frame.fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            frame = stack.push(entry)
                            break  # its content first; this folder is listed again after
                        except OSError as e:
                            if e.errno not in _GONE:
                                raise
                    else:
                        _ignore_gone(os.unlink, entry, dir_fd=frame.fd)
        finally:
            stack.close()
            os.close(top_fd)
        _ignore_gone(os.rmdir, name, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def _ignore_gone(operation, name: str, dir_fd: int) -> None:
    try:
        operation(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


# -- packing ---------------------------------------------------------------------------


def pack(root: str, out: BinaryIO, limits: Limits = Limits()) -> ArchiveStats:
    """Write the tree under `root` (a folder, itself not a symlink) to `out` as a tar
    stream, within `limits`. Entries that vanish or turn into links while the walk runs
    are left out; what else is left out is in the stats' `skipped`."""
    stats = ArchiveStats()
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        with tarfile.open(fileobj=out, mode="w|", bufsize=_CHUNK, format=tarfile.PAX_FORMAT,
                          copybufsize=_CHUNK) as tar:
            for path, folder_fd, name, st in _walk(root_fd, limits, stats):
                try:
                    if stat.S_ISDIR(st.st_mode):
                        tar.addfile(_info(path, tarfile.DIRTYPE, st))
                        stats.folders += 1
                    elif stat.S_ISREG(st.st_mode):
                        _pack_file(tar, folder_fd, name, path, st.st_size, limits, stats)
                    elif stat.S_ISLNK(st.st_mode):
                        info = _info(path, tarfile.SYMTYPE, st)
                        info.linkname = os.readlink(name, dir_fd=folder_fd)
                        tar.addfile(info)
                        stats.links += 1
                    else:
                        stats.skip("special", path)
                except OSError as e:
                    if e.errno not in _GONE:
                        raise
    finally:
        os.close(root_fd)
    return stats


def _pack_file(tar: tarfile.TarFile, folder_fd: int, name: str, path: str, size: int,
               limits: Limits, stats: ArchiveStats) -> None:
    if stats.bytes + size > limits.max_bytes:  # before opening: a sparse TB is never read
        stats.skip("too_large", path)
        return
    fd = os.open(name, _FILE_FLAGS, dir_fd=folder_fd)
    with open(fd, "rb", buffering=0) as file:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            stats.skip("special", path)
            return
        if stats.bytes + st.st_size > limits.max_bytes:
            stats.skip("too_large", path)
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


class _BoundedInfo(tarfile.TarInfo):
    """TarInfo refusing, before reading them, headers over _MAX_HEADER bytes and sparse
    members (whose maps and holes are unbounded). Overrides tarfile's _proc_* hooks,
    which its source documents as the subclassing point."""

    def _proc_member(self, tarfile_):
        long = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
        if self.type in long and self.size > _MAX_HEADER:
            raise ArchiveRefused(f"a header of {self.size} bytes (more than {_MAX_HEADER})")
        return super()._proc_member(tarfile_)

    def _proc_sparse(self, tarfile_):
        raise ArchiveRefused(f"member {self.name!r} is a sparse file")

    def _proc_gnusparse_00(self, next, *_):
        raise ArchiveRefused(f"member {next.name!r} is a sparse file")

    _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00


def unpack(source: BinaryIO, target: str, uid: int | None, limits: Limits = Limits()) -> ArchiveStats:
    """Unpack the tar stream `source` into the folder `target` (new and empty, seen by no
    sandbox), owned by `uid` (None: the caller's). ArchiveError for a member that would
    leave `target`, ArchiveRefused for an archive beyond `limits`; what was unpacked
    before either stays, for the caller to remove."""
    stats = ArchiveStats()
    members = 0
    root_fd = os.open(target, _DIR_FLAGS)
    try:
        with tarfile.open(fileobj=source, mode="r|", bufsize=_CHUNK, copybufsize=_CHUNK,
                          tarinfo=_BoundedInfo) as tar:
            for member in tar:
                members += 1
                if members > limits.max_members:
                    raise ArchiveRefused(f"more than {limits.max_members} members")
                if member.sparse is not None:
                    raise ArchiveRefused(f"member {member.name!r} is a sparse file")
                _unpack_member(tar, member, root_fd, uid, limits, stats)
                tar.members.clear()  # a stream's members need not be kept
    except tarfile.TarError as e:
        raise ArchiveError(f"not a readable tar stream: {e}") from None
    finally:
        os.close(root_fd)
    return stats


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root_fd: int,
                   uid: int | None, limits: Limits, stats: ArchiveStats) -> None:
    parts = _parts(member.name)
    if not parts:
        return  # the root itself
    if len(parts) > limits.max_depth + (0 if member.isdir() else 1):
        raise ArchiveRefused(f"member {member.name[:_PATH_CHARS]!r} is nested deeper than {limits.max_depth} folders")
    if member.isreg() and stats.bytes + member.size > limits.max_bytes:
        raise ArchiveRefused(f"more than {limits.max_bytes} bytes of file content")
    if not (member.isdir() or member.isreg() or member.issym()):
        stats.skip("hard_link" if member.islnk() else "special", member.name)
        return
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
        else:
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


def fingerprint(root: str, limits: Limits = Limits()) -> str:
    """A digest of the names, kinds, sizes, modes, mtimes and link targets (not file
    contents) of the entries a pack within `limits` walks, and of the limits: it changes
    when a sync would upload something different."""
    digest = hashlib.sha256(f"{limits}\n".encode())
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        for path, folder_fd, name, st in _walk(root_fd, limits, ArchiveStats()):
            line = f"{path}\0{st.st_mode:o}\0{st.st_size}\0{st.st_mtime_ns}"
            if stat.S_ISLNK(st.st_mode):
                try:
                    line += "\0" + os.readlink(name, dir_fd=folder_fd)
                except OSError as e:
                    if e.errno not in _GONE:
                        raise
            digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    finally:
        os.close(root_fd)
    return digest.hexdigest()
