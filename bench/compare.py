#!/usr/bin/env python
"""kernelgate side by side with Jupyter Kernel Gateway and Jupyter Enterprise Gateway.

Usage:
    python -m bench.compare [--rounds 300] [--starts 5] [--idle 10] [--lines 100000]
                              [--capacity-seconds 60] [--capacity-max 200] [--parallel 4]
                              [--only kernelgate-local,kernelgate-docker,kernelgate-docker-pool,kg,eg]

Runs the same client workload, one gateway after the other, against
  - kernelgate with local kernels, with Docker kernels, and (start only) with Docker
    kernels and a warm pool of one python3 kernel;
  - Jupyter Kernel Gateway (KG) and Jupyter Enterprise Gateway (EG), installed from PyPI
    into virtualenvs of their own (KG in `--venv`, default /tmp/kgcompare-venv, EG in the
    same path + `-eg`: EG 3 pins jupyter_server < 2, KG 3 needs 2; created on the first
    run, reused afterwards), each with its venv's local python3 (ipykernel) kernels.

Workload, python3 kernel, one synchronous websocket-client (legacy JSON protocol):
  1. start: POST /api/kernels -> channels WebSocket -> execute `1+1` -> execute_result,
     `--starts` times, p50 and max;
  2. execute round trip (`pass`, until execute_reply), `--rounds` timed rounds after
     `--warmup`, p50 and p99;
  3. iopub throughput: a cell printing `--lines` lines; lines received / seconds from
     sending the request to the iopub idle;
  4. memory per idle kernel: `--idle` kernels started (each ran `1+1`), then (RSS of the
     gateway + RSS of its descendant processes + `docker stats` memory of its kernel
     containers) / N;
  5. most concurrent kernels: kernels started `--parallel` at a time, each until it has
     answered `1+1`, for `--capacity-seconds` or until `--capacity-max` kernels or the
     first failure, all kept running until the end; the column is how many answered.
     `--capacity-seconds 0` skips it.

kernelgate is started with `--KernelRegistry.max_output=0` (its default 4 MiB output cap
per execution would cut the throughput cell). Its Docker python3 kernels run in the
`low` tier (0.5 CPU), as a tests.harness.GatewayProcess. Every server runs on a free
127.0.0.1 port in its own /tmp dir (KG and EG in their own process group); at the end, even
on errors or SIGTERM, kernels are deleted, the servers are stopped, kernelgate's
containers and mounts are removed and the dirs deleted (the venvs are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path

import requests

from bench.gateway_latency import (  # the same client code as the latency benchmark
    WsTransport, _children, describe_source, execute_parts, loadavg, machine, measure_start,
    percentile, perf, round_trip,
)
from kernelgate.engine import GATEWAY_LABEL
from tests.harness import ROOT, GatewayProcess, free_port

VARIANTS = ("kernelgate-local", "kernelgate-docker", "kernelgate-docker-pool", "kg", "eg")
LABELS = {
    "kernelgate-local": "kernelgate, local kernels",
    "kernelgate-docker": "kernelgate, Docker kernels (low tier, 0.5 CPU)",
    "kernelgate-docker-pool": "kernelgate, Docker kernels, warm pool of 1",
    "kg": "Jupyter Kernel Gateway",
    "eg": "Jupyter Enterprise Gateway",
}
TIMEOUT = 30.0


# -- the third-party gateways' virtualenv ----------------------------------------------


def eg_venv(venv: Path) -> Path:
    return venv.with_name(venv.name + "-eg")


def ensure_venv(venv: Path, packages: list[str], module: str) -> dict[str, str]:
    """Create (or reuse) a venv with `packages` (importable as `module`) and ipykernel's
    python3 kernelspec; returns the versions of the packages that matter here."""
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    check = subprocess.run([str(py), "-c", f"import {module}, ipykernel"],
                           capture_output=True, timeout=120)
    if check.returncode:
        print(f"pip install into {venv}: {' '.join(packages)} ...", flush=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages, "ipykernel"],
                       check=True, timeout=1200)
    if not (venv / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").exists():
        subprocess.run([str(py), "-m", "ipykernel", "install", "--sys-prefix"], check=True,
                       timeout=120, capture_output=True)
    out = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True,
                         text=True, timeout=120).stdout
    wanted = {"jupyter-kernel-gateway", "jupyter-enterprise-gateway", "ipykernel",
              "jupyter-server", "jupyter-client", "tornado", "pyzmq"}
    versions = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}
    return {k: versions.get(k, "?") for k in sorted(wanted)}


# -- servers ---------------------------------------------------------------------------


class Server:
    """One gateway in a temp dir of its own: kernelgate as a tests.harness.GatewayProcess,
    KG and EG as a subprocess in their own process group (their local kernels with them)."""

    def __init__(self, variant: str, venv: Path) -> None:
        self.variant = variant
        self.workdir = Path(tempfile.mkdtemp(prefix="kgc-", dir="/tmp"))
        self.docker = variant.startswith("kernelgate-docker")
        self.headers: dict = {}
        self.gateway: GatewayProcess | None = None
        self._proc: subprocess.Popen | None = None
        if variant.startswith("kernelgate"):
            config = (  # no per-user kernel limit: the benchmark is one user
                'c.Plans.plans = {"bench": {"kernel_tiers": ["low"], "max_kernels": 0}}\n'
                'c.Plans.order = ["bench"]\nc.Plans.admin_plan = "bench"\n')
            if variant == "kernelgate-docker-pool":
                config += 'c.KernelRegistry.pool_sizes = {"python3": 1}\n'
            (self.workdir / "config.py").write_text(config)
            self.gateway = GatewayProcess(
                self.workdir, f"--kernels={'docker' if self.docker else 'local'}",
                "--KernelRegistry.max_output=0", f"--config={self.workdir}/config.py")
            self.port, self.url, self.log_path = self.gateway.port, self.gateway.url, self.gateway.log_path
        else:
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.log_path = self.workdir / "server.log"
            # the venv's own Jupyter paths only: its python3 kernelspec, runtime in workdir
            env = dict(os.environ)
            for key in ("JUPYTER_PATH", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "PYTHONPATH",
                        "JUPYTER_CONFIG_PATH"):
                env.pop(key, None)
            env.update(JUPYTER_RUNTIME_DIR=str(self.workdir / "rt"),
                       JUPYTER_CONFIG_DIR=str(self.workdir / "cfg"),
                       JUPYTER_DATA_DIR=str(self.workdir / "data"),
                       PATH=f"{venv}/bin:{env.get('PATH', '')}")
            if variant == "kg":
                args = [str(venv / "bin" / "jupyter"), "kernelgateway",
                        "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={self.port}",
                        "--JupyterWebsocketPersonality.list_kernels=True"]
            else:
                args = [str(venv / "bin" / "jupyter"), "enterprisegateway",
                        "--EnterpriseGatewayApp.ip=127.0.0.1",
                        f"--EnterpriseGatewayApp.port={self.port}"]
            self.args, self.env = args, env
        self.http = requests.Session()
        self.kernel_ids: set[str] = set()

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.gateway.proc if self.gateway else self._proc

    def start(self, timeout: float = 90) -> Server:
        if self.gateway:
            self.gateway.start(timeout)
            return self
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=self.workdir, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.variant} exited:\n{self.log()}")
            try:
                if self.http.get(self.url + "/api", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.variant} did not start:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    # the interface measure_start() uses
    def start_kernel(self) -> str:
        body: dict = {"name": "python3"}
        if self.variant == "eg":  # EG refuses to start kernels for 'root' (unauthorized_users)
            body["env"] = {"KERNEL_USERNAME": "bench"}
        r = self.http.post(self.url + "/api/kernels", json=body, timeout=120)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"POST /api/kernels: {r.status_code} {r.text[:500]}")
        kernel_id = r.json()["id"]
        self.kernel_ids.add(kernel_id)
        return kernel_id

    def delete_kernel(self, kernel_id: str) -> None:
        try:
            self.http.delete(f"{self.url}/api/kernels/{kernel_id}", timeout=60)
            self.kernel_ids.discard(kernel_id)
        except requests.RequestException as e:
            print(f"  (deleting kernel {kernel_id} failed: {e})", file=sys.stderr)

    def ws_url(self, kernel_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels"

    def containers(self) -> list[str]:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={GATEWAY_LABEL}={self.gateway.gateway_id}"],
            capture_output=True, text=True, timeout=60).stdout
        return out.split()

    def stop(self) -> None:
        """Delete our kernels, stop the server and remove what it left: kernelgate's
        through GatewayProcess.stop and cleanup (containers, mounts, folders), KG's and
        EG's process group; then the temp dir. SIGINT/SIGTERM are ignored meanwhile."""
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if self.proc and self.proc.poll() is None:
                for kernel_id in list(self.kernel_ids):
                    self.delete_kernel(kernel_id)
            if self.gateway:
                self.gateway.stop()
                self.gateway.cleanup()
            elif self._proc:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(60)
                except subprocess.TimeoutExpired:
                    pass
                try:  # the group: kernels the server left behind
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


