"""Shared fixtures: a real Docker engine, real gateway processes, a real HTTP/WS client.

Docker tests are mandatory when CI=true (a missing engine fails them); locally they skip
with the reason (tests/ci.py). Under CI a run with any skipped test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import pytest
import requests

from kernelgate.engine import GATEWAY_LABEL
from tests.ci import IN_CI, require  # noqa: F401 - IN_CI, for tests that import it from here
from tests.client import GatewayClient
from tests.postgres import free_port, postgres_server  # noqa: F401 - fixture for tests/test_store.py
from tests.s3 import s3_server  # noqa: F401 - the fixture, for the storage tests

ROOT = Path(__file__).resolve().parent.parent


def _docker_problem() -> str | None:
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure means "no engine"
        return f"Docker engine not reachable: {e}"
    from kernelgate.images import ImageBuilder

    reference = ImageBuilder().reference("python")
    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return f"image {reference} not built (run: kernelgate images build python)"
    return None


@pytest.fixture(scope="session")
def docker_engine():
    """A reachable engine with the python image built; fails in CI, skips locally."""
    require(_docker_problem())
    return docker.from_env(timeout=60)


def _remove_containers(gateway_id: str) -> None:
    try:
        client = docker.from_env(timeout=30)
        for container in client.containers.list(all=True, filters={"label": f"{GATEWAY_LABEL}={gateway_id}"}):
            container.remove(force=True)
    except docker.errors.DockerException:
        pass  # no engine: nothing to remove


#: The variable that turns off the gateway's default warm pool in tests.
NO_POOL = "KERNELGATE_KernelRegistry__pool_sizes"


class GatewayProcess:
    """`kernelgate serve` in a subprocess, with its log captured to a file."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None,
                 like: GatewayProcess | None = None) -> None:
        """`like`: another gateway whose id and runtime dir this one takes over."""
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
        # no default warm pool (KernelRegistry.pool_sizes) unless a test asks for one: a
        # config file or option still sets one, and env={NO_POOL: None} keeps the default
        merged = {NO_POOL: "{}", **os.environ, **(env or {})}
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> GatewayProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log()}")
            try:
                requests.get(self.url + "/api", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not start: {self.log()}")

    def stop(self, sig: int = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, token: str | None = None, scheme: str = "Bearer") -> GatewayClient:
        return GatewayClient(self.url, token, scheme)


@pytest.fixture
def start_gateway(tmp_path):
    """Factory: start_gateway(*cli_args, env=...) -> a running GatewayProcess.

    Every gateway is stopped at the end of the test, and its log must hold no traceback.
    """
    started: list[GatewayProcess] = []

    def start(*args: str, env: dict | None = None, like: GatewayProcess | None = None) -> GatewayProcess:
        gateway = GatewayProcess(tmp_path, *args, env=env, like=like).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
    for gateway in started:
        _remove_containers(gateway.gateway_id)  # room kernels outlive a gateway by design
        for folder in gateway.runtime_dir.glob("*/ipc"):
            if os.path.ismount(folder):  # a kernel's socket tmpfs, left with its kernel
                subprocess.run(["umount", "-l", str(folder)], check=False)
        shutil.rmtree(gateway.runtime_dir, ignore_errors=True)
        assert "Traceback" not in gateway.log(), gateway.log()


@pytest.fixture(params=["docker", "local"])
def gateway(request, start_gateway):
    """A gateway with Docker kernels, then one with local kernels."""
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    return start_gateway(f"--kernels={request.param}")


@pytest.fixture
def docker_gateway(docker_engine, start_gateway):
    return start_gateway("--kernels=docker")


@pytest.fixture
def local_gateway(start_gateway):
    return start_gateway("--kernels=local")


_skipped: list[str] = []


def pytest_collectreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """Under CI nothing may be skipped: a run with a skipped test fails."""
    if IN_CI and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if IN_CI and _skipped:
        terminalreporter.write_line(
            f"CI=true: the run fails, {len(_skipped)} skipped: " + ", ".join(_skipped), red=True)
