#!/usr/bin/env python
"""Latency of kernelgate against talking to the same kernel directly over ZeroMQ.

Usage:
    python -m bench.gateway_latency [--kernels docker,local] [--rounds 500] [--starts 5]

For every kernel mode it starts its own `kernelgate serve` subprocess on a free loopback
port (own runtime dir and gateway id; killed, with its kernels, at the end, even on
errors) and measures, for python3 kernels:

1. start: POST /api/kernels -> open the channels WebSocket -> execute `1+1` -> the
   execute_result arrives (`--starts` repetitions; each kernel is deleted afterwards);
2. execute round trip on one kernel: an execute_request of `--code` (default `pass`,
   silent=False) until its execute_reply arrives and, separately, until its iopub
   status idle arrives,
   - through the gateway WebSocket, legacy JSON protocol (no subprotocol),
   - through the gateway WebSocket, `v1.kernel.websocket.jupyter.org`,
   - directly over ZeroMQ (DEALER shell + SUB iopub, signed with
     jupyter_client.session.Session) using the kernel's connection file in the
     gateway's runtime dir, i.e. the same kernel, the same sockets;
   interleaved in blocks (`--block` rounds of each transport in turn, the order
   rotating every cycle), so machine noise affects all three alike.

Every client is synchronous and single-threaded (websocket-client with TCP_NODELAY and
no UTF-8 validation, blocking pyzmq) and builds/parses messages the same way, so the
client's own cost is close to equal on both paths; the "client CPU" column shows it.
Only one transport is connected at a time to the kernel's output: the WebSocket is
closed between its blocks (otherwise the gateway would forward the direct rounds' iopub
to it while the direct round is being timed), and the direct SUB socket is drained
(untimed) after each gateway round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import requests
import websocket  # websocket-client
import zmq
from jupyter_client.session import DELIM, Session

from tests.harness import ROOT, GatewayProcess

V1 = "v1.kernel.websocket.jupyter.org"
TIMEOUT = 30.0  # seconds any single wait may take before the benchmark gives up
MAX_MESSAGES = 10_000  # bound on messages read while waiting for one reply
perf = time.perf_counter
cpu = time.process_time


# -- gateway process -------------------------------------------------------------------


def describe_source(source: Path) -> str:
    """The source directory, with its git commit when it is a checkout."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(source), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = ""
    return f"{source} ({rev})" if rev else str(source)