# -- measurements ----------------------------------------------------------------------


def measure_rtt(server: Server, rounds: int, warmup: int) -> list[float]:
    kernel_id = server.start_kernel()
    try:
        ws = WsTransport(server.ws_url(kernel_id), "legacy", server.headers)
        try:
            for _ in range(warmup):
                round_trip(ws, "pass")
            return [round_trip(ws, "pass").reply for _ in range(rounds)]
        finally:
            ws.close()
    finally:
        server.delete_kernel(kernel_id)


def measure_iopub(server: Server, lines: int) -> tuple[float, int, float]:
    """(lines/s, lines received, seconds) for a cell printing `lines` lines."""
    kernel_id = server.start_kernel()
    try:
        ws = WsTransport(server.ws_url(kernel_id), "legacy", server.headers)
        try:
            round_trip(ws, "pass")  # the kernel is up and the socket is warm
            code = f"for i in range({lines}): print(i)"
            msg_id, parts = execute_parts(ws.session_id, code)
            header, parent, metadata, content = parts
            t0 = perf()
            ws.ws.send_text(b"".join((
                b'{"header":', header, b',"parent_header":', parent, b',"metadata":', metadata,
                b',"content":', content, b',"channel":"shell"}')).decode())
            received = 0
            deadline = t0 + 300
            for _ in range(2_000_000):  # bounded: far more messages than lines
                ws.ws.settimeout(max(0.001, deadline - perf()))
                msg = json.loads(ws.ws.recv())
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "stream":
                    received += msg["content"].get("text", "").count("\n")
                elif kind == "status" and msg["content"].get("execution_state") == "idle":
                    elapsed = perf() - t0
                    return received / elapsed, received, elapsed
            raise RuntimeError("no idle status within the message bound")
        finally:
            ws.close()
    finally:
        server.delete_kernel(kernel_id)


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _docker_mem_mb(ids: list[str]) -> float:
    if not ids:
        return 0.0
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *ids],
                         capture_output=True, text=True, timeout=120).stdout
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "kB": 1 / 1024, "MiB": 1, "MB": 1,
             "GiB": 1024, "GB": 1024}
    total = 0.0
    for line in out.splitlines():
        used = line.split("/")[0].strip()
        for unit in sorted(units, key=len, reverse=True):
            if used.endswith(unit):
                total += float(used[: -len(unit)]) * units[unit]
                break
    return total


