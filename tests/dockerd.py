"""A second dockerd of this host for tests that need an engine of their own (userns
remap, a dockerd restarted under traffic): its own socket, data root, exec root and
network namespace. The host's dockerd is never touched.

It runs in a network namespace of its own: a dockerd with --bridge=none deletes the
host's docker0 (the main engine's default bridge) when it starts. Kernels use no
network; the daemon's socket is a file, reachable from here. Its data root is kept
between runs, so images loaded into it (`load_images`) are loaded once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker


class PrivateDockerd:
    """dockerd on unix://{run}/docker.sock with data root `data_root`, in network
    namespace `netns`; `args`: more dockerd options (e.g. --userns-remap=default)."""

    def __init__(self, name: str, *args: str) -> None:
        self.run_dir = Path(f"/run/{name}")
        self.socket = self.run_dir / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.data_root = Path(f"/var/lib/{name}")
        self.netns = name
        self.args = args
        self.process: subprocess.Popen | None = None

    def client(self, timeout: int = 120) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=timeout)

    def start(self, timeout: float = 90) -> "PrivateDockerd":
        """Start it and wait until it answers (RuntimeError if it does not)."""
        if shutil.which("dockerd") is None or os.geteuid() != 0:
            raise RuntimeError("a second dockerd needs the dockerd binary and root")
        if self.socket.exists():
            try:
                self.client(5).ping()
                raise RuntimeError(f"a dockerd already answers on {self.socket}: stop it first")
            except docker.errors.DockerException:
                self.socket.unlink()  # a stale socket of a daemon that died
        (self.run_dir / "exec").mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / "dockerd.log", "ab")
        subprocess.run(["ip", "netns", "add", self.netns], capture_output=True)  # kept from a last run: fine
        self.process = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}",  # not `ip netns exec`: it remounts /sys, hiding the cgroups
             "dockerd", *self.args, "-H", self.url, "--data-root", str(self.data_root),
             "--exec-root", str(self.run_dir / "exec"), "--pidfile", str(self.run_dir / "docker.pid"),
             "--bridge=none", "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log()[-2000:]}")
            try:
                self.client(5).ping()
                return self
            except docker.errors.DockerException:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the second dockerd did not answer in {timeout:g} s")

    def halt(self) -> None:
        """SIGTERM, as a service manager stops it (its containers stop with it); the
        network namespace stays, for a `start` again."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)  # nsenter execs dockerd: the same process
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        """halt, and remove the network namespace."""
        self.halt()
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)

    def log(self) -> str:
        return (self.run_dir / "dockerd.log").read_text(errors="replace")

    def load_images(self, *references: str) -> None:
        """Copy images from the host's dockerd (`docker save | docker load`) unless present."""
        client = self.client()
        try:
            for reference in references:
                try:
                    client.images.get(reference)
                    continue
                except docker.errors.ImageNotFound:
                    pass
                save = subprocess.Popen(["docker", "save", reference], stdout=subprocess.PIPE)
                subprocess.run(["docker", "-H", self.url, "load"], stdin=save.stdout, check=True,
                               stdout=subprocess.DEVNULL, timeout=600)
                assert save.wait(60) == 0
        finally:
            client.close()

    def remove_containers(self) -> list[str]:
        """Remove every container of this daemon; the names removed."""
        client = self.client()
        try:
            left = client.containers.list(all=True)
            for container in left:
                container.remove(force=True)
            return [c.name for c in left]
        finally:
            client.close()
