"""The Docker engine as the gateway sees it: every SDK call off the event loop.

`DockerEngine` owns one docker SDK client and a small thread pool; each public coroutine
runs one blocking SDK call in that pool. A watcher thread follows the engine's event
stream for kernelgate's containers, so that asking whether a container is alive costs no
API call (jupyter_client's restarter asks every few seconds, for every kernel).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import docker
from docker.errors import DockerException, ImageNotFound, NotFound
from traitlets import Int, Unicode
from traitlets.config import LoggingConfigurable

from kernelgate import metrics
from kernelgate.errors import Unavailable

#: Label carried by every container kernelgate starts; its value is the kernel id.
KERNEL_LABEL = "org.kernelgate.kernel"
#: Label naming the user a container belongs to.
OWNER_LABEL = "org.kernelgate.owner"
#: Label naming the gateway instance that started the container.
GATEWAY_LABEL = "org.kernelgate.gateway"


#: CFS period of the containers' CPU limits, microseconds (the engine's own default).
CPU_PERIOD = 100_000


def cpu_quota_options(cpus: float) -> dict[str, int]:
    """docker SDK create/update options limiting a container to `cpus` cores."""
    return {"cpu_period": CPU_PERIOD, "cpu_quota": round(cpus * CPU_PERIOD)}


def docker_client(url: str, timeout: int | None) -> docker.DockerClient:
    """A docker SDK client of the engine at `url` (empty: DOCKER_HOST or the local socket);
    `timeout`: seconds an API call may take, None for streams that last. The one place a
    client is made (DockerEngine's calls, its event watcher, ImageBuilder)."""
    if url:
        return docker.DockerClient(base_url=url, timeout=timeout)
    return docker.from_env(timeout=timeout)


class EngineUnavailable(Unavailable):
    """The Docker engine cannot be reached or refused an operation it should allow."""


class ImageMissing(Unavailable):
    """The image a kernel needs has not been built."""


class DockerEngine(LoggingConfigurable):
    """Async facade over the docker SDK, shared by every Docker provisioner.

    The gateway builds one (ServeApp.setup) and hands it to whoever calls the engine
    (docs/architecture.md, "Wiring").
    """

    docker_url = Unicode(
        "", config=True, help="Docker engine URL; empty uses DOCKER_HOST or the local socket."
    )
    gateway_id = Unicode(
        "kernelgate", config=True,
        help="Name of this gateway instance. Its containers carry it; it only ever lists "
        "and removes containers carrying it, so gateways sharing an engine leave each "
        "other's kernels alone.",
    )
    threads = Int(8, config=True, help="Threads running blocking Docker SDK calls.")
    timeout = Int(60, config=True, help="Seconds before a Docker API call gives up.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="docker")
        self._client: docker.DockerClient | None = None
        self._exits: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = {}
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    # -- plumbing ---------------------------------------------------------------

    def new_client(self, stream: bool = False) -> docker.DockerClient:
        """A new blocking client of this engine (docker_url), for callers that need their
        own connection; its calls time out after `timeout` seconds, never with `stream`
        (event streams)."""
        return docker_client(self.docker_url, None if stream else self.timeout)

    def _connect(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self.new_client()
        return self._client

    async def _call(self, fn, *args, **kwargs):
        """Run fn(client, *args, **kwargs) in the pool; engine failures -> EngineUnavailable."""
        return await self._call_in(self._pool, fn, *args, **kwargs)

    async def _call_in(self, executor, fn, *args, **kwargs):
        """`_call` in `executor` (None: the loop's default executor)."""
        loop = asyncio.get_running_loop()
        caller = sys._getframe(1)  # the operation: the method that called _call(_in)
        op = (caller.f_back if caller.f_code.co_name == "_call" else caller).f_code.co_name

        def run():
            with metrics.DOCKER_API.labels(op).time():
                return fn(self._connect(), *args, **kwargs)

        try:
            return await loop.run_in_executor(executor, run)
        except (NotFound, ImageNotFound):
            raise
        except (DockerException, OSError) as e:
            self._client = None
            raise EngineUnavailable(f"Docker engine unavailable: {e}") from e

    # -- queries ----------------------------------------------------------------

    async def ping(self) -> bool:
        """True when the engine answers."""
        try:
            return bool(await self._call(lambda c: c.ping()))
        except EngineUnavailable:
            return False

    async def image_exists(self, reference: str) -> bool:
        """True when `reference` names an image present in the engine."""
        try:
            await self._call(lambda c: c.images.get(reference))
            return True
        except ImageNotFound:
            return False

    async def kernel_containers(self) -> list[dict]:
        """Every kernel container (running or not) of this gateway instance.

        Each item: {"id", "name", "kernel_id", "running"}.
        """
        return [
            {
                "id": item["Id"],
                "name": item["Names"][0].lstrip("/") if item["Names"] else "",
                "kernel_id": item["Labels"].get(KERNEL_LABEL, ""),
                "running": item["State"] == "running",
            }
            for item in await self._labelled(KERNEL_LABEL)
        ]

    async def labelled_containers(self, label: str) -> list[str]:
        """Ids of this gateway instance's containers (running or not) carrying `label`."""
        return [item["Id"] for item in await self._labelled(label)]

    async def _labelled(self, label: str) -> list[dict]:
        filters = {"label": [label, f"{GATEWAY_LABEL}={self.gateway_id}"]}
        return await self._call(lambda c: c.api.containers(all=True, filters=filters))

    # -- container lifecycle ----------------------------------------------------

    async def run(self, image: str, **options: Any) -> str:
        """Create and start a detached container; returns its id.

        `options` are docker SDK `containers.run` keyword arguments; the gateway label
        is added to its labels. Raises ImageMissing when the image is not built,
        EngineUnavailable when the engine fails.
        """
        self._ensure_watcher()
        options["labels"] = {**options.get("labels", {}), GATEWAY_LABEL: self.gateway_id}

        def run(c):
            try:  # create + start, never containers.run: that would try to pull
                container = c.containers.create(image, **options)
            except ImageNotFound as e:
                raise ImageMissing(str(e)) from e
            try:
                container.start()
            except DockerException:
                container.remove(force=True)
                raise
            return container.id

        return await self._call(run)

    async def set_cpus(self, container_id: str, cpus: float) -> None:
        """Change a running container's CPU limit (a CFS quota of `cpus` cores).

        The container must have been created with `cpu_quota_options`, not `nano_cpus`
        (the engine refuses to change a quota set that way).
        """
        await self._call(lambda c: c.api.update_container(container_id, **cpu_quota_options(cpus)))

    async def signal(self, container_id: str, signum: int) -> None:
        """Send a signal to the container's init (which forwards it to the kernel)."""
        try:
            await self._call(lambda c: c.api.kill(container_id, signal=int(signum)))
        except NotFound:
            pass
        except EngineUnavailable as e:
            if "is not running" not in str(e):
                raise

    async def remove(self, container_id: str) -> None:
        """Kill and remove a container; a container already gone is not an error."""
        try:
            await self._call(lambda c: c.api.remove_container(container_id, force=True, v=True))
        except NotFound:
            pass
        except EngineUnavailable as e:
            if "already in progress" not in str(e):
                raise
        self._forget(container_id)

    def exit_code(self, container_id: str) -> int | None:
        """The container's exit code once it has stopped, else None. Costs no API call.
        Starts the event watcher if need be: a gateway that only re-adopted containers
        (started none) must see them die too."""
        self._ensure_watcher()
        with self._lock:
            return self._exits.get(container_id)

    async def wait(self, container_id: str, timeout: float | None = None) -> int | None:
        """Wait until the container stops; its exit code, or None on timeout."""
        self._ensure_watcher()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if container_id in self._exits:
                return self._exits[container_id]
            self._waiters.setdefault(container_id, []).append((loop, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return None

    async def inspect_state(self, container_id: str) -> dict | None:
        """The container's State (Running, ExitCode, OOMKilled, ...), None if it is gone."""
        try:
            return await self._call(lambda c: c.api.inspect_container(container_id)["State"])
        except NotFound:
            return None

    async def follow_output(self, container_id: str, on_output: Callable[[bytes], None]) -> None:
        """Call `on_output` (in a worker thread) with each chunk of the container's stdout
        and stderr, from its start until it stops; returns when the output ends. It runs
        in the loop's default executor: a stream can last minutes, and must not hold one of
        the threads that start and remove kernels."""

        def follow(c):
            for chunk in c.api.logs(container_id, stream=True, follow=True):
                on_output(chunk)

        try:
            await self._call_in(None, follow)
        except NotFound:
            pass

    # -- networks -------------------------------------------------------------------

    async def create_network(self, name: str, labels: dict[str, str], **options: Any) -> dict:
        """Create a network (docker SDK `networks.create` keyword arguments) carrying
        `labels` and the gateway label; returns its attributes once the engine filled
        them in (Id, Internal, IPAM...)."""
        labels = {**labels, GATEWAY_LABEL: self.gateway_id}

        def create(c):
            network = c.networks.create(name, labels=labels, **options)
            network.reload()
            return network.attrs

        return await self._call(create)

    async def remove_network(self, network_id: str) -> None:
        """Remove a network; one already gone is not an error."""
        try:
            await self._call(lambda c: c.api.remove_network(network_id))
        except NotFound:
            pass

    async def labelled_networks(self, label: str) -> list[dict]:
        """Attributes of this gateway instance's networks carrying `label`."""
        filters = {"label": [label, f"{GATEWAY_LABEL}={self.gateway_id}"]}
        return await self._call(lambda c: c.api.networks(filters=filters))

    def _forget(self, container_id: str) -> None:
        with self._lock:
            self._exits.pop(container_id, None)

    # -- the event watcher --------------------------------------------------------

    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(
                    target=self._watch, name="docker-events", daemon=True
                )
                self._watcher.start()

    def _record_exit(self, container_id: str, code: int) -> None:
        with self._lock:
            self._exits[container_id] = code
            waiters = self._waiters.pop(container_id, [])
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future, code)

    def _watch(self) -> None:
        """Follow 'die' events forever; after a broken stream, resync from a listing."""
        client = None
        broken = False
        while True:
            try:
                client = self.new_client(stream=True)
                # the stream is open (the request is sent) before the listing: no exit
                # falls between them, and no clock is compared with the engine's
                events = client.events(
                    decode=True,
                    filters={"type": "container", "event": "die", "label": KERNEL_LABEL},
                )
                self._resync(client)
                broken = False
                for event in events:
                    attrs = event.get("Actor", {}).get("Attributes", {})
                    self._record_exit(event["id"], int(attrs.get("exitCode", -1)))
            except Exception as e:  # noqa: BLE001 - the watcher must outlive any failure
                if not broken:
                    self.log.warning("Docker event stream broke (%s); reconnecting", e)
                broken = True
            finally:
                if client is not None:
                    client.close()
            time.sleep(1)

    def _resync(self, client: docker.DockerClient) -> None:
        """Record the exits of kernel containers that stopped while no stream was open."""
        for container in client.api.containers(
            all=True, filters={"label": KERNEL_LABEL, "status": "exited"}
        ):
            state = client.api.inspect_container(container["Id"])["State"]
            self._record_exit(container["Id"], int(state.get("ExitCode", -1)))


def _resolve(future: asyncio.Future, value: int) -> None:
    if not future.done():
        future.set_result(value)
