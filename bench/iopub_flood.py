#!/usr/bin/env python
"""A cell printing 100,000 lines: the gateway's forwarding rate against jupyter_client
reading the same kernel directly, and another user's round trips meanwhile.

Usage: python -m bench.iopub_flood [--lines 100000] [--repeats 5] [--flush]
           [--protocol legacy|v1] [--kernel-cpus N] [--source DIR] [--json FILE]

Starts its own `kernelgate serve --kernels=docker --no-auth` (bench/docker_gateway.py)
with two python3 kernels, A and B, and no output cap (`max_output = 0`):

- a second user, in a process of its own, runs `pass` round trips on kernel B through
  the gateway's WebSocket (the synchronous client of gateway_latency.py, legacy
  protocol), one every `--gap` seconds, for the whole run;
- `--repeats` times: `--idle` seconds with nothing else running, then kernel A runs
  `for i in range(LINES): print(i)` once read through the gateway's WebSocket and once
  read by jupyter_client's BlockingKernelClient straight from A's ZeroMQ sockets (its
  connection file in the gateway's runtime dir), in alternating order.

It prints lines/s per path (lines received / seconds from sending the request to the
iopub idle), the gateway's CPU seconds per flood, and the second user's execute_reply
round trip p50/p99 while idle, during the direct floods and during the gateway floods,
with the ratio to idle. `--flush` prints with flush=True: one iopub message per line,
the hub's worst case (plain print lets ipykernel batch lines into few messages).
The gateway stays subscribed to A's iopub during the direct floods (it is its kernel);
nobody is connected to A through the gateway then.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import requests
from jupyter_client import BlockingKernelClient

from bench.docker_gateway import ROOT, docker_gateway
from bench.gateway_latency import WsTransport, execute_parts, percentile, process_cpu, round_trip

now = time.monotonic  # one clock for both processes (CLOCK_MONOTONIC)


def second_user(ws_url: str, gap: float, stop, results) -> None:
    """Round trips on another kernel until `stop` is set; sends [(start, reply seconds)]."""
    ws = WsTransport(ws_url, "legacy")
    samples = []
    try:
        for _ in range(20):
            round_trip(ws, "pass")
        results.put("ready")
        while not stop.is_set():
            t = now()
            samples.append((t, round_trip(ws, "pass").reply))
            time.sleep(gap)
    finally:
        ws.close()
        results.put(samples)


def flood_code(lines: int, flush: bool) -> str:
    return f"for i in range({lines}): print(i{', flush=True' if flush else ''})"


def gateway_flood(ws_url: str, protocol: str, code: str) -> tuple[int, int, float]:
    """(lines, messages, seconds) for `code` read through the gateway's WebSocket."""
    ws = WsTransport(ws_url, protocol)
    try:
        round_trip(ws, "pass")  # connected and warm
        msg_id, parts = execute_parts(ws.session_id, code)
        t0 = time.perf_counter()
        ws.send_parts(parts)
        lines = messages = 0
        deadline = t0 + 600
        while True:
            ws.ws.settimeout(max(0.001, deadline - time.perf_counter()))
            header, parent, content = _recv(ws)
            if parent.get("msg_id") != msg_id:
                continue
            kind = header["msg_type"]
            messages += 1
            if kind == "stream":
                lines += content["text"].count("\n")
            elif kind == "status" and content["execution_state"] == "idle":
                return lines, messages, time.perf_counter() - t0
    finally:
        ws.close()


def _recv(ws: WsTransport) -> tuple[dict, dict, dict]:
    """(header, parent_header, content) of the next message, each decoded once."""
    data = ws.ws.recv()
    if ws.v1:
        count = int.from_bytes(data[:8], "little")
        off = [int.from_bytes(data[8 * (i + 1): 8 * (i + 2)], "little") for i in range(count)]
        return tuple(json.loads(data[off[i]:off[i + 1]]) for i in (1, 2, 4))
    msg = json.loads(data)
    return msg["header"], msg["parent_header"], msg["content"]


