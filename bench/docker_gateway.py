"""A throwaway `kernelgate serve --kernels=docker --no-auth` for the benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.client import GatewayClient  # noqa: E402 - the project's test client


@dataclass
class Gateway:
    gateway_id: str
    client: GatewayClient
    url: str  # http://127.0.0.1:PORT
    runtime_dir: Path  # holds <kernel id>/connection.json
    pid: int  # the gateway process (for CPU accounting and profilers)

    def connection_file(self, kernel_id: str) -> Path:
        return self.runtime_dir / kernel_id / "connection.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def docker_gateway(name: str, config: str, source: Path = ROOT):
    """Run a gateway on a free 127.0.0.1 port with `config` (jupyter_config.py text) and
    the kernelgate code in `source` (default: this checkout); yields a Gateway once it
    answers; stops it and removes its folders afterwards."""
    port, tmp = free_port(), Path(tempfile.mkdtemp(prefix=f"kg{name}-", dir="/tmp"))
    gateway_id = f"bench-{name}-{port}"
    (tmp / "config.py").write_text(config)
    # no default warm pool: only the pools `config` sets (it overrides this variable)
    env = {"KERNELGATE_KernelRegistry__pool_sizes": "{}", **os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(source), os.environ.get("PYTHONPATH", "")) if p)}
    process = subprocess.Popen(
        [sys.executable, "-m", "kernelgate", "serve", f"--port={port}", "--no-auth",
         "--kernels=docker", f"--runtime-dir={tmp}/rt", f"--data-dir={tmp}/data",
         f"--gateway-id={gateway_id}", f"--config={tmp}/config.py"],
        cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{url}/api", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield Gateway(gateway_id, GatewayClient(url), url, tmp / "rt", process.pid)
    finally:
        process.terminate()
        process.wait(300)
        shutil.rmtree(tmp, ignore_errors=True)