class Gateway:
    """A tests.harness.GatewayProcess (`--kernels=KERNELS`, no warm pool: this measures
    cold starts) with its log and folders in a temp dir of its own, the kernels this
    benchmark started, and the client calls the measurements make."""

    def __init__(self, kernels: str, extra_args: list[str], token: str | None,
                 tier_changes: dict | None = None, source: Path = ROOT) -> None:
        self.kernels = kernels
        self.workdir = Path(tempfile.mkdtemp(prefix="kgb-", dir="/tmp"))
        config = []
        if tier_changes:  # e.g. every tier's CPU limit (Docker kernels' CFS quota)
            config += [
                "from kernelgate.tiers import DEFAULT_TIERS",
                f"c.Tiers.tiers = {{n: {{**t, **{tier_changes!r}}} "
                "for n, t in DEFAULT_TIERS.items()}",
            ]
        if source != ROOT and kernels == "local":  # local kernels import from the source too
            config += [
                "from kernelgate.kernels.registry import KernelRegistry",
                "c.KernelRegistry.env_process_whitelist = "
                "[*KernelRegistry.env_process_whitelist.default_value, 'PYTHONPATH']",
            ]
        if config:
            path = self.workdir / "bench_config.py"
            path.write_text("\n".join(["c = get_config()  # noqa: F821", *config, ""]))
            extra_args = [f"--config={path}", *extra_args]
        self.process = GatewayProcess(self.workdir, f"--kernels={kernels}", *extra_args, source=source)
        self.url, self.port, self.runtime_dir = self.process.url, self.process.port, self.process.runtime_dir
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = requests.Session()
        self.http.headers.update(self.headers)
        self.kernel_ids: set[str] = set()

    @property
    def proc(self) -> subprocess.Popen:
        return self.process.proc

    def start(self, timeout: float = 60) -> Gateway:
        self.process.start(timeout)
        return self

    def log(self) -> str:
        try:
            return self.process.log()[-4000:]
        except OSError:
            return ""

    def start_kernel(self) -> str:
        response = self.http.post(self.url + "/api/kernels", json={"name": "python3"}, timeout=120)
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/kernels: {response.status_code} {response.text}")
        kernel_id = response.json()["id"]
        self.kernel_ids.add(kernel_id)
        return kernel_id

    def delete_kernel(self, kernel_id: str) -> None:
        """Delete a kernel; a failure is reported, not raised (stop() cleans up anyway)."""
        try:
            self.http.delete(f"{self.url}/api/kernels/{kernel_id}", timeout=60)
            self.kernel_ids.discard(kernel_id)
        except requests.RequestException as e:
            print(f"  (deleting kernel {kernel_id} failed: {e})", file=sys.stderr)

    def ws_url(self, kernel_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels"

    def connection_file(self, kernel_id: str) -> Path:
        return self.runtime_dir / kernel_id / "connection.json"

    def stop(self) -> None:
        """Delete our kernels, stop the gateway, remove what it left (GatewayProcess.cleanup)
        and the temp dir. SIGINT/SIGTERM are ignored meanwhile, so a second Ctrl-C cannot
        cut cleanup short."""
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if self.proc and self.proc.poll() is None:
                for kernel_id in list(self.kernel_ids):
                    self.delete_kernel(kernel_id)
            self.process.stop()
            self.process.cleanup()
            shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# -- messages (built and parsed identically for every transport) -----------------------


def _dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def execute_parts(session_id: str, code: str) -> tuple[str, list[bytes]]:
    """An execute_request as its four serialized parts; returns (msg_id, parts)."""
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id, "msg_type": "execute_request", "session": session_id,
        "username": "bench", "version": "5.3",
        "date": datetime.now(timezone.utc).isoformat(),
    }
    content = {
        "code": code, "silent": False, "store_history": False, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": True,
    }
    return msg_id, [_dumps(header), b"{}", b"{}", _dumps(content)]


@dataclass(slots=True)
class Msg:
    channel: str
    msg_type: str
    parent_id: str | None
    content: dict | None  # decoded for status / execute_result only
    date: str | None = None  # the kernel's header date, kept for status only


_WANT_CONTENT = ("status", "execute_result")


def _msg(channel: str, header: bytes, parent: bytes, content: bytes) -> Msg:
    head = json.loads(header)
    msg_type = head["msg_type"]
    parent_id = json.loads(parent).get("msg_id")
    return Msg(channel, msg_type, parent_id,
               json.loads(content) if msg_type in _WANT_CONTENT else None,
               head.get("date") if msg_type == "status" else None)