def memory_mb(server: Server) -> tuple[float, float, float]:
    """(gateway RSS, descendant processes' RSS, kernel containers' memory), MB."""
    gw = _rss_kb(server.proc.pid) / 1024
    kids = sum(_rss_kb(p) for p in _children(server.proc.pid)) / 1024
    containers = _docker_mem_mb(server.containers()) if server.docker else 0.0
    return gw, kids, containers


def first_result(server: Server, kernel_id: str) -> None:
    """Run `1+1` on the kernel: it has started and answers."""
    ws = WsTransport(server.ws_url(kernel_id), "legacy", server.headers)
    try:
        round_trip(ws, "1+1")
    finally:
        ws.close()


def measure_idle_memory(server: Server, n: int) -> dict:
    before = memory_mb(server)
    started = []
    try:
        for _ in range(n):
            kernel_id = server.start_kernel()
            started.append(kernel_id)
            first_result(server, kernel_id)
        time.sleep(3)  # let them settle idle
        gw, kids, containers = memory_mb(server)
    finally:
        for kernel_id in started:
            server.delete_kernel(kernel_id)
    total = gw + kids + containers
    return {"per_kernel": total / n, "gateway": gw, "processes": kids, "containers": containers,
            "gateway_before": before[0], "marginal_per_kernel": (total - sum(before)) / n, "n": n}


