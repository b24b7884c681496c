"""Jupyter Contents API on a workspace: a solo kernel's (/api/kernels/{id}/contents/{path})
or a room's (/api/rooms/{id}/contents/{path}, in handlers/rooms.py)."""

from __future__ import annotations

from kernelgate.contents import Contents
from kernelgate.errors import BadRequest
from kernelgate.handlers.base import APIHandler
from kernelgate.handlers.kernels import KernelAccess


def workspace_path(path: str | None) -> str:
    """The workspace-relative path of the URL (the agent refuses escapes)."""
    return (path or "").strip("/")


class ContentsMixin:
    """The Contents API verbs; `contents(workspace_id, needed_role)` finds the workspace (a kernel id or a room id).

    Reading needs viewer, changing participant, deleting admin.
    """

    large_body = True  # file contents: up to ServeApp.max_message_size

    async def get(self, workspace_id: str, path: str):
        content = self.get_query_argument("content", "1") not in ("0", "false")
        format = self.get_query_argument("format", None)
        contents = await self.contents(workspace_id, "viewer")
        await self.write_json_in_thread(await contents.get(workspace_path(path), content, format))

    async def put(self, workspace_id: str, path: str):
        contents = await self.contents(workspace_id, "participant")
        saved, created = await contents.save(workspace_path(path), await self.json_body_in_thread())
        self.write_json(saved, status=201 if created else 200)

    async def post(self, workspace_id: str, path: str):
        contents = await self.contents(workspace_id, "participant")
        self.write_json(await contents.create(workspace_path(path), self.json_body()), status=201)

    async def patch(self, workspace_id: str, path: str):
        new_path = self.json_body().get("path")
        if not isinstance(new_path, str) or not workspace_path(new_path):
            raise BadRequest("'path' (the new path) is required")
        contents = await self.contents(workspace_id, "participant")
        self.write_json(await contents.rename(workspace_path(path), workspace_path(new_path)))

    async def delete(self, workspace_id: str, path: str):
        contents = await self.contents(workspace_id, "admin")
        await contents.delete(workspace_path(path))
        self.set_status(204)
        self.finish()


class KernelContentsHandler(ContentsMixin, KernelAccess, APIHandler):
    async def contents(self, kernel_id: str, needed: str) -> Contents:
        return Contents(self.visible_kernel(kernel_id, needed))
