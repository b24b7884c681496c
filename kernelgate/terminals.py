"""Terminals: shells inside a kernel's sandbox, run by its agent, shared by their clients.

A terminal belongs to a kernel (the sandbox it runs in) and to the user who opened it.
Its output goes to every connected client and into a bounded scrollback, which a client
that (re)connects receives first. Terminals end with their shell, with their kernel's
sandbox (restart, death, shutdown), on DELETE, or when nobody used them for
`idle_timeout` seconds.

Names are unguessable (secrets.token_urlsafe), and a terminal takes events only from
its own kernel's agent: the code in a sandbox holds its kernel's key and can make its
agent publish output or an exit under any name, which must never reach another
sandbox's terminal.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Protocol

from traitlets import Float, Int
from traitlets.config import LoggingConfigurable

from kernelgate import logs
from kernelgate.errors import Forbidden, GatewayError, NotFound, Unavailable
from kernelgate.identity import Identity
from kernelgate.clock import iso, utcnow
from kernelgate.kernels.agent import AgentClient
from kernelgate.kernels.registry import Kernel, KernelRegistry
from kernelgate.roles import at_least


class TerminalClient(Protocol):
    def send_frame(self, frame: list) -> None:
        """Send one terminado frame (["stdout", text], ["disconnect", code])."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


@dataclass(eq=False)
class Terminal:
    name: str
    owner: str
    kernel: Kernel
    clients: list[TerminalClient] = field(default_factory=list)
    scrollback: list[str] = field(default_factory=list)
    scrollback_size: int = 0
    last_activity: datetime = field(default_factory=utcnow)  # shown by the API
    active_mono: float = field(default_factory=time.monotonic)  # idle_timeout counts from it

    def touch(self) -> None:
        """Activity now, on both clocks (a wall-clock jump does not close a terminal)."""
        self.last_activity, self.active_mono = utcnow(), time.monotonic()

    def model(self) -> dict:
        return {"name": self.name, "last_activity": iso(self.last_activity),
                "kernel": self.kernel.id}


class TerminalManager(LoggingConfigurable):
    scrollback_bytes = Int(
        64 * 1024, config=True, help="Recent output kept per terminal for reconnecting clients."
    )
    idle_timeout = Float(
        3600.0, config=True, help="Seconds without clients or output before a terminal is closed."
    )
    cull_interval = Float(60.0, config=True, help="Seconds between checks for idle terminals.")
    client_backlog = Int(
        16 * 1024 * 1024, config=True,
        help="Bytes a terminal's WebSocket client may leave unread before it is disconnected "
        "(close code 1013; it gets the scrollback when it comes back). 0: no limit.",
    )

    def __init__(self, registry: KernelRegistry,
                 role_of: Callable[[Identity, Kernel], str | None], **kwargs) -> None:
        """`role_of(identity, kernel)`: the caller's role for a kernel, None if none."""
        super().__init__(**kwargs)
        self.registry = registry
        self.role_of = role_of
        self.terminals: dict[str, Terminal] = {}
        self._culler: asyncio.Future | None = None
        registry.sandbox_gone.append(self._sandbox_gone)

    def get(self, name: str, identity: Identity, needed: str = "viewer") -> Terminal:
        """The terminal called `name` if the caller may use it with `needed`: its kernel's
        owner, or a member of its room. NotFound for anyone else, Forbidden for a role too
        low."""
        terminal = self.terminals.get(name)
        role = self.role_of(identity, terminal.kernel) if terminal else None
        if role is None:
            raise NotFound(f"Terminal not found: {name}")
        if not at_least(role, needed):
            raise Forbidden(f"This needs the {needed} role in the room; you are {role}")
        return terminal

    def list(self, identity: Identity) -> list[Terminal]:
        return [t for t in self.terminals.values() if self.role_of(identity, t.kernel)]

    async def open(self, kernel: Kernel, user: str, rows: int = 24, cols: int = 80) -> Terminal:
        """Start a shell in the kernel's sandbox, as its unprivileged user, for `user`."""
        if self._on_event not in kernel.agent.listeners:
            kernel.agent.listeners.append(self._on_event)
        name = secrets.token_urlsafe(18)
        reply, _ = await kernel.agent.request(
            "terminal_open_request", {"name": name, "rows": rows, "cols": cols}
        )
        if reply.get("status") != "ok":
            raise Unavailable(f"The terminal could not start: {reply.get('evalue', '')}")
        terminal = Terminal(name=name, owner=user, kernel=kernel)
        self.terminals[name] = terminal
        if self._culler is None:
            self._culler = logs.background(self._cull())
        return terminal

    def attach(self, terminal: Terminal, client: TerminalClient) -> None:
        terminal.clients.append(client)
        for chunk in terminal.scrollback:
            client.send_frame(["stdout", chunk])

    def detach(self, terminal: Terminal, client: TerminalClient) -> None:
        if client in terminal.clients:
            terminal.clients.remove(client)

    def input(self, terminal: Terminal, data: str) -> None:
        terminal.touch()
        terminal.kernel.agent.send("terminal_input", {"name": terminal.name, "data": data})

    def resize(self, terminal: Terminal, rows: int, cols: int) -> None:
        terminal.kernel.agent.send("terminal_resize", {"name": terminal.name, "rows": rows, "cols": cols})

    async def close(self, terminal: Terminal) -> None:
        """End the shell and disconnect the terminal's clients."""
        if self.terminals.pop(terminal.name, None) is None:
            return
        try:
            await terminal.kernel.agent.request("terminal_close_request", {"name": terminal.name})
        except GatewayError as e:
            self.log.info("Terminal %s: %s", terminal.name, e)
        self._ended(terminal, 0)

    # -- events ------------------------------------------------------------------

    def _on_event(self, agent: AgentClient, kind: str, content: dict) -> None:
        terminal = self.terminals.get(str(content.get("name")))
        if terminal is None or terminal.kernel.agent is not agent:
            return  # not a terminal of the sandbox whose agent sent this
        if kind == "terminal_output":
            data = str(content.get("data", ""))
            terminal.touch()
            terminal.scrollback.append(data)
            terminal.scrollback_size += len(data)
            while terminal.scrollback_size > self.scrollback_bytes and len(terminal.scrollback) > 1:
                terminal.scrollback_size -= len(terminal.scrollback.pop(0))
            for client in list(terminal.clients):
                client.send_frame(["stdout", data])
        elif kind == "terminal_exit":
            self.terminals.pop(terminal.name, None)
            self._ended(terminal, int(content.get("code", 0)))

    def _ended(self, terminal: Terminal, code: int) -> None:
        for client in list(terminal.clients):
            client.send_frame(["disconnect", code])
            client.close()
        terminal.clients.clear()

    def _sandbox_gone(self, kernel: Kernel) -> None:
        for terminal in [t for t in self.terminals.values() if t.kernel is kernel]:
            del self.terminals[terminal.name]
            self._ended(terminal, 1)

    async def _cull(self) -> None:
        while True:
            await asyncio.sleep(self.cull_interval)
            now = time.monotonic()
            for terminal in list(self.terminals.values()):
                idle = now - terminal.active_mono
                if not terminal.clients and idle > self.idle_timeout:
                    self.log.info("Closing idle terminal %s", terminal.name)
                    await self.close(terminal)
