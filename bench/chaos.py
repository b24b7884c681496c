"""Chaos: users at work (as in bench/load.py) while faults are injected at random, one at
a time; then what was lost and how long each recovery took (issue 20).

    python -m bench.chaos --users 8 --room-size 4 --seconds 120 --fault-every 15
    python -m bench.chaos --users 40 --seconds 600 --json /tmp/chaos.json
    python -m bench.chaos --users 8 --seconds 120 --private-dockerd --postgres

Run from the checkout's root, as root (the final check unmounts workspace volumes). It
starts a moto S3 server (tests/s3.py) and its own `kernelgate serve --kernels=docker`
with JWT authentication; users are grouped `--room-size` to a room (python3, storage on
S3), the others have a solo python3 kernel. Every user loops: executions of
`print(a * b)` (the output must be the product), now and then a terminal opened in the
kernel's sandbox running `echo $((a * b))` (then deleted) and, in rooms, file writes
through the Contents API, each acknowledged write remembered; now and then a remembered
file is read back. Users reconnect after any error, follow the gateway to its new address after a
restart, and start a new solo kernel when theirs is gone (solo kernels do not outlive
a gateway restart, by design; their memory is not saved data).

Faults, one every `--fault-every` seconds on average, each kind once per round in a
random order (each waits for the previous one's recovery):
- kill_kernel: a random user's kernel container is killed (docker kill). Recovered when
  that kernel answers an execution again (the gateway revives it in a new container).
- restart_gateway: SIGKILL, then a new gateway on the same folders. Recovered when it is
  ready and every room kernel answers; `room_memory_kept` counts the room kernels whose
  variables survived (re-adopted, not restarted).
- s3_outage: the S3 server stops for `--outage` seconds. Recovered when every room's
  storage is `ok` again after it is back (moto restarts empty: the gateway must upload
  every workspace again).
- restart_dockerd, only with `--private-dockerd` (the gateway's kernels then run on a
  second dockerd of this host, tests/dockerd.py, in its own network namespace, the
  python image copied into it) or `--restart-dockerd CMD` (a command that restarts the
  machine's own dockerd, e.g. "systemctl restart docker": only where nothing else runs
  on it). Never by default. The private dockerd is stopped (SIGTERM: every container
  stops with it) for `--outage` seconds and started again. Recovered when every user's
  kernel answers an execution (revived under its id in a new container).
- postgres_outage, only with `--postgres` (the gateway's store on a PostgreSQL server of
  its own, tests/postgres.py, instead of SQLite): the server stops (fast shutdown, data
  kept) for `--outage` seconds and starts again on the same port. Meanwhile running
  kernels, files and terminals go on; what needs the store answers 503. Recovered when a
  room can be renamed again (with no rooms: made and deleted).

A failed operation counts in `failed_in_fault` if it began between a fault's injection and
its recovery (plus `--grace` seconds), else in `failed_outside_fault` (must be 0). At the end
the gateway is stopped, every room's working copy and volume are removed (a new host),
a gateway is started again and every acknowledged file is read back from S3: a missing
or different one is `files_lost` (must be 0). Then everything is deleted and what the
gateway left is counted. Exit status 1 if a saved file was lost, an operation failed
outside a fault, a fault did not recover, or something leaked.
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
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketError

from bench.load import CONFIG, SECRET, Terminal, percentile
from kernelgate.engine import GATEWAY_LABEL, KERNEL_LABEL
from kernelgate.images import ImageBuilder
from kernelgate.jwt_auth import mint
from tests.client import GatewayClient
from tests.dockerd import PrivateDockerd
from tests.harness import GatewayProcess, lose_working_copy
from tests.postgres import PostgresServer, postgres_bindir
from tests.s3 import S3Server

FAULTS = ["kill_kernel", "restart_gateway", "s3_outage"]
#: Longest a fault may take to recover before it counts as not recovered (s).
RECOVERY_BOUND = 180


@dataclass
class Fault:
    kind: str
    at: float  # monotonic time of the injection
    recovered_at: float | None = None
    detail: dict = field(default_factory=dict)

    def report(self, origin: float) -> dict:
        return {"kind": self.kind, "at_s": round(self.at - origin, 1),
                "recovery_s": round(self.recovered_at - self.at, 1) if self.recovered_at else None,
                **self.detail}


@dataclass
class User:
    name: str
    client: GatewayClient
    kernel: str = ""
    room: str = ""
    #: path -> the content the gateway acknowledged last (with those of later writes left
    #: unanswered, which may have been made)
    saved: dict[str, set[str]] = field(default_factory=dict)


class Chaos:
    def __init__(self, args, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.rng = random.Random(args.seed)
        self.faults_run = (FAULTS + (["restart_dockerd"] if args.private_dockerd or args.restart_dockerd else [])
                           + (["postgres_outage"] if args.postgres else []))
        self.dockerd = None
        self.postgres = None
        store_options = []
        if args.postgres:
            bindir = postgres_bindir()
            if bindir is None:
                raise SystemExit("--postgres: PostgreSQL is not installed (Debian package: postgresql)")
            self.postgres = PostgresServer(bindir).start()
            store_options = [f"--Store.url={self.postgres.url(self.postgres.create_database())}"]
        engine_options = []
        if args.private_dockerd:
            self.dockerd = PrivateDockerd("kg-chaos").start()
            self.dockerd.load_images(ImageBuilder().reference("python"))
            # every Docker client of this process (the harness's cleanups) and of the
            # gateway goes to the private dockerd
            os.environ["DOCKER_HOST"] = self.dockerd.url
            engine_options = [f"--DockerEngine.docker_url={self.dockerd.url}"]
        self.s3 = S3Server(tmp / "moto.log").start()
        (tmp / "config.py").write_text(CONFIG)
        self.options = ["--kernels=docker", f"--jwt-secret={SECRET}", f"--config={tmp / 'config.py'}",
                        *self.s3.gateway_args(), "--RoomStorage.sync_interval=2",
                        "--RoomStorage.retry_interval=0.5", "--HealthCheck.cache_seconds=0", *engine_options,
                        *store_options]
        self.gateway = GatewayProcess(tmp, *self.options).start(timeout=60)
        self.gateways = [self.gateway]
        self.users = [User(f"u{i}", GatewayClient(self.gateway.url, mint(SECRET, f"u{i}", tier="load")))
                      for i in range(args.users)]
        self.faults: list[Fault] = []
        self.origin = time.monotonic()  # when the users begin
        self.failures: list[tuple[float, str]] = []  # (monotonic time, kind)
        self.executions = 0
        self.terminal_commands = 0
        self.files_written = 0
        self.files_checked = 0
        self.latency: list[float] = []
        self.engine = docker.from_env(timeout=60)

    # -- the users -------------------------------------------------------------------

    async def setup(self) -> None:
        size = self.args.room_size
        grouped = len(self.users) - len(self.users) % size if size > 1 else 0
        for start in range(0, grouped, size):
            owner, *members = self.users[start:start + size]
            made = await owner.client.request("POST", "/api/rooms", {
                "name": f"chaos-{owner.name}", "languages": ["python3"], "storage": "s3"}, timeout=300)
            assert made.status == 201, made.body
            for member in members:
                added = await owner.client.request("PUT", f"/api/rooms/{made.body['id']}/members/{member.name}",
                                                   {"role": "participant"})
                assert added.status in (200, 201), added.body
            for user in (owner, *members):
                user.room, user.kernel = made.body["id"], made.body["kernels"][0]["id"]
        await asyncio.gather(*(self.solo_kernel(u) for u in self.users if not u.room))
        await self.mark_rooms()

    async def solo_kernel(self, user: User) -> None:
        """A new solo kernel, retrying while the gateway refuses or is away."""
        while True:
            try:
                started = await user.client.request("POST", "/api/kernels", {"name": "python3"}, timeout=120)
            except (OSError, HTTPClientError):
                await asyncio.sleep(1)
                continue
            if started.status == 201:
                user.kernel = started.body["id"]
                return
            await asyncio.sleep(int(started.headers.get("Retry-After", 1)))

    def room_owners(self) -> list[User]:
        seen, owners = set(), []
        for user in self.users:
            if user.room and user.room not in seen:
                seen.add(user.room)
                owners.append(user)
        return owners

    async def mark_rooms(self) -> None:
        """Set a variable in every room kernel, to see later whether its memory survived."""
        for owner in self.room_owners():
            await self.execute(owner, "chaos_alive = 1")

    async def execute(self, user: User, code: str) -> str:
        """Run `code` on a fresh WebSocket; its stdout (RuntimeError if it is not ok)."""
        ws = await user.client.connect(user.kernel)
        try:
            run = await ws.execute(code, timeout=self.args.timeout)
        finally:
            ws.close()
        if run.status != "ok":
            raise RuntimeError(f"execution {run.status}")
        return run.stdout

    def failed(self, kind: str, began: float) -> None:
        """An operation begun at `began` (monotonic) failed: it counts for a fault whose
        window holds its beginning (an execution sent to a kernel about to be killed times
        out well after the kernel is back)."""
        self.failures.append((began, kind))

    async def work(self, user: User, deadline: float) -> None:
        rng = random.Random(user.name)
        ws = None
        while time.monotonic() < deadline:
            a, b = rng.randrange(10**6), rng.randrange(10**6)
            step = rng.random()
            kind = ("terminal" if 0.65 <= step < 0.75 else "execute" if step < 0.75 or not user.room
                    else "file write" if step < 0.9 else "file read")
            op = "connect"  # what a timeout is counted as
            started = time.monotonic()
            try:
                if ws is None:
                    ws = await user.client.connect(user.kernel)
                op = kind
                if 0.65 <= step < 0.75:
                    await self.terminal(user, a, b, started)
                elif step < 0.75 or not user.room:
                    self.executions += 1
                    run = await ws.execute(f"print({a} * {b})", timeout=self.args.timeout)
                    if run.status != "ok":
                        self.failed(f"execute {run.status}", started)
                    elif run.stdout != f"{a * b}\n":
                        self.failed("wrong output", started)
                    else:
                        self.latency.append(time.monotonic() - started)
                elif step < 0.9:
                    path, text = f"chaos-{user.name}-{rng.randrange(5)}.txt", f"{a} {b}\n"
                    if path in user.saved:  # unanswered, this write may still have been made
                        user.saved[path].add(text)
                    put = await user.client.request("PUT", f"/api/rooms/{user.room}/contents/{path}",
                                                    {"type": "file", "format": "text", "content": text})
                    if put.status in (200, 201):
                        user.saved[path] = {text}
                        self.files_written += 1
                    else:
                        self.failed(f"file write {put.status}", started)
                elif user.saved:
                    path = rng.choice(sorted(user.saved))
                    got = await user.client.request("GET", f"/api/rooms/{user.room}/contents/{path}")
                    self.files_checked += 1
                    if got.status != 200:
                        self.failed(f"file read {got.status}", started)
                    elif got.body["content"] not in user.saved[path]:
                        self.failed("file read wrong", started)
            except asyncio.TimeoutError:
                self.failed(f"{op} timeout", started)
                ws = self.drop(ws)
            except (ConnectionError, OSError, HTTPClientError, WebSocketError) as e:
                self.failed(type(e).__name__, started)
                ws = self.drop(ws)
                await asyncio.sleep(1)
                if not user.room and await self.gone(user):
                    await self.solo_kernel(user)
            await asyncio.sleep(self.args.think * rng.uniform(0.5, 1.5))
        self.drop(ws)

    async def terminal(self, user: User, a: int, b: int, started: float) -> None:
        """Open a terminal in the user's kernel's sandbox, run `echo $((a * b))`, delete it."""
        made = await user.client.request("POST", "/api/terminals", {"kernel": user.kernel})
        if made.status != 201:
            self.failed(f"terminal open {made.status}", started)
            return
        name = made.body["name"]
        try:
            shell = await Terminal.open(user.client, name)
            try:
                await shell.run(f"echo $(({a} * {b}))", re.compile(rf"\b{a * b}\b"), self.args.timeout)
            finally:
                shell.conn.close()
            self.terminal_commands += 1
        finally:
            await user.client.request("DELETE", f"/api/terminals/{name}")

    @staticmethod
    def drop(ws) -> None:
        """Close a kernel WebSocket, if any; None (the caller's socket is gone)."""
        if ws is not None:
            ws.close()
        return None

    async def gone(self, user: User) -> bool:
        try:
            return (await user.client.request("GET", f"/api/kernels/{user.kernel}")).status == 404
        except (OSError, HTTPClientError):
            return False

    # -- the faults ------------------------------------------------------------------

    async def inject(self, deadline: float) -> None:
        kinds: list[str] = []
        while time.monotonic() + self.args.fault_every < deadline:
            await asyncio.sleep(self.args.fault_every * self.rng.uniform(0.5, 1.5))
            if not kinds:  # every kind once per round, in a random order
                kinds = self.rng.sample(self.faults_run, len(self.faults_run))
            fault = Fault(kinds.pop(), time.monotonic())
            self.faults.append(fault)
            try:
                await asyncio.wait_for(getattr(self, fault.kind)(fault), RECOVERY_BOUND)
                fault.recovered_at = time.monotonic()
            except Exception as e:  # noqa: BLE001 - reported: a fault that did not recover
                fault.detail["error"] = f"{type(e).__name__}: {e}"[:300]
            print(json.dumps(fault.report(self.origin)), file=sys.stderr, flush=True)

    async def until(self, probe, every: float = 0.5):
        """Retry `probe` until it returns without raising (the caller bounds the time)."""
        while True:
            try:
                return await probe()
            except (AssertionError, ConnectionError, OSError, HTTPClientError, WebSocketError,
                    RuntimeError, asyncio.TimeoutError):
                await asyncio.sleep(every)

    async def kill_kernel(self, fault: Fault) -> None:
        user = self.rng.choice(self.users)
        kernel = user.kernel
        fault.detail["kernel_kind"] = "room" if user.room else "solo"
        found = await asyncio.to_thread(self.engine.containers.list, filters={"label": f"{KERNEL_LABEL}={kernel}"})
        if not found:
            fault.detail["skipped"] = "no container"
            return
        await asyncio.to_thread(found[0].kill)

        async def answers():
            model = await user.client.request("GET", f"/api/kernels/{kernel}")
            assert model.status == 200 and model.body["execution_state"] == "idle"
            assert await self.execute(user, "print(6 * 7)") == "42\n"
        await self.until(answers)
        if user.room:
            await self.execute(user, "chaos_alive = 1")  # its memory is gone, by design

    async def restart_gateway(self, fault: Fault) -> None:
        old = self.gateway
        await asyncio.to_thread(old.stop, 9)
        self.gateway = await asyncio.to_thread(GatewayProcess(self.tmp, *self.options, like=old).start, 60)
        self.gateways.append(self.gateway)
        for user in self.users:
            user.client.url = self.gateway.url

        async def ready():  # a private dockerd holds only the python image: its other checks
            answer = await self.gateway.client().request("GET", "/api/ready")
            assert answer.status == 200 or (self.dockerd and answer.body["checks"]["docker"] == "ok"), answer.body
        await self.until(ready)
        kept = 0
        for owner in self.room_owners():
            out = await self.until(lambda: self.execute(owner, "print(globals().get('chaos_alive'))"))
            kept += out == "1\n"
            if out != "1\n":
                await self.execute(owner, "chaos_alive = 1")
        fault.detail["room_memory_kept"] = f"{kept}/{len(self.room_owners())}"

    async def s3_outage(self, fault: Fault) -> None:
        await asyncio.to_thread(self.s3.stop)
        await asyncio.sleep(self.args.outage)
        await asyncio.to_thread(self.s3.start)
        back = time.monotonic()

        async def synced():
            for owner in self.room_owners():
                room = await owner.client.request("GET", f"/api/rooms/{owner.room}")
                assert room.status == 200 and room.body["storage_status"]["state"] == "ok", room.body
        await self.until(synced)
        fault.detail["outage_s"] = self.args.outage
        fault.detail["resynced_s_after_back"] = round(time.monotonic() - back, 1)

    async def restart_dockerd(self, fault: Fault) -> None:
        if self.dockerd is not None:
            await asyncio.to_thread(self.dockerd.halt)
            await asyncio.sleep(self.args.outage)
            await asyncio.to_thread(self.dockerd.start)
        else:
            restarted = await asyncio.create_subprocess_shell(self.args.restart_dockerd)
            assert await restarted.wait() == 0, f"{self.args.restart_dockerd!r} failed"
        back = time.monotonic()

        async def answers(user: User):
            model = await user.client.request("GET", f"/api/kernels/{user.kernel}")
            assert model.status == 200 and model.body["execution_state"] == "idle", model.body
            assert await self.execute(user, "print(6 * 7)") == "42\n"
        for user in self.users:
            await self.until(lambda: answers(user))
        await self.mark_rooms()  # their memory is gone, by design
        fault.detail["revived_s_after_back"] = round(time.monotonic() - back, 1)

    async def postgres_outage(self, fault: Fault) -> None:
        await asyncio.to_thread(self.postgres.halt)
        await asyncio.sleep(self.args.outage)
        await asyncio.to_thread(self.postgres.resume)
        back = time.monotonic()
        owners = self.room_owners()

        async def writable():
            if owners:  # a rename is a store write with no kernel to start
                renamed = await owners[0].client.request("PATCH", f"/api/rooms/{owners[0].room}",
                                                         {"name": f"chaos-{time.monotonic():.1f}"})
                assert renamed.status == 200, renamed.body
                return
            made = await self.users[0].client.request("POST", "/api/rooms", {"name": "chaos-probe", "languages": ["bash"]})
            assert made.status == 201, made.body
            gone = await self.users[0].client.request("DELETE", f"/api/rooms/{made.body['id']}")
            assert gone.status == 204, gone.body
        await self.until(writable)
        fault.detail["outage_s"] = self.args.outage
        fault.detail["writable_s_after_back"] = round(time.monotonic() - back, 1)

    # -- the end ---------------------------------------------------------------------

    async def final_check(self) -> dict:
        """A new host: the gateway stopped (a graceful stop syncs every room), the rooms'
        working copies removed; every acknowledged file must come back from S3."""
        await asyncio.to_thread(self.gateway.stop)
        for owner in self.room_owners():
            await asyncio.to_thread(lose_working_copy, self.gateway, owner.room)
        self.gateway = await asyncio.to_thread(GatewayProcess(self.tmp, *self.options, like=self.gateway).start, 60)
        self.gateways.append(self.gateway)
        lost, checked = [], 0
        for user in self.users:
            user.client.url = self.gateway.url
            for path, texts in user.saved.items():
                got = await user.client.request("GET", f"/api/rooms/{user.room}/contents/{path}", timeout=300)
                checked += 1
                if got.status != 200 or got.body["content"] not in texts:
                    lost.append(f"{user.room}/{path}: {got.status}")
        return {"files_acknowledged": checked, "files_lost": len(lost), "lost": lost[:20]}

    async def teardown(self) -> dict:
        for owner in self.room_owners():
            await owner.client.request("DELETE", f"/api/rooms/{owner.room}", timeout=300)
        for user in self.users:  # solo kernels were not re-adopted: their ids are gone
            if not user.room:
                await user.client.request("DELETE", f"/api/kernels/{user.kernel}")
        await asyncio.sleep(2)
        containers = await asyncio.to_thread(
            self.engine.containers.list, all=True, filters={"label": f"{GATEWAY_LABEL}={self.gateway.gateway_id}"})
        sockets = [p.name for p in self.gateway.runtime_dir.iterdir() if p.is_dir()]
        return {"containers": len(containers), "socket_dirs": len(sockets)}

    async def run(self) -> dict:
        began = time.monotonic()
        await self.setup()
        setup_s = time.monotonic() - began
        origin = self.origin = time.monotonic()
        deadline = origin + self.args.seconds
        await asyncio.gather(self.inject(deadline), *(self.work(u, deadline) for u in self.users))
        windows = [(f.at, (f.recovered_at or deadline) + self.args.grace) for f in self.faults]
        in_fault = Counter(k for t, k in self.failures if any(a <= t <= b for a, b in windows))
        outside = Counter(k for t, k in self.failures if not any(a <= t <= b for a, b in windows))
        final = await self.final_check()
        leaked = await self.teardown()
        recoveries: dict[str, list[float]] = {}
        for f in self.faults:
            if f.recovered_at:
                recoveries.setdefault(f.kind, []).append(f.recovered_at - f.at)
        return {
            "users": self.args.users, "room_size": self.args.room_size, "seconds": self.args.seconds,
            "setup_s": round(setup_s, 1), "executions": self.executions,
            "execute_ms": {"p50": round(statistics.median(self.latency) * 1000, 1) if self.latency else None,
                           "p99": round(percentile(self.latency, 99) * 1000, 1) if self.latency else None},
            "terminal_commands": self.terminal_commands,
            "files_written": self.files_written, "files_read_back": self.files_checked,
            "failed_in_fault": dict(in_fault), "failed_outside_fault": dict(outside),
            "faults": [f.report(origin) for f in self.faults],
            "not_recovered": sum(1 for f in self.faults if not f.recovered_at),
            "recovery_s": {k: {"n": len(v), "max": round(max(v), 1), "median": round(statistics.median(v), 1)}
                           for k, v in recoveries.items()},
            **final, "leaked": leaked,
        }

    def close(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        self.gateway.cleanup()
        self.s3.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.dockerd is not None:
            if self.dockerd.process is None:
                self.dockerd.start()  # stopped by a fault that did not end
            self.dockerd.remove_containers()
            self.dockerd.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--room-size", type=int, default=4, help="users per room (1: all solo)")
    parser.add_argument("--seconds", type=float, default=120, help="how long the users work")
    parser.add_argument("--fault-every", type=float, default=15, help="mean seconds between faults")
    parser.add_argument("--outage", type=float, default=5, help="seconds an S3, dockerd or PostgreSQL outage lasts")
    parser.add_argument("--grace", type=float, default=10,
                        help="seconds after a recovery whose failures still count as the fault's")
    parser.add_argument("--think", type=float, default=0.5, help="mean seconds between a user's steps")
    parser.add_argument("--timeout", type=float, default=20, help="seconds before an execution is lost")
    parser.add_argument("--seed", type=int, default=20)
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument("--private-dockerd", action="store_true",
                         help="run the kernels on a second dockerd of this host, restarted as a fault")
    restart.add_argument("--restart-dockerd", metavar="CMD",
                         help="a fault that runs CMD to restart this machine's dockerd (only where nothing else runs on it)")
    parser.add_argument("--postgres", action="store_true",
                        help="the store on a PostgreSQL server of its own, and its outages among the faults")
    parser.add_argument("--json", metavar="PATH", help="also write the report here")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="kgchaos-", dir="/tmp"))
    chaos = Chaos(args, tmp)
    try:
        report = asyncio.run(chaos.run())
    finally:
        chaos.close()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    bad = (report["files_lost"] or report["failed_outside_fault"] or report["not_recovered"]
           or sum(report["leaked"].values()))
    if bad:
        print(f"FAILED: see the report; gateway logs in {tmp}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
