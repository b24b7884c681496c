"""KernelRegistry: the gateway's running kernels, their lifecycles and their models.

Each kernel is a jupyter_client AsyncKernelManager (its provisioner chosen by the
kernelspec: Docker by default, local processes as the fallback) plus a KernelHub that
carries its messages. Every kernel talks over ZeroMQ ipc sockets in its socket folder
`runtime_dir/<kernel id>/ipc/`, beside its connection file (kernelgate.socketdir); the
kernel's folder is removed with the kernel.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Awaitable, Callable

import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory as KPF
from jupyter_client.kernelspec import NoSuchKernel
from traitlets import Dict, Float, Instance, Int, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from kernelgate import logs, metrics, socketdir
from kernelgate.clock import iso, utcnow
from kernelgate.engine import DockerEngine, EngineUnavailable
from kernelgate.environment import project
from kernelgate.images import ImageBuilder
from kernelgate.errors import BadRequest, Capacity, GatewayError, NotFound, TooMany, Unavailable
from kernelgate.kernels.agent import AgentClient
from kernelgate.kernels.hub import KernelHub
from kernelgate.kernels.watch import KernelWatch
from kernelgate.kernelspecs import KernelSpecCatalog
from kernelgate.tiers import Tiers

#: Longest path a unix socket may have (sun_path), less room for "-<port>".
_MAX_IPC_PREFIX = 100

#: Client variables the gateway reads itself; none reaches a sandbox or forces a cold
#: start, and allowed_client_env may not name them (docs/api.md). KERNEL_USERNAME: the caller is the owner, whatever it says.
#: KERNEL_ROOM: asks for a room's kernel (handlers.kernels). KERNEL_LAUNCH_TIMEOUT: the
#: client's own wait. KERNEL_WORKING_DIR: a folder of the client's machine, which no
#: sandbox has (solo kernels work in their sandbox's home, room kernels in /workspace).
WELL_KNOWN_ENV = ("KERNEL_USERNAME", "KERNEL_ROOM", "KERNEL_LAUNCH_TIMEOUT", "KERNEL_WORKING_DIR")
#: What allowed_client_env may name: KERNEL_* variables (never PATH, HOME, LD_*...).
_CLIENT_ENV_NAME = re.compile(r"KERNEL_[A-Z0-9_]{1,100}")
#: Longest value of a client variable passed into a sandbox.
MAX_ENV_VALUE = 4096
#: Seconds a re-adopted kernel's shell may take to answer kernel_info before the kernel
#: counts as busy with an execution of the earlier run (KernelRegistry._reattach).
ADOPT_SHELL_WAIT = 3.0
#: The pool kept when pool_sizes is not configured: of the default kernelspec.
DEFAULT_POOL = {"min": 1, "max": 2}


def pool_limits(sizes: dict) -> dict[str, tuple[int, int]]:
    """pool_sizes as kernelspec -> (min, max); TraitError for a malformed entry.

    An entry is a number N (exactly N ready), {"min": m, "max": M}, or from the command
    line the text "N" or "m:M"."""
    limits = {}
    for name, size in sizes.items():
        try:
            if isinstance(size, str):
                low, _, high = size.partition(":")
                low, high = int(low), int(high or low)
            elif isinstance(size, dict) and set(size) <= {"min", "max"}:
                low = int(size.get("min", 0))
                high = int(size.get("max", low))
            elif isinstance(size, int) and not isinstance(size, bool):
                low = high = size
            else:
                raise ValueError
        except (TypeError, ValueError):
            raise TraitError(f"pool_sizes[{name!r}]: a number, {{'min': m, 'max': M}} or 'm:M'") from None
        if not 0 <= low <= high:
            raise TraitError(f"pool_sizes[{name!r}]: need 0 <= min <= max")
        limits[name] = (low, high)
    return limits


class _ExpectedFailures(logging.Filter):
    """jupyter_client logs every failed kernel start with a traceback. Failures that are
    GatewayErrors (engine down, image missing) are expected and answered to the client:
    keep their line, drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], GatewayError):
            record.exc_info, record.exc_text = None, None
        return True


class Draining(Unavailable):
    """The gateway is stopping (SIGTERM): no new kernel starts here."""

    retry_after = 30  # seconds: the Retry-After header


