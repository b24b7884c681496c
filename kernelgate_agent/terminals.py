"""Shells on pseudo-terminals, as the agent runs them."""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import pty
import signal
import struct
import termios
from typing import Callable

_READ_SIZE = 65536
_PR_SET_PDEATHSIG = 1


class Terminal:
    """A shell on a PTY. `on_output(name, bytes)` gets its output as it comes and
    `on_exit(name, status)` its end; both run on the event loop."""

    def __init__(self, name: str, argv: list[str], cwd: str, env: dict[str, str],
                 rows: int, cols: int, on_output: Callable[[str, bytes], None],
                 on_exit: Callable[[str, int], None]) -> None:
        self.name = name
        self.on_output = on_output
        self.on_exit = on_exit
        pid, fd = pty.fork()
        if pid == 0:  # the child: a session leader with the PTY as its controlling tty
            try:
                ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.resize(rows, cols)
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: the shell and everything on the PTY have exited
            data = b""
        if data:
            self.on_output(self.name, data)
        else:
            self._finish()

    def write(self, data: bytes) -> None:
        """Type into the terminal (Ctrl-C is b'\\x03': the tty sends SIGINT itself)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                break  # the shell is not reading; drop the rest rather than block the agent

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self) -> None:
        """Hang up: the shell's session gets SIGHUP, then SIGKILL."""
        for sig in (signal.SIGHUP, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
        self._finish()

    def _finish(self) -> None:
        if self.fd < 0:
            return
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = -1
        self.on_exit(self.name, code)
