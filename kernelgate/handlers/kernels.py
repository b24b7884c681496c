"""The Jupyter kernels REST API (Kernel Gateway compatible): /api/kernels..."""

from __future__ import annotations

from kernelgate.errors import BadRequest, NotFound
from kernelgate.handlers.base import APIHandler
from kernelgate.kernels.registry import Kernel


class KernelAccess:
    """Looks up a kernel the caller may use; anyone else gets 404, as if it did not exist."""

    def visible_kernel(self, kernel_id: str) -> Kernel:
        kernel = self.services.registry.get(kernel_id)
        if kernel.owner != self.identity.user and not self.identity.is_admin:
            raise NotFound(f"Kernel does not exist: {kernel_id}")
        return kernel


class KernelsHandler(APIHandler):
    async def get(self):
        """The caller's kernels."""
        kernels = self.services.registry.kernels.values()
        self.write_json([k.model() for k in kernels if k.owner == self.identity.user])

    async def post(self):
        """Start a solo kernel: 201 with Location and the kernel model."""
        body = self.json_body()
        name = body.get("name") or self.services.catalog.default_kernel_name
        if not isinstance(name, str):
            raise BadRequest("'name' must be a string")
        env = body.get("env", {})
        if not isinstance(env, dict):
            raise BadRequest("'env' must be an object")
        registry, plans = self.services.registry, self.services.plans
        plans.check_kernel_tier(self.identity, name, registry.tier_of(name))
        kernel = await registry.start(
            name, self.identity.user, env, owner_limit=plans.of(self.identity).max_kernels
        )
        self.set_header("Location", f"{self.settings['base_url']}api/kernels/{kernel.id}")
        self.write_json(kernel.model(), status=201)


class KernelHandler(KernelAccess, APIHandler):
    async def get(self, kernel_id: str):
        self.write_json(self.visible_kernel(kernel_id).model())

    async def delete(self, kernel_id: str):
        await self.services.registry.shutdown(self.visible_kernel(kernel_id))
        self.set_status(204)
        self.finish()


class KernelActionHandler(KernelAccess, APIHandler):
    async def post(self, kernel_id: str, action: str):
        kernel = self.visible_kernel(kernel_id)
        if action == "interrupt":
            await self.services.registry.interrupt(kernel)
            self.set_status(204)
            self.finish()
        else:
            await self.services.registry.restart(kernel)
            self.write_json(kernel.model())
