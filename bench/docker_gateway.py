"""A throwaway `kernelgate serve --kernels=docker --no-auth` for the benchmarks."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.client import GatewayClient  # the project's test client
from tests.harness import ROOT, GatewayProcess  # the project's gateway launcher


@dataclass
class Gateway:
    gateway_id: str
    client: GatewayClient
    url: str  # http://127.0.0.1:PORT
    runtime_dir: Path  # holds <kernel id>/connection.json
    pid: int  # the gateway process (for CPU accounting and profilers)

    def connection_file(self, kernel_id: str) -> Path:
        return self.runtime_dir / kernel_id / "connection.json"


@contextlib.contextmanager
def docker_gateway(name: str, config: str, source: Path = ROOT):
    """Run a gateway (tests/harness.py's GatewayProcess: a free 127.0.0.1 port, no default
    warm pool, --no-auth) with `config` (jupyter_config.py text) and the kernelgate code in
    `source` (default: this checkout); yields a Gateway once it answers; stops it and
    removes its containers and folders afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=f"kg{name}-", dir="/tmp"))
    (tmp / "config.py").write_text(config)
    process = GatewayProcess(tmp, "--kernels=docker", f"--config={tmp}/config.py", source=source)
    try:
        process.start(timeout=60)
        yield Gateway(process.gateway_id, process.client(), process.url, process.runtime_dir, process.pid)
    finally:
        process.stop()
        process.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
