"""Jupyter sessions (/api/sessions): a named binding of a path to a kernel, per user.

Kept in memory for now; the persistent store arrives with rooms (SQLAlchemy).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

from kernelgate.errors import BadRequest, NotFound
from kernelgate.kernels.registry import Kernel, KernelRegistry

StartKernel = Callable[[str], Awaitable[Kernel]]


@dataclass
class Session:
    id: str
    owner: str
    path: str
    name: str
    type: str
    kernel_id: str


class SessionManager:
    """Sessions of every user; a session whose kernel is gone disappears with it."""

    def __init__(self, registry: KernelRegistry) -> None:
        self.registry = registry
        self._sessions: dict[str, Session] = {}

    def model(self, session: Session) -> dict:
        kernel = self.registry.get(session.kernel_id)
        return {
            "id": session.id,
            "path": session.path,
            "name": session.name,
            "type": session.type,
            "kernel": kernel.model(),
            "notebook": {"path": session.path, "name": session.name},
        }

    def list(self, owner: str) -> list[dict]:
        return [self.model(s) for s in self._live() if s.owner == owner]

    def get(self, owner: str, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner or session not in self._live():
            raise NotFound(f"Session not found: {session_id}")
        return session

    async def create(self, owner: str, body: dict, start: StartKernel) -> Session:
        """A new session on a new kernel ({"kernel": {"name"}}) or an own one ({"id"}).

        `start(name)` starts a kernel for the caller, with their plan's checks."""
        fields = _fields(body, required=True)
        kernel_spec = body.get("kernel") or {}
        if not isinstance(kernel_spec, dict):
            raise BadRequest("'kernel' must be an object")
        kernel_id = await self._kernel_for(owner, kernel_spec, start)
        session = Session(id=str(uuid.uuid4()), owner=owner, kernel_id=kernel_id, **fields)
        self._sessions[session.id] = session
        return session

    async def update(self, owner: str, session_id: str, body: dict, start: StartKernel) -> Session:
        """Rename a session or move it to another kernel (the old one is shut down)."""
        session = self.get(owner, session_id)
        for key, value in _fields(body, required=False).items():
            setattr(session, key, value)
        if "kernel" in body:
            if not isinstance(body["kernel"], dict):
                raise BadRequest("'kernel' must be an object")
            old = session.kernel_id
            session.kernel_id = await self._kernel_for(owner, body["kernel"], start)
            if old != session.kernel_id and old in self.registry.kernels:
                await self.registry.shutdown(self.registry.get(old))
        return session

    async def delete(self, owner: str, session_id: str) -> None:
        """Delete the session and shut its kernel down."""
        session = self.get(owner, session_id)
        del self._sessions[session.id]
        if session.kernel_id in self.registry.kernels:
            await self.registry.shutdown(self.registry.get(session.kernel_id))

    async def _kernel_for(self, owner: str, spec: dict, start: StartKernel) -> str:
        if spec.get("id"):
            kernel = self.registry.kernels.get(spec["id"])
            if kernel is None or kernel.owner != owner:
                raise NotFound(f"Kernel does not exist: {spec['id']}")
            return kernel.id
        name = spec.get("name") or self.registry.catalog.default_kernel_name
        if not isinstance(name, str):
            raise BadRequest("'kernel.name' must be a string")
        return (await start(name)).id

    def _live(self) -> list[Session]:
        for session in list(self._sessions.values()):
            if session.kernel_id not in self.registry.kernels:
                del self._sessions[session.id]
        return list(self._sessions.values())


#: A session's fields and their defaults for a new session.
_DEFAULTS = {"path": "", "name": "", "type": "notebook"}


def _fields(body: dict, required: bool) -> dict:
    """path, name and type from a request body (path and name also from the older
    {"notebook": {...}} form), checked to be strings; defaults filled when `required`."""
    notebook = body.get("notebook") if isinstance(body.get("notebook"), dict) else {}
    fields = {}
    for key, default in _DEFAULTS.items():
        value = body.get(key, notebook.get(key) if key != "type" else None)
        if value is None and required:
            value = default
        if value is None:
            continue
        if not isinstance(value, str):
            raise BadRequest(f"'{key}' must be a string")
        fields[key] = value
    return fields