class WsTransport:
    """The gateway's channels WebSocket (websocket-client, blocking)."""

    def __init__(self, url: str, protocol: str, headers: dict | None = None) -> None:
        self.name = f"gateway ws {protocol}"
        self.v1 = protocol == "v1"
        self.session_id = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            url,
            subprotocols=[V1] if self.v1 else None,
            header=headers or {},
            sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            skip_utf8_validation=True,  # pure-Python validation would dominate the client
            enable_multithread=False,
            timeout=TIMEOUT,
        )
        if self.v1 and self.ws.getsubprotocol() != V1:
            raise RuntimeError(f"server did not select {V1}")

    def execute(self, code: str) -> str:
        msg_id, parts = execute_parts(self.session_id, code)
        self.send_parts(parts)
        return msg_id

    def send_parts(self, parts: list[bytes]) -> None:
        """Send a shell message (its packed header, parent, metadata, content)."""
        if self.v1:
            channel = b"shell"
            offsets = [8 * (len(parts) + 3)]
            offsets.append(offsets[-1] + len(channel))
            for part in parts:
                offsets.append(offsets[-1] + len(part))
            table = b"".join(o.to_bytes(8, "little") for o in offsets)
            self.ws.send_bytes(len(offsets).to_bytes(8, "little") + table + channel + b"".join(parts))
        else:
            header, parent, metadata, content = parts
            self.ws.send_text(b"".join((
                b'{"header":', header, b',"parent_header":', parent, b',"metadata":', metadata,
                b',"content":', content, b',"channel":"shell"}',
            )).decode())

    def recv(self, deadline: float) -> Msg:
        self.ws.settimeout(max(0.001, deadline - perf()))
        data = self.ws.recv()
        if self.v1:
            count = int.from_bytes(data[:8], "little")
            off = [int.from_bytes(data[8 * (i + 1): 8 * (i + 2)], "little") for i in range(count)]
            return _msg(data[off[0]:off[1]].decode(), data[off[1]:off[2]],
                        data[off[2]:off[3]], data[off[4]:off[5]])
        msg = json.loads(data)
        msg_type = msg["header"]["msg_type"]
        return Msg(msg["channel"], msg_type, msg["parent_header"].get("msg_id"),
                   msg["content"] if msg_type in _WANT_CONTENT else None,
                   msg["header"].get("date") if msg_type == "status" else None)

    def close(self) -> None:
        self.ws.close()


def _endpoint(info: dict, channel: str) -> str:
    port = info[f"{channel}_port"]
    if info["transport"] == "ipc":
        return f"ipc://{info['ip']}-{port}"
    return f"{info['transport']}://{info['ip']}:{port}"


class ZmqTransport:
    """The kernel's own shell (DEALER) and iopub (SUB) sockets, from its connection file."""

    def __init__(self, connection_file: Path) -> None:
        self.name = "direct zmq"
        info = json.loads(connection_file.read_text())
        self.session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
        self.session_id = uuid.uuid4().hex
        self.context = zmq.Context()
        self.shell = self.context.socket(zmq.DEALER)
        self.iopub = self.context.socket(zmq.SUB)
        for sock, channel in ((self.shell, "shell"), (self.iopub, "iopub")):
            sock.linger = 0
            sock.connect(_endpoint(info, channel))
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)
        self.pending: list[Msg] = []

    def wait_subscribed(self) -> None:
        """Send kernel_info_requests until iopub delivers (SUB sockets join late)."""
        for _ in range(50):
            msg = self.session.msg("kernel_info_request", {})
            self.session.send(self.shell, msg)
            deadline = perf() + 0.5
            seen_iopub = False
            while perf() < deadline:
                if not self.poller.poll(max(1, int((deadline - perf()) * 1000))):
                    continue
                for m in self._read_ready():
                    if m.parent_id == msg["header"]["msg_id"] and m.channel == "iopub":
                        seen_iopub = True
                if seen_iopub:
                    self.pending.clear()
                    return
        raise RuntimeError("direct iopub subscription never delivered a message")

    def execute(self, code: str) -> str:
        msg_id, parts = execute_parts(self.session_id, code)
        self.shell.send_multipart([DELIM, self.session.sign(parts), *parts])
        return msg_id

    def _read_ready(self) -> list[Msg]:
        out = []
        for sock, channel in ((self.shell, "shell"), (self.iopub, "iopub")):
            while True:
                try:
                    raw = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                i = raw.index(DELIM)
                out.append(_msg(channel, raw[i + 2], raw[i + 3], raw[i + 5]))
        return out

    def recv(self, deadline: float) -> Msg:
        while not self.pending:
            remaining = deadline - perf()
            if remaining <= 0:
                raise TimeoutError("no message from the kernel")
            if self.poller.poll(max(1, int(remaining * 1000))):
                self.pending.extend(self._read_ready())
        return self.pending.pop(0)

    def close(self) -> None:
        self.context.destroy(linger=0)


