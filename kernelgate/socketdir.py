"""A kernel's folder on the host, and the socket folder in it that its sandbox writes.

    runtime_dir/<kernel id>/            the gateway's, mode 700; no sandbox sees it
        connection.json                 written by the gateway; bind-mounted read-only
        ipc/                            SOCKETS: the kernel's ipc sockets; bind-mounted
                                        writable (the sandbox binds its sockets here)

Host-side code never opens, chowns or chmods a path inside the socket folder. When the
gateway is root, the socket folder is a tmpfs of its own, small (size and inode limits,
so a kernel cannot fill /run or the disk) and `nosymfollow`: a link a kernel leaves
there is never followed by the host, not even by the gateway's ZeroMQ connects. Each new
sandbox gets a new, empty socket folder (`renew`): nothing a kernel left there reaches
its successor. Without the tmpfs the folder is still writable by the sandbox's uid only
(mode 700 and owned by it; a gateway that cannot chown grants that uid alone a POSIX
ACL entry), never by every user of the host.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import struct

log = logging.getLogger(__name__)

#: Name of the socket folder inside a kernel's folder.
SOCKETS = "ipc"


async def _run(*argv: str) -> bool:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    if process.returncode:
        log.warning("%s failed: %s", " ".join(argv), err.decode(errors="replace").strip())
    return process.returncode == 0


async def renew(path: str, uid: int, size: str = "1m", inodes: int = 64, gid: int | None = None) -> bool:
    """Give the socket folder `path` (whose parent is the gateway's) fresh, empty contents
    only the sandbox's host `uid` can write: a new tmpfs of `size` and `inodes` (mode 700,
    owned by uid and `gid` (default: uid), nosymfollow) when root; else a new folder
    (`_new_folder`). True if it is a tmpfs. OSError if the folder cannot be given to uid
    alone."""
    gid = uid if gid is None else gid
    await release(path)
    if os.geteuid() == 0:
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)
        options = (f"size={size},nr_inodes={inodes},mode=0700,uid={uid},gid={gid},"
                   "nosuid,nodev,noexec,nosymfollow")
        if await _run("mount", "-t", "tmpfs", "-o", options, "kernelgate-sockets", path):
            return True
    await asyncio.to_thread(_new_folder, path, uid, gid)
    return False


def _new_folder(path: str, uid: int, gid: int | None = None) -> None:
    """An empty folder of mode 700 that `uid` can enter and bind sockets in: owned by uid
    (chowned through the descriptor of the folder just made), or, when we may not chown
    and are not uid, ours with an ACL entry giving uid (and no one else) access."""
    shutil.rmtree(path, ignore_errors=True)  # rmtree never follows links
    os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, 0o700)
        if uid == os.geteuid():
            return
        try:
            os.fchown(fd, uid, uid if gid is None else gid)
        except PermissionError:
            os.setxattr(fd, "system.posix_acl_access", _acl_for(uid))
    finally:
        os.close(fd)


def _acl_for(uid: int) -> bytes:
    """A POSIX access ACL (the kernel's xattr form): the owner and `uid` rwx, nobody else."""
    everyone = 0xFFFFFFFF  # ACL_UNDEFINED_ID
    entries = [(0x01, 7, everyone), (0x02, 7, uid), (0x04, 0, everyone), (0x10, 7, everyone), (0x20, 0, everyone)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


async def release(path: str) -> None:
    """Unmount the folder's tmpfs, if it has one."""
    if os.path.ismount(path):
        await _run("umount", "-l", path)
