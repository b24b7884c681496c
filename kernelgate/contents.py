"""The Jupyter Contents API over a sandbox's workspace, served by its agent.

The gateway never touches the files itself: every operation is a file_request to the
agent inside the sandbox, which confines paths to the workspace and follows no links.
Models are jupyter_server's contents models. Files can be large (up to the agent's
`max_file_size`): decoding and encoding their content runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import mimetypes
import posixpath
from datetime import datetime, timezone
from typing import Callable

from kernelgate.errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge, Unavailable
from kernelgate.clock import iso
from kernelgate.kernels.registry import Kernel, WaitingForEngine

_ERRORS = {
    "ENOENT": NotFound, "EEXIST": Conflict, "ENOTEMPTY": Conflict,
    "EFBIG": TooLarge, "ENOSPC": TooLarge, "EDQUOT": TooLarge,
    "EACCES": Forbidden, "EPERM": Forbidden, "EROFS": Forbidden,
    "EINVAL": BadRequest, "ELOOP": BadRequest, "ENOTDIR": BadRequest, "EISDIR": BadRequest,
    "ENAMETOOLONG": BadRequest,
}


def _time(mtime: float) -> str:
    return iso(datetime.fromtimestamp(mtime, timezone.utc))


def _kind(path: str, entry: dict) -> str:
    if entry["type"] == "directory":
        return "directory"
    return "notebook" if path.endswith(".ipynb") else "file"


def model(path: str, entry: dict, content=None, format: str | None = None,
          mimetype: str | None = None) -> dict:
    """A contents model of `path` from the agent's stat `entry`."""
    return {
        "name": posixpath.basename(path), "path": path, "type": _kind(path, entry),
        "writable": entry["writable"], "created": _time(entry["mtime"]),
        "last_modified": _time(entry["mtime"]), "mimetype": mimetype, "content": content,
        "format": format, "size": entry["size"] if entry["type"] != "directory" else None,
    }


class Contents:
    """Contents operations on one kernel's workspace."""

    def __init__(self, kernel: Kernel) -> None:
        """WaitingForEngine (503) at once when the kernel's sandbox, which serves the
        files, is gone until the Docker engine is back."""
        if kernel.engine_wait:
            raise WaitingForEngine(WaitingForEngine.message)
        self.agent = kernel.agent

    async def _file(self, op: str, path: str, buffers: list[bytes] | None = None, **extra):
        reply, data = await self.agent.request("file_request", {"op": op, "path": path, **extra}, buffers)
        if reply.get("status") != "ok":
            error = _ERRORS.get(reply.get("ename"), Unavailable)
            raise error(reply.get("evalue") or f"{op} {path} failed")
        return reply, data

    async def exists(self, path: str) -> bool:
        try:
            await self._file("stat", path)
            return True
        except NotFound:
            return False

    async def get(self, path: str, content: bool = True, format: str | None = None) -> dict:
        if format not in (None, "text", "base64", "json"):
            raise BadRequest(f"Unknown format {format!r}")
        entry, _ = await self._file("stat", path)
        if entry["type"] == "directory":
            if not content:
                return model(path, entry)
            listing, _ = await self._file("list", path)
            children = [
                model(posixpath.join(path, child["name"]), child)
                for child in listing["entries"] if child["type"] in ("file", "directory")
            ]
            return model(path, entry, children, "json")
        if entry["type"] != "file":
            raise BadRequest(f"{path} is not a regular file")
        if not content:
            return model(path, entry)
        entry, (data,) = await self._file("read", path)
        return await asyncio.to_thread(_file_model, path, entry, data, format)

    async def save(self, path: str, body: dict) -> tuple[dict, bool]:
        """PUT: write a file or notebook, or make a directory; (model, created)."""
        kind = body.get("type", "file")
        existed = await self.exists(path)
        if kind == "directory":
            if not existed:
                await self._file("mkdir", path)
            return await self.get(path, content=False), not existed
        data = await asyncio.to_thread(_payload, kind, body)
        entry, _ = await self._file("write", path, [data])
        return model(path, entry), not existed

    async def create(self, directory: str, body: dict) -> dict:
        """POST in a directory: an untitled file, notebook or folder, or a copy."""
        if body.get("copy_from"):
            source = str(body["copy_from"]).strip("/")
            stem, ext = posixpath.splitext(posixpath.basename(source))
            target = await self._free_name(directory, lambda n: f"{stem}-Copy{n + 1}{ext}")
            entry, _ = await self._file("copy", source, new_path=target)
            return model(target, entry)
        kind = body.get("type", "file")
        if kind == "directory":
            target = await self._free_name(directory, lambda n: f"Untitled Folder{f' {n}' if n else ''}")
            entry, _ = await self._file("mkdir", target)
        elif kind in ("file", "notebook"):
            ext = ".ipynb" if kind == "notebook" else str(body.get("ext", ".txt"))
            stem = "untitled" if kind == "file" else "Untitled"
            target = await self._free_name(directory, lambda n: f"{stem}{n or ''}{ext}")
            empty = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
            entry, _ = await self._file("write", target, [json.dumps(empty).encode() if kind == "notebook" else b""])
        else:
            raise BadRequest(f"Unknown type {kind!r}")
        return model(target, entry)

    async def rename(self, path: str, new_path: str) -> dict:
        entry, _ = await self._file("rename", path, new_path=new_path)
        return model(new_path, entry)

    async def delete(self, path: str) -> None:
        await self._file("delete", path)

    async def _free_name(self, directory: str, name_for: Callable[[int], str]) -> str:
        """The first of name_for(0), name_for(1), ... that does not exist in directory."""
        for n in range(1000):
            candidate = posixpath.join(directory, name_for(n)) if directory else name_for(n)
            if not await self.exists(candidate):
                return candidate
        raise Conflict(f"No free name like {name_for(0)} in {directory or 'the workspace'}")


def _file_model(path: str, entry: dict, data: bytes, format: str | None) -> dict:
    """The model of a file read with its content: a notebook as JSON, text, or base64."""
    if _kind(path, entry) == "notebook" and format in (None, "json"):
        try:
            return model(path, entry, json.loads(data), "json")
        except ValueError:
            raise BadRequest(f"{path} is not a valid notebook") from None
    if format in (None, "text"):
        try:
            return model(path, entry, data.decode("utf-8"), "text", "text/plain")
        except UnicodeDecodeError:
            if format == "text":
                raise BadRequest(f"{path} is not UTF-8 text") from None
    mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return model(path, entry, base64.b64encode(data).decode("ascii"), "base64", mimetype)


def _payload(kind: str, body: dict) -> bytes:
    """The bytes a PUT body describes (notebook JSON, text or base64)."""
    content = body.get("content")
    if kind == "notebook":
        if not isinstance(content, dict):
            raise BadRequest("A notebook's content must be a JSON object")
        return json.dumps(content, indent=1).encode()
    if kind != "file":
        raise BadRequest(f"Unknown type {kind!r}")
    if not isinstance(content, str):
        raise BadRequest("A file's content must be a string")
    if body.get("format") == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("content is not valid base64") from None
    if body.get("format", "text") != "text":
        raise BadRequest(f"Unknown format {body.get('format')!r}")
    return content.encode("utf-8")

