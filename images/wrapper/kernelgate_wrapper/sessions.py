"""The two styles of running a wrapper language's cells, and the result of one cell.

- :class:`InterpreterSession`: one long-lived interpreter (a driver script, see
  ``drivers/``) keeps the state between cells.  Protocol: the kernel writes one JSON line
  ``{"code": ..., "label": "In[n]"}`` per cell on the command pipe; the driver evaluates it
  with its stdin, stdout and stderr as the user program's, and answers on the event pipe
  with zero or more ``{"display": <MIME bundle>}`` lines and then one
  ``{"status": "ok", "data": <MIME bundle or null>}`` or
  ``{"status": "error", "ename": ..., "evalue": ..., "traceback": [...]}`` line.  On SIGINT
  the driver abandons the cell and answers with an error.  If the driver dies or has to be
  killed, a new one is started and the cell's error says that the state is lost.
- :class:`CompiledSession`: every cell is compiled into a fresh program together with the
  declarations of earlier cells (:mod:`kernelgate_wrapper.sources`), in a build folder, and
  the program is run.  A cell that compiles has its declarations kept, whatever happens when
  it runs.

Both return a :class:`CellResult`.  A stopped cell's error is ``KeyboardInterrupt`` (an
interrupt) or ``EOFError`` (an interpreter read stdin when no input could be given).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from kernelgate_wrapper import sources
from kernelgate_wrapper.process import CellIO, Child, EndOfInput, Outcome

#: Seconds a program gets to stop after SIGINT before it is killed.
PROGRAM_GRACE = 1.0
#: Seconds an interpreter gets to abandon a cell after SIGINT before it is killed (and restarted).
INTERPRETER_GRACE = 3.0


@dataclass
class CellResult:
    """A cell's result: ok (with the MIME bundle of its value, if any) or an error."""

    ok: bool
    data: dict | None = None
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)


def error(ename: str, evalue: str, traceback: list[str] | None = None) -> CellResult:
    return CellResult(False, ename=ename, evalue=evalue,
                      traceback=traceback if traceback is not None else [f"{ename}: {evalue}"])


def _stopped(outcome: Outcome, what: str) -> CellResult:
    """The error of a cell the kernel stopped (interrupt or no input)."""
    if outcome.stop_reason == "interrupt":
        return error("KeyboardInterrupt", f"interrupted: {what}")
    return error("EOFError", f"{outcome.stop_reason}: {what}")


class _Session:
    """What both styles share: the child that runs now, and interrupting it."""

    def __init__(self) -> None:
        self._current: Child | None = None
        self._interrupt_requested = False

    def interrupt(self) -> None:
        """Stop the running cell (safe in a signal handler; no effect between cells)."""
        self._interrupt_requested = True
        if self._current is not None:
            self._current.interrupt()

    def _begin(self) -> None:
        self._interrupt_requested = False

    def _pump(self, child: Child, io: CellIO, *, grace: float, keep_stdin: bool) -> Outcome:
        self._current = child
        try:
            if self._interrupt_requested:
                child.interrupt()
            return child.pump(io, grace=grace, keep_stdin=keep_stdin)
        finally:
            self._current = None


class InterpreterSession(_Session):
    """A long-lived interpreter running ``argv`` (a driver) in ``cwd``."""

    def __init__(self, argv: list[str], cwd: str) -> None:
        super().__init__()
        self._argv = argv
        self._cwd = cwd
        self._child: Child | None = None

    def start(self) -> None:
        """Start the interpreter (again): any earlier one is killed."""
        self.close()
        self._child = Child(self._argv, cwd=self._cwd, protocol=True)

    def execute(self, code: str, label: str, io: CellIO) -> CellResult:
        self._begin()
        if self._child is None or not self._child.alive():
            self.start()
        try:
            self._child.send({"code": code, "label": label})
        except BrokenPipeError:  # it died since the check
            outcome = Outcome(returncode=self._child.proc.wait())
        else:
            outcome = self._pump(self._child, io, grace=INTERPRETER_GRACE, keep_stdin=True)
        event = outcome.event
        if event is not None:
            if event["status"] == "ok":
                return CellResult(True, data=event.get("data"))
            if outcome.interrupted:
                return _stopped(outcome, "the interpreter's state is kept")
            return error(event["ename"], event["evalue"], event.get("traceback"))
        self.start()
        if outcome.killed:
            return _stopped(outcome, f"the interpreter did not stop within {INTERPRETER_GRACE:g} s"
                                     " and was restarted: its state is lost")
        return error("InterpreterExited", f"the interpreter {_describe_exit(outcome.returncode)};"
                                          " a new one was started: its state is lost")

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None


