"""Child processes of the wrapper kernel, and the loop that runs one cell through one.

:class:`Child` starts a command in a new session (so its process group is its own) with pipes
for stdin, stdout and stderr; with ``protocol=True`` also a command pipe (kernel to child) and
an event pipe (child to kernel), whose fd numbers the child finds in ``KERNELGATE_COMMAND_FD``
and ``KERNELGATE_EVENT_FD``.  Children inherit the kernel's signal dispositions: a child that
must react to SIGINT sets its handler itself.

:meth:`Child.pump` runs one cell: it forwards stdout and stderr to a :class:`CellIO` as they
arrive, hands display events to it, and returns an :class:`Outcome` when the cell is over —
when the child sends an event with a ``status`` (protocol children) or exits.  Meanwhile:

- **stdin**: when the select loop is quiet for ``STDIN_POLL`` seconds, it checks whether a
  process of the child's group is blocked reading the child's stdin pipe (from
  ``/proc/<pid>/task/<tid>/syscall``) while the pipe is empty; then it asks
  :meth:`CellIO.read_line` for one line and writes it.  When there is no more input
  (:class:`EndOfInput`), a child whose stdin lives for one cell (``keep_stdin=False``) gets
  end-of-file; a long-lived child's stdin cannot be closed, so the cell is stopped instead.
- **interrupts**: :meth:`Child.interrupt` (safe to call from a signal handler) makes the pump
  send SIGINT to the child's process group; if the cell is not over ``grace`` seconds later,
  the group is killed with SIGKILL (``Outcome.killed``).
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import platform
import selectors
import signal
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from typing import Protocol

#: Seconds of silence after which the pump checks whether the child waits for stdin.
STDIN_POLL = 0.05
READ_SIZE = 65536
#: read, pread64, readv, preadv, preadv2 by machine: a thread in one of these on the stdin
#: pipe is waiting for input.
READ_SYSCALLS = {
    "x86_64": {"0", "17", "19", "295", "327"},
    "aarch64": {"63", "65", "67", "69", "286"},
}[platform.machine()]


class EndOfInput(Exception):
    """Raised by :meth:`CellIO.read_line` when the program gets no more input; the message
    says why (the client sent end-of-file, or does not accept input)."""


class CellIO(Protocol):
    """Where a running cell's output goes and its input comes from."""

    def output(self, name: str, text: str) -> None:
        """Text the program wrote on ``name`` ("stdout" or "stderr")."""

    def display(self, data: dict) -> None:
        """A MIME bundle the child sent in a ``{"display": ...}`` event."""

    def read_line(self) -> str:
        """One line for the program's stdin, without its newline.  Raises EndOfInput, or
        KeyboardInterrupt when the kernel is interrupted while waiting."""


@dataclass
class Outcome:
    """How a cell ended."""

    event: dict | None = None  # the final event (protocol children)
    returncode: int | None = None  # the child's exit status if it exited (negative: signal)
    interrupted: bool = False  # SIGINT was sent to the child's group
    killed: bool = False  # the group was killed because it did not stop in time
    stop_reason: str = ""  # why the pump stopped the cell, if it did


