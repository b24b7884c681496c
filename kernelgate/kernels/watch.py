"""KernelWatch: what the gateway learns and enforces from a kernel's traffic.

It is the KernelHub's observer for one kernel:
- it records the kernel's activity and execution state;
- it limits each execution's wall-clock time to its tier's `exec_timeout`:
  1. it interrupts the kernel;
  2. if the execution has not stopped `grace` seconds later, it restarts the kernel;
  3. it tells the clients, on iopub, what it did;
- it limits each execution's output to `max_output` bytes. Past that, output messages
  are dropped and the clients are told, once, that the output was cut.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Awaitable, Callable

from kernelgate.kernels.codec import Frames, read_json

log = logging.getLogger(__name__)

#: iopub messages that are an execution's output.
OUTPUT_TYPES = {"stream", "display_data", "update_display_data", "execute_result"}


class KernelWatch:
    def __init__(self, publish: Callable[[str, dict, dict | None], None],
                 interrupt: Callable[[], Awaitable[None]], restart: Callable[[], Awaitable[None]],
                 tier: str, exec_timeout: float, max_output: int, grace: float = 5.0,
                 own_session: str = "") -> None:
        self.publish = publish
        self.interrupt = interrupt
        self.restart = restart
        self.tier = tier
        self.exec_timeout = exec_timeout
        self.max_output = max_output
        self.grace = grace
        #: the session of the gateway's own requests (readiness probes): their busy and
        #: idle are not the kernel's state (a probe answered after a start said "busy")
        self.own_session = own_session
        self.execution_state = "starting"
        self.active_at = time.time()  # the last message either way, in epoch seconds (set per message)
        self._requests: dict[str, dict] = {}  # execute_request msg_id -> its header
        self._current: str | None = None  # msg_id of the running execution
        self._output = 0
        self._cut = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def last_activity(self) -> datetime:
        return datetime.fromtimestamp(self.active_at, timezone.utc)

    # -- the hub's observer ---------------------------------------------------------

    def to_kernel(self, frames: Frames) -> None:
        self.active_at = time.time()
        if frames.channel == "shell" and frames.msg_type == "execute_request":
            self._requests[frames.header["msg_id"]] = frames.header

    def from_kernel(self, frames: Frames) -> bool:
        self.active_at = time.time()
        if frames.channel != "iopub":
            return True
        parent_id = frames.parent.get("msg_id")
        if frames.msg_type == "status":
            if self.own_session and frames.parent.get("session") == self.own_session:
                return True
            try:
                content = read_json(frames.parts[3])
            except ValueError:
                content = None
            state = content.get("execution_state") if isinstance(content, dict) else None
            if isinstance(state, str):
                self.execution_state = state
                if state == "busy" and parent_id in self._requests:
                    self._begin(parent_id)
                elif state == "idle" and parent_id == self._current:
                    self._end()
            return True
        if frames.msg_type in OUTPUT_TYPES and parent_id == self._current and self.max_output:
            self._output += len(frames.parts[3])
            if self._output > self.max_output:
                if not self._cut:
                    self._cut = True
                    self._notice(f"Output cut: this execution printed more than {self.max_output} "
                                 "bytes. Further output is not shown.")
                return False
        return True

    # -- executions -------------------------------------------------------------------

    def _begin(self, msg_id: str) -> None:
        self._end()
        self._current, self._output, self._cut = msg_id, 0, False
        if self.exec_timeout:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(
                self.exec_timeout, lambda: asyncio.ensure_future(self._expire(msg_id))
            )

    def _end(self) -> None:
        if self._current is not None:
            self._requests.pop(self._current, None)
        self._current = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reset(self) -> None:
        """The kernel restarted: no execution runs and none is pending."""
        self._end()
        self._requests.clear()

    async def _expire(self, msg_id: str) -> None:
        self._notice(f"Execution stopped: it ran longer than {self.exec_timeout:g} s, the limit "
                     f"of the {self.tier!r} tier. Interrupting it.", msg_id)
        try:
            await self.interrupt()
        except Exception as e:  # noqa: BLE001 - the restart below is the remedy
            log.warning("interrupt after a timeout failed: %s", e)
        await asyncio.sleep(self.grace)
        if self._current == msg_id:
            self._notice("The execution did not stop after the interrupt: restarting the "
                         "kernel. Its variables are lost.", msg_id)
            await self.restart()

    def _notice(self, text: str, msg_id: str | None = None) -> None:
        parent = self._requests.get(msg_id or self._current or "")
        self.publish("stream", {"name": "stderr", "text": f"[kernelgate] {text}\n"}, parent)
