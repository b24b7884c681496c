"""Load with real clients: users with solo kernels and shared rooms execute code and check
every output, write and read files, and type in terminals, for a while; then what was
lost, wrong or leaked, the latencies, and how the gateway grew (issue 20).

    python -m bench.load --users 20 --room-size 4 --seconds 120
    python -m bench.load --users 200 --seconds 600 --json /tmp/load.json

Run from the checkout's root. It starts its own `kernelgate serve --kernels=docker` with
JWT authentication (one token per user, one plan without quotas), on 127.0.0.1. Users
are grouped `--room-size` to a room (python3 and bash, the first user owns it, the others
are participants), the rest (`--solo` of them) each with a solo python3 kernel. Every
user opens a terminal in their kernel's sandbox and loops: mostly executions of
`print(a * b)` with random numbers (the output must be their product), some file round
trips, some terminal commands (`echo $((a * b))`), with `--think` seconds between steps.

An execution with no reply within `--timeout` is lost; one with another output is wrong.
At the end every kernel, room and terminal is deleted, and what the gateway left is
counted: containers with its label, socket folders in its runtime folder, its own open
file descriptors (reported; the Docker SDK's connection pool grows with concurrency,
so they are not counted as leaked). Exit status 1 if anything was lost,
wrong, failed or leaked (so a short run can be a test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import docker
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from kernelgate.engine import GATEWAY_LABEL
from kernelgate.jwt_auth import mint
from tests.client import GatewayClient
from tests.harness import GatewayProcess

SECRET = "load-bench-secret-" + "x" * 32
CONFIG = """
c.Plans.plans = {"load": {"kernel_tiers": ["low", "medium", "high"], "max_kernels": 0,
                          "max_rooms": 0, "max_members": 0}}
c.Plans.order = ["load"]
"""


@dataclass
class Results:
    executions: int = 0
    lost: int = 0
    wrong: int = 0
    files: int = 0
    terminal_commands: int = 0
    errors: Counter = field(default_factory=Counter)
    start_retries: Counter = field(default_factory=Counter)  # status -> starts refused, then retried
    latency: dict[str, list[float]] = field(default_factory=lambda: {"execute": [], "file": [], "terminal": []})

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


class Terminal:
    """A terminal WebSocket: type a line, wait for a pattern in what comes out."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.seen = ""

    @classmethod
    async def open(cls, client: GatewayClient, name: str) -> "Terminal":
        url = client.url.replace("http", "ws", 1) + f"/terminals/websocket/{name}"
        return cls(await websocket_connect(HTTPRequest(url, headers=client.headers)))

    async def run(self, line: str, pattern: re.Pattern, timeout: float) -> None:
        self.seen = ""
        await self.conn.write_message(json.dumps(["stdin", line + "\r"]))
        deadline = time.monotonic() + timeout
        while not pattern.search(self.seen):
            message = await asyncio.wait_for(self.conn.read_message(), max(0.1, deadline - time.monotonic()))
            if message is None:
                raise ConnectionError("terminal closed")
            kind, *rest = json.loads(message)
            if kind == "stdout":
                self.seen = (self.seen + rest[0])[-4096:]


@dataclass
class User:
    name: str
    client: GatewayClient
    kernel: str = ""
    room: str = ""  # the room id, if in one
    terminal_name: str = ""

    def contents(self, path: str) -> str:
        owner = f"/api/rooms/{self.room}" if self.room else f"/api/kernels/{self.kernel}"
        return f"{owner}/contents/{path}"


async def setup(users: list[User], room_size: int, results: Results) -> None:
    """Rooms for the first groups of `room_size`, solo kernels for the rest."""
    grouped = len(users) - len(users) % room_size if room_size > 1 else 0
    for start in range(0, grouped, room_size):
        owner, *members = users[start:start + room_size]
        made = await owner.client.request("POST", "/api/rooms", {"name": f"load-{owner.name}",
                                                                 "languages": ["python3", "bash"]})
        assert made.status == 201, made.body
        for member in members:
            added = await owner.client.request("PUT", f"/api/rooms/{made.body['id']}/members/{member.name}",
                                               {"role": "participant"})
            assert added.status in (200, 201), added.body
        kernel = next(k["id"] for k in made.body["kernels"] if k["name"] == "python3")
        for user in (owner, *members):
            user.room, user.kernel = made.body["id"], kernel

    async def solo(user: User) -> None:
        while True:  # as a real client: a start refused by admission control is retried
            started = await user.client.request("POST", "/api/kernels", {"name": "python3"}, timeout=300)
            if started.status not in (429, 503) or "Retry-After" not in started.headers:
                break
            results.start_retries[started.status] += 1
            await asyncio.sleep(int(started.headers["Retry-After"]))
        assert started.status == 201, started.body
        user.kernel = started.body["id"]

    await asyncio.gather(*(solo(u) for u in users[grouped:]))
    for user in users:
        opened = await user.client.request("POST", "/api/terminals", {"kernel": user.kernel})
        assert opened.status == 201, opened.body
        user.terminal_name = opened.body["name"]


