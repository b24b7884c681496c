"""Lab's Contents API on the active room's workspace, or on the Lab server's own disk.

`RoomContentsManager` is the Lab server's contents manager (the extension sets it when it
is linked). While a room is active (`gateway.active_room()`), every operation goes
to kernelgate's `/api/rooms/{id}/contents/...`, where the sandbox's agent performs it as the
sandbox's user; otherwise every call goes to `local_manager_class` (jupyter_server's
default manager, or the one the user configured), unchanged. Checkpoints of room files live in the room, in
`.ipynb_checkpoints/` beside the file, as jupyter_server's own file checkpoints do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.files.handlers import FilesHandler
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.services.contents.manager import AsyncContentsManager, ContentsManager
from tornado import web
from traitlets import Type, default

from . import gateway

CHECKPOINT_ID = "checkpoint"


def _checkpoint_path(path: str) -> str:
    folder, name = posixpath.split(path)
    stem, ext = posixpath.splitext(name)
    return posixpath.join(folder, ".ipynb_checkpoints", f"{stem}-checkpoint{ext}")


def _content_hash(model: dict) -> dict:
    """`hash` and `hash_algorithm` of a room file's content (none for a directory).

    Text and base64 files hash their bytes; a notebook hashes its canonical JSON, so a
    hash changes exactly when what Lab would load changes.
    """
    if model["type"] == "directory":
        return {"hash": None, "hash_algorithm": None}
    content = model["content"]
    if model["type"] == "notebook":
        data = json.dumps(content, sort_keys=True).encode()
    elif model.get("format") == "base64":
        data = base64.b64decode(content)
    else:
        data = content.encode()
    return {"hash": hashlib.sha256(data).hexdigest(), "hash_algorithm": "sha256"}


class RoomContentsManager(AsyncContentsManager):
    """A room's workspace through kernelgate while a room is active; the local manager otherwise."""

    local_manager_class = Type(
        AsyncLargeFileManager, klass=ContentsManager, config=True,
        help="The contents manager used when no room is active (stock JupyterLab).",
    )

    @default("files_handler_class")
    def _files_handler_class_default(self):
        return FilesHandler  # serves /files/ through this manager, so room files too

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.local = self.local_manager_class(parent=self.parent, log=self.log)
        self.root_dir = self.local.root_dir

    # -- the room side -------------------------------------------------------------------

    @staticmethod
    def _url(room: str, path: str) -> str:
        return gateway.room_path(room, "contents", path.strip("/"))

    async def _room_get(self, room: str, path: str, content: bool = True, type: str | None = None,
                        format: str | None = None, require_hash: bool = False) -> dict:
        query = {"content": "1" if content or require_hash else "0", "type": type, "format": format}
        model = await gateway.fetch("GET", self._url(room, path), query=query)
        if require_hash:
            model.update(_content_hash(model))
            if not content:
                model.update(content=None, format=None)
        if model.get("type") == "directory" and isinstance(model.get("content"), list) and not self.allow_hidden:
            model["content"] = [m for m in model["content"] if not m.get("name", "").startswith(".")]
        return model

    async def _room_exists(self, room: str, path: str) -> dict | None:
        try:
            return await self._room_get(room, path, content=False)
        except web.HTTPError as e:
            if e.status_code == 404:
                return None
            raise

    async def _room_save(self, room: str, model: dict, path: str) -> dict:
        if model.get("chunk") is not None:
            raise web.HTTPError(400, "Chunked uploads are not supported in a room (files up to the tier's size limit)")
        return await gateway.fetch("PUT", self._url(room, path), model)

    # -- the Contents API, routed ----------------------------------------------------------

    async def get(self, path, content=True, type=None, format=None, require_hash=False):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.get(path, content=content, type=type, format=format,
                                                     require_hash=require_hash))
        return await self._room_get(room, path, content, type, format, require_hash)

    async def save(self, model, path=""):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.save(model, path))
        return await self._room_save(room, model, path)

    async def delete(self, path):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.delete(path))
        await gateway.fetch("DELETE", self._url(room, path))

    async def delete_file(self, path):
        await self.delete(path)

    async def rename(self, old_path, new_path):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.rename(old_path, new_path))
        await gateway.fetch("PATCH", self._url(room, old_path), {"path": new_path.strip("/")})

    async def rename_file(self, old_path, new_path):
        await self.rename(old_path, new_path)

    async def update(self, model, path):
        if gateway.active_room() is None:
            return await ensure_async(self.local.update(model, path))
        return await super().update(model, path)

    async def new(self, model=None, path=""):
        if gateway.active_room() is None:
            return await ensure_async(self.local.new(model, path))
        return await super().new(model, path)

    async def new_untitled(self, path="", type="", ext=""):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.new_untitled(path=path, type=type, ext=ext))
        body = {"type": type or ("notebook" if ext == ".ipynb" else "file")}
        if ext:
            body["ext"] = ext
        return await gateway.fetch("POST", self._url(room, path), body)

    async def copy(self, from_path, to_path=None):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.copy(from_path, to_path))
        target = to_path if to_path is not None else posixpath.dirname(from_path.strip("/"))
        return await gateway.fetch("POST", self._url(room, target), {"copy_from": from_path.strip("/")})

    async def file_exists(self, path=""):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.file_exists(path))
        model = await self._room_exists(room, path) if path.strip("/") else None
        return model is not None and model["type"] != "directory"

    async def dir_exists(self, path):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.dir_exists(path))
        if not path.strip("/"):
            return True
        model = await self._room_exists(room, path)
        return model is not None and model["type"] == "directory"

    async def exists(self, path):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.exists(path))
        return not path.strip("/") or await self._room_exists(room, path) is not None

    def get_kernel_path(self, path, model=None):
        """The folder a notebook's kernel starts in (KERNEL_WORKING_DIR): the local
        manager's answer; a room's kernels work in its /workspace whatever this says."""
        return self.local.get_kernel_path(path, model=model)

    async def is_hidden(self, path):
        if gateway.active_room() is None:
            return await ensure_async(self.local.is_hidden(path))
        return any(part.startswith(".") for part in path.split("/"))

    async def trust_notebook(self, path):
        if gateway.active_room() is None:
            return await ensure_async(self.local.trust_notebook(path))
        return await super().trust_notebook(path)

    # -- checkpoints ------------------------------------------------------------------------

    async def create_checkpoint(self, path):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.create_checkpoint(path))
        model = await self._room_get(room, path)
        target = _checkpoint_path(path.strip("/"))
        folder = posixpath.dirname(target)
        if await self._room_exists(room, folder) is None:
            await self._room_save(room, {"type": "directory"}, folder)
        saved = await self._room_save(
            room, {"type": model["type"], "format": model["format"], "content": model["content"]}, target
        )
        return {"id": CHECKPOINT_ID, "last_modified": saved["last_modified"]}

    async def list_checkpoints(self, path):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.list_checkpoints(path))
        model = await self._room_exists(room, _checkpoint_path(path.strip("/")))
        return [] if model is None else [{"id": CHECKPOINT_ID, "last_modified": model["last_modified"]}]

    async def restore_checkpoint(self, checkpoint_id, path):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.restore_checkpoint(checkpoint_id, path))
        model = await self._room_get(room, _checkpoint_path(path.strip("/")))
        await self._room_save(room, {"type": model["type"], "format": model["format"],
                                     "content": model["content"]}, path)

    async def delete_checkpoint(self, checkpoint_id, path):
        room = gateway.active_room()
        if room is None:
            return await ensure_async(self.local.delete_checkpoint(checkpoint_id, path))
        await gateway.fetch("DELETE", self._url(room, _checkpoint_path(path.strip("/"))))
