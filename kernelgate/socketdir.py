"""Per-kernel socket folders on a small tmpfs of their own.

A kernel's socket folder is bind-mounted, writable, into its container. On the host's
own filesystem a kernel could fill it (and with it /run or the disk). When the gateway
is root, the folder is a tmpfs of its own with a small size and inode limit instead.
"""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger(__name__)


async def _run(*argv: str) -> bool:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    if process.returncode:
        log.warning("%s failed: %s", " ".join(argv), err.decode(errors="replace").strip())
    return process.returncode == 0


async def confine(path: str, uid: int, size: str = "1m", inodes: int = 64) -> bool:
    """Mount a tmpfs of `size` and `inodes` on the (empty) folder, owned by uid, mode 700.
    False (and nothing changed) when not root or the mount fails."""
    if os.geteuid() != 0 or os.path.ismount(path):
        return os.path.ismount(path)
    options = f"size={size},nr_inodes={inodes},mode=0700,uid={uid},gid={uid},nosuid,nodev,noexec"
    return await _run("mount", "-t", "tmpfs", "-o", options, "kernelgate-sockets", path)


async def release(path: str) -> None:
    """Unmount the folder's tmpfs, if it has one."""
    if os.path.ismount(path):
        await _run("umount", "-l", path)