async def work(user: User, deadline: float, think: float, timeout: float, results: Results) -> None:
    rng = random.Random(user.name)
    ws = await user.client.connect(user.kernel)
    terminal = await Terminal.open(user.client, user.terminal_name)
    try:
        while time.monotonic() < deadline:
            step = rng.random()
            a, b = rng.randrange(10**6), rng.randrange(10**6)
            started = time.monotonic()
            try:
                if step < 0.8:
                    results.executions += 1
                    run = await ws.execute(f"print({a} * {b})", timeout=timeout)
                    if run.status != "ok":
                        results.error(f"execute {run.reply['content'].get('ename')}")
                    elif run.stdout != f"{a * b}\n":
                        results.wrong += 1
                    else:
                        results.latency["execute"].append(time.monotonic() - started)
                elif step < 0.9:
                    results.files += 1
                    path, text = f"load-{user.name}.txt", f"{a} {b}\n"
                    put = await user.client.request("PUT", user.contents(path),
                                                    {"type": "file", "format": "text", "content": text})
                    got = await user.client.request("GET", user.contents(path) + "?content=1")
                    if put.status not in (200, 201) or got.status != 200:
                        results.error(f"file HTTP {put.status}/{got.status}")
                    elif got.body["content"] != text:
                        results.wrong += 1
                    else:
                        results.latency["file"].append(time.monotonic() - started)
                else:
                    results.terminal_commands += 1
                    await terminal.run(f"echo $(({a} * {b}))", re.compile(rf"[\r\n]{a * b}\r?\n"), timeout)
                    results.latency["terminal"].append(time.monotonic() - started)
            except asyncio.TimeoutError:
                if step < 0.8:
                    results.lost += 1
                results.error("timeout" if step < 0.8 else "terminal or file timeout")
                ws.close()  # its reply may still come: a fresh socket does not mistake it
                ws = await user.client.connect(user.kernel)
            except (ConnectionError, OSError) as e:
                results.error(f"{type(e).__name__}: {e}"[:120])
                ws = await user.client.connect(user.kernel)
                terminal = await Terminal.open(user.client, user.terminal_name)
            await asyncio.sleep(think * rng.uniform(0.5, 1.5))
    finally:
        ws.close()
        terminal.conn.close()


async def teardown(users: list[User]) -> None:
    for user in users:
        await user.client.request("DELETE", f"/api/terminals/{user.terminal_name}")
    for user in users:
        if user.room and user.kernel:  # the owner deletes the room, once
            rooms = (await user.client.request("GET", "/api/rooms")).body
            if any(r["id"] == user.room and r["owner"] == user.name for r in rooms):
                await user.client.request("DELETE", f"/api/rooms/{user.room}")
        elif user.kernel:
            await user.client.request("DELETE", f"/api/kernels/{user.kernel}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def load(args, gateway: GatewayProcess) -> dict:
    users = [User(f"u{i}", GatewayClient(gateway.url, mint(SECRET, f"u{i}", tier="load")))
             for i in range(args.users)]
    results = Results()
    fds_before = open_fds(gateway.pid)
    began = time.monotonic()
    await setup(users, args.room_size, results)
    setup_seconds = time.monotonic() - began
    rss_before = rss_mb(gateway.pid)
    deadline = time.monotonic() + args.seconds
    await asyncio.gather(*(work(u, deadline, args.think, args.timeout, results) for u in users))
    rss_after = rss_mb(gateway.pid)
    await teardown(users)
    await asyncio.sleep(2)  # deletions end their containers
    engine = docker.from_env(timeout=30)
    containers = engine.containers.list(all=True, filters={"label": f"{GATEWAY_LABEL}={gateway.gateway_id}"})
    socket_dirs = [p.name for p in gateway.runtime_dir.iterdir() if p.is_dir()]
    return {
        "users": args.users, "room_size": args.room_size, "seconds": args.seconds,
        "setup_seconds": round(setup_seconds, 1),
        "executions": results.executions, "lost": results.lost, "wrong": results.wrong,
        "files": results.files, "terminal_commands": results.terminal_commands,
        "errors": dict(results.errors),
        "start_retries": dict(results.start_retries),  # admission control's 429/503: not errors
        "latency_ms": {kind: {"p50": round(statistics.median(s) * 1000, 1) if s else None,
                              "p99": round(percentile(s, 99) * 1000, 1) if s else None, "n": len(s)}
                       for kind, s in results.latency.items()},
        "leaked": {"containers": len(containers), "socket_dirs": len(socket_dirs)},
        # not counted as leaked: the Docker SDK's connection pool grows with concurrency
        "gateway_fds": {"before": fds_before, "after": open_fds(gateway.pid)},
        "gateway_rss_mb": {"before": round(rss_before, 1), "after": round(rss_after, 1),
                           "growth": round(rss_after - rss_before, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--room-size", type=int, default=4, help="users per room (1: all solo)")
    parser.add_argument("--seconds", type=float, default=60, help="how long the users work")
    parser.add_argument("--think", type=float, default=0.5, help="mean seconds between a user's steps")
    parser.add_argument("--timeout", type=float, default=30, help="seconds before an execution is lost")
    parser.add_argument("--json", metavar="PATH", help="also write the report here")
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra `kernelgate serve` option")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="kgload-", dir="/tmp"))
    (tmp / "config.py").write_text(CONFIG)
    gateway = GatewayProcess(tmp, "--kernels=docker", f"--jwt-secret={SECRET}", f"--config={tmp / 'config.py'}",
                             *args.gateway_arg)
    gateway.start(timeout=60)
    try:
        report = asyncio.run(load(args, gateway))
    finally:
        gateway.stop()
        gateway.cleanup()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    leaked = sum(report["leaked"].values())
    bad = report["lost"] or report["wrong"] or leaked or report["errors"]
    if bad:
        print(f"FAILED: {report['lost']} lost, {report['wrong']} wrong, errors {report['errors']}, "
              f"leaked {report['leaked']}\n"
              f"gateway log: {gateway.log_path}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
