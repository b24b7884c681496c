#!/usr/bin/python3 -I
"""kernelgate-relay: runs a TCP-only Jupyter kernel behind the gateway's ipc sockets.

Usage (a kernelspec's argv)::

    kernelgate-relay {connection_file} -- KERNEL_ARGV...

Some kernels ignore ``"transport": "ipc"`` (Deno crashes on it; jjava and the Kotlin kernel
silently listen on TCP instead).  kernelgate gives every kernel an ipc connection file
whose socket paths lie in a directory that the gateway shares with the container, and the
container has no network but its loopback.  The relay bridges the two:

1. It reads the gateway's connection file (``transport`` must be ``"ipc"``) and writes a
   copy for the kernel with ``"transport": "tcp"``, ``"ip": "127.0.0.1"`` and five free
   loopback ports, the same key and signature scheme, mode 0600, in a new private
   directory under ``$TMPDIR`` (default ``/tmp``).
2. It starts KERNEL_ARGV, with every ``{tcp_connection_file}`` replaced by that copy's
   path, as its child in a process group of its own, set to be killed (SIGKILL) if the
   relay dies; the child inherits stdin, stdout, stderr, the working directory and the
   environment.
3. It listens on the five ipc socket paths (``<ip>-<port>``, as jupyter_client names them;
   stale files are replaced) and, for each connection accepted there, opens a connection
   to the kernel's port of the same channel (retrying until the kernel listens) and copies
   the bytes both ways unchanged, until either side closes.  ZeroMQ's wire protocol
   (ZMTP) is the same over ipc and TCP, so neither end notices the relay.
4. SIGINT and SIGTERM received by the relay are sent to the kernel's process group.
5. When the kernel exits, the relay removes the socket files and the private directory
   and exits with the kernel's status (128 + N if signal N ended it).

It uses the standard library only.  Exit status 2: bad arguments or connection file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import tempfile

#: Connection-file keys of the five channels, in a fixed order.
CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
#: Placeholder in KERNEL_ARGV for the path of the TCP connection file.
PLACEHOLDER = "{tcp_connection_file}"
#: Signals passed on to the kernel's process group.
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The kernel's listeners: loopback only (the container has no other network anyway).
LOOPBACK = "127.0.0.1"
#: Bytes copied per read.
CHUNK = 256 * 1024
#: Seconds between attempts to reach a kernel port that is not listening yet.
CONNECT_RETRY = 0.05
#: prctl(2) option: the signal a process gets when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free on the loopback interface right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tcp_connection_info(ipc_info: dict) -> dict:
    """The kernel's connection info: ``ipc_info`` moved to TCP on loopback, free ports."""
    info = dict(ipc_info, transport="tcp", ip=LOOPBACK)
    info.update(zip(CHANNELS, free_ports(len(CHANNELS))))
    return info


def write_private_json(directory: str, name: str, data: dict) -> str:
    """Write ``data`` as JSON to ``directory/name``, readable by its owner only; its path."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return path


def die_with_parent_of(parent: int):
    """A ``preexec_fn``: the child gets SIGKILL when ``parent`` (the relay) dies, so a
    relay killed by SIGKILL leaves no kernel behind; exits at once if it already died."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def exit_status(returncode: int) -> int:
    """A shell-style exit status for a child's ``returncode`` (negative: killed by a signal)."""
    return 128 - returncode if returncode < 0 else returncode


async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of stream or a connection error."""
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()


class Relay:
    """Bridges the ipc socket paths of one connection file to one kernel's TCP ports."""

    def __init__(self, ipc_info: dict, kernel_info: dict) -> None:
        self.ipc_info = ipc_info
        self.kernel_info = kernel_info
        self.kernel: asyncio.subprocess.Process | None = None
        self.servers: list[asyncio.AbstractServer] = []

    def socket_paths(self) -> list[str]:
        """The gateway-side ipc socket paths, one per channel (jupyter_client's naming)."""
        return [f"{self.ipc_info['ip']}-{self.ipc_info[channel]}" for channel in CHANNELS]

    async def run(self, argv: list[str]) -> int:
        """Start the kernel from ``argv``, relay until it exits; its exit status."""
        self.kernel = await asyncio.create_subprocess_exec(
            *argv, process_group=0, preexec_fn=die_with_parent_of(os.getpid())
        )
        loop = asyncio.get_running_loop()
        for signum in FORWARDED_SIGNALS:
            loop.add_signal_handler(signum, self.forward, signum)
        try:
            for path, channel in zip(self.socket_paths(), CHANNELS):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                port = self.kernel_info[channel]
                server = await asyncio.start_unix_server(
                    lambda r, w, port=port: self.bridge(r, w, port), path=path
                )
                self.servers.append(server)
            return exit_status(await self.kernel.wait())
        finally:
            for server in self.servers:
                server.close()
            for path in self.socket_paths():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def forward(self, signum: int) -> None:
        """Send ``signum`` to the kernel's process group (if the kernel still runs)."""
        if self.kernel is not None and self.kernel.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.kernel.pid, signum)

    async def bridge(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter, port: int) -> None:
        """Relay one accepted ipc connection to the kernel's ``port`` until either side closes
        (or the relay stops: a cancelled bridge closes both connections and ends quietly)."""
        kernel_reader = kernel_writer = None
        directions: list[asyncio.Task] = []
        try:
            while self.kernel is not None and self.kernel.returncode is None:
                try:
                    kernel_reader, kernel_writer = await asyncio.open_connection(LOOPBACK, port)
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(CONNECT_RETRY)
            if kernel_reader is None:
                return
            directions = [
                asyncio.create_task(copy(client_reader, kernel_writer)),
                asyncio.create_task(copy(kernel_reader, client_writer)),
            ]
            await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for task in directions:
                task.cancel()
            for writer in (client_writer, kernel_writer):
                if writer is not None:
                    writer.close()


def parse_args(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kernelgate-relay",
        description="Run a TCP-only Jupyter kernel behind the ipc sockets of a connection file.",
    )
    parser.add_argument("connection_file", help="the gateway's connection file (ipc transport)")
    parser.add_argument(
        "kernel", nargs=argparse.REMAINDER,
        help=f"-- then the kernel's command; {PLACEHOLDER} becomes the TCP connection file",
    )
    parsed = parser.parse_args(args)
    if parsed.kernel[:1] == ["--"]:
        parsed.kernel = parsed.kernel[1:]
    if not parsed.kernel:
        parser.error("no kernel command given")
    return parsed


def main(args: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parsed = parse_args(sys.argv[1:] if args is None else args)
    try:
        with open(parsed.connection_file, encoding="utf-8") as f:
            ipc_info = json.load(f)
    except (OSError, ValueError) as e:
        print(f"kernelgate-relay: cannot read {parsed.connection_file}: {e}", file=sys.stderr)
        return 2
    if ipc_info.get("transport") != "ipc":
        print(f"kernelgate-relay: {parsed.connection_file}: transport is not ipc", file=sys.stderr)
        return 2
    directory = tempfile.mkdtemp(prefix="kernelgate-relay-")
    try:
        kernel_info = tcp_connection_info(ipc_info)
        path = write_private_json(directory, "kernel.json", kernel_info)
        argv = [arg.replace(PLACEHOLDER, path) for arg in parsed.kernel]
        return asyncio.run(Relay(ipc_info, kernel_info).run(argv))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
