"""Jupyter sessions (/api/sessions): a named binding of a path to a kernel, per user.

Sessions are kept in the store, with a copy in memory that serves reads. A session
lives as long as its kernel: it goes when the kernel stops, and at start-up those whose
kernel did not survive the restart (only re-adopted room kernels do) are dropped.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Awaitable, Callable

from kernelgate.errors import BadRequest, NotFound
from kernelgate.kernels.registry import Kernel, KernelRegistry
from kernelgate.store import SessionRecord, Store

StartKernel = Callable[[str], Awaitable[Kernel]]


class SessionManager:
    """Sessions of every user; a session whose kernel is gone disappears with it."""

    def __init__(self, registry: KernelRegistry, store: Store) -> None:
        self.registry = registry
        self.store = store
        self._sessions: dict[str, SessionRecord] = {}

    async def start(self) -> None:
        """Load the stored sessions (after room kernels were re-adopted), forget those
        whose kernel is gone, and follow kernels' ends from now on."""
        stored = await self.store.kernel_sessions()
        self._sessions = {s.id: s for s in stored if s.kernel_id in self.registry.kernels}
        await self.store.delete_sessions([s.id for s in stored if s.id not in self._sessions])
        self.registry.on_stopped.append(self._kernel_stopped)

    async def _kernel_stopped(self, kernel: Kernel, reason: str) -> None:
        gone = [s.id for s in self._sessions.values() if s.kernel_id == kernel.id]
        for session_id in gone:
            del self._sessions[session_id]
        await self.store.delete_sessions(gone)

    def model(self, session: SessionRecord) -> dict:
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
        return [self.model(s) for s in self._live() if s.user == owner]

    def get(self, owner: str, session_id: str) -> SessionRecord:
        session = self._sessions.get(session_id)
        if session is None or session.user != owner or session.kernel_id not in self.registry.kernels:
            raise NotFound(f"Session not found: {session_id}")
        return session

    async def create(self, owner: str, body: dict, start: StartKernel) -> SessionRecord:
        """A new session on a new kernel ({"kernel": {"name"}}) or an own one ({"id"}).

        `start(name)` starts a kernel for the caller, with their plan's checks."""
        fields = _fields(body, required=True)
        kernel_spec = body.get("kernel") or {}
        if not isinstance(kernel_spec, dict):
            raise BadRequest("'kernel' must be an object")
        kernel_id = await self._kernel_for(owner, kernel_spec, start)
        session = SessionRecord(id=str(uuid.uuid4()), user=owner, kernel_id=kernel_id, **fields)
        await self.store.save_session(session)
        self._sessions[session.id] = session
        return session

    async def update(self, owner: str, session_id: str, body: dict, start: StartKernel) -> SessionRecord:
        """Rename a session or move it to another kernel (the old one is shut down)."""
        session = self.get(owner, session_id)
        changes = _fields(body, required=False)
        if "kernel" in body:
            if not isinstance(body["kernel"], dict):
                raise BadRequest("'kernel' must be an object")
            changes["kernel_id"] = await self._kernel_for(owner, body["kernel"], start)
            if self._sessions.get(session_id) is None:  # deleted while the kernel started
                if not body["kernel"].get("id") and changes["kernel_id"] in self.registry.kernels:
                    await self.registry.shutdown(self.registry.get(changes["kernel_id"]))
                raise NotFound(f"Session not found: {session_id}")
            session = self._sessions[session_id]
        old = session.kernel_id
        session = dataclasses.replace(session, **changes)
        await self.store.save_session(session)
        self._sessions[session.id] = session
        if old != session.kernel_id and old in self.registry.kernels:
            await self.registry.shutdown(self.registry.get(old))
        return session

    async def delete(self, owner: str, session_id: str) -> None:
        """Delete the session and shut its kernel down."""
        session = self.get(owner, session_id)
        await self.store.delete_sessions([session.id])
        self._sessions.pop(session.id, None)
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

    def _live(self) -> list[SessionRecord]:
        return [s for s in self._sessions.values() if s.kernel_id in self.registry.kernels]


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
