"""Workspace volumes: a room's working copy as its own ext4 file system, so that the
owner's plan caps its bytes and inodes. Writes past either limit fail with ENOSPC inside
the sandbox; the host's disk and the other rooms are not touched.

Each volume is a sparse image file (or, with RoomStorage.preallocate_workspaces, one whose
blocks are reserved at its creation) formatted with `mkfs.ext4 -N <inodes>` (no reserved
blocks, lost+found removed, the root owned by the sandboxes' user with mode 0700) and
loop-mounted with nodev,nosuid at the working copy's path. The mount's loop device is
freed when the last mount of it goes (autoclear): a container still running a room
kernel keeps its own mount after the gateway detaches the host's, and `attach` then
mounts that same loop device again, never a second one on the same image (two ext4
instances on one image would corrupt it).

Every function blocks (it runs mkfs, mount, umount): callers use worker threads. They
need root and e2fsprogs; `problem()` says why volumes cannot be used here.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

from kernelgate.errors import Unavailable

#: How long one mkfs, mount or umount may take.
TIMEOUT = 120
_MOUNT_OPTIONS = "nodev,nosuid,noinit_itable"


class VolumeError(Unavailable):
    """A workspace volume cannot be made, mounted or unmounted (503)."""


def problem() -> str | None:
    """Why workspace volumes cannot be used on this host, or None."""
    if os.geteuid() != 0:
        return "the gateway does not run as root (loop mounts need it)"
    for tool in ("mkfs.ext4", "mount", "umount", "losetup"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package e2fsprogs / mount)"
    return None


class HostDiskFull(Unavailable):
    """The host's disk cannot hold a preallocated volume (503): nothing was made."""

    retry_after = 60


def make(image: Path, mountpoint: Path, size: int, inodes: int, uid: int | None,
         preallocate: bool = False) -> None:
    """A new volume of `size` bytes and at least `inodes` inodes at `image` (which must not
    exist), mounted at `mountpoint` (created if missing, must be empty). `preallocate`:
    the image's blocks are reserved on the host's disk now (HostDiskFull if they do not
    fit), so that a full host disk cannot fail the volume's writes later."""
    image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        if preallocate:
            os.posix_fallocate(fd, 0, size)
    except OSError as e:
        image.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HostDiskFull(f"The host's disk has no room for a {size >> 20} MiB workspace; "
                               "nothing was made") from None
        raise
    finally:
        os.close(fd)
    owner = f"{uid}:{uid}" if uid is not None else f"{os.getuid()}:{os.getgid()}"
    try:
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-N", str(inodes), "-L", "kg-workspace",
             "-E", f"root_owner={owner},lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(image))
        attach(image, mountpoint)
    except BaseException:
        image.unlink(missing_ok=True)
        raise
    lost = mountpoint / "lost+found"
    if lost.is_dir() and not lost.is_symlink():
        os.rmdir(lost)  # e2fsck makes it again when it needs it
    os.chmod(mountpoint, 0o700)


def attach(image: Path, mountpoint: Path) -> None:
    """Mount the volume `image` at `mountpoint` unless it is mounted there; through the
    loop device that already serves it, if one does (module doc)."""
    mountpoint.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.path.ismount(mountpoint):
        return
    device = _loop_device(image)
    if device:
        _run("mount", "-t", "ext4", "-o", _MOUNT_OPTIONS, device, str(mountpoint))
    else:
        _run("mount", "-t", "ext4", "-o", f"loop,{_MOUNT_OPTIONS}", str(image), str(mountpoint))


def detach(mountpoint: Path) -> None:
    """Unmount the volume at `mountpoint`, lazily if something still uses it; nothing
    happens if none is mounted there."""
    if not os.path.ismount(mountpoint):
        return
    try:
        _run("umount", str(mountpoint))
    except VolumeError:
        _run("umount", "-l", str(mountpoint))


def remove(image: Path, mountpoint: Path) -> None:
    """Detach and delete a volume: its mount, its (empty) mount point and its image."""
    detach(mountpoint)
    if mountpoint.is_dir() and not mountpoint.is_symlink() and not os.path.ismount(mountpoint):
        try:
            os.rmdir(mountpoint)
        except OSError:  # not empty: a plain folder of the past, not a mount point
            shutil.rmtree(mountpoint)
    image.unlink(missing_ok=True)


def _loop_device(image: Path) -> str | None:
    found = _run("losetup", "-n", "-O", "NAME", "-j", str(image)).split()
    return found[0] if found else None


def _run(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise VolumeError(f"Workspace volume: {command[0]} failed: {e}") from e
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-500:]
        raise VolumeError(f"Workspace volume: {' '.join(command[:1])} failed: {detail}")
    return done.stdout