def measure_capacity(server: Server, seconds: float, cap: int, parallel: int) -> dict:
    """Start kernels, `parallel` at a time, each until it answers `1+1`, for `seconds` or
    until `cap` kernels or a failure; how many answered (all are kept running until the
    end), and how many the gateway lists then."""
    lock = threading.Lock()
    started: list[str] = []
    answered: list[str] = []
    failures: list[str] = []
    launched = 0
    t0 = perf()

    def worker() -> None:
        nonlocal launched
        while True:
            with lock:
                if failures or launched >= cap or perf() - t0 > seconds:
                    return
                launched += 1
            try:
                kernel_id = server.start_kernel()
                with lock:
                    started.append(kernel_id)
                first_result(server, kernel_id)
                with lock:
                    answered.append(kernel_id)
            except Exception as e:  # noqa: BLE001 - the first failure ends the measurement
                with lock:
                    failures.append(f"{type(e).__name__}: {str(e)[:200]}")
                return

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = perf() - t0
    try:
        listed = len(server.http.get(server.url + "/api/kernels", timeout=120).json())
    finally:
        with ThreadPool(parallel) as pool:
            pool.map(server.delete_kernel, started)
    stopped_by = (f"failure: {failures[0]}" if failures else
                  "cap" if len(started) >= cap else "time")
    return {"kernels": len(answered), "started": len(started), "listed": listed,
            "seconds": elapsed, "stopped_by": stopped_by}


def run_variant(variant: str, args, venv: Path) -> dict:
    server = Server(variant, venv)
    result: dict = {}
    try:
        t0 = perf()
        server.start()
        result["server_start_s"] = perf() - t0
        print(f"[{variant}] up on {server.url} in {result['server_start_s']:.1f} s", flush=True)
        if variant == "kernelgate-docker-pool":
            totals = []
            for i in range(args.starts):
                time.sleep(args.pool_wait)  # the pool refills between starts
                totals += measure_start(server, 1)["total"]
            result["start"] = totals
            return result  # the rest is the same as kernelgate-docker
        result["start"] = measure_start(server, args.starts)["total"]
        print(f"[{variant}] round trips: {args.warmup} warm-up + {args.rounds}", flush=True)
        result["rtt"] = measure_rtt(server, args.rounds, args.warmup)
        print(f"[{variant}] iopub: {args.lines} lines", flush=True)
        rate, got, secs = measure_iopub(server, args.lines)
        result["iopub"] = {"lines_per_s": rate, "lines": got, "seconds": secs}
        print(f"  {got} lines in {secs:.2f} s = {rate:,.0f} lines/s", flush=True)
        print(f"[{variant}] memory: {args.idle} idle kernels", flush=True)
        result["memory"] = measure_idle_memory(server, args.idle)
        print(f"  {result['memory']}", flush=True)
        if args.capacity_seconds:
            print(f"[{variant}] concurrent kernels: {args.parallel} at a time for "
                  f"{args.capacity_seconds:g} s, at most {args.capacity_max}", flush=True)
            result["capacity"] = measure_capacity(server, args.capacity_seconds, args.capacity_max,
                                                  args.parallel)
            print(f"  {result['capacity']}", flush=True)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - report, clean up, go on
        print(f"[{variant}] failed: {type(e).__name__}: {e}\n--- log ---\n{server.log()}",
              file=sys.stderr, flush=True)
        result["error"] = f"{type(e).__name__}: {str(e)[:200]}"
    finally:
        server.stop()
    return result


# -- report ----------------------------------------------------------------------------


COLUMNS = ("start p50 ms", "start max ms", "RTT p50 ms", "RTT p99 ms", "iopub lines/s",
           "MB per idle kernel", "concurrent kernels")


def values(r: dict) -> list[float | None]:
    s, rtt = r.get("start"), r.get("rtt")
    return [
        1000 * percentile(s, 50) if s else None, 1000 * max(s) if s else None,
        1000 * percentile(rtt, 50) if rtt else None, 1000 * percentile(rtt, 99) if rtt else None,
        r["iopub"]["lines_per_s"] if "iopub" in r else None,
        r["memory"]["per_kernel"] if "memory" in r else None,
        r["capacity"]["kernels"] if "capacity" in r else None,
    ]


def fmt(v: float | None, col: int) -> str:
    if v is None:
        return "—"
    if col in (4, 6):
        return f"{v:,.0f}"
    if col in (0, 1):
        return f"{v:.0f}"
    if col == 5:
        return f"{v:.1f}"
    return f"{v:.2f}"