class StartsQueueFull(Unavailable):
    """max_pending_starts cold starts are already waiting or launching (503)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds: the Retry-After header


class TooManyStarts(TooMany):
    """The owner already has max_pending_starts_per_user cold starts in line (429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WaitingForEngine(Unavailable):
    """The kernel's sandbox died while the Docker engine does not answer (503): it is
    revived when the engine is back."""

    retry_after = 10
    message = ("The kernel's sandbox is gone and the Docker engine does not answer; the kernel "
               "restarts when the engine is back (its files are kept). Try again shortly.")


def _kernel_folders(root: Path) -> list[Path]:
    """Blocking: the folders (not links) in the runtime folder `root`; none if it is missing."""
    return [e for e in root.iterdir() if not e.is_symlink() and e.is_dir()] if root.is_dir() else []


@dataclass(eq=False)
class Kernel:
    """A running kernel as the gateway tracks it."""

    id: str
    name: str
    owner: str  # the user, or the owner of the room
    room: str | None  # the room's id, None for a solo kernel
    tier: str
    language: str
    manager: AsyncKernelManager
    watch: KernelWatch
    workspace: Path | None = None  # a room's host folder
    hub: KernelHub | None = None
    agent: AgentClient | None = None
    started: datetime = field(default_factory=utcnow)
    started_mono: float = field(default_factory=time.monotonic)  # max_lifetime counts from it
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    restarts: list[float] = field(default_factory=list)  # monotonic times of automatic restarts
    pooled: bool = False  # started ahead of demand, before anyone owned it
    engine_wait: bool = False  # dead while the Docker engine does not answer: revived once it does

    @property
    def execution_state(self) -> str:
        return self.watch.execution_state

    @execution_state.setter
    def execution_state(self, state: str) -> None:
        self.watch.execution_state = state

    @property
    def last_activity(self) -> datetime:
        return self.watch.last_activity

    @property
    def connections(self) -> int:
        return len(self.hub.clients) if self.hub else 0

    def model(self) -> dict:
        """The kernel model of the REST API (jupyter_server's, plus kernelgate's part)."""
        return {
            "id": self.id,
            "name": self.name,
            "last_activity": iso(self.last_activity),
            "execution_state": self.execution_state,
            "connections": self.connections,
            "kernelgate": {
                "kind": "room" if self.room else "solo",
                **({"room": self.room} if self.room else {"owner": self.owner}),
                "language": self.language,
                "tier": self.tier,
                "pooled": self.pooled,
            },
        }


def _about(kernel: "Kernel") -> dict:
    """A log record's `extra` naming the kernel and its room (JSON logs' fields), for
    records of background work, which no request's context names."""
    return {"kernel": kernel.id, "room": kernel.room or ""}

class KernelRegistry(LoggingConfigurable):
    """Starts, tracks and stops kernels; the one place that knows which kernels exist."""

    catalog = Instance(KernelSpecCatalog)
    #: Built once by ServeApp.setup and passed in. DockerProvisioner reaches them through
    #: its kernel manager, whose parent is this registry (provisioners/docker.py).
    tiers = Instance(Tiers)
    engine = Instance(DockerEngine)
    images = Instance(ImageBuilder)
    max_kernels = Int(
        0, config=True, help="Most kernels running at once on this gateway; 0 = no limit."
    )
    runtime_dir = Unicode(
        config=True, help="Folder for the per-kernel socket directories (kept short: unix "
        "socket paths are limited to ~100 bytes)."
    )
    startup_timeout = Float(60.0, config=True, help="Seconds a kernel may take to answer.")
    start_parallel = Int(
        4, config=True, help="Kernels launched at once (cold starts, rooms' included; pool "
        "fills have pool_parallel); more starts wait in line, first come first served (>= 1).",
    )
    max_pending_starts = Int(
        32, config=True, help="Cold starts waiting in line or launching at once; a start "
        "beyond is answered 503 at once, with Retry-After. 0 = no limit.",
    )
    max_pending_starts_per_user = Int(
        8, config=True, help="Cold starts of one user (a room's owner for a room's kernels) "
        "waiting in line or launching at once; a start beyond is answered 429 at once, with "
        "Retry-After. 0 = no limit.",
    )
    adopt_timeout = Float(
        10.0, config=True, help="Seconds the sandbox of a room kernel left running by an "
        "earlier run may take to answer when this run re-adopts it; one that does not is "
        "removed (the room starts the kernel afresh). A kernel busy with a long execution "
        "is re-adopted all the same, as busy.",
    )
    env_process_whitelist = List(
        Unicode(), default_value=["PATH", "LANG", "LC_ALL", "HOME", "TMPDIR"], config=True,
        help="Gateway environment variables passed to local (unsandboxed) kernels.",
    )
    check_interval = Float(1.0, config=True, help="Seconds between checks for dead kernels.")
    restart_limit = Int(
        3, config=True, help="Automatic restarts of a dying kernel allowed within "
        "restart_window seconds; one more death and the kernel is declared dead."
    )
    restart_window = Float(60.0, config=True, help="See restart_limit.")
    max_lifetime = Float(
        12 * 3600.0, config=True, help="Seconds after which a solo kernel is stopped; 0 = never."
    )
    pool_sizes = Dict(
        default_value=None, allow_none=True, config=True,
        help="Kernelspec name -> solo kernels kept started and waiting (Docker only): a "
        "number, or {'min': m, 'max': M}, the pool then holding as many as that "
        "kernelspec's starts in the last pool_window seconds, within min..max. None (not "
        "set): {default kernelspec: {'min': 1, 'max': 2}}; {}: no pools. A solo start takes "
        "one unless it passes a variable of allowed_client_env; rooms are never pooled.",
    )
    pool_window = Float(
        60.0, config=True, help="Seconds of solo starts that size a pool between its min and max."
    )
    pool_parallel = Int(2, config=True, help="Pool kernels started at once, over all pools (>= 1).")
    pool_retry = Float(10.0, config=True, help="Seconds between attempts to refill pools.")
    allowed_client_env = List(
        Unicode(), default_value=[], config=True,
        help="KERNEL_* variables a client may pass into a solo kernel's sandbox. A start "
        "that passes one gets a new kernel (not a pooled one: its environment is set). Other "
        "client variables are dropped, except those the gateway reads (KERNEL_USERNAME, "
        "KERNEL_ROOM, KERNEL_LAUNCH_TIMEOUT, KERNEL_WORKING_DIR; docs/api.md).",
    )
    max_output = Int(
        4 * 1024 * 1024, config=True,
        help="Bytes of output one execution may send; beyond, output is cut with a notice.",
    )
    timeout_grace = Float(
        5.0, config=True, help="Seconds an execution interrupted for its timeout may take to "
        "stop before the kernel is restarted.",
    )
    buffer_seconds = Float(
        60.0, config=True, help="How long a disconnected session's messages are kept."
    )
    client_backlog = Int(
        64 * 1024 * 1024, config=True,
        help="Bytes a kernel WebSocket client may leave unread before it is disconnected "
        "(close code 1013), its messages kept for its session's reconnection; the kernel "
        "and its other clients go on. 0: no limit.",
    )
    max_kernel_frame = Int(
        64 * 1024 * 1024, config=True,
        help="Largest message frame, in bytes, the gateway takes from a kernel (at most "
        "what a WebSocket carries: ServeApp.max_message_size). A message with a larger "
        "frame is dropped unread: not verified, decoded, buffered or forwarded. 0: no limit.",
    )

    @validate("pool_sizes")
    def _valid_pool_sizes(self, proposal):
        if proposal["value"] is not None:
            pool_limits(proposal["value"])
        return proposal["value"]

    @validate("pool_parallel", "start_parallel")
    def _at_least_one(self, proposal):
        if proposal["value"] < 1:
            raise TraitError(f"{proposal['trait'].name} must be at least 1")
        return proposal["value"]

    @validate("allowed_client_env")
    def _kernel_names_only(self, proposal):
        for name in proposal["value"]:
            if not _CLIENT_ENV_NAME.fullmatch(name) or name in WELL_KNOWN_ENV:
                raise TraitError(f"allowed_client_env: {name!r} is not a client KERNEL_* variable"
                                 f" for the sandbox (nor one of {', '.join(WELL_KNOWN_ENV)})")
        return proposal["value"]

    @default("runtime_dir")
    def _default_runtime_dir(self):
        return "/run/kernelgate" if os.geteuid() == 0 else f"/tmp/kernelgate-{os.geteuid()}"

    @validate("runtime_dir")
    def _short_enough(self, proposal):
        path = os.path.abspath(proposal["value"])
        if len(os.path.join(path, str(uuid.uuid4()), socketdir.SOCKETS, "k")) > _MAX_IPC_PREFIX:
            raise TraitError(f"runtime_dir {path} is too long for unix socket paths")
        return path

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._manager_log = self.log.getChild("kernels")
        self._manager_log.addFilter(_ExpectedFailures())
        self.kernels: dict[str, Kernel] = {}
        #: Called with a kernel whose sandbox went away (restart, death, shutdown).
        self.sandbox_gone: list[Callable[[Kernel], None]] = []
        #: Awaited with each newly started kernel, and with each kernel shut down.
        self.on_started: list[Callable[[Kernel], Awaitable[None]]] = []
        self.on_stopped: list[Callable[[Kernel, str], Awaitable[None]]] = []
        #: Awaited with a kernel answering again in a new sandbox (revived, or restarted
        #: by restart_sandbox): its provisioner info changed.
        self.on_new_sandbox: list[Callable[[Kernel], Awaitable[None]]] = []
        self._starting: dict[str, int] = {}  # owner -> cold starts waiting in line or launching
        self._launch_slots = asyncio.Semaphore(self.start_parallel)  # FIFO: the line of cold starts
        self._launch_seconds = 5.0  # moving average of a cold launch, for Retry-After
        self._supervisor: asyncio.Future | None = None
        self._pools: dict[str, list[Kernel]] = {}
        self._pool_keeper: asyncio.Future | None = None
        self._pool_wanted = asyncio.Event()
        self._pool_fills: dict[str, set[asyncio.Task]] = {}  # kernelspec -> pool kernels starting
        self._pool_drops: set[asyncio.Task] = set()  # pool kernels being removed (demand fell)
        self._pool_failed: dict[str, tuple[float, str]] = {}  # kernelspec -> (when, why) of its last failed fill
        self._demand: dict[str, collections.deque[float]] = {}  # kernelspec -> times of solo starts
        self.draining = False  # set by `drain`: starts answer Draining (503)

    # -- lookups -------------------------------------------------------------------

    def get(self, kernel_id: str) -> Kernel:
        """The kernel with this id; NotFound otherwise."""
        try:
            return self.kernels[kernel_id]
        except KeyError:
            raise NotFound(f"Kernel does not exist: {kernel_id}") from None

    # -- lifecycle -----------------------------------------------------------------

    def tier_of(self, name: str) -> str:
        """The tier kernelspec `name` runs in; NotFound for an unknown kernelspec."""
        try:
            return self.tiers.get(self.catalog.tier_of(name)).name
        except NoSuchKernel:
            raise NotFound(f"No such kernel spec: {name}") from None

    async def start(self, name: str, owner: str, env: dict[str, str] | None = None,
                    owner_limit: int = 0, room: str | None = None,
                    workspace: Path | None = None) -> Kernel:
        """Start a kernel of kernelspec `name` for `owner` and wait until it answers.

        `env` holds client-supplied variables: only those of allowed_client_env pass
        into the sandbox, and KERNEL_USERNAME there is always the owner. A room's kernel
        names its `room` and the room's `workspace` (a host folder, mounted at
        /workspace in containers); a solo kernel works in its sandbox's home. A solo
        kernel that is passed no variable comes from a warm pool when one is ready.
        Raises BadRequest for a passed variable that is not a short string, NotFound for
        an unknown kernelspec, Capacity when max_kernels is reached, TooMany when the
        owner already has `owner_limit` solo kernels (0 = no limit), StartsQueueFull
        or TooManyStarts when a cold start is not admitted (`_admit`), and the
        provisioner's errors (EngineUnavailable, ImageMissing) when the sandbox cannot
        start. Cold starts launch start_parallel at a time, the others wait in line.
        """
        self.tier_of(name)  # NotFound for an unknown kernelspec
        if self.draining:
            raise Draining("The gateway is shutting down; start the kernel again shortly")
        if self.max_kernels and len(self.kernels) + sum(self._starting.values()) >= self.max_kernels:
            raise Capacity(f"Maximum number of kernels ({self.max_kernels}) reached")
        owned = sum(1 for k in self.kernels.values() if k.owner == owner and not k.room)
        if owner_limit and room is None and owned + self._starting.get(owner, 0) >= owner_limit:
            raise TooMany(f"Your plan allows {owner_limit} kernels at once; shut one down first")
        client_env = self._passed_env(env or {})
        kernel = None
        begun = time.monotonic()
        if room is None and not client_env:
            self._demand.setdefault(name, collections.deque(maxlen=10_000)).append(begun)
            kernel = await self._take_pooled(name, owner)
        if kernel is None:
            try:
                self._admit(owner)  # then counted at once: no await between check and count
            except (StartsQueueFull, TooManyStarts) as e:
                metrics.kernel_start_failed(name, e)
                raise
            self._starting[owner] = self._starting.get(owner, 0) + 1
            try:
                async with self._launch_slots:
                    if self.draining:  # began to drain while this start waited in line
                        raise Draining("The gateway is shutting down; start the kernel again shortly")
                    launched = time.monotonic()
                    kernel = await self._launch(name, owner, client_env, room, workspace)
                    self._launch_seconds += 0.2 * (time.monotonic() - launched - self._launch_seconds)
            except Exception as e:
                metrics.kernel_start_failed(name, e)
                raise
            finally:
                self._starting[owner] -= 1
                if not self._starting[owner]:
                    del self._starting[owner]
        self._register(kernel)
        metrics.kernel_started(name, "pool" if kernel.pooled else "cold", time.monotonic() - begun)
        self.log.info("Kernel %s (%s) started for %s%s", kernel.id, name, room or owner,
                      " from the pool" if kernel.pooled else "", extra=_about(kernel))
        for listener in list(self.on_started):
            await listener(kernel)
        return kernel

    def _admit(self, owner: str) -> None:
        """Admission control for a cold start: StartsQueueFull (503) when
        max_pending_starts are already in line, TooManyStarts (429) when `owner` has
        max_pending_starts_per_user; both at once (never a wait), with a Retry-After of
        about the time the line ahead takes to launch."""
        pending = sum(self._starting.values())
        retry = max(1, min(60, round(self._launch_seconds * (pending + 1) / self.start_parallel)))
        if self.max_pending_starts and pending >= self.max_pending_starts:
            raise StartsQueueFull(f"The gateway is starting {pending} kernels already; "
                                  f"try again in {retry} s", retry)
        mine = self._starting.get(owner, 0)
        if self.max_pending_starts_per_user and mine >= self.max_pending_starts_per_user:
            raise TooManyStarts(f"You are starting {mine} kernels already; try again in {retry} s", retry)

    async def _launch(self, name: str, owner: str, env: dict[str, str], room: str | None,
                      workspace: Path | None) -> Kernel:
        """A new kernel in a new sandbox, answering, not yet registered."""
        kernel = self._new_kernel(str(uuid.uuid4()), name, owner, room)
        kernel_dir = self._make_kernel_dir(kernel.id)
        if workspace is None and self.catalog.local_kernels:
            workspace = kernel_dir / "workspace"  # a local solo kernel's scratch folder
            workspace.mkdir()
        kernel.workspace = workspace
        try:
            launch = await self._launch_args(kernel)
            await kernel.manager.start_kernel(env=self._kernel_env(env, owner), **launch)
            await self._connect(kernel)
        except BaseException:
            await self._dispose(kernel)
            raise
        return kernel

    # -- warm pools ----------------------------------------------------------------

    def _passed_env(self, env: dict) -> dict[str, str]:
        """The client variables of allowed_client_env; BadRequest for one that is not a
        string (or number) without NUL of at most MAX_ENV_VALUE characters."""
        passed = {}
        for key in self.allowed_client_env:
            if key not in env:
                continue
            value = env[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or "\0" in value or len(value) > MAX_ENV_VALUE:
                raise BadRequest(f"'env.{key}' must be a string of at most {MAX_ENV_VALUE} characters")
            passed[key] = value
        return passed

    def pool_limits(self) -> dict[str, tuple[int, int]]:
        """kernelspec -> (min, max) ready kernels; empty for local kernels."""
        if self.catalog.local_kernels:
            return {}
        if self.pool_sizes is None:
            return pool_limits({self.catalog.default_kernel_name: DEFAULT_POOL})
        return pool_limits(self.pool_sizes)

    @property
    def pools(self) -> dict[str, tuple[Kernel, ...]]:
        """Kernelspec -> its pooled kernels ready to hand out: a snapshot (for metrics)."""
        return {name: tuple(pool) for name, pool in self._pools.items()}

    def pool_target(self, name: str) -> int:
        """How many ready kernels of `name` the pool wants now: its solo starts in the
        last pool_window seconds, within the pool's min..max."""
        low, high = self.pool_limits().get(name, (0, 0))
        starts = self._demand.get(name, ())
        since = time.monotonic() - self.pool_window
        while starts and starts[0] < since:
            starts.popleft()
        return max(low, min(high, len(starts)))

    def start_pools(self) -> None:
        """Keep the pools of pool_limits() filled (Docker kernels only)."""
        if self.pool_limits() and self._pool_keeper is None:
            self._pool_keeper = logs.background(self._keep_pools())

    async def _take_pooled(self, name: str, owner: str) -> Kernel | None:
        """A ready pooled kernel of `name`, now `owner`'s; None if none is ready.

        Pooled kernels run with no user and no user data: identity attaches here, at
        the gateway (owner, scoping, quotas). They were started without client
        variables, so KERNEL_USERNAME is not in their environment.
        """
        pool = self._pools.get(name, [])
        while pool:
            kernel = pool.pop(0)
            self._pool_wanted.set()
            if await kernel.manager.is_alive():
                kernel.owner = owner
                kernel.started, kernel.started_mono = utcnow(), time.monotonic()
                kernel.watch.touch()
                return kernel
            await self._dispose(kernel)
        self._pool_wanted.set()  # a miss is demand too
        return None

    async def _keep_pools(self) -> None:
        """Fill each pool up to its target, pool_parallel kernels at a time; shrink a
        pool whose demand fell; after a failed fill, wait pool_retry for that pool. Nothing
        is filled while the gateway drains."""
        while True:
            self._pool_wanted.clear()
            for name in self.pool_limits():
                pool = self._pools.setdefault(name, [])
                target = 0 if self.draining else self.pool_target(name)
                while len(pool) > target:  # in tasks: a shutdown cancelling the keeper waits for them
                    drop = logs.background(self._dispose(pool.pop()))
                    self._pool_drops.add(drop)
                    drop.add_done_callback(self._pool_drops.discard)
                failed = self._pool_failed.get(name)
                if failed and time.monotonic() - failed[0] < self.pool_retry:
                    continue
                fills = self._pool_fills.setdefault(name, set())
                while (len(pool) + len(fills) < target and self._room_for_pool()
                       and sum(map(len, self._pool_fills.values())) < self.pool_parallel):
                    task = logs.background(self._fill_pool(name))
                    fills.add(task)
                    task.add_done_callback(lambda t, fills=fills: (fills.discard(t), self._pool_wanted.set()))
            try:
                await asyncio.wait_for(self._pool_wanted.wait(), self.pool_retry)
            except asyncio.TimeoutError:
                pass

    async def _fill_pool(self, name: str) -> None:
        """Start one kernel for the pool of `name`; a failure is logged once per reason."""
        try:
            kernel = await self._launch(name, "", {}, None, None)
        except Exception as e:  # noqa: BLE001 - a failed fill must not stop the pools
            why = str(e) or type(e).__name__
            if self._pool_failed.get(name, (0, ""))[1] != why:
                self.log.warning("Pool of %s not filled (retried every %gs): %s", name, self.pool_retry, why)
            self._pool_failed[name] = (time.monotonic(), why)
            return
        if self._pool_failed.pop(name, None):
            self.log.info("Pool of %s filling again", name)
        kernel.pooled = True
        self._pools.setdefault(name, []).append(kernel)

    def _room_for_pool(self) -> bool:
        pooled = sum(len(pool) for pool in self._pools.values())
        filling = sum(len(fills) for fills in self._pool_fills.values())
        total = len(self.kernels) + sum(self._starting.values()) + pooled + filling
        return not self.max_kernels or total < self.max_kernels

    async def adopt(self, kernel_id: str, name: str, owner: str, room: str | None,
                    provisioner_info: dict, workspace: Path | None = None) -> Kernel | None:
        """Re-attach to a kernel an earlier run of the gateway started (a room's, whose
        `workspace` its later sandboxes mount again, as `start`'s), from its socket
        directory and `provisioner_info`; None if it is no longer alive or
        its sandbox does not answer within adopt_timeout (see _reattach). A kernel busy
        with an execution is re-adopted: this never waits for its shell."""
        if kernel_id in self.kernels or not (Path(self.runtime_dir) / kernel_id).is_dir():
            return None
        kernel = self._new_kernel(kernel_id, name, owner, room)
        kernel.workspace = workspace
        manager = kernel.manager
        # As after its own start_kernel: a revival restarts the kernel with the start's
        # arguments (a room kernel's environment: the owner), and jupyter_client's
        # restart of a manager that never attempted a start launches the new sandbox,
        # then raises InvalidStateError (its "ready" future was already done).
        manager._attempted_start = True
        manager._launch_args = {"env": self._kernel_env({}, owner)}
        try:
            manager.load_connection_info(provisioner_info["connection_info"])
            provisioner = KPF.instance(parent=self).create_provisioner_instance(
                kernel_id, manager.kernel_spec, parent=manager
            )
            await provisioner.load_provisioner_info(provisioner_info)
            manager.provisioner = provisioner
            if not await manager.is_alive():
                raise RuntimeError("its sandbox is gone")
            await self._reattach(kernel)
        except Exception as e:  # noqa: BLE001 - anything wrong means: start afresh later
            self.log.warning("Kernel %s not re-adopted (it will start afresh): %s", kernel_id, e,
                             extra=_about(kernel))
            await self._dispose(kernel)
            return None
        self._register(kernel)
        self.log.info("Kernel %s (%s) re-adopted", kernel_id, name, extra=_about(kernel))
        return kernel

    async def _reattach(self, kernel: Kernel) -> None:
        """Open the gateway's sockets to a kernel an earlier run left, without needing its
        shell to answer (a kernel answers kernel_info on shell only between executions,
        and the earlier run may have left one running for hours).

        The sandbox's agent must answer within adopt_timeout: it exits with its kernel
        (the container then stops), so an answering agent means a running kernel. The
        shell then has ADOPT_SHELL_WAIT seconds to answer kernel_info: if it does, the
        kernel is idle; if not, it is adopted as busy, and its next iopub status (the
        end of that execution) tells its real state; that execution's time limit (its
        tier's exec_timeout) counts from now. Unavailable, RuntimeError or
        TimeoutError if the kernel cannot be re-adopted."""
        self._open(kernel)
        await kernel.agent.request("file_request", {"op": "stat", "path": ""}, timeout=self.adopt_timeout)
        try:  # any reply, even an error, is the agent serving
            await kernel.hub.wait_ready(min(ADOPT_SHELL_WAIT, self.adopt_timeout), kernel.manager.is_alive)
            kernel.execution_state = "idle"
        except TimeoutError:
            self.log.info("Kernel %s is busy with an execution of the earlier run", kernel.id,
                          extra=_about(kernel))
            kernel.execution_state = "busy"
            kernel.watch.running_unseen()  # the tier's exec_timeout holds for it too
        await self._settle(kernel)

    async def provisioner_info(self, kernel: Kernel) -> dict:
        """What `adopt` needs to re-attach to this kernel after a gateway restart."""
        return await kernel.manager.provisioner.get_provisioner_info()

    def _new_kernel(self, kernel_id: str, name: str, owner: str, room: str | None) -> Kernel:
        tier = self.tier_of(name)
        kernel_dir = Path(self.runtime_dir) / kernel_id
        manager = AsyncKernelManager(
            parent=self,
            log=self._manager_log,
            kernel_id=kernel_id,
            kernel_name=name,
            kernel_spec_manager=self.catalog,
            context=zmq.asyncio.Context.instance(),  # one for all kernels, not one (and an I/O thread) each
            transport="ipc",
            ip=str(kernel_dir / socketdir.SOCKETS / "k"),
            connection_file=str(kernel_dir / "connection.json"),
        )
        limits = self.tiers.get(tier)
        kernel = Kernel(
            id=kernel_id, name=name, owner=owner, room=room,
            language=self.catalog.get_kernel_spec(name).language, tier=tier, manager=manager,
            watch=KernelWatch(
                publish=lambda *args: kernel.hub.publish(*args),
                interrupt=lambda: self.interrupt(kernel),
                restart=lambda reason: self.restart(kernel, reason),
                tier=tier, exec_timeout=limits.exec_timeout, max_output=self.max_output,
                grace=self.timeout_grace, own_session=manager.session.session, kernelspec=name,
            ),
        )
        return kernel

    def _open(self, kernel: Kernel) -> None:
        """Open the gateway's sockets to a kernel (its hub) and to its sandbox's agent;
        Unavailable when the gateway is out of sockets or file descriptors."""
        manager = kernel.manager
        try:
            kernel.agent = AgentClient(manager.get_connection_info(), manager.session)
            kernel.hub = KernelHub(
                manager.get_connection_info(), manager.session, observer=kernel.watch,
                buffer_seconds=self.buffer_seconds, max_frame=self.max_kernel_frame,
            )
        except zmq.ZMQError as e:  # out of sockets or file descriptors: a capacity limit
            raise Unavailable(f"The gateway cannot open more kernel connections: {e}") from None

    async def _connect(self, kernel: Kernel) -> None:
        """Open the gateway's sockets to a launched kernel and wait until it answers;
        Unavailable (with the reason, when the provisioner knows it) if it does not."""
        manager = kernel.manager
        self._open(kernel)
        try:
            await kernel.hub.wait_ready(self.startup_timeout, manager.is_alive)
        except (RuntimeError, TimeoutError) as e:
            why = await manager.provisioner.exit_reason() if not await manager.is_alive() else ""
            raise Unavailable(f"Kernel {kernel.name} failed to start: {e}{'; ' + why if why else ''}") from None
        await self._settle(kernel)
        kernel.execution_state = "idle"

    @staticmethod
    async def _settle(kernel: Kernel) -> None:
        """A new sandbox's kernel answers: its provisioner takes back what it only gave
        for the start (Docker: the start-up CPU allowance), before anyone uses it. If it
        cannot, the sandbox is killed (and the error raised): none keeps the allowance."""
        try:
            await kernel.manager.provisioner.settle()
        except BaseException:
            await kernel.manager.provisioner.kill()
            raise

    def _register(self, kernel: Kernel) -> None:
        self.kernels[kernel.id] = kernel
        if self._supervisor is None:
            self._supervisor = logs.background(self._supervise())

    async def interrupt(self, kernel: Kernel) -> None:
        """Interrupt the kernel (signal or message, as its kernelspec says)."""
        await kernel.manager.interrupt_kernel()

    async def restart(self, kernel: Kernel, reason: str = "user") -> None:
        """Restart the kernel process inside its sandbox, through the agent: its state is
        gone, its terminals and files stay. Returns once the kernel answers again. If it
        does not (code in the sandbox can break it), the kernel restarts in a fresh
        sandbox instead; Unavailable if that fails too. `reason` (user, timeout) is counted."""
        metrics.kernel_restarted(kernel.name, reason)
        async with kernel.lock:
            kernel.execution_state = "restarting"
            kernel.hub.publish_status("restarting")
            kernel.watch.reset()
            try:
                reply, _ = await kernel.agent.request("kernel_restart_request", {}, timeout=self.startup_timeout)
                if reply.get("status") != "ok":
                    raise RuntimeError(f"its sandbox refused: {reply.get('evalue', '')}")
                await kernel.hub.wait_ready(self.startup_timeout, kernel.manager.is_alive)
            except (Unavailable, RuntimeError, TimeoutError) as e:
                self.log.warning("Kernel %s did not restart in its sandbox (%s); starting a fresh one",
                                 kernel.id, e, extra=_about(kernel))
                try:
                    await self._fresh_sandbox(kernel)
                except EngineUnavailable as e:
                    self._wait_for_engine(kernel, e)  # the supervisor revives it when the engine is back
                    raise WaitingForEngine(WaitingForEngine.message) from None
                except (RuntimeError, TimeoutError) as e:
                    raise Unavailable(f"Kernel {kernel.name} did not restart: {e}") from None
            kernel.execution_state = "idle"

    async def shutdown(self, kernel: Kernel, reason: str = "deleted") -> None:
        """Stop the kernel and remove its sandbox and socket directory."""
        if self.kernels.pop(kernel.id, None) is None:
            return
        async with kernel.lock:
            await self._dispose(kernel)
        self.log.info("Kernel %s shut down (%s)", kernel.id, reason, extra=_about(kernel))
        for listener in list(self.on_stopped):
            await listener(kernel, reason)

    async def drain(self, timeout: float) -> int:
        """Refuse new kernels, then wait up to `timeout` seconds for the executions in
        flight to end; returns how many still ran when it gave up."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while True:
            running = sum(1 for k in self.kernels.values() if k.watch.running)
            if not running or time.monotonic() >= deadline:
                return running
            await asyncio.sleep(0.1)

    async def shutdown_all(self) -> None:
        """Gateway shutdown: stop every kernel, except the room kernels in containers,
        which keep running for the next run to re-adopt (only detached here)."""
        tasks = [t for t in (self._supervisor, self._pool_keeper) if t is not None]
        tasks += [t for fills in self._pool_fills.values() for t in fills]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # a kernel half-launched for a
        # pool is disposed of by its own cleanup: wait for it, and for pool kernels let go
        await asyncio.gather(*self._pool_drops, return_exceptions=True)
        for pool in self._pools.values():
            while pool:
                await self._dispose(pool.pop())
        for kernel in list(self.kernels.values()):
            if kernel.room and not self.catalog.local_kernels:
                self.kernels.pop(kernel.id)
                kernel.hub.close()
                kernel.agent.close()
        await asyncio.gather(
            *(self.shutdown(k) for k in list(self.kernels.values())), return_exceptions=True
        )

    async def remove_orphans(self) -> int:
        """Remove containers and socket directories an earlier run of this gateway left.

        This is where room kernels will be re-adopted instead of removed, once rooms
        exist. Returns the number of containers removed.
        """
        removed = 0
        engine = self.engine
        if not self.catalog.local_kernels:
            for container in await engine.kernel_containers():
                if container["kernel_id"] not in self.kernels:
                    await engine.remove(container["id"])
                    removed += 1
        for entry in await asyncio.to_thread(_kernel_folders, Path(self.runtime_dir)):
            if entry.name not in self.kernels:
                await socketdir.release(str(entry / socketdir.SOCKETS))
                await asyncio.to_thread(shutil.rmtree, entry, ignore_errors=True)
        if removed:
            self.log.info("Removed %d orphaned kernel container(s)", removed)
        return removed

    # -- internals -----------------------------------------------------------------

    def _make_kernel_dir(self, kernel_id: str) -> Path:
        root = Path(self.runtime_dir)
        root.mkdir(mode=0o711, parents=True, exist_ok=True)
        kernel_dir = root / kernel_id
        kernel_dir.mkdir(mode=0o700)
        (kernel_dir / socketdir.SOCKETS).mkdir(mode=0o700)
        return kernel_dir

    async def _launch_args(self, kernel: Kernel) -> dict:
        """What the provisioner is handed at each launch (kernelgate.provisioners.base):
        the kernel's folder and, for a sandboxed room kernel, its project's prefix, read
        again at each launch; a sandboxed solo kernel gets its installs' variables."""
        if kernel.workspace is None:
            return {} if self.catalog.local_kernels else {"kernel_prefix": project.solo_prefix(kernel.language)}
        if self.catalog.local_kernels:
            return {"cwd": str(kernel.workspace)}
        return {"cwd": str(kernel.workspace),
                "kernel_prefix": await project.kernel_prefix_async(kernel.workspace, kernel.language)}

    def _kernel_env(self, client_env: dict[str, str], owner: str) -> dict[str, str]:
        env = dict(client_env)  # allowed_client_env's (_passed_env)
        if owner:  # pooled kernels have none yet
            env["KERNEL_USERNAME"] = owner
        if self.catalog.local_kernels:
            env.update({k: os.environ[k] for k in self.env_process_whitelist if k in os.environ})
        return env

    async def _supervise(self) -> None:
        """Revive or bury kernels whose sandbox died (OOM, crash, removal); cull solo
        kernels idle past their tier's idle_timeout or older than max_lifetime."""
        while True:
            await asyncio.sleep(self.check_interval)
            for kernel in list(self.kernels.values()):
                if kernel.lock.locked():
                    continue
                try:
                    await self._check(kernel)
                except Exception:  # noqa: BLE001 - one kernel's failure must not end supervision
                    self.log.exception("Supervising kernel %s failed", kernel.id, extra=_about(kernel))

    async def _check(self, kernel: Kernel) -> None:
        """One round of `_supervise` for one kernel. Durations are monotonic: a jump of
        the wall clock neither culls a kernel nor extends its life."""
        if not await kernel.manager.is_alive():
            await self._revive(kernel)
        elif kernel.room is None:
            idle_timeout = self.tiers.get(kernel.tier).idle_timeout
            idle = kernel.watch.idle_seconds()
            if idle_timeout and kernel.connections == 0 and idle > idle_timeout:
                await self.shutdown(kernel, "culled")
            elif self.max_lifetime and time.monotonic() - kernel.started_mono > self.max_lifetime:
                await self.shutdown(kernel, "lifetime")

    async def _revive(self, kernel: Kernel) -> None:
        """Restart a dead kernel in a fresh sandbox, unless it died too often lately or
        cannot be started: then tell its clients it is dead and remove it. While the
        Docker engine does not answer (restarted, down), the kernel waits, `restarting`,
        its clients told once; the supervisor's next rounds revive it when the engine is
        back (no restart counted: the kernel did not fail)."""
        async with kernel.lock:
            if kernel.id not in self.kernels:
                return
            now = time.monotonic()
            kernel.restarts = [t for t in kernel.restarts if now - t < self.restart_window]
            revived = False
            try:
                why = await kernel.manager.provisioner.exit_reason()
            except EngineUnavailable as e:
                self._wait_for_engine(kernel, e)
                return
            if not kernel.engine_wait:
                kernel.hub.publish("stream", {
                    "name": "stderr", "text": f"[kernelgate] The kernel died{': ' + why if why else ''}.\n"})
                metrics.kernel_restarted(kernel.name, "oom" if "memory" in why else "crash")
            if len(kernel.restarts) < self.restart_limit:
                self.log.warning("Kernel %s died (%s); restarting it", kernel.id, why or "no reason known",
                                 extra=_about(kernel))
                try:
                    await self._fresh_sandbox(kernel)
                    revived = True
                    kernel.engine_wait = False
                except EngineUnavailable as e:
                    self._wait_for_engine(kernel, e)
                    return
                except (GatewayError, RuntimeError, TimeoutError) as e:
                    self.log.warning("Kernel %s could not be restarted: %s", kernel.id, e, extra=_about(kernel))
                kernel.restarts.append(now)
        if not revived:
            self.log.warning("Kernel %s is dead", kernel.id, extra=_about(kernel))
            kernel.execution_state = "dead"
            kernel.hub.publish_status("dead")
            await self.shutdown(kernel, "dead")

    def _wait_for_engine(self, kernel: Kernel, error: Exception) -> None:
        """A dead kernel that cannot be revived while the engine is away: told once."""
        kernel.execution_state = "restarting"
        if kernel.engine_wait:
            return
        kernel.engine_wait = True
        self._sandbox_gone(kernel)  # its terminals ended with its sandbox
        self.log.warning("Kernel %s died while the Docker engine does not answer; revived when it does: %s",
                         kernel.id, error, extra=_about(kernel))
        kernel.hub.publish("stream", {"name": "stderr", "text": (
            "[kernelgate] The kernel died: the Docker engine does not answer. It restarts when the "
            "engine is back (its variables will be gone; files stay).\n")})
        kernel.hub.publish_status("restarting")
        metrics.kernel_restarted(kernel.name, "crash")

    async def restart_sandbox(self, kernel: Kernel) -> None:
        """Restart the kernel in a fresh sandbox (a new container: what its launch reads,
        such as a room's project file, applies again); its id and clients stay.
        Unavailable if it does not come back."""
        async with kernel.lock:
            try:
                await self._fresh_sandbox(kernel)
            except (RuntimeError, TimeoutError) as e:
                raise Unavailable(f"Kernel {kernel.name} did not restart: {e}") from None

    async def _fresh_sandbox(self, kernel: Kernel) -> None:
        """Replace the kernel's sandbox and wait until the kernel answers (lock held)."""
        kernel.execution_state = "restarting"
        kernel.hub.publish_status("restarting")
        self._sandbox_gone(kernel)
        kernel.watch.reset()
        await kernel.manager.restart_kernel(now=True, **await self._launch_args(kernel))
        await kernel.hub.wait_ready(self.startup_timeout, kernel.manager.is_alive)
        await self._settle(kernel)
        kernel.execution_state = "idle"
        for listener in list(self.on_new_sandbox):
            await listener(kernel)

    def _sandbox_gone(self, kernel: Kernel) -> None:
        for listener in list(self.sandbox_gone):
            listener(kernel)

    async def _dispose(self, kernel: Kernel) -> None:
        """Close the hub, stop the kernel (ignoring a sandbox already gone), drop its dir."""
        self._sandbox_gone(kernel)
        if kernel.hub:
            kernel.hub.close()
        if kernel.agent:
            kernel.agent.close()
        try:
            if kernel.manager.has_kernel:
                await kernel.manager.shutdown_kernel(now=True)
            else:
                await kernel.manager.cleanup_resources()
        except Exception as e:  # noqa: BLE001 - disposal must finish whatever failed
            self.log.warning("Kernel %s: cleanup failed: %s", kernel.id, e, extra=_about(kernel))
        # in a thread: a sandbox can fill the folder when the gateway is not root, and a
        # local kernel's scratch workspace lives in it
        await asyncio.to_thread(shutil.rmtree, Path(kernel.manager.connection_file).parent, ignore_errors=True)