class Child:
    """One child process in its own process group (see the module docstring)."""

    def __init__(self, argv: list[str], *, cwd: str, env: dict[str, str] | None = None,
                 protocol: bool = False, stdin: bool = True) -> None:
        """Start ``argv``; OSError if it cannot be started."""
        child_env = dict(os.environ if env is None else env)
        inherited: list[int] = []
        self._command = self._events = None
        if protocol:
            command_r, command_w = os.pipe()
            event_r, event_w = os.pipe()
            inherited = [command_r, event_w]
            child_env["KERNELGATE_COMMAND_FD"] = str(command_r)
            child_env["KERNELGATE_EVENT_FD"] = str(event_w)
        try:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=child_env, pass_fds=inherited, start_new_session=True,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        finally:
            for fd in inherited:
                os.close(fd)
        if protocol:
            self._command = os.fdopen(command_w, "w", encoding="utf-8")
            self._events = event_r
            os.set_blocking(event_r, False)
        self.pid = self.proc.pid
        self._stdin = self.proc.stdin.fileno() if stdin else None
        self._stdin_link = f"pipe:[{os.fstat(self._stdin).st_ino}]" if stdin else ""
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self.proc.stdout.fileno(), self.proc.stderr.fileno(), self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._interrupt_pending = False

    # ----------------------------------------------------------------- control

    def send(self, command: dict) -> None:
        """Write one JSON line on the command pipe (protocol children)."""
        self._command.write(json.dumps(command) + "\n")
        self._command.flush()

    def interrupt(self) -> None:
        """Ask the running :meth:`pump` to stop the cell; safe in a signal handler."""
        self._interrupt_pending = True
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Kill the child's process group and release everything; idempotent."""
        self._signal_group(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr, self._command):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
        for fd in (self._events, self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._events = self._wake_r = self._wake_w = None

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    # -------------------------------------------------------------------- pump

    def pump(self, io: CellIO, *, grace: float, keep_stdin: bool) -> Outcome:
        """Run the current cell to its end (see the module docstring).  An :meth:`interrupt`
        since the last pump ended applies to this cell."""
        outcome = Outcome()
        selector = selectors.DefaultSelector()
        streams = {self.proc.stdout.fileno(): "stdout", self.proc.stderr.fileno(): "stderr"}
        decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in streams}
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        if self._events is not None:
            selector.register(self._events, selectors.EVENT_READ)
        pending_events = b""
        kill_at: float | None = None

        def stop(reason: str) -> None:
            nonlocal kill_at
            if kill_at is None:
                outcome.interrupted, outcome.stop_reason = True, reason
                self._signal_group(signal.SIGINT)
                kill_at = time.monotonic() + grace

        def read_stream(fd: int, final: bool = False) -> bool:
            """Forward what ``fd`` holds; False at end-of-file."""
            while True:
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    return True
                text = decoders[fd].decode(data, final=not data)
                if text:
                    io.output(streams[fd], text)
                if not data:
                    selector.unregister(fd)
                    return False
                if not final:
                    return True

        try:
            while True:
                timeout = STDIN_POLL
                if kill_at is not None:
                    timeout = max(0.0, min(timeout, kill_at - time.monotonic()))
                ready = selector.select(timeout)
                for key, _ in ready:
                    fd = key.fd
                    if fd in streams:
                        read_stream(fd)
                    elif fd == self._wake_r:
                        while True:
                            try:
                                if not os.read(fd, 64):
                                    break
                            except BlockingIOError:
                                break
                    elif fd == self._events:
                        try:
                            data = os.read(fd, READ_SIZE)
                        except BlockingIOError:
                            continue
                        if not data:
                            selector.unregister(fd)
                        pending_events += data
                        *lines, pending_events = pending_events.split(b"\n")
                        for line in lines:
                            event = json.loads(line)
                            if "display" in event:
                                io.display(event["display"])
                            else:
                                outcome.event = event
                if self._interrupt_pending:
                    self._interrupt_pending = False
                    stop("interrupt")
                if outcome.event is not None:
                    break
                if self.proc.poll() is not None:
                    outcome.returncode = self.proc.returncode
                    self._signal_group(signal.SIGKILL)  # whatever it left behind
                    break
                if kill_at is not None and time.monotonic() >= kill_at:
                    self._signal_group(signal.SIGKILL)
                    outcome.killed = True
                    self.proc.wait()
                    continue
                if not ready and kill_at is None and self._stdin is not None and self._waits_for_input():
                    try:
                        line = io.read_line()
                    except KeyboardInterrupt:
                        stop("interrupt")
                    except EndOfInput as e:
                        if keep_stdin:
                            stop(str(e))
                        else:
                            self.proc.stdin.close()
                            self._stdin = None
                    else:
                        self._write_stdin(line + "\n")
            for fd in list(streams):
                if fd in selector.get_map():
                    read_stream(fd, final=True)
        finally:
            selector.close()
            self._interrupt_pending = False  # an interrupt after the cell's end is for no cell
        return outcome

    def _write_stdin(self, text: str) -> None:
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def _waits_for_input(self) -> bool:
        """Whether a thread of the child's group is blocked reading an empty stdin pipe."""
        buffered = fcntl.ioctl(self._stdin, termios.FIONREAD, struct.pack("i", 0))
        if struct.unpack("i", buffered)[0]:
            return False
        for pid in self._group():
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    with open(f"/proc/{pid}/task/{tid}/syscall", encoding="ascii") as f:
                        fields = f.read().split()
                    if len(fields) > 1 and fields[0] in READ_SYSCALLS and \
                            os.readlink(f"/proc/{pid}/fd/{int(fields[1], 16)}") == self._stdin_link:
                        return True
                except (OSError, ValueError):
                    continue
        return False

    def _group(self) -> list[int]:
        """The pids of the child's process group."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if int(fields[2]) == self.pid:
                    pids.append(int(entry))
        return pids