# -- measurements ----------------------------------------------------------------------


def wait_for(transport, msg_id: str, until: str, deadline: float) -> float:
    """Read until `until` ('idle', 'reply' or 'result') for msg_id; its arrival time."""
    for _ in range(MAX_MESSAGES):
        m = transport.recv(deadline)
        if m.parent_id != msg_id:
            continue
        if until == "idle" and m.channel == "iopub" and m.msg_type == "status" \
                and m.content.get("execution_state") == "idle":
            return perf()
        if until == "result" and m.msg_type == "execute_result":
            return perf()
        if until == "reply" and m.channel == "shell" and m.msg_type == "execute_reply":
            return perf()
    raise RuntimeError(f"{transport.name}: no {until} within {MAX_MESSAGES} messages")


@dataclass(slots=True)
class Round:
    msg_id: str
    reply: float  # seconds from sending to the execute_reply
    idle: float  # seconds from sending to the status idle
    cpu: float  # client CPU seconds (all threads of this process)
    kernel: float | None  # kernel's own busy -> idle time, from its header dates


def _kernel_time(busy: str | None, idle: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(idle) - datetime.fromisoformat(busy)).total_seconds()
    except (TypeError, ValueError):
        return None


def round_trip(transport, code: str) -> Round:
    """One execute_request, timed until its execute_reply and until its status idle."""
    c0 = cpu()
    t0 = perf()
    msg_id = transport.execute(code)
    deadline = t0 + TIMEOUT
    t_reply = t_idle = None
    busy_date = idle_date = None
    for _ in range(MAX_MESSAGES):
        m = transport.recv(deadline)
        now = perf()
        if m.parent_id != msg_id:
            continue
        if m.channel == "shell" and m.msg_type == "execute_reply":
            t_reply = now
        elif m.channel == "iopub" and m.msg_type == "status":
            state = m.content.get("execution_state")
            if state == "busy":
                busy_date = m.date
            elif state == "idle":
                t_idle, idle_date = now, m.date
        if t_reply is not None and t_idle is not None:
            used = cpu() - c0
            return Round(msg_id, t_reply - t0, t_idle - t0, used, _kernel_time(busy_date, idle_date))
    raise RuntimeError(f"{transport.name}: no reply/idle within {MAX_MESSAGES} messages")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Series:
    reply: list[float] = field(default_factory=list)
    idle: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    kernel: list[float] = field(default_factory=list)
    gateway_cpu: float = 0.0  # seconds of gateway CPU (all threads) during the timed rounds
    gateway_rounds: int = 0

    @property
    def gateway_cpu_per_round(self) -> float | None:
        return self.gateway_cpu / self.gateway_rounds if self.gateway_rounds else None