@dataclass(frozen=True)
class Toolchain:
    """How a compiled language builds a program.

    ``command`` is the compiler's argv, in which ``{source}`` and ``{binary}`` are replaced by
    the source file name (relative to the build folder, its working directory) and the
    program's absolute path.
    """

    family: str  # a family of kernelgate_wrapper.sources
    source_name: str
    command: tuple[str, ...]


class CompiledSession(_Session):
    """Compile-and-run: each cell is a new program (see the module docstring)."""

    def __init__(self, toolchain: Toolchain, build_dir: str, cwd: str) -> None:
        """``build_dir`` must allow executing files (not /tmp, which is noexec)."""
        super().__init__()
        self.toolchain = toolchain
        self._build_dir = Path(build_dir)
        self._cwd = cwd
        self.declarations = sources.Declarations()

    def execute(self, code: str, label: str, io: CellIO) -> CellResult:
        self._begin()
        cell = sources.split(self.toolchain.family, code, label)
        program = sources.assemble(
            self.toolchain.family, self.declarations.merged(cell.declarations), cell)
        compiled = self._compile(program)
        if not compiled.ok:
            return compiled
        if compiled.traceback:  # warnings
            io.output("stderr", "\n".join(compiled.traceback) + "\n")
        self.declarations.keep(cell.declarations)
        if not cell.statements and not cell.defines_main:
            return CellResult(True)
        child = Child([str(self._build_dir / "main")], cwd=self._cwd)
        try:
            outcome = self._pump(child, io, grace=PROGRAM_GRACE, keep_stdin=False)
        finally:
            child.close()
        if outcome.interrupted:
            return _stopped(outcome, "the program was stopped")
        if outcome.returncode:
            return error("RuntimeError", f"the program {_describe_exit(outcome.returncode)}")
        return CellResult(True)

    def _compile(self, program: sources.Program) -> CellResult:
        """Compile ``program``: ok with the diagnostics (warnings) as traceback, or the error."""
        self._build_dir.mkdir(parents=True, exist_ok=True)
        (self._build_dir / self.toolchain.source_name).write_text(program.text, encoding="utf-8")
        binary = self._build_dir / "main"
        binary.unlink(missing_ok=True)
        argv = [a.replace("{source}", self.toolchain.source_name).replace("{binary}", str(binary))
                for a in self.toolchain.command]
        collected = _Collector()
        child = Child(argv, cwd=str(self._build_dir), stdin=False)
        try:
            outcome = self._pump(child, collected, grace=PROGRAM_GRACE, keep_stdin=False)
        finally:
            child.close()
        diagnostics = program.relabel(collected.text(), self.toolchain.source_name).rstrip("\n")
        lines = diagnostics.split("\n") if diagnostics else []
        if outcome.interrupted:
            return _stopped(outcome, "compilation was stopped")
        if outcome.returncode:
            first = next((line for line in lines if "error" in line), lines[0] if lines else "")
            return error("CompileError", first.strip() or f"the compiler {_describe_exit(outcome.returncode)}",
                         lines or None)
        return CellResult(True, traceback=lines)

    def close(self) -> None:
        """Nothing runs between cells."""


class _Collector:
    """A CellIO that keeps output (a compiler's diagnostics) instead of showing it."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def output(self, name: str, text: str) -> None:
        self._parts.append(text)

    def display(self, data: dict) -> None:
        """Compilers send no display events."""

    def read_line(self) -> str:
        raise EndOfInput("a compiler gets no input")

    def text(self) -> str:
        return "".join(self._parts)


def _describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        signum = -returncode
        name = signal.Signals(signum).name
        hint = " (the memory limit, or a kill from outside)" if signum == signal.SIGKILL else ""
        return f"was killed by {name}: {signal.strsignal(signum)}{hint}"
    return f"exited with status {returncode}"


def build_dir() -> str:
    """The build folder under $HOME (a tmpfs that allows exec in kernelgate's containers)."""
    return os.path.join(os.path.expanduser("~"), ".kernelgate", "build")