def direct_flood(connection_file: Path, code: str) -> tuple[int, int, float]:
    """(lines, messages, seconds) for `code` read by jupyter_client from the kernel."""
    client = BlockingKernelClient(connection_file=str(connection_file))
    client.load_connection_file()
    client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
    try:
        for _ in range(50):  # a SUB socket joins late: wait until iopub delivers
            msg_id = client.kernel_info()
            try:
                while client.get_iopub_msg(timeout=0.5)["parent_header"].get("msg_id") != msg_id:
                    pass
                break
            except Exception:  # queue.Empty: not subscribed yet
                continue
        while True:  # drain the rest of kernel_info's iopub
            try:
                client.get_iopub_msg(timeout=0.2)
            except Exception:
                break
        t0 = time.perf_counter()
        msg_id = client.execute(code, store_history=False)
        lines = messages = 0
        while True:
            msg = client.get_iopub_msg(timeout=600)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            messages += 1
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                lines += msg["content"]["text"].count("\n")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return lines, messages, time.perf_counter() - t0
    finally:
        client.stop_channels()


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(args) -> int:
    tiers = ("from kernelgate.tiers import DEFAULT_TIERS\n"
             "c.Tiers.tiers = {n: {**t, 'exec_timeout': 600"
             + (f", 'cpus': {args.kernel_cpus!r}" if args.kernel_cpus else "")
             + "} for n, t in DEFAULT_TIERS.items()}\n")
    config = "c.KernelRegistry.max_output = 0\n" + tiers
    code = flood_code(args.lines, args.flush)
    out = [f"# iopub flood: `{code}`, {args.repeats} repeats, flood protocol {args.protocol}, "
           f"source {args.source}, kernel CPUs {args.kernel_cpus or 'tier default'}",
           f"load average at start: {loadavg()}"]
    print(out[-1], flush=True)
    with docker_gateway("flood", config, args.source) as gateway:
        http = requests.Session()
        kernels = []
        for _ in range(2):
            response = http.post(f"{gateway.url}/api/kernels", json={"name": "python3"}, timeout=300)
            response.raise_for_status()
            kernels.append(response.json()["id"])
        flooder, other = kernels
        ws_url = lambda k: gateway.url.replace("http", "ws", 1) + f"/api/kernels/{k}/channels"  # noqa: E731
        context = multiprocessing.get_context("spawn")
        stop, results = context.Event(), context.Queue()
        user = context.Process(target=second_user, args=(ws_url(other), args.gap, stop, results))
        user.start()
        try:
            if results.get(timeout=120) != "ready":
                raise RuntimeError("the second user did not start")
            windows: dict[str, list[tuple[float, float]]] = {"idle": [], "direct": [], "gateway": []}
            floods: dict[str, list[dict]] = {"direct": [], "gateway": []}
            for r in range(args.repeats):
                t = now()
                time.sleep(args.idle)
                windows["idle"].append((t, now()))
                for path in (("gateway", "direct") if r % 2 == 0 else ("direct", "gateway")):
                    cpu0 = process_cpu(gateway.pid)
                    t = now()
                    if path == "gateway":
                        lines, messages, seconds = gateway_flood(ws_url(flooder), args.protocol, code)
                    else:
                        lines, messages, seconds = direct_flood(gateway.connection_file(flooder), code)
                    windows[path].append((t, now()))
                    floods[path].append({"lines": lines, "messages": messages, "seconds": seconds,
                                         "gateway_cpu": process_cpu(gateway.pid) - cpu0})
                    print(f"  {path:7}: {lines} lines in {messages} messages, {seconds:.2f} s, "
                          f"{lines / seconds:,.0f} lines/s, gateway CPU {floods[path][-1]['gateway_cpu']:.2f} s",
                          flush=True)
                    time.sleep(1)
            stop.set()
            samples = results.get(timeout=120)
        finally:
            stop.set()
            user.join(60)
            for k in kernels:
                http.delete(f"{gateway.url}/api/kernels/{k}", timeout=300)
    out.append(f"load average at end: {loadavg()}")
    out += ["", "| flood read by | lines/s p50 | min | max | seconds p50 | messages p50 | gateway CPU s p50 |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for path, label in (("direct", "jupyter_client, direct ZeroMQ"), ("gateway", f"gateway WebSocket ({args.protocol})")):
        rates = [f["lines"] / f["seconds"] for f in floods[path]]
        short = [f["lines"] for f in floods[path] if f["lines"] != args.lines]
        out.append(f"| {label}{' (lines missing: ' + str(short) + ')' if short else ''} | "
                   f"{statistics.median(rates):,.0f} | {min(rates):,.0f} | {max(rates):,.0f} | "
                   f"{statistics.median(f['seconds'] for f in floods[path]):.2f} | "
                   f"{statistics.median(f['messages'] for f in floods[path]):.0f} | "
                   f"{statistics.median(f['gateway_cpu'] for f in floods[path]):.2f} |")
    ratio = statistics.median(f["lines"] / f["seconds"] for f in floods["gateway"]) / \
        statistics.median(f["lines"] / f["seconds"] for f in floods["direct"])
    out += ["", f"gateway / direct lines/s: {ratio:.2f}", "",
            "| second user's round trip (kernel B) | rounds | p50 ms | p99 ms | p50 / idle | p99 / idle |",
            "|---|---:|---:|---:|---:|---:|"]
    phase_samples = {}
    for phase, spans in windows.items():
        phase_samples[phase] = [rtt * 1000 for t, rtt in samples if any(a <= t < b for a, b in spans)]
    idle = phase_samples["idle"]
    for phase, label in (("idle", "idle"), ("direct", "during the direct floods"),
                         ("gateway", "during the gateway floods")):
        s = phase_samples[phase]
        if not s:
            out.append(f"| {label} | 0 | | | | |")
            continue
        ratios = (f"{percentile(s, 50) / percentile(idle, 50):.2f}× | "
                  f"{percentile(s, 99) / percentile(idle, 99):.2f}×") if idle else "| "
        out.append(f"| {label} | {len(s)} | {percentile(s, 50):.2f} | {percentile(s, 99):.2f} | {ratios} |")
    print("\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps({"floods": floods, "samples": samples, "windows": windows}))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle sampling per repeat")
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between the second user's rounds")
    parser.add_argument("--flush", action="store_true", help="print(i, flush=True): one message per line")
    parser.add_argument("--protocol", choices=("legacy", "v1"), default="legacy")
    parser.add_argument("--kernel-cpus", type=float, help="every tier's CPU limit (default: the tiers')")
    parser.add_argument("--source", type=Path, default=ROOT, help="the kernelgate code to run")
    parser.add_argument("--json", help="write the raw samples here")
    raise SystemExit(main(parser.parse_args()))
