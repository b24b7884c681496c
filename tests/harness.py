"""What tests and benchmarks share to run a gateway: a free port, a `kernelgate serve`
subprocess with its own runtime and data folders, and its cleanup (its containers, its
kernels' socket mounts, its folders). Benchmarks import it as `tests.harness`, run from
the checkout's root (`python -m bench.NAME`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import requests

from kernelgate.engine import GATEWAY_LABEL
from kernelgate.storage.archive import remove_tree
from tests.client import GatewayClient

ROOT = Path(__file__).resolve().parent.parent

#: The variable that turns off the gateway's default warm pool.
NO_POOL = "KERNELGATE_KernelRegistry__pool_sizes"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remove_containers(gateway_id: str) -> list[str]:
    """Remove every container labelled with `gateway_id`; the ids removed."""
    removed = []
    try:
        client = docker.from_env(timeout=30)
        for container in client.containers.list(all=True, filters={"label": f"{GATEWAY_LABEL}={gateway_id}"}):
            container.remove(force=True)
            removed.append(container.id)
    except docker.errors.DockerException:
        pass  # no engine: nothing to remove
    return removed


def mounts_under(*folders: Path) -> list[str]:
    """Mount points inside `folders`, deepest first (from /proc/self/mountinfo)."""
    roots = [str(Path(f).resolve()) + "/" for f in folders]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # octal escapes: \040
        if any(point.startswith(root) for root in roots):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def leftovers(gateway: "GatewayProcess") -> list[str]:
    """What a stopped and cleaned-up gateway left: containers and networks carrying its
    id, mounts in its folders, its runtime folder."""
    left = []
    try:
        client = docker.from_env(timeout=30)
        labelled = {"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"}
        left += [f"container {c.name}" for c in client.containers.list(all=True, filters=labelled)]
        left += [f"network {n.name}" for n in client.networks.list(filters=labelled)]
    except docker.errors.DockerException:
        pass  # no engine: no containers
    left += [f"mount {m}" for m in mounts_under(gateway.runtime_dir, gateway.data_dir)]
    if gateway.runtime_dir.exists():
        left.append(f"folder {gateway.runtime_dir}")
    return left


def lose_working_copy(gateway: "GatewayProcess", room_id: str) -> None:
    """What a new host lacks, after `gateway` stopped: the room's containers, its working
    copy and its volume (the files can then come only from the backend)."""
    remove_containers(gateway.gateway_id)
    folder = gateway.data_dir / "rooms" / room_id
    for mountpoint in mounts_under(folder) + ([str(folder)] if os.path.ismount(folder) else []):
        subprocess.run(["umount", "-l", mountpoint], check=True)
    remove_tree(str(folder))
    (gateway.data_dir / "volumes" / f"{room_id}.ext4").unlink(missing_ok=True)


#: Every gateway started in this process, in order (the leak check reads it).
STARTED: list["GatewayProcess"] = []


class GatewayProcess:
    """`kernelgate serve` in a subprocess on a free 127.0.0.1 port, its log in a file.

    Without an authentication option it runs with --no-auth. It has no default warm pool
    unless asked (a config file or option still sets one; env={NO_POOL: None} keeps the
    default). `like`: another gateway whose id, runtime and data folders this one takes
    over (a restart). `source`: the checkout whose kernelgate runs (default: this one).
    """

    def __init__(self, tmp: Path, *args: str, env: dict | None = None,
                 like: GatewayProcess | None = None, source: Path = ROOT) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gateway_id = like.gateway_id if like else f"test-{uuid.uuid4().hex[:8]}"
        self.log_path = tmp / f"gateway-{self.port}.log"
        # short, because unix socket paths are
        self.runtime_dir = like.runtime_dir if like else Path(tempfile.mkdtemp(prefix="kg-", dir="/tmp"))
        self.data_dir = like.data_dir if like else tmp / f"data-{self.port}"
        authenticated = any(a.startswith(("--jwt", "--jwks", "--JWTIdentityProvider")) for a in args)
        self.args = [
            sys.executable, "-m", "kernelgate", "serve", f"--port={self.port}",
            f"--runtime-dir={self.runtime_dir}", f"--gateway-id={self.gateway_id}",
            f"--data-dir={self.data_dir}",
            *([] if authenticated else ["--no-auth"]), *args,
        ]
        self.extra_args = args
        self.shares_folders = like is not None
        self.source = source
        merged = {NO_POOL: "{}", **os.environ, **(env or {})}
        if source != ROOT:
            merged["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), merged.get("PYTHONPATH")) if p)
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 30) -> GatewayProcess:
        STARTED.append(self)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.source)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._failed()
                raise RuntimeError(f"gateway exited: {self.log()}")
            try:
                requests.get(self.url + "/api", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        self._failed()
        raise RuntimeError(f"gateway did not start in {timeout} s: {self.log()}")

    def _failed(self) -> None:
        """A start that failed: stop it, and clean up unless the folders are shared with
        the gateway it is `like`."""
        self.stop()
        if not self.shares_folders:
            self.cleanup()

    def stop(self, sig: int = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        """After stop: remove its containers (room kernels outlive a gateway by design),
        then the mounts they kept (kernels' socket tmpfs, room workspace volumes, whose
        loop devices go with their last mount), its runtime and data folders."""
        remove_containers(self.gateway_id)
        for mountpoint in mounts_under(self.runtime_dir, self.data_dir):
            subprocess.run(["umount", "-l", mountpoint], check=False)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
        remove_tree(str(self.data_dir))  # kernels can leave trees too deep for rmtree

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, token: str | None = None, scheme: str = "Bearer") -> GatewayClient:
        return GatewayClient(self.url, token, scheme)
