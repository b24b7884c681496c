"""WrapperKernel: one ipykernel ``Kernel`` for every wrapper language.

``--WrapperKernel.language=NAME`` picks a :class:`~kernelgate_wrapper.languages.Language`.
Contracts of ``execute_request``:

- failures (compile errors, run-time errors, interrupts, a dead interpreter) answer
  ``status: "error"`` with ``ename``, ``evalue`` and ``traceback``, after an ``error`` message
  on iopub;
- the program's stdout and stderr go out as ``stream`` messages while it runs;
- when the program reads stdin and the request allows stdin, each line is asked for with an
  ``input_request``; without ``allow_stdin`` the program gets end-of-file (compiled) or the cell
  stops with ``EOFError`` (interpreters);
- SIGINT (``interrupt_mode: signal``, or an ``interrupt_request``) stops the running cell; the
  kernel stays up.  Between cells SIGINT is ignored.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from importlib import resources

from ipykernel.kernelbase import Kernel
from traitlets import Unicode

from kernelgate_wrapper import __version__
from kernelgate_wrapper.languages import LANGUAGES, Language
from kernelgate_wrapper.process import EndOfInput
from kernelgate_wrapper.sessions import CellResult, CompiledSession, InterpreterSession, build_dir


class WrapperKernel(Kernel):
    implementation = "kernelgate-wrapper"
    implementation_version = __version__

    language = Unicode(help="Name of the language to serve (see kernelgate_wrapper.languages).").tag(
        config=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.language not in LANGUAGES:
            raise ValueError(f"unknown language {self.language!r}; known: {', '.join(LANGUAGES)}")
        spec: Language = LANGUAGES[self.language]
        version = _version(spec.version_command)
        self.language_info = {**spec.language_info, "version": version}
        self.banner = f"{spec.display_name} {version} (kernelgate wrapper kernel {__version__})"
        home = os.path.expanduser("~")
        if spec.toolchain is not None:
            self.runner = CompiledSession(spec.toolchain, build_dir(), home)
        else:
            driver = resources.files("kernelgate_wrapper") / "drivers" / spec.driver
            self.runner = InterpreterSession([*spec.interpreter, str(driver)], home)
            self.runner.start()
        self._awaiting_input = False

    # ----------------------------------------------------------- SIGINT

    def pre_handler_hook(self) -> None:
        """While a request is handled, SIGINT stops the running cell instead of raising."""
        self.saved_sigint_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self._awaiting_input:
            raise KeyboardInterrupt  # leaves the input_request wait; the pump stops the cell
        self.runner.interrupt()

    # ---------------------------------------------------------- execute

    async def do_execute(self, code, silent, store_history=True, user_expressions=None,
                         allow_stdin=False, *, cell_meta=None, cell_id=None):
        self._allow_stdin = allow_stdin
        if not code.strip():
            return self._reply(CellResult(True))
        result = self.runner.execute(code, f"In[{self.execution_count}]", _KernelIO(self, silent))
        if not silent:
            if not result.ok:
                self.send_response(self.iopub_socket, "error", {
                    "ename": result.ename, "evalue": result.evalue, "traceback": result.traceback})
            elif result.data:
                self.send_response(self.iopub_socket, "execute_result", {
                    "execution_count": self.execution_count, "data": result.data, "metadata": {}})
        return self._reply(result)

    def _reply(self, result: CellResult) -> dict:
        if result.ok:
            return {"status": "ok", "execution_count": self.execution_count, "payload": [],
                    "user_expressions": {}}
        return {"status": "error", "execution_count": self.execution_count, "ename": result.ename,
                "evalue": result.evalue, "traceback": result.traceback}

    async def do_shutdown(self, restart):
        self.runner.close()
        return {"status": "ok", "restart": restart}

    def read_line(self) -> str:
        """One line of stdin from the client (see sessions' CellIO.read_line)."""
        if not self._allow_stdin:
            raise EndOfInput("no input: this client does not accept input requests")
        self._awaiting_input = True
        try:
            return self.raw_input("")
        except EOFError:
            raise EndOfInput("end of input") from None
        finally:
            self._awaiting_input = False


class _KernelIO:
    """The CellIO of one execute request: iopub messages, and input requests."""

    def __init__(self, kernel: WrapperKernel, silent: bool) -> None:
        self._kernel = kernel
        self._silent = silent

    def output(self, name: str, text: str) -> None:
        if not self._silent:
            self._kernel.send_response(self._kernel.iopub_socket, "stream", {"name": name, "text": text})

    def display(self, data: dict) -> None:
        if not self._silent:
            self._kernel.send_response(self._kernel.iopub_socket, "display_data",
                                       {"data": data, "metadata": {}})

    def read_line(self) -> str:
        return self._kernel.read_line()


def _version(command: tuple[str, ...]) -> str:
    """The first dotted number ``command`` prints, or "" if it prints none or fails."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"\d+(?:\.\d+)+", out)
    return match.group(0) if match else ""
