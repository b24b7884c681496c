"""KernelWatch: what the gateway learns and enforces from a kernel's traffic.

It is the KernelHub's observer for one kernel:
- it records the kernel's activity and execution state;
- it limits each execution's wall-clock time to its tier's `exec_timeout`:
  1. it interrupts the kernel;
  2. if the execution has not stopped `grace` seconds later, it restarts the kernel;
  3. it tells the clients, on iopub, what it did;
- it limits each execution's output to `max_output` bytes (of message content): the
  stream message that crosses the limit is cut to fill it, later output messages are
  dropped, and the clients are told, once, that the output was cut. The budget is the
  execution's, not the time it runs: output a background thread sends after its cell
  ended (with that cell's, or an earlier one's, parent) is counted against that cell,
  for the last KEPT_BUDGETS executions; output with any other parent shares one budget,
  renewed when an execution begins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Awaitable, Callable

from kernelgate import metrics
from kernelgate.kernels.codec import Frames, read_json

log = logging.getLogger(__name__)

#: iopub messages that are an execution's output.
OUTPUT_TYPES = {"stream", "display_data", "update_display_data", "execute_result"}
#: Executions whose output budgets are kept after they end (for their background threads).
KEPT_BUDGETS = 64
#: The id `running_unseen` gives an execution this gateway did not send.
UNSEEN = "(an execution of an earlier run)"


class _Budget:
    """The output one execution (or the output with no known execution) has sent."""

    __slots__ = ("parent", "used", "cut")

    def __init__(self, parent: dict | None) -> None:
        self.parent = parent  # the execute_request's header: the notice's parent
        self.used = 0
        self.cut = False


class KernelWatch:
    def __init__(self, publish: Callable[[str, dict, dict | None], None],
                 interrupt: Callable[[], Awaitable[None]], restart: Callable[[str], Awaitable[None]],
                 tier: str, exec_timeout: float, max_output: int, grace: float = 5.0,
                 own_session: str = "", kernelspec: str = "") -> None:
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
        self.active_mono = time.monotonic()  # the same moment on the monotonic clock: idle durations
        self._requests: dict[str, dict] = {}  # execute_request msg_id -> its header
        self._current: str | None = None  # msg_id of the running execution
        self._budgets: OrderedDict[str, _Budget] = OrderedDict()  # execution msg_id -> budget
        self._stray = _Budget(None)  # output whose parent is no kept execution
        self._cut_notice: tuple[str, dict | None] | None = None  # to publish after a cut message
        self._timer: asyncio.TimerHandle | None = None
        self._execute_seconds = metrics.EXECUTE.labels(kernelspec)
        self._sent_at: dict[str, float] = {}  # execute_request msg_id -> monotonic time

    @property
    def running(self) -> bool:
        """An execution was sent and has not ended (the gateway drains until none is)."""
        return self._current is not None or bool(self._sent_at)

    @property
    def last_activity(self) -> datetime:
        return datetime.fromtimestamp(self.active_at, timezone.utc)

    def touch(self) -> None:
        """Activity now: the wall time the API shows, the monotonic time culling counts
        from (a wall-clock jump neither culls nor spares a kernel)."""
        self.active_at, self.active_mono = time.time(), time.monotonic()

    def idle_seconds(self) -> float:
        """Seconds since the last message either way, on the monotonic clock."""
        return time.monotonic() - self.active_mono

    # -- the hub's observer ---------------------------------------------------------

    def to_kernel(self, frames: Frames) -> None:
        self.touch()
        metrics.count_message(frames.channel, "in")
        if frames.channel == "shell" and frames.msg_type == "execute_request":
            self._requests[frames.header["msg_id"]] = frames.header
            self._sent_at[frames.header["msg_id"]] = time.monotonic()

    def from_kernel(self, frames: Frames) -> bool:
        self.touch()
        metrics.count_message(frames.channel, "out")
        if self._cut_notice is not None:
            self._publish_cut_notice()
        if frames.channel != "iopub":
            if frames.msg_type == "execute_reply":
                sent = self._sent_at.pop(frames.parent.get("msg_id"), None)
                if sent is not None:
                    self._execute_seconds.observe(time.monotonic() - sent)
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
                elif state == "idle" and self._current in (parent_id, UNSEEN):
                    self._end()
            return True
        if frames.msg_type in OUTPUT_TYPES and self.max_output:
            return self._spend(self._budgets.get(parent_id, self._stray), frames)
        return True

    def _spend(self, budget: _Budget, frames: Frames) -> bool:
        """Count an output message against `budget`; False drops it. The stream message
        that crosses the limit is cut to fit."""
        if budget.cut:
            return False
        size = len(frames.parts[3])
        if budget.used + size <= self.max_output:
            budget.used += size
            return True
        kept = frames.msg_type == "stream" and _cut_stream(frames, self.max_output - budget.used)
        budget.used, budget.cut = self.max_output, True
        metrics.OUTPUT_TRUNCATED.inc()
        self._cut_notice = (f"Output cut: this execution printed more than {self.max_output} "
                            "bytes. Further output is not shown.", budget.parent)
        if kept:  # after the part kept: before the kernel's next message, or once routed
            asyncio.get_running_loop().call_soon(self._publish_cut_notice)
        else:
            self._publish_cut_notice()
        return kept

    def _publish_cut_notice(self) -> None:
        if self._cut_notice is not None:
            (text, parent), self._cut_notice = self._cut_notice, None
            self._notice(text, parent=parent)

    # -- executions -------------------------------------------------------------------

    def _begin(self, msg_id: str) -> None:
        self._end()
        self._current = msg_id
        self._budgets[msg_id] = _Budget(self._requests.get(msg_id))
        while len(self._budgets) > KEPT_BUDGETS:
            self._budgets.popitem(last=False)
        self._stray = _Budget(None)
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

    def running_unseen(self) -> None:
        """The kernel runs an execution this gateway did not send (one an earlier run of
        the gateway left, found busy at re-adoption): its time limit counts from now,
        and the kernel's next idle status ends it."""
        self._begin(UNSEEN)

    def reset(self) -> None:
        """The kernel restarted: no execution runs and none is pending."""
        self._end()
        self._requests.clear()
        self._sent_at.clear()
        self._budgets.clear()
        self._stray = _Budget(None)

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
            try:
                await self.restart("timeout")
            except Exception as e:  # noqa: BLE001 - a task's end: the registry's supervisor takes over
                log.warning("restart after a timeout failed: %s", e)

    def _notice(self, text: str, msg_id: str | None = None, parent: dict | None = None) -> None:
        if parent is None:
            parent = self._requests.get(msg_id or self._current or "")
        self.publish("stream", {"name": "stderr", "text": f"[kernelgate] {text}\n"}, parent)


def _cut_stream(frames: Frames, room: int) -> bool:
    """Shorten a stream message's text so that its content takes at most `room` bytes;
    False if no text fits (or the content is not a stream's)."""
    try:  # orjson: a stream's fields are strings, which it reads exactly
        content = read_json(frames.parts[3])
    except ValueError:
        return False
    text = content.get("text") if isinstance(content, dict) else None
    if not isinstance(text, str):
        return False
    encoded = text.encode("utf-8", "surrogatepass")
    keep = min(len(encoded), room)  # never serializes more than the room (a frame can be 64 MiB)
    while keep > 0:
        content["text"] = encoded[:keep].decode("utf-8", "ignore")
        packed = json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass")
        if len(packed) <= room:
            frames.parts[3] = packed
            return True
        keep -= len(packed) - room  # escapes make the JSON longer than the text
    return False
