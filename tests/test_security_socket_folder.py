"""A kernel's socket folder without its tmpfs (a gateway that may not mount, or whose
mount failed) is writable by the sandbox's uid only, never by every user of the host
(issue 16, item 12: it was mode 777)."""

from __future__ import annotations

import os
import socket
import stat
import tempfile

import pytest

from kernelgate import socketdir
from tests.ci import require

SANDBOX, GATEWAY, OTHER = 1000, 65534, 1001


def as_user(uid: int, action) -> bool:
    """Whether `action()` succeeds in a child process running as uid (and gid) `uid`."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            action()
            os._exit(0)
        except BaseException:  # noqa: BLE001 - any failure is the answer
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def binds_a_socket(folder: str, name: str):
    def bind():
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(os.path.join(folder, name))
    return bind


@pytest.fixture
def parent():
    """A folder every test uid can enter (the kernel's folder is reached through a bind mount)."""
    require(None if os.geteuid() == 0 else "needs root to act as other uids")
    path = tempfile.mkdtemp(prefix="kg-sockets-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            for inner in os.scandir(entry.path):
                os.unlink(inner.path)
            os.rmdir(entry.path)
    os.rmdir(path)


@pytest.mark.parametrize("gateway_uid", [0, GATEWAY], ids=["root-chowns", "non-root-acl"])
def test_a_plain_socket_folder_is_the_sandbox_uids_alone(parent, gateway_uid):
    folder = os.path.join(parent, socketdir.SOCKETS)
    if gateway_uid:
        os.chown(parent, gateway_uid, gateway_uid)
        assert as_user(gateway_uid, lambda: socketdir._new_folder(folder, SANDBOX))
    else:
        socketdir._new_folder(folder, SANDBOX)
    mode = os.lstat(folder)
    assert not mode.st_mode & (stat.S_IWOTH | stat.S_IROTH | stat.S_IXOTH), oct(mode.st_mode)
    assert mode.st_uid == (gateway_uid or SANDBOX)
    assert as_user(SANDBOX, binds_a_socket(folder, "k-shell"))
    assert not as_user(OTHER, binds_a_socket(folder, "intruder"))
    assert not as_user(OTHER, lambda: open(os.path.join(folder, "planted"), "x").close())
    assert sorted(os.listdir(folder)) == ["k-shell"]
