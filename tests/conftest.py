"""Shared fixtures: a real Docker engine, real gateway processes, a real HTTP/WS client.

Docker tests are mandatory when CI=true (a missing engine fails them); locally they skip
with the reason (tests/ci.py). Under CI a run with any skipped test fails.
"""

from __future__ import annotations

import threading
import time

import docker
import pytest

from tests import harness
from tests.ci import IN_CI, require  # noqa: F401 - IN_CI, for tests that import it from here
from tests.harness import GatewayProcess
from tests.postgres import postgres_server  # noqa: F401 - fixture for tests/test_store.py
from tests.s3 import s3_server  # noqa: F401 - the fixture, for the storage tests

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


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind():
    """After each test module: no container, network, mount or runtime folder of a
    gateway it started, and no thread of this process it started, is left."""
    first = len(harness.STARTED)
    threads = set(threading.enumerate())
    yield
    left = []
    for gateway in harness.STARTED[first:]:
        if gateway.proc is not None and gateway.proc.poll() is None:
            left.append(f"gateway {gateway.gateway_id} still running")
        else:
            left += harness.leftovers(gateway)
    deadline = time.monotonic() + 10
    # (asyncio_N: the default executor of the tests' event loop, kept for the next test)
    while (extra := [t for t in threading.enumerate() if t not in threads and t.is_alive()
                     and not t.name.startswith("asyncio_")]) and time.monotonic() < deadline:
        time.sleep(0.1)  # a thread may be ending
    left += [f"thread {t.name}" for t in extra]
    if left:
        pytest.fail("left behind: " + "; ".join(left), pytrace=False)


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
        gateway.cleanup()
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
