"""The Jupyter kernels REST API (Kernel Gateway compatible): /api/kernels...

`POST /api/kernels` with `env.KERNEL_ROOM` answers with that room's kernel instead of a
new solo kernel (JupyterLab with `--gateway-url` opens a room's notebooks this way), and
`DELETE` of a room kernel leaves it running for the room's other members.
"""

from __future__ import annotations

from kernelgate.errors import BadRequest, Forbidden, NotFound
from kernelgate.handlers.base import APIHandler
from kernelgate.kernels.registry import Kernel
from kernelgate.roles import at_least


class KernelAccess:
    """Looks up a kernel the caller may use; to anyone else it does not exist (404).

    Solo kernels belong to their owner; room kernels to the room's members, by role.
    """

    role: str | None = None

    def visible_kernel(self, kernel_id: str, needed: str = "viewer") -> Kernel:
        kernel = self.services.registry.get(kernel_id)
        role = self.services.rooms.kernel_role(self.identity, kernel)
        if role is None:
            raise NotFound(f"Kernel does not exist: {kernel_id}")
        if not at_least(role, needed):
            raise Forbidden(f"This needs the {needed} role in the room; you are {role}")
        self.role = role
        return kernel


async def start_solo_kernel(handler: APIHandler, name: str, env: dict) -> Kernel:
    """Start a solo kernel for the handler's caller, within their plan."""
    registry, plans, identity = handler.services.registry, handler.services.plans, handler.identity
    plans.check_kernel_tier(identity, name, registry.tier_of(name))
    return await registry.start(name, identity.user, env, owner_limit=plans.of(identity).max_kernels)


def kernels_of(services, identity) -> list[Kernel]:
    """The caller's kernels: their solo kernels and their rooms' kernels."""
    rooms = {r.id for r in services.rooms.rooms_of(identity)}
    return [k for k in services.registry.kernels.values()
            if (k.room is None and k.owner == identity.user) or (k.room and k.room in rooms)]


class KernelsHandler(KernelAccess, APIHandler):
    async def get(self):
        """The caller's kernels: their solo kernels and their rooms' kernels."""
        self.write_json([k.model() for k in kernels_of(self.services, self.identity)])

    async def post(self):
        """Start a solo kernel, or give the room's kernel (`env.KERNEL_ROOM`): 201 with
        Location and the kernel model."""
        body = self.json_body()
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise BadRequest("'name' must be a string")
        env = body.get("env", {})
        if not isinstance(env, dict):
            raise BadRequest("'env' must be an object")
        room_id = env.get("KERNEL_ROOM")
        if room_id is not None and not isinstance(room_id, str):
            raise BadRequest("'env.KERNEL_ROOM' must be a string (a room id)")
        if room_id:
            kernel = await self.services.rooms.client_kernel(self.identity, room_id, name or None)
        else:
            kernel = await start_solo_kernel(self, name or self.services.catalog.default_kernel_name, env)
        self.set_header("Location", f"{self.settings['base_url']}api/kernels/{kernel.id}")
        self.write_json(kernel.model(), status=201)


class KernelHandler(KernelAccess, APIHandler):
    async def get(self, kernel_id: str):
        self.write_json(self.visible_kernel(kernel_id).model())

    async def delete(self, kernel_id: str):
        """Stop a solo kernel. A room kernel keeps running (other members use it; clients
        such as JupyterLab shut a notebook's kernel down when it closes): 204 for any
        member, nothing stops. The room API stops room kernels (PUT .../languages)."""
        kernel = self.visible_kernel(kernel_id)
        if kernel.room is None:
            await self.services.registry.shutdown(kernel)
        self.set_status(204)
        self.finish()


class KernelActionHandler(KernelAccess, APIHandler):
    async def post(self, kernel_id: str, action: str):
        kernel = self.visible_kernel(kernel_id, "participant")
        if action == "interrupt":
            await self.services.registry.interrupt(kernel)
            self.set_status(204)
            self.finish()
        else:
            await self.services.registry.restart(kernel)
            self.write_json(kernel.model())
