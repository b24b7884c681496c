"""A throwaway S3-compatible server for tests: moto's server mode on 127.0.0.1.

`s3_server` (fixture) starts one per test; `S3Server.stop()` and `.start()` take it down
and bring it back on the same port (moto keeps its objects in memory: a restarted
server is empty, as after losing a bucket).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.postgres import free_port

ACCESS_KEY, SECRET_KEY = "kernelgate-test", "kernelgate-test-secret"


class S3Server:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> S3Server:
        moto = Path(sys.executable).with_name("moto_server")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log_path.read_text()}")
            try:
                requests.get(self.url, timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def gateway_args(self, bucket: str = "rooms") -> list[str]:
        """`kernelgate serve` options for a backend in this server."""
        return [f"--S3Backend.endpoint_url={self.url}", f"--S3Backend.bucket={bucket}",
                f"--S3Backend.access_key_id={ACCESS_KEY}",
                f"--S3Backend.secret_access_key={SECRET_KEY}",
                "--S3Backend.connect_timeout=1", "--S3Backend.read_timeout=5"]


@pytest.fixture
def s3_server(tmp_path):
    server = S3Server(tmp_path / "moto.log").start()
    yield server
    server.stop()
