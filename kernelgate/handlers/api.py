"""GET /api: the gateway's version (no credentials needed); GET /api/status: jupyter_server's
status model, for the caller."""

from datetime import datetime

import kernelgate
from kernelgate.clock import iso
from kernelgate.handlers.base import APIHandler
from kernelgate.handlers.kernels import kernels_of


class APIVersionHandler(APIHandler):
    public = True

    async def get(self):
        self.write_json({"version": kernelgate.__version__})


class APIStatusHandler(APIHandler):
    """`{"started", "last_activity", "kernels", "connections"}` as jupyter_server serves
    it, counting the caller's kernels only; `last_activity` is the latest of the
    gateway's start and those kernels' activity."""

    async def get(self):
        started: datetime = self.settings["kernelgate_started"]
        kernels = kernels_of(self.services, self.identity)
        self.write_json({
            "started": iso(started),
            "last_activity": iso(max([started, *(k.last_activity for k in kernels)])),
            "kernels": len(kernels),
            "connections": sum(k.connections for k in kernels),
        })
