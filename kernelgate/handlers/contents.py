"""Jupyter Contents API on a solo kernel's workspace: /api/kernels/{id}/contents/{path}."""

from kernelgate.contents import Contents
from kernelgate.errors import BadRequest
from kernelgate.handlers.base import APIHandler
from kernelgate.handlers.kernels import KernelAccess


class KernelContentsHandler(KernelAccess, APIHandler):
    def contents(self, kernel_id: str) -> Contents:
        return Contents(self.visible_kernel(kernel_id))

    def workspace_path(self, path: str | None) -> str:
        """The workspace-relative path of the URL (the agent refuses escapes)."""
        return (path or "").strip("/")

    async def get(self, kernel_id: str, path: str):
        content = self.get_query_argument("content", "1") not in ("0", "false")
        format = self.get_query_argument("format", None)
        self.write_json(await self.contents(kernel_id).get(self.workspace_path(path), content, format))

    async def put(self, kernel_id: str, path: str):
        saved, created = await self.contents(kernel_id).save(self.workspace_path(path), self.json_body())
        self.write_json(saved, status=201 if created else 200)

    async def post(self, kernel_id: str, path: str):
        created = await self.contents(kernel_id).create(self.workspace_path(path), self.json_body())
        self.write_json(created, status=201)

    async def patch(self, kernel_id: str, path: str):
        new_path = self.json_body().get("path")
        if not isinstance(new_path, str) or not self.workspace_path(new_path):
            raise BadRequest("'path' (the new path) is required")
        self.write_json(await self.contents(kernel_id).rename(self.workspace_path(path), self.workspace_path(new_path)))

    async def delete(self, kernel_id: str, path: str):
        await self.contents(kernel_id).delete(self.workspace_path(path))
        self.set_status(204)
        self.finish()
