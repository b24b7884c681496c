"""Environment REST API: detection reports, and room installs streamed as NDJSON."""

from __future__ import annotations

import json

from tornado.iostream import StreamClosedError

from kernelgate.handlers.base import APIHandler
from kernelgate.handlers.kernels import KernelAccess


class RoomEnvironmentHandler(APIHandler):
    async def get(self, room_id: str):
        self.write_json(await self.services.environment.room_report(self.identity, room_id))


class RoomEnvironmentInstallHandler(APIHandler):
    """POST (admins): 200 with one JSON object a line, `{"type": "progress", ...}` while it
    runs and `{"type": "result", "status": "ok"|"error", ...}` last. The install goes on
    (and is recorded) if the caller goes away."""

    async def post(self, room_id: str):
        await stream(self, await self.services.environment.start_install(self.identity, room_id, self.json_body()))


async def stream(handler: APIHandler, job) -> None:
    """An install's events, one JSON object a line, as they come."""
    handler.set_header("Content-Type", "application/x-ndjson")
    try:
        async for event in job.stream():
            handler.write(json.dumps(event) + "\n")
            await handler.flush()
        handler.finish()
    except StreamClosedError:
        pass


class KernelEnvironmentHandler(KernelAccess, APIHandler):
    async def get(self, kernel_id: str):
        kernel = self.visible_kernel(kernel_id)
        self.write_json(await self.services.environment.kernel_report(kernel))


class KernelEnvironmentInstallHandler(KernelAccess, APIHandler):
    """POST (the solo kernel's owner): the room install's stream, into the kernel's own
    sandbox."""

    async def post(self, kernel_id: str):
        kernel = self.visible_kernel(kernel_id)
        await stream(self, await self.services.environment.start_kernel_install(self.identity, kernel,
                                                                                self.json_body()))
