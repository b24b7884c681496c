"""A throwaway PostgreSQL server for tests: Debian's binaries, a temp dir, 127.0.0.1.

`postgres_server` (session-scoped fixture) starts one server for the whole test session;
`PostgresServer.create_database()` gives each test a fresh database. The server runs as
an unprivileged user (`nobody` when the tests run as root: PostgreSQL refuses root), with
password authentication on loopback only, fsync off (test data need not survive a crash).
Without PostgreSQL installed (Debian package `postgresql`), the fixture fails when
CI=true and skips otherwise.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.ci import require
from tests.harness import free_port

STARTUP_TIMEOUT = 30.0


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (/usr/lib/postgresql/N/bin), if any."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "postgres").is_file()]
    return max(found, key=lambda p: int(p.parent.name), default=None) if found else None


class PostgresServer:
    """One postgres process (the postmaster, started and stopped by this object)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.password = secrets.token_hex(16)
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix="kg-pg-"))
        self.proc: subprocess.Popen | None = None
        #: subprocess arguments that drop root (postgres refuses to run as root)
        self._unprivileged: dict = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("nobody")
            self._unprivileged = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    @property
    def log_path(self) -> Path:
        return self.dir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this server."""
        return f"postgresql+psycopg://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        """initdb, then run postgres until it accepts connections; RuntimeError otherwise."""
        password_file = self.dir / "password"
        password_file.write_text(self.password + "\n")
        if self._unprivileged:
            for path in (self.dir, password_file):
                os.chown(path, self._unprivileged["user"], self._unprivileged["group"])
        self._run_unprivileged(
            [self.bindir / "initdb", "-D", self.dir / "data", "-U", "postgres",
             "--auth=scram-sha-256", f"--pwfile={password_file}", "--encoding=UTF8",
             "--locale=C", "--no-sync", "--no-instructions"],
        )
        password_file.unlink()
        self.port = free_port()
        self._serve()
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove every file of the server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def halt(self) -> None:
        """Fast shutdown, keeping the data: an outage until `resume`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)

    def resume(self) -> None:
        """Start again after `halt`, on the same port with the same data."""
        self._serve()

    def _serve(self) -> None:
        """Run postgres on self.port until it accepts connections."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self._postgres_args(), stdout=log, stderr=subprocess.STDOUT, env=self._env(),
            cwd=self.dir, **self._unprivileged,
        )
        log.close()
        self._wait_ready()

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, sql: str) -> None:
        """Run one statement on the `postgres` database, outside any transaction."""
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as connection:
            connection.execute(sql)

    def _postgres_args(self) -> list:
        return [self.bindir / "postgres", "-D", self.dir / "data", "-h", "127.0.0.1",
                "-p", str(self.port), "-k", self.dir, "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]

    def _dsn(self, database: str) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir), "LC_ALL": "C"}

    def _run_unprivileged(self, argv: list) -> None:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=self._env(), cwd=self.dir,
            **self._unprivileged,
        )
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.proc.returncode}): {self.log_path.read_text()}")
            try:
                psycopg.connect(self._dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log_path.read_text()}") from None
                time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server():
    """A running PostgreSQL server for the whole test session (fails in CI without
    PostgreSQL installed, skips locally)."""
    bindir = postgres_bindir()
    if bindir is None:
        require("PostgreSQL is not installed (Debian package: postgresql)")
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()