def report(results: dict[str, dict], lines: int) -> list[str]:
    out = ["| gateway | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for v, r in results.items():
        cells = [fmt(x, i) for i, x in enumerate(values(r))]
        if "iopub" in r and r["iopub"]["lines"] < lines:  # output dropped on the way
            cells[4] += f" (only {r['iopub']['lines']:,} of {lines:,} lines arrived)"
        out.append(f"| {LABELS[v]} | " + " | ".join(cells) + " |")
    for ref in ("kg", "eg"):
        if ref not in results or "error" in results[ref]:
            continue
        base = values(results[ref])
        out += ["", f"Ratio to {LABELS[ref]} (start, RTT, MB: lower is better; "
                "lines/s: higher is better):", "",
                "| gateway | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
        for v, r in results.items():
            if v == ref:
                continue
            cells = []
            for x, b in zip(values(r), base):
                cells.append("—" if x is None or not b else f"{x / b:.2f}×")
            out.append(f"| {LABELS[v]} | " + " | ".join(cells) + " |")
    started = [f"- {LABELS[v]}: {r['capacity']['kernels']} answered of {r['capacity']['started']} "
               f"started in {r['capacity']['seconds']:.0f} s ({r['capacity']['listed']} listed at "
               f"the end), stopped by {r['capacity']['stopped_by']}"
               for v, r in results.items() if "capacity" in r]
    if started:
        out += ["", "Concurrent kernels:", "", *started]
    for v, r in results.items():
        if "error" in r:
            out += ["", f"{LABELS[v]}: failed: {r['error']}"]
    return out


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--starts", type=int, default=5)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--idle", type=int, default=10, help="idle kernels for the memory column")
    p.add_argument("--capacity-seconds", type=float, default=60.0,
                   help="how long to keep starting kernels for the concurrency column (0: skip)")
    p.add_argument("--capacity-max", type=int, default=200, help="stop the concurrency column here")
    p.add_argument("--parallel", type=int, default=4, help="kernels started at once for it")
    p.add_argument("--pool-wait", type=float, default=4.0,
                   help="seconds the pooled variant waits for the pool to refill before a start")
    p.add_argument("--venv", type=Path, default=Path("/tmp/kgcompare-venv"))
    p.add_argument("--json", metavar="PATH", help="also write the raw results here")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.only.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}")
    if not (1 <= args.starts <= 100 and 1 <= args.rounds <= 100_000 and 0 <= args.warmup <= 10_000
            and 1 <= args.lines <= 10_000_000 and 1 <= args.idle <= 200
            and 0 <= args.capacity_seconds <= 3600 and 1 <= args.capacity_max <= 2000
            and 1 <= args.parallel <= 32):
        p.error("argument out of range")
    signal.signal(signal.SIGTERM, _terminate)

    # KG 3 needs jupyter_server 2; EG 3 pins jupyter_server < 2, jupyter_client < 7 and
    # pyzmq < 25 (in one venv pip falls back to EG 2.5, which no longer imports): two venvs.
    versions = {}
    if "kg" in variants:
        versions["kg"] = ensure_venv(args.venv, ["jupyter_kernel_gateway"], "kernel_gateway")
    if "eg" in variants:
        versions["eg"] = ensure_venv(eg_venv(args.venv), ["jupyter_enterprise_gateway>=3"],
                                     "enterprise_gateway")
    results: dict[str, dict] = {}
    load_before = loadavg()
    for v in variants:
        results[v] = run_variant(v, args, eg_venv(args.venv) if v == "eg" else args.venv)
    out = machine() + [f"- kernelgate: {describe_source(ROOT)}"]
    for v, vs in versions.items():
        out.append(f"- {LABELS[v]}, venv {args.venv if v == 'kg' else eg_venv(args.venv)}: "
                   + ", ".join(f"{k} {x}" for k, x in vs.items() if x != "?"))
    out += [f"- {args.starts} starts, {args.rounds} round trips (+{args.warmup} warm-up), "
            f"{args.lines} lines, {args.idle} idle kernels, concurrent kernels for "
            f"{args.capacity_seconds:g} s ({args.parallel} at a time, at most {args.capacity_max}); "
            "load average before "
            f"{load_before}, after {loadavg()}", ""]
    out += report(results, args.lines)
    print("\n" + "\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps({"versions": versions, "results": results}, indent=1))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
