"""Reading a workspace for detection: bounded, and never through a symbolic link.

Two readers with one interface. `HostTree` reads a room's workspace folder on the host
with kernelgate_agent's `Workspace` (directory fds, O_NOFOLLOW at every component), each
call in a worker thread. `AgentTree` asks a sandbox's agent, which does the same inside
the sandbox (a solo kernel's workspace lives only there).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from kernelgate.kernels.agent import AgentClient
from kernelgate_agent.files import FileError, Workspace


class TreeError(Exception):
    """A listing or a read failed (a link, a vanished file, a file too large)."""


class Tree(Protocol):
    async def list(self, path: str) -> list[dict]:
        """Entries {"name", "type": file|directory|symlink|other, "size"} of a directory."""

    async def read(self, path: str, limit: int) -> bytes:
        """A regular file's bytes; TreeError if it is larger than `limit` bytes."""


class HostTree:
    """A workspace folder on the gateway's host."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    async def list(self, path: str) -> list[dict]:
        return await asyncio.to_thread(self._call, Workspace(self.root).list, path)

    async def read(self, path: str, limit: int) -> bytes:
        return await asyncio.to_thread(self._call, Workspace(self.root, limit).read, path)

    @staticmethod
    def _call(fn, path: str):
        try:
            return fn(path)
        except FileError as e:
            raise TreeError(str(e)) from None


class AgentTree:
    """A sandbox's workspace, through its agent's file requests."""

    def __init__(self, agent: AgentClient) -> None:
        self.agent = agent

    async def _request(self, op: str, path: str) -> tuple[dict, list[bytes]]:
        reply, buffers = await self.agent.request("file_request", {"op": op, "path": path})
        if reply.get("status") != "ok":
            raise TreeError(reply.get("evalue") or f"{op} {path} failed")
        return reply, buffers

    async def list(self, path: str) -> list[dict]:
        reply, _ = await self._request("list", path)
        return reply["entries"]

    async def read(self, path: str, limit: int) -> bytes:
        reply, _ = await self._request("stat", path)
        if reply.get("type") != "file" or reply.get("size", 0) > limit:
            raise TreeError(f"{path}: not a regular file of at most {limit} bytes")
        reply, buffers = await self._request("read", path)
        if not buffers or len(buffers[0]) > limit:
            raise TreeError(f"{path}: grew beyond {limit} bytes")
        return buffers[0]

