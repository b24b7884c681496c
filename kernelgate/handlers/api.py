"""GET /api: the gateway's version (no credentials needed)."""

import kernelgate
from kernelgate.handlers.base import APIHandler


class APIVersionHandler(APIHandler):
    public = True

    async def get(self):
        self.write_json({"version": kernelgate.__version__})