def process_cpu(pid: int) -> float | None:
    """CPU seconds used so far by every thread of a process (ns precision, Linux)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just exited
    return total / 1e9


def _container(kernel_id: str) -> tuple[str | None, str]:
    """The full id of a Docker kernel's container (None if there is none) and its CPU
    settings as text."""
    import docker

    client = docker.from_env(timeout=30)
    try:
        found = client.containers.list(filters={"label": f"org.kernelgate.kernel={kernel_id}"})
        if not found:
            return None, ""
        host = found[0].attrs["HostConfig"]
        return found[0].id, (f"CFS quota {host['CpuQuota']} µs per {host['CpuPeriod']} µs, "
                             f"cpu.shares {host['CpuShares'] or 'default'}")
    finally:
        client.close()


def cpu_stat(container_id: str | None) -> dict[str, int] | None:
    """The CFS counters of a container's cgroup (cgroup v1 or v2), or None if unreadable:
    nr_periods, nr_throttled, throttled_usec (time spent throttled) and usage_usec (CPU
    time used by all its processes)."""
    if container_id is None:
        return None
    for path, unit in ((f"/sys/fs/cgroup/cpu/docker/{container_id}/cpu.stat", 1000),  # ns
                       (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat", 1)):
        try:
            with open(path) as f:
                values = dict(line.split() for line in f if line.strip())
        except OSError:
            continue
        throttled = values.get("throttled_usec") or str(int(values.get("throttled_time", 0)) // unit)
        usage = values.get("usage_usec")
        if usage is None:  # cgroup v1: the cpuacct controller's counter, in ns
            try:
                with open(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage") as f:
                    usage = str(int(f.read()) // 1000)
            except (OSError, ValueError):
                usage = "0"
        return {"nr_periods": int(values.get("nr_periods", 0)),
                "nr_throttled": int(values.get("nr_throttled", 0)),
                "throttled_usec": int(throttled), "usage_usec": int(usage)}
    return None


def measure_start(gateway: Gateway, starts: int) -> dict:
    """POST -> WebSocket -> execute 1+1 -> execute_result, `starts` times."""
    rows = []
    for i in range(starts):
        t0 = perf()
        kernel_id = gateway.start_kernel()
        t_post = perf()
        try:
            ws = WsTransport(gateway.ws_url(kernel_id), "legacy", gateway.headers)
            t_ws = perf()
            try:
                msg_id = ws.execute("1+1")
                t_result = wait_for(ws, msg_id, "result", t_ws + TIMEOUT)
            finally:
                ws.close()
        finally:
            gateway.delete_kernel(kernel_id)
        rows.append({"post": t_post - t0, "ws": t_ws - t_post, "execute": t_result - t_ws,
                     "total": t_result - t0})
        print(f"  start {i + 1}/{starts}: total {1000 * (t_result - t0):.0f} ms "
              f"(POST {1000 * (t_post - t0):.0f} ms)", flush=True)
    return {k: [r[k] for r in rows] for k in ("post", "ws", "execute", "total")}


def _children(pid: int) -> list[int]:
    """Every descendant process of pid (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo and len(found) < 10_000:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a process (threads it starts later inherit it)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass  # a thread that just exited


def pin(gateway: Gateway, kernel_id: str) -> str:
    """The gateway alone on the first CPU; the kernel and this benchmark on the others.

    On a small machine the gateway otherwise competes with the kernel for CPU while the
    kernel runs, slowing the kernel down in gateway rounds only. (Putting the gateway and
    the benchmark together on one CPU instead made Docker gateway rounds 2 ms slower on a
    2-CPU VM, so the benchmark goes with the kernel: it is idle while the kernel works, in
    both kinds of round alike.) Returns a description of what was pinned.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise RuntimeError("--pin needs at least 2 CPUs")
    gateway_cpus, other = {cpus[0]}, set(cpus[1:])
    if gateway.kernels == "docker":
        import docker

        client = docker.from_env(timeout=30)
        (container,) = client.containers.list(filters={"label": f"org.kernelgate.kernel={kernel_id}"})
        top = container.top()
        column = top["Titles"].index("PID")
        kernel_pids = [int(row[column]) for row in top["Processes"]]
    else:
        kernel_pids = _children(gateway.proc.pid)
    for pid in kernel_pids:
        _set_affinity(pid, other)
    _set_affinity(gateway.proc.pid, gateway_cpus)
    _set_affinity(os.getpid(), other)
    others = ",".join(map(str, sorted(other)))
    return (f"pinned: gateway alone on CPU {cpus[0]}; kernel ({len(kernel_pids)} processes) "
            f"and benchmark on CPU {others}")


def measure_round_trips(gateway: Gateway, rounds: int, warmup: int, block: int,
                        code: str, pinned: bool = False) -> tuple[dict[str, Series], str]:
    kernel_id = gateway.start_kernel()
    direct = ZmqTransport(gateway.connection_file(kernel_id))
    results = {name: Series() for name in ("legacy", "v1", "direct")}
    note = ""
    container_id, limits = _container(kernel_id) if gateway.kernels == "docker" else (None, "")
    own_affinity = os.sched_getaffinity(0)
    try:
        direct.wait_subscribed()
        if pinned:
            note = pin(gateway, kernel_id)
            print(f"  {note}", flush=True)

        def one(name: str, transport, record: bool) -> None:
            r = round_trip(transport, code)
            if transport is not direct:  # the direct SUB saw this round's iopub: drain it
                wait_for(direct, r.msg_id, "idle", perf() + TIMEOUT)
            if record:
                s = results[name]
                s.reply.append(r.reply)
                s.idle.append(r.idle)
                s.cpu.append(r.cpu)
                if r.kernel is not None:
                    s.kernel.append(r.kernel)

        def open_ws(protocol: str) -> WsTransport:
            ws = WsTransport(gateway.ws_url(kernel_id), protocol, gateway.headers)
            for _ in range(3):  # untimed: the first messages on a new connection
                one(protocol, ws, record=False)
            return ws

        # warm-up: every transport, untimed
        for protocol in ("legacy", "v1"):
            ws = open_ws(protocol)
            try:
                for _ in range(warmup):
                    one(protocol, ws, record=False)
            finally:
                ws.close()
        for _ in range(warmup):
            one("direct", direct, record=False)

        def timed_block(name: str, transport, n: int) -> None:
            g0 = process_cpu(gateway.proc.pid)
            for _ in range(n):
                one(name, transport, record=True)
            g1 = process_cpu(gateway.proc.pid)
            if g0 is not None and g1 is not None:
                results[name].gateway_cpu += g1 - g0
                results[name].gateway_rounds += n

        order = ["direct", "legacy", "v1"]
        done = 0
        cycle = 0
        stat0, t0 = cpu_stat(container_id), perf()
        while done < rounds:  # bounded: ceil(rounds / block) cycles
            n = min(block, rounds - done)
            for name in order[cycle % 3:] + order[: cycle % 3]:
                if name == "direct":
                    timed_block(name, direct, n)
                else:
                    ws = open_ws(name)
                    try:
                        timed_block(name, ws, n)
                    finally:
                        ws.close()
            done += n
            cycle += 1
        stat1, t1 = cpu_stat(container_id), perf()
        if stat0 is not None and stat1 is not None:
            d = {k: stat1[k] - stat0[k] for k in stat0}
            throttling = (f"kernel cgroup ({limits}) during the timed rounds ({t1 - t0:.1f} s): "
                          f"{d['nr_throttled']} of {d['nr_periods']} CFS periods throttled, "
                          f"{d['throttled_usec'] / 1000:.0f} ms throttled in all, "
                          f"{d['usage_usec'] / 1e6 / (t1 - t0):.2f} CPUs used on average")
            note = f"{note}; {throttling}" if note else throttling
    finally:
        direct.close()
        gateway.delete_kernel(kernel_id)
        if pinned:
            _set_affinity(os.getpid(), own_affinity)
    return results, note


# -- report ----------------------------------------------------------------------------


def ms(x: float) -> str:
    return f"{1000 * x:.2f}"


def report(mode: str, start: dict | None, rt: dict[str, Series] | None, rounds: int) -> list[str]:
    lines = [f"### {mode} kernels", ""]
    if start:
        n = len(start["total"])
        lines += [
            f"Start (POST /api/kernels -> WebSocket -> `1+1` execute_result), {n} runs, ms:",
            "",
            "| step | p50 | max |",
            "|---|---:|---:|",
        ]
        for key, label in (("post", "POST /api/kernels (201)"), ("ws", "WebSocket open"),
                           ("execute", "execute -> execute_result"), ("total", "**total**")):
            lines.append(f"| {label} | {1000 * percentile(start[key], 50):.0f} "
                         f"| {1000 * max(start[key]):.0f} |")
        lines.append("")
    if rt:
        d = rt["direct"]
        lines += [
            f"Execute round trip, {rounds} rounds per transport, ms "
            "(reply = execute_reply received, idle = iopub status idle received):",
            "",
            "| transport | reply p50 | reply p99 | idle p50 | idle p99 | Δ reply p50 vs direct "
            "| Δ idle p50 vs direct | kernel busy→idle p50 | client CPU p50 "
            "| gateway CPU per round |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, label in (("direct", "direct ZeroMQ (jupyter_client Session)"),
                            ("legacy", "gateway WebSocket, legacy JSON"),
                            ("v1", f"gateway WebSocket, {V1}")):
            s = rt[name]
            if name == "direct":
                dr = di = "—"
            else:
                dr = f"{1000 * (percentile(s.reply, 50) - percentile(d.reply, 50)):+.2f}"
                di = f"{1000 * (percentile(s.idle, 50) - percentile(d.idle, 50)):+.2f}"
            g = s.gateway_cpu_per_round
            lines.append(
                f"| {label} | {ms(percentile(s.reply, 50))} | {ms(percentile(s.reply, 99))} "
                f"| {ms(percentile(s.idle, 50))} | {ms(percentile(s.idle, 99))} | {dr} | {di} "
                f"| {ms(percentile(s.kernel, 50)) if s.kernel else 'n/a'} "
                f"| {ms(percentile(s.cpu, 50))} | {'n/a' if g is None else ms(g)} |"
            )
        lines.append("")
    return lines


def machine() -> list[str]:
    """What the numbers were measured on."""
    def first(path: str, key: str) -> str:
        try:
            for line in open(path):
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    try:
        docker_version = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=20,
        ).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        docker_version = "?"
    mem_kb = first("/proc/meminfo", "MemTotal").split()[0]
    return [
        f"- CPU: {first('/proc/cpuinfo', 'model name')}, {os.cpu_count()} CPUs (nproc)",
        f"- memory: {int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb.isdigit() else "- memory: ?",
        f"- kernel: {platform.release()}; Docker {docker_version}",
        f"- Python {platform.python_version()}, pyzmq {zmq.__version__} (libzmq "
        f"{zmq.zmq_version()}), websocket-client {websocket.__version__}",
    ]


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def docker_problem(source: Path) -> str | None:
    """Why Docker kernels cannot run (no engine, python image of `source` not built)."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        found = subprocess.run(
            [sys.executable, "-c", "from kernelgate.images import ImageBuilder; "
             "print(ImageBuilder().reference('python'))"],
            cwd=source, capture_output=True, text=True, timeout=120,  # imports the source's kernelgate
        )
        if found.returncode:
            return f"cannot compute the python image reference: {found.stderr.strip()[-300:]}"
        client.images.get(found.stdout.strip())
    except Exception as e:  # noqa: BLE001 - any failure means "cannot run docker kernels"
        return f"{type(e).__name__}: {e}"
    return None


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default="docker,local",
                        help="comma-separated kernel modes to run (docker, local)")
    parser.add_argument("--rounds", type=int, default=500, help="timed round trips per transport")
    parser.add_argument("--warmup", type=int, default=50, help="untimed round trips per transport first")
    parser.add_argument("--block", type=int, default=25,
                        help="consecutive rounds of one transport before switching")
    parser.add_argument("--starts", type=int, default=5, help="kernel start repetitions")
    parser.add_argument("--code", default="pass", help="code of the round-trip execute_request")
    parser.add_argument("--json", metavar="PATH", help="also write raw samples (seconds) here")
    parser.add_argument("--gateway-arg", action="append", default=[],
                        help="extra argument for `kernelgate serve` (repeatable), e.g. "
                        "--gateway-arg=--jwt-secret=S")
    parser.add_argument("--kernel-cpus", type=float,
                        help="CPU limit of every tier for this run (Docker kernels; default: "
                        "the project's tiers, python3 runs in 'low' = 0.5 CPU)")
    parser.add_argument("--kernel-burst-cpus", type=float,
                        help="every tier's burst_cpus for this run: the CPU limit, with the "
                        "tier's cpus as the kernel's share (kernelgate/tiers.py)")
    parser.add_argument("--pin", action="store_true",
                        help="for the round trips, give the gateway the first CPU to itself and "
                        "put the kernel and the benchmark on the others (separates the "
                        "gateway's cost from CPU contention with the kernel)")
    parser.add_argument("--source", type=Path, default=ROOT,
                        help="kernelgate source tree to run (default: this checkout), e.g. a "
                        "`git archive` of a commit, to compare versions or to measure a fixed "
                        "commit while the checkout changes")
    parser.add_argument("--token", help="bearer token for a gateway that authenticates "
                        "(a --gateway-arg=--jwt-secret=S; without one it runs with --no-auth)")
    args = parser.parse_args(argv)
    if not (1 <= args.rounds <= 1_000_000 and 1 <= args.block and 0 <= args.starts <= 1000):
        parser.error("rounds, block and starts must be positive")
    modes = [m.strip() for m in args.kernels.split(",") if m.strip()]
    for m in modes:
        if m not in ("docker", "local"):
            parser.error(f"unknown kernel mode {m!r}")

    signal.signal(signal.SIGTERM, _terminate)
    source = args.source.resolve()
    if not (source / "kernelgate" / "__init__.py").is_file():
        parser.error(f"{source} holds no kernelgate package")
    out: list[str] = machine() + [f"- kernelgate: {describe_source(source)}"]
    out += ["", f"rounds {args.rounds} per transport (+{args.warmup} warm-up), block {args.block}, "
            f"code {args.code!r}, {args.starts} starts"
            + (f", kernel CPU limit {args.kernel_cpus}" if args.kernel_cpus is not None else "")
            + (f", kernel CPU burst {args.kernel_burst_cpus}" if args.kernel_burst_cpus is not None else "")
            + (", pinned" if args.pin else ""), ""]
    raw: dict = {}
    failed = False
    for mode in modes:
        if mode == "docker":
            problem = docker_problem(source)
            if problem:
                print(f"\n[docker] skipped: {problem}", flush=True)
                out += ["### docker kernels", "", f"skipped: {problem}", ""]
                failed = True
                continue
        print(f"\n[{mode}] starting gateway", flush=True)
        tier_changes = {k: v for k, v in (("cpus", args.kernel_cpus), ("burst_cpus", args.kernel_burst_cpus))
                        if v is not None}
        gateway = Gateway(mode, args.gateway_arg, args.token, tier_changes, source)
        start = rt = None
        note = ""
        load_before = loadavg()
        try:
            gateway.start()
            print(f"[{mode}] gateway on {gateway.url}, runtime dir {gateway.runtime_dir}", flush=True)
            if args.starts:
                start = measure_start(gateway, args.starts)
            print(f"[{mode}] round trips: {args.warmup} warm-up + {args.rounds} timed per transport",
                  flush=True)
            rt, note = measure_round_trips(gateway, args.rounds, args.warmup, args.block,
                                           args.code, args.pin)
        except KeyboardInterrupt:
            print(f"[{mode}] interrupted; cleaning up", file=sys.stderr)
            raise
        except Exception as e:  # noqa: BLE001 - report, clean up, go on with the next mode
            print(f"[{mode}] failed: {type(e).__name__}: {e}\n--- gateway log ---\n{gateway.log()}",
                  file=sys.stderr)
            failed = True
        finally:
            gateway.stop()
        out += report(mode, start, rt, args.rounds)
        if note:
            out += [f"Round trips {note}.", ""]
        out += [f"load average (1, 5, 15 min) before: {load_before}, after: {loadavg()}", ""]
        raw[mode] = {
            "start": start,
            "round_trip": {k: {**vars(v), "gateway_cpu_per_round": v.gateway_cpu_per_round}
                           for k, v in rt.items()} if rt else None,
        }
    print("\n" + "\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps(raw))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
