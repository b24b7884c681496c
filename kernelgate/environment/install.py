"""Environments of rooms and solo kernels: detection reports, and package installs in a
sandbox.

An install runs in two short-lived containers per request, both confined like kernels
(kernelgate.sandbox: non-root on a read-only root with every capability dropped,
no-new-privileges), with the install's own limits and declared differences:

1. **fetch** (one per language, the language's image): the only kind of kernelgate
   container with a network: by default (`network = "fenced"`) the install's own fence
   (kernelgate.environment.egress), an internal network whose only reachable host is the
   gateway's allow-listing CONNECT proxy; HTTPS_PROXY/HTTP_PROXY point the package
   manager at it. The workspace is mounted read-only; the package manager writes into
   /install, a size-limited tmpfs of the gateway's host (`disk`), so nothing it runs (a
   hostile setup.py) can change the workspace, fill the disk or reach another host.
2. **swap** (no network): copies /install (read-only now) into the workspace next to the
   old packages, then renames the copies into place: `.kernelgate/python` (on room kernels'
   PYTHONPATH) and `<workdir>/node_modules`. A failure before the renames leaves the
   workspace as it was.

Then the room's kernels restart in fresh sandboxes, so that they import the new packages
with no network. Index URLs, the allow-list, proxies and the CA bundle come from this
configuration only.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import Dict, Float, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from kernelgate.engine import DockerEngine
from kernelgate.environment import project
from kernelgate.environment.egress import EgressProxy, Fence, FenceError, allowed_targets, remove_leftover_fences
from kernelgate.environment.detect import INSTALLABLE, analyze, scan
from kernelgate.environment.installers import INSTALLERS, debian
from kernelgate.environment.installers.base import CA_PATH, STAGING_PATH, Context, PlanError
from kernelgate.environment.tree import AgentTree, HostTree, TreeError
from kernelgate.errors import BadRequest, Conflict, Forbidden, GatewayError, Unavailable
from kernelgate.identity import Identity
from kernelgate.images import ImageBuilder, ImageError
from kernelgate.kernels.registry import Kernel, KernelRegistry
from kernelgate.rooms import RoomService
from kernelgate.sandbox import Mount, SandboxSpec
from kernelgate.socketdir import release
from kernelgate.store import Store
from kernelgate.userns import UserNamespace

#: Label of install containers; its value is the room's id.
INSTALL_LABEL = "org.kernelgate.install"
#: Where install containers see the configured mirror folder.
MIRROR_PATH = "/mirror"
#: Output lines streamed per install; beyond, one notice and silence.
MAX_LINES, MAX_LINE = 5000, 2000
#: A solo install: the most files and folders it may put into the kernel's home, the
#: largest manifest it copies from there.
MAX_SOLO_ENTRIES, MAX_SOLO_MANIFEST = 50_000, 512 * 1024

_SWAP_SCRIPT = r"""
set -u
limit="$1"; shift
used=$(du -sk /install | cut -f1)
if [ "$used" -gt "$limit" ]; then echo "the install wrote ${used} KiB, more than the ${limit} KiB allowed" >&2; exit 1; fi
clean() { for d in "$@"; do rm -rf -- "$d.kernelgate-new"; rmdir -- "$(dirname -- "$d")" 2>/dev/null; done; }
dests=""
while [ $# -gt 0 ]; do
  src="$1"; dest="$2"; shift 2
  dests="$dests $dest"
  mkdir -p -- "$(dirname -- "$dest")" && rm -rf -- "$dest.kernelgate-new" \
    && cp -a -- "$src" "$dest.kernelgate-new" || { clean $dests; echo "copying into $dest failed" >&2; exit 1; }
done
for dest in $dests; do
  rm -rf -- "$dest.kernelgate-old"
  if [ -e "$dest" ] || [ -L "$dest" ]; then mv -- "$dest" "$dest.kernelgate-old"; fi
  mv -- "$dest.kernelgate-new" "$dest" && rm -rf -- "$dest.kernelgate-old"
  echo "installed into ${dest#/workspace/}"
done
"""


class InstallFailed(Exception):
    """An install step failed; the message is for the caller."""


@dataclass
class Job:
    """One running install: its events (progress lines, then one result) for the caller."""

    room_id: str  # the room's id, or the solo kernel's
    user: str
    workspace: Path | None = None  # the host folder the fetch sees at /workspace
    kernel: Kernel | None = None  # a solo kernel's install: the kernel
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    lines: int = 0
    tails: dict[str, list[str]] = field(default_factory=dict)  # step key -> last lines
    task: asyncio.Future | None = None  # the install, referenced while it runs

    def progress(self, language: str, step: str, line: str) -> None:
        self.lines += 1
        if self.lines <= MAX_LINES:
            self.events.put_nowait({"type": "progress", "language": language, "step": step,
                                    "line": line[:MAX_LINE]})
        elif self.lines == MAX_LINES + 1:
            self.events.put_nowait({"type": "progress", "language": language, "step": step,
                                    "line": "[kernelgate] further output is not shown"})

    def tail(self, key: str) -> str:
        """The last few non-blank output lines of a step, for error messages."""
        return " | ".join([line for line in self.tails.get(key, []) if line.strip()][-5:]) or "(none)"

    async def stream(self):
        """The events, ending with the result object."""
        while True:
            event = await self.events.get()
            yield event
            if event["type"] == "result":
                return


class EnvironmentService(LoggingConfigurable):
    """Detection for rooms and solo kernels; installs for rooms (admins, Docker kernels)."""

    network = Unicode(
        "fenced", config=True,
        help="Network of install containers (the only containers with one): 'fenced' (an"
        " internal network per install whose only way out is the gateway's CONNECT proxy to"
        " egress_hosts and the index URLs' hosts), 'none' with a mirror_dir for air-gapped"
        " installs, or a Docker network of your own whose egress you control (never"
        " 'bridge', 'host' or 'default').",
    )
    egress_hosts = List(
        Unicode(), config=True,
        help="Fenced installs: 'host' (port 443) or 'host:port' the proxy also lets through,"
        " besides the hosts of pip_index_url, pip_extra_index_urls and npm_registry (e.g. the"
        " host an index serves its files from).",
    )
    egress_private_hosts = List(
        Unicode(), config=True,
        help="Allowed hosts that may resolve to loopback, private or link-local addresses"
        " (a mirror on your LAN); any other allowed host that does is refused.",
    )
    timeout = Float(600.0, config=True, help="Seconds an install step may take before it is killed.")
    memory = Int(1024 * 1024 * 1024, config=True,
                 help="Memory (bytes, no swap) of an install container; the staging tmpfs counts.")
    cpus = Float(1.0, config=True, help="CPUs of an install container.")
    pids = Int(256, config=True, help="Processes of an install container.")
    disk = Unicode("512m", config=True,
                   help="Most an install may write: the size of its staging tmpfs (tmpfs size syntax).")
    tmp_size = Unicode("256m", config=True, help="Size of an install container's /tmp (caches, builds).")
    ca_bundle = Unicode(
        "", config=True,
        help="Host CA bundle for install containers (mounted read-only; PIP_CERT, DENO_CERT,"
        " NODE_EXTRA_CA_CERTS and SSL_CERT_FILE point at it). Empty: the image's.",
    )
    pip_index_url = Unicode("", config=True, help="pip's --index-url in installs; empty: pip's default.")
    pip_extra_index_urls = List(Unicode(), config=True, help="pip's --extra-index-url values.")
    npm_registry = Unicode("", config=True, help="npm registry for JavaScript installs (NPM_CONFIG_REGISTRY).")
    debian_mirror = Unicode(
        "", config=True,
        help="Debian mirror (an https URL on the fenced network, the folder holding dists/)"
        " that Debian-packaged installs (Perl, R, Ruby, C, Lua) read for the image's release and its -updates;"
        " empty: those installs are refused.",
    )
    debian_security_mirror = Unicode("", config=True, help="Debian security mirror (the image's release-security).")
    apt_options = List(
        Unicode(), config=True,
        help="More apt settings 'Name=value' for Debian-packaged installs, e.g."
        " 'Acquire::Check-Valid-Until=false' for a frozen mirror.",
    )
    http_proxy = Unicode("", config=True, help="HTTP_PROXY of install containers.")
    https_proxy = Unicode("", config=True, help="HTTPS_PROXY of install containers.")
    no_proxy = Unicode("", config=True, help="NO_PROXY of install containers.")
    mirror_dir = Unicode(
        "", config=True,
        help="Host folder mounted read-only at /mirror in install containers, e.g. a wheelhouse"
        " (pip_index_url = 'file:///mirror/simple') for installs without a network.",
    )
    uid = Int(1000, config=True, help="uid (and gid) install containers run as: the sandboxes' user.")
    images = Dict(
        default_value={language: i.image for language, i in INSTALLERS.items()}, config=True,
        help="Language -> image (a folder of images/) its installs run in.",
    )

    def __init__(self, rooms: RoomService, registry: KernelRegistry, store: Store,
                 engine: DockerEngine, builder: ImageBuilder, **kwargs) -> None:
        """Installs run in `engine`, in images whose references `builder` computes.
        SystemExit (the gateway does not start) when `network` would give installs open
        egress or an `egress_hosts` entry is not host[:port]."""
        super().__init__(**kwargs)
        if self.network in ("bridge", "host", "default", "") or self.network.startswith("container:"):
            raise SystemExit(f"EnvironmentService.network {self.network!r} would give installs open egress:"
                             " use 'fenced', 'none' or a network of your own")
        try:
            allowed_targets([], self.egress_hosts)
        except ValueError as e:
            raise SystemExit(f"EnvironmentService.egress_hosts: {e}") from None
        try:
            debian.check_settings(self)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        self.rooms = rooms
        self.registry = registry
        self.store = store
        self.engine = engine
        self.builder = builder
        self._jobs: dict[str, Job] = {}
        self._last: dict[str, dict] = {}  # room id -> its last install's result
        self._solo_last: dict[str, dict] = {}  # solo kernel id -> the same, while it lives

    # -- detection ---------------------------------------------------------------------

    async def room_report(self, identity: Identity, room_id: str) -> dict:
        """GET /api/rooms/{id}/environment (members). Like the room's files, it needs the
        room's kernels running (their start prepares the working copy); Conflict if the
        room expired."""
        await self.rooms.kernels(identity, room_id)
        found = await scan(HostTree(self.rooms.workspace(room_id)))
        report = await asyncio.to_thread(analyze, found)
        report["last_install"] = self._last.get(room_id)
        report["installing"] = room_id in self._jobs
        return report

    async def kernel_report(self, kernel: Kernel) -> dict:
        """GET /api/kernels/{id}/environment: a solo kernel's workspace, read-only, through
        its agent (a room kernel answers for its room's workspace)."""
        if kernel.agent is None:
            raise Unavailable("The kernel's sandbox is not reachable")
        found = await scan(AgentTree(kernel.agent))
        report = await asyncio.to_thread(analyze, found)
        if kernel.room is None:
            report["last_install"] = self._solo_last.get(kernel.id)
            report["installing"] = kernel.id in self._jobs
        return report

    # -- installs ----------------------------------------------------------------------

    async def start_install(self, identity: Identity, room_id: str, body: dict) -> Job:
        """Check the request, then install in the background; the job streams progress.

        BadRequest for nothing to install or unknown languages, Conflict while another
        install of the room runs or when it expired, Unavailable without Docker kernels.
        """
        room = self.rooms.get(identity, room_id, "admin")
        if self.rooms.expired(room):
            raise Conflict(f"Room {room_id} expired; an admin can extend it")
        if room_id in self._jobs:
            raise Conflict("An install is already running in this room")
        job = Job(room_id, identity.user, workspace=self.rooms.workspace(room_id))
        return await self._start(job, body, lambda: self.room_report(identity, room_id))

    async def start_kernel_install(self, identity: Identity, kernel: Kernel, body: dict) -> Job:
        """POST /api/kernels/{id}/environment/install: the same install for a solo kernel,
        by its owner, into its sandbox's home (gone with the kernel); its manifest is copied
        out through the agent for the fetch, the result written in through the agent, and
        the kernel process restarted in the same sandbox."""
        if kernel.room is not None:
            raise BadRequest(f"Kernel {kernel.id} is a room kernel: its room installs"
                             f" (POST /api/rooms/{kernel.room}/environment/install)")
        if kernel.owner != identity.user:
            raise Forbidden("Only the kernel's owner can install into it")
        if kernel.id in self._jobs:
            raise Conflict("An install is already running in this kernel")
        for gone in [k for k in self._solo_last if k not in self.registry.kernels]:
            del self._solo_last[gone]
        return await self._start(Job(kernel.id, identity.user, kernel=kernel), body, lambda: self.kernel_report(kernel))

    async def _start(self, job: Job, body: dict, report_of) -> Job:
        """Check the request and the report (`report_of()`, awaited once claimed), then
        install in the background. BadRequest for nothing to install or unknown languages,
        Unavailable without Docker kernels."""
        if self.registry.catalog.local_kernels:
            raise Unavailable("Installs run in containers: this gateway runs local kernels")
        wanted = body.get("languages")
        if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(x, str) for x in wanted)):
            raise BadRequest("'languages' must be a list of language names")
        unsupported = sorted(set(wanted or []) - set(INSTALLABLE))
        if unsupported:
            raise BadRequest(f"Installs support {', '.join(INSTALLABLE)}, not {', '.join(unsupported)}")
        self._jobs[job.room_id] = job  # claimed before any await
        try:
            report = await report_of()
            if report["project_file_error"]:
                raise BadRequest(report["project_file_error"])
            plans = [lang for lang in report["languages"]
                     if lang["install"]["source"] and (wanted is None or lang["language"] in wanted)]
            if not plans:
                sources = "; ".join(f"{i.sources} ({lang})" for lang, i in INSTALLERS.items()
                                    if wanted is None or lang in wanted)
                raise BadRequest(f"Nothing to install: none of {sources} in"
                                 f" {report['workdir'] or 'the workspace root'},"
                                 f" and no [packages] in {project.PROJECT_FILE}")
            references = {lang["language"]: self._image(lang["language"]) for lang in plans}
        except BaseException:
            del self._jobs[job.room_id]
            raise
        job.task = asyncio.ensure_future(self._run(job, report["workdir"], plans, references))
        return job

    def _image(self, language: str) -> str:
        try:
            return self.builder.reference(self.images[language])
        except (KeyError, ImageError) as e:
            raise Unavailable(f"No image for {language} installs: {e}") from None

    async def _run(self, job: Job, workdir: str, plans: list[dict], references: dict[str, str]) -> None:
        started = time.monotonic()
        staging = Path(self.store.data_dir) / "installs" / uuid.uuid4().hex
        result = {"type": "result", "status": "ok", "message": "", "workdir": workdir,
                  "languages": [{"language": p["language"], "source": p["install"]["source"],
                                 "packages": p["install"]["packages"]} for p in plans],
                  "restarted": []}
        fence = None
        sources = staging.with_name(staging.name + "-sources")
        try:
            limit_kib = await self._make_staging(staging)
            if job.kernel:
                await self._copy_sources(job, plans, sources)
            if self.network == "fenced":
                fence = await self._open_fence(job)
            moves = []
            for plan in plans:
                moves += await self._fetch(job, plan, workdir, references[plan["language"]], staging, fence)
            if job.kernel:
                await self._swap_into_kernel(job, staging, limit_kib, moves)
            else:
                await self._swap(job, staging, limit_kib, moves, references[plans[0]["language"]])
            result["restarted"], failed = await self._restart(job)
            if failed:
                result["message"] = f"Installed; these kernels did not restart: {'; '.join(failed)}"
        except InstallFailed as e:
            result.update(status="error", message=str(e))
        except GatewayError as e:  # the engine or an image
            result.update(status="error", message=f"The install failed: {e.message}")
        except Exception as e:  # noqa: BLE001 - the caller gets an answer whatever failed
            self.log.exception("Install in %s failed", job.room_id)
            result.update(status="error", message=f"The install failed: {e}")
        finally:
            if fence is not None:
                await fence.close()
            await self._remove_staging(staging)
            await self._remove_staging(sources)
            result["duration"] = round(time.monotonic() - started, 1)
            (self._solo_last if job.kernel else self._last)[job.room_id] = \
                {k: v for k, v in result.items() if k != "type"}
            del self._jobs[job.room_id]
            job.events.put_nowait(result)
        try:
            await self.store.audit(job.user, "environment.install", job.room_id,
                                   {k: result[k] for k in ("status", "message", "languages", "duration")})
        except GatewayError as e:
            self.log.warning("Install in room %s not recorded: %s", job.room_id, e)

    # -- the steps -----------------------------------------------------------------------

    async def remove_leftovers(self) -> None:
        """Gateway start: remove the install containers and staging areas of this gateway
        that an earlier run left (it stopped in the middle of an install)."""
        if not self.registry.catalog.local_kernels:
            for container in await self.engine.labelled_containers(INSTALL_LABEL):
                await self.engine.remove(container)
            await remove_leftover_fences(self.engine, self.log)
        installs = Path(self.store.data_dir) / "installs"
        for staging in await asyncio.to_thread(lambda: list(installs.iterdir()) if installs.is_dir() else []):
            await self._remove_staging(staging)

    async def _make_staging(self, staging: Path) -> int:
        """The staging folder, a tmpfs of `disk` when the gateway is root; its limit in KiB."""
        await asyncio.to_thread(staging.mkdir, parents=True, mode=0o700)
        limit = _kib(self.disk)
        uid, gid = await UserNamespace(parent=self).ids_async(self.engine, self.uid)  # on the host
        if os.geteuid() == 0:
            options = f"size={self.disk},mode=0700,uid={uid},gid={gid},nosuid,nodev,noexec"
            process = await asyncio.create_subprocess_exec(
                "mount", "-t", "tmpfs", "-o", options, "kernelgate-install", str(staging),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, err = await process.communicate()
            if process.returncode:
                raise InstallFailed(f"The staging area could not be made: {err.decode(errors='replace').strip()}")
        else:  # not root: the folder goes to the container user (the size is checked at the swap)
            try:
                await asyncio.to_thread(_give, staging, uid, gid)
            except OSError as e:
                raise InstallFailed(f"The staging area could not be given to uid {uid} ({e.strerror}):"
                                    " run the gateway as root or as that uid") from None
        return limit

    async def _remove_staging(self, staging: Path) -> None:
        if await asyncio.to_thread(staging.is_dir) and not staging.is_symlink():
            await release(str(staging))
            await asyncio.to_thread(shutil.rmtree, staging, True)

    def sandbox_spec(self, network: str = "none") -> SandboxSpec:
        """The confinement of install containers (without their mounts): the install's
        limits, `network`, no home (HOME is /tmp), programs allowed to run from /tmp
        (builds) and as many files there as its memory allows (package caches)."""
        return SandboxSpec(uid=self.uid, memory=self.memory, cpus=self.cpus, pids=self.pids,
                           tmp_size=self.tmp_size, network=network, tmp_exec=True, tmp_inodes=0)

    def _options(self, job: Job, staging: Path, network: str, workspace_mode: str, working_dir: str,
                 environment: dict[str, str]) -> dict:
        fetching = workspace_mode == "ro"  # the fetch writes the staging area, the swap the workspace
        mounts = [Mount(str(job.workspace), project.MOUNT, writable=not fetching),
                  Mount(str(staging), STAGING_PATH, writable=fetching)]
        if self.ca_bundle:
            mounts.append(Mount(self.ca_bundle, CA_PATH))
        if self.mirror_dir:
            mounts.append(Mount(self.mirror_dir, MIRROR_PATH))
        return {
            **self.sandbox_spec(network).with_mounts(*mounts).run_options(),
            "name": f"kernelgate-install-{uuid.uuid4().hex[:12]}",
            "hostname": "install",
            "environment": {"HOME": "/tmp", "LANG": "C.UTF-8", **environment},
            "working_dir": working_dir,
            "labels": {INSTALL_LABEL: job.room_id},
        }

    async def _open_fence(self, job: Job) -> Fence:
        """This install's fence; InstallFailed (the install is refused) when it cannot be made."""
        allowed = allowed_targets([url for i in INSTALLERS.values() for url in i.urls(self)], self.egress_hosts)
        proxy = EgressProxy(allowed, self.egress_private_hosts, log=self.log,
                            on_refused=lambda line: job.progress("", "fetch", f"[kernelgate] {line}"))
        try:
            return await Fence.open(self.engine, job.room_id, proxy, self.log)
        except FenceError as e:
            self.log.error("Install in room %s refused: %s", job.room_id, e)
            raise InstallFailed(f"The install was refused: its network fence could not be made ({e});"
                                " nothing ran and nothing in the workspace changed") from None

    def _network_env(self, fence: Fence | None) -> dict[str, str]:
        env = {}
        if self.ca_bundle:
            env.update(PIP_CERT=CA_PATH, DENO_CERT=CA_PATH, NODE_EXTRA_CA_CERTS=CA_PATH, SSL_CERT_FILE=CA_PATH)
        proxies = ((("HTTP_PROXY", fence.proxy_url), ("HTTPS_PROXY", fence.proxy_url)) if fence else
                   (("HTTP_PROXY", self.http_proxy), ("HTTPS_PROXY", self.https_proxy), ("NO_PROXY", self.no_proxy)))
        for name, value in proxies:
            if value:
                env[name] = env[name.lower()] = value
        return env

    async def _fetch(self, job: Job, plan: dict, workdir: str, reference: str,
                     staging: Path, fence: Fence | None) -> list[str]:
        """Run the language's package manager into the staging area (on the fence's network
        when there is one); [source, destination] of what the swap then moves into the
        workspace."""
        language, install = plan["language"], plan["install"]
        try:
            fetch = INSTALLERS[language].fetch(install, Context(self, workdir, self._network_env(fence)))
        except PlanError as e:
            raise InstallFailed(f"The {language} install cannot run: {e}; nothing in the workspace changed") from None
        command, moves = fetch.command, fetch.moves
        options = self._options(job, staging, fence.name if fence else self.network, "ro", fetch.working_dir,
                                fetch.env)
        summary = fetch.summary or f"{' '.join(command[:4])} ..."
        job.progress(language, "fetch", f"[kernelgate] {summary} (from {install['source']})")
        refused = fence.proxy.refusals if fence else 0
        code, why = await self._run_container(job, language, "fetch", reference, command, options)
        if code != 0:
            blocked = (f" The install's egress proxy refused {fence.proxy.refusals - refused} connection(s)"
                       " (see the progress lines; EnvironmentService.egress_hosts is the allow-list)."
                       if fence and fence.proxy.refusals > refused else "")
            raise InstallFailed(f"The {language} install failed ({why}); nothing in the workspace changed."
                                f"{blocked} Last output: {job.tail(f'{language}/fetch')}")
        return moves

    async def _swap(self, job: Job, staging: Path, limit_kib: int, moves: list[str], reference: str) -> None:
        options = self._options(job, staging, "none", "rw", project.MOUNT, {})
        command = ["sh", "-c", _SWAP_SCRIPT, "sh", str(limit_kib), *moves]
        code, why = await self._run_container(job, "", "swap", reference, command, options)
        if code != 0:
            raise InstallFailed(f"The packages could not be moved into the workspace ({why});"
                                f" it is as it was. Last output: {job.tail('/swap')}")

    async def _run_container(self, job: Job, language: str, step: str, reference: str,
                             command: list[str], options: dict) -> tuple[int, str]:
        """Run one install container to its end (or its time limit); (exit code, why)."""
        engine = self.engine
        loop = asyncio.get_running_loop()
        pending = bytearray()
        tail: list[str] = []
        job.tails[f"{language}/{step}"] = tail  # kept current by take(), even on a timeout

        def lines(chunk: bytes) -> None:  # the engine's thread
            loop.call_soon_threadsafe(take, chunk)

        def take(chunk: bytes) -> None:
            pending.extend(chunk)
            *complete, rest = pending.split(b"\n")
            if len(rest) > MAX_LINE:  # a line without end is cut, not kept whole
                complete.append(rest[:MAX_LINE])
                rest = b""
            pending[:] = rest
            for raw in complete:
                line = raw.decode(errors="replace").rstrip("\r")
                tail.append(line)
                del tail[:-20]
                job.progress(language, step, line)

        container = await engine.run(reference, command=command, **options)
        try:
            try:
                await asyncio.wait_for(engine.follow_output(container, lines), self.timeout)
            except asyncio.TimeoutError:  # the finally below removes the container
                return -1, f"it took longer than {self.timeout:.0f} s"
            state = await engine.inspect_state(container) or {}
            for _ in range(50):
                if not state.get("Running"):
                    break
                await asyncio.sleep(0.1)
                state = await engine.inspect_state(container) or {}
            await asyncio.sleep(0)  # the last output lines, scheduled from the engine's thread
            if pending:
                take(b"\n")
            if state.get("OOMKilled"):
                return -1, f"it ran out of memory ({self.memory // (1024 * 1024)} MiB)"
            code = int(state.get("ExitCode", -1))
            return code, f"exit code {code}"
        finally:
            await engine.remove(container)

    async def _copy_sources(self, job: Job, plans: list[dict], folder: Path) -> None:
        """A solo install: the manifests its plans install from, read through the kernel's
        agent into a host folder (mode 0755, files 0644) that the fetch sees at /workspace."""
        await asyncio.to_thread(folder.mkdir, mode=0o755)
        await asyncio.to_thread(os.chmod, folder, 0o755)
        tree = AgentTree(job.kernel.agent)
        for plan in plans:
            path = plan["install"]["source"]
            if path == project.PROJECT_FILE:
                continue  # its packages are in the plan
            try:
                data = await tree.read(path, MAX_SOLO_MANIFEST)
            except TreeError as e:
                raise InstallFailed(f"{path} could not be read from the kernel: {e}") from None
            try:
                await asyncio.to_thread(_write_source, folder, path, data)
            except ValueError as e:  # a name the kernel's agent reported
                raise InstallFailed(f"{path} cannot be installed from: {e}") from None
        job.workspace = folder

    async def _swap_into_kernel(self, job: Job, staging: Path, limit_kib: int, moves: list[str]) -> None:
        """A solo install's swap: what the fetch staged is written into the kernel's home
        through its agent, next to each destination (`.kernelgate-new`), then renamed in
        (the old one renamed away and deleted). Links in the staging area are left out;
        files are written 0644. Before the renames, a failure leaves the home as it was."""
        pairs = [(staging / posixpath.relpath(src, STAGING_PATH), posixpath.relpath(dest, project.MOUNT))
                 for src, dest in zip(moves[::2], moves[1::2])]
        listed = await asyncio.to_thread(_staged, [src for src, _ in pairs], limit_kib)
        if isinstance(listed, str):
            raise InstallFailed(f"The packages could not be moved into the kernel ({listed}); nothing changed")
        agent = job.kernel.agent

        async def op(name: str, path: str, new_path: str = "", data: bytes | None = None, missing_ok=False):
            content = {"op": name, "path": path, **({"new_path": new_path} if new_path else {})}
            reply, _ = await agent.request("file_request", content, None if data is None else [data])
            if reply.get("status") != "ok" and not (missing_ok and reply.get("ename") == "ENOENT"):
                raise InstallFailed(f"The packages could not be moved into the kernel ({name} {path}:"
                                    f" {reply.get('evalue') or reply.get('ename')}); its home is as it was")

        async def parents(path: str) -> None:
            parts = path.split("/")[:-1]
            for n in range(1, len(parts) + 1):
                reply, _ = await agent.request("file_request", {"op": "mkdir", "path": "/".join(parts[:n])})
                if reply.get("status") != "ok" and reply.get("ename") != "EEXIST":
                    raise InstallFailed(f"{'/'.join(parts[:n])} could not be made in the kernel's home")

        try:
            for (src, dest), entries in zip(pairs, listed):
                await parents(dest)
                await op("delete", dest + ".kernelgate-new", missing_ok=True)
                await op("mkdir", dest + ".kernelgate-new")
                for relative, is_dir in entries:
                    path = f"{dest}.kernelgate-new/{relative}"
                    if is_dir:
                        await op("mkdir", path)
                    else:
                        await op("write", path, data=await asyncio.to_thread((src / relative).read_bytes))
        except BaseException:
            for _, dest in pairs:
                await agent.request("file_request", {"op": "delete", "path": dest + ".kernelgate-new"})
            raise
        for _, dest in pairs:
            await op("delete", dest + ".kernelgate-old", missing_ok=True)
            await op("rename", dest, dest + ".kernelgate-old", missing_ok=True)
            await op("rename", dest + ".kernelgate-new", dest)
            await op("delete", dest + ".kernelgate-old", missing_ok=True)
            job.progress("", "swap", f"installed into {dest}")

    async def _restart(self, job: Job) -> tuple[list[str], list[str]]:
        """Restart the room's running kernels in fresh sandboxes (a solo kernel: its process,
        in the same sandbox): (names restarted, failures)."""
        if job.kernel:
            job.progress("", "restart", f"[kernelgate] restarting the {job.kernel.name} kernel")
            try:
                await self.registry.restart(job.kernel, "install")
                return [job.kernel.name], []
            except GatewayError as e:
                return [], [f"{job.kernel.name}: {e.message}"]
        restarted, failed = [], []
        for kernel in sorted((k for k in self.registry.kernels.values() if k.room == job.room_id),
                             key=lambda k: k.name):
            job.progress("", "restart", f"[kernelgate] restarting the {kernel.name} kernel")
            try:
                await self.registry.restart_sandbox(kernel)
                restarted.append(kernel.name)
            except GatewayError as e:
                failed.append(f"{kernel.name}: {e.message}")
        return restarted, failed


def _give(folder: Path, uid: int, gid: int) -> None:
    """Make `folder` (just created, 0700) the container user's (host `uid`, `gid`), without
    following a link."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_uid != uid:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _write_source(folder: Path, path: str, data: bytes) -> None:
    """Write a copied manifest at its relative path (made of clean components) below folder."""
    target = folder.joinpath(*project.clean_relative(path, "a manifest's path").split("/"))
    for parent in reversed(target.relative_to(folder).parents):
        (folder / parent).mkdir(mode=0o755, exist_ok=True)
    target.write_bytes(data)
    target.chmod(0o644)


def _staged(sources: list[Path], limit_kib: int) -> list[list[tuple[str, bool]]] | str:
    """Each staged tree's entries (relative path, is a folder), parents first, links
    left out; or why it cannot be moved (larger than the limit, too many entries)."""
    listed, total, count = [], 0, 0
    for source in sources:
        entries = []
        if source.is_dir() and not source.is_symlink():
            for folder, dirs, files in os.walk(source):
                dirs.sort()
                base = Path(folder).relative_to(source)
                for name in dirs + sorted(files):
                    path = Path(folder) / name
                    if path.is_symlink() or not (path.is_dir() or path.is_file()):
                        continue
                    count += 1
                    total += path.stat().st_size if path.is_file() else 0
                    if count > MAX_SOLO_ENTRIES:
                        return f"more than {MAX_SOLO_ENTRIES} files"
                    if total > limit_kib * 1024:
                        return f"more than the {limit_kib} KiB allowed"
                    entries.append((str(base / name) if str(base) != "." else name, path.is_dir()))
        listed.append(entries)
    return listed


def _kib(size: str) -> int:
    """A tmpfs size ('512m', '1g', '2048k', bytes) in KiB."""
    units = {"k": 1, "m": 1024, "g": 1024 * 1024}
    size = size.strip().lower()
    if size and size[-1] in units:
        return int(float(size[:-1]) * units[size[-1]])
    return int(size) // 1024
