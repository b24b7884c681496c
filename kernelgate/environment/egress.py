"""The egress fence of install containers: the only way out of an install is an
allow-listing HTTP CONNECT proxy run by the gateway.

One fence per install (`Fence.open` ... `Fence.close`):

- an **internal** Docker network of its own (`internal=True`: no route out of it; Docker
  drops forwarded traffic that leaves its subnet), inter-container traffic off;
- host firewall rules (iptables and ip6tables, chain `KG-<suffix>` jumped to from INPUT for
  the network's bridge): from the bridge, the host accepts only TCP to the proxy's address
  and port and drops everything else, so no service of the host listening on all
  addresses (the gateway, a database) is reachable through the bridge's address;
- an `EgressProxy` on the network's gateway address: HTTP CONNECT only, to the allow-list
  only, and never to an address that is not public (loopback, private, link-local such as
  cloud metadata, shared, reserved) unless that host is explicitly allowed to be private.

Any failure while the fence is made undoes what was made and raises `FenceError`: an
install is then refused, never run on another network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
import uuid
from typing import Callable, Iterable
from urllib.parse import urlsplit

from kernelgate.engine import DockerEngine

#: Label of fence networks (the value: the room's id).
FENCE_LABEL = "org.kernelgate.install-fence"
#: Bridge names of fence networks start with this; their firewall chain is "KG-" + name.
BRIDGE_PREFIX = "kgf-"
#: Bounds of the proxy: request head bytes, concurrent tunnels, bytes per read.
MAX_HEAD, MAX_TUNNELS, CHUNK = 8192, 32, 65536
#: Refusals logged per proxy; later ones are counted only.
MAX_LOGGED = 20


class FenceError(Exception):
    """The fence could not be made (or a setting is unusable); the message says why."""


def allowed_targets(urls: Iterable[str], hosts: Iterable[str]) -> set[tuple[str, int]]:
    """The (host, port) pairs the proxy lets through: the host of each http(s) URL (its
    port, or the scheme's), and each `host` or `host:port` entry (port 443 when absent)."""
    targets = set()
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.hostname:
            targets.add((parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80)))
    for entry in hosts:
        host, port = split_authority(entry, default_port=443)
        targets.add((host, port))
    return targets


def split_authority(authority: str, default_port: int | None = None) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (lower-case host, port); ValueError when malformed."""
    authority = authority.strip()
    if authority.startswith("["):
        host, bracket, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if bracket and not rest else None)
    else:
        host, colon, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
        if colon and ":" in host:
            raise ValueError(f"unbracketed IPv6 address: {authority[:100]!r}")
    if port is None or not host or any(c in host for c in "/@ \t\r\n"):
        raise ValueError(f"not host:port: {authority[:100]!r}")
    if not port:
        if default_port is None:
            raise ValueError(f"no port: {authority[:100]!r}")
        return host.lower(), default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port: {authority[:100]!r}")
    return host.lower(), int(port)


def address_refusal(address: str) -> str | None:
    """Why the proxy never connects to `address` (None: a public address it may use)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for test, why in ((ip.is_loopback, "a loopback address"),
                      (ip.is_link_local, "a link-local address (cloud metadata lives there)"),
                      (ip.is_private, "a private address"),
                      (ip.is_multicast, "a multicast address"),
                      (ip.is_unspecified or ip.is_reserved, "a reserved address"),
                      (not ip.is_global, "not a public address")):
        if test:
            return why
    return None


class EgressProxy:
    """An HTTP CONNECT proxy for one install.

    Contract: a CONNECT to an allowed (host, port) whose every resolved address is public
    (or whose host is in `private_ok`) is tunnelled to the first of those addresses, the one
    that was checked; anything else answers 4xx/5xx, is reported to `on_refused` and (the
    first MAX_LOGGED times) logged with the reason. Buffers: the request head is at most
    MAX_HEAD bytes, each tunnel direction holds at most one CHUNK (backpressure), at most
    MAX_TUNNELS tunnels at once; a tunnel idle in both directions for `idle_timeout` closes.
    """

    def __init__(self, allowed: set[tuple[str, int]], private_ok: Iterable[str] = (),
                 on_refused: Callable[[str], None] | None = None, log: logging.Logger | None = None,
                 connect_timeout: float = 15.0, idle_timeout: float = 120.0, head_timeout: float = 10.0) -> None:
        self.allowed = allowed
        self.private_ok = {host.lower() for host in private_ok}
        self.on_refused = on_refused or (lambda _: None)
        self.log = log or logging.getLogger(__name__)
        self.connect_timeout, self.idle_timeout, self.head_timeout = connect_timeout, idle_timeout, head_timeout
        self.refusals = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients = 0

    async def start(self, host: str, port: int = 0) -> int:
        """Listen on host:port (0: any free port); the port."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every tunnel."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def _refuse(self, what: str, why: str) -> None:
        self.refusals += 1
        message = f"egress refused {what[:200]}: {why}"
        self.on_refused(message)
        if self.refusals <= MAX_LOGGED:
            self.log.warning("Install %s", message)
        elif self.refusals == MAX_LOGGED + 1:
            self.log.warning("Install egress: further refusals of this install are not logged")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._clients += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            if self._clients > MAX_TUNNELS:
                self._refuse("a connection", f"more than {MAX_TUNNELS} at once")
                return await _answer(writer, 503, "Service Unavailable")
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
                return
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = line.partition(" ")
            target = rest.rsplit(" ", 1)[0]
            if method != "CONNECT":
                self._refuse(f"{method[:20]} {target}", "only CONNECT (https) goes through")
                return await _answer(writer, 405, "Method Not Allowed")
            try:
                host, port = split_authority(target)
            except ValueError as e:
                self._refuse(f"CONNECT {target}", str(e))
                return await _answer(writer, 400, "Bad Request")
            address, why = await self._check(host, port)
            if address is None:
                self._refuse(f"CONNECT {host}:{port}", why)
                return await _answer(writer, 403, "Forbidden")
            try:
                up_reader, upstream = await asyncio.wait_for(
                    asyncio.open_connection(address, port, limit=CHUNK), self.connect_timeout)
            except (OSError, asyncio.TimeoutError) as e:
                self._refuse(f"CONNECT {host}:{port}", f"{address} did not answer ({e or 'timeout'})")
                return await _answer(writer, 502, "Bad Gateway")
            self._writers.add(upstream)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await self._tunnel(reader, writer, up_reader, upstream)
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients -= 1
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()

    async def _check(self, host: str, port: int) -> tuple[str | None, str]:
        """(the address to connect to, "") or (None, why not)."""
        if (host, port) not in self.allowed:
            return None, "not in the allow-list (EnvironmentService.egress_hosts and the index URLs)"
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            return None, f"it does not resolve ({e or 'timeout'})"
        addresses = [info[4][0] for info in infos]
        if host not in self.private_ok:
            for address in addresses:
                why = address_refusal(address)
                if why:
                    return None, (f"it resolves to {address}, {why}"
                                  " (EnvironmentService.egress_private_hosts allows it)")
        return (addresses[0], "") if addresses else (None, "it does not resolve")

    async def _tunnel(self, *streams) -> None:
        client_reader, client_writer, up_reader, up_writer = streams
        last = [time.monotonic()]

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(CHUNK), self.idle_timeout)
                except asyncio.TimeoutError:
                    if time.monotonic() - last[0] >= self.idle_timeout:
                        return
                    continue
                if not data:
                    return
                last[0] = time.monotonic()
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(pipe(client_reader, up_writer)),
                 asyncio.ensure_future(pipe(up_reader, client_writer))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = f"kernelgate install egress: {reason}\n".encode()
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"
                 f"\r\nConnection: close\r\n\r\n".encode() + body)
    try:
        await asyncio.wait_for(writer.drain(), 5)
    except (asyncio.TimeoutError, ConnectionError):
        pass


def firewall_rules(bridge: str, gateway: str, port: int) -> list[tuple[str, list[str]]]:
    """(program, arguments) making the host accept from `bridge` only TCP to gateway:port."""
    chain = "KG-" + bridge
    rules = [("iptables", ["-N", chain]),
             ("iptables", ["-A", chain, "-p", "tcp", "-d", gateway, "--dport", str(port), "-j", "ACCEPT"]),
             ("iptables", ["-A", chain, "-j", "DROP"]),
             ("iptables", ["-I", "INPUT", "1", "-i", bridge, "-j", chain])]
    rules += [("ip6tables", ["-N", chain]), ("ip6tables", ["-A", chain, "-j", "DROP"]),
              ("ip6tables", ["-I", "INPUT", "1", "-i", bridge, "-j", chain])]
    return rules


def firewall_removal(bridge: str) -> list[tuple[str, list[str]]]:
    chain = "KG-" + bridge
    return [(program, args) for program in ("iptables", "ip6tables")
            for args in (["-D", "INPUT", "-i", bridge, "-j", chain], ["-F", chain], ["-X", chain])]


async def _run(program: str, args: list[str]) -> str | None:
    """Run one firewall command; None, or its error."""
    try:
        process = await asyncio.create_subprocess_exec(
            program, "-w", "10", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    except (OSError, asyncio.TimeoutError) as e:
        return f"{program}: {e}"
    if process.returncode:
        return f"{program} {' '.join(args)}: {err.decode(errors='replace').strip()[:300]}"
    return None


class Fence:
    """One install's network, firewall rules and proxy (see the module docstring)."""

    def __init__(self, engine: DockerEngine, proxy: EgressProxy, log: logging.Logger) -> None:
        self.engine, self.proxy, self.log = engine, proxy, log
        suffix = uuid.uuid4().hex[:10]
        self.name = f"kernelgate-fence-{suffix}"  # the Docker network
        self.bridge = BRIDGE_PREFIX + suffix
        self.proxy_url = ""
        self._network_id: str | None = None
        self._rules = False

    @classmethod
    async def open(cls, engine: DockerEngine, room_id: str, proxy: EgressProxy, log: logging.Logger) -> Fence:
        """Make the fence; FenceError (with nothing left behind) when any part fails."""
        fence = cls(engine, proxy, log)
        try:
            await fence._make(room_id)
        except BaseException:
            await fence.close()
            raise
        return fence

    async def _make(self, room_id: str) -> None:
        options = {"com.docker.network.bridge.name": self.bridge,
                   "com.docker.network.bridge.enable_icc": "false"}
        try:
            attrs = await self.engine.create_network(
                self.name, {FENCE_LABEL: room_id}, driver="bridge", internal=True, options=options)
            self._network_id = attrs["Id"]
        except Exception as e:  # noqa: BLE001 - any engine failure refuses the install
            raise FenceError(f"the install network could not be made: {e}") from None
        if not attrs.get("Internal"):
            raise FenceError("the install network is not internal")
        try:
            gateway = attrs["IPAM"]["Config"][0]["Gateway"]
        except (KeyError, IndexError, TypeError):
            raise FenceError("the install network has no gateway address") from None
        try:
            port = await self.proxy.start(gateway)
        except OSError as e:
            raise FenceError(f"the egress proxy could not listen on {gateway}: {e}") from None
        self._rules = True  # from the first rule on, close() removes them
        for program, args in firewall_rules(self.bridge, gateway, port):
            error = await _run(program, args)
            if error:
                raise FenceError(f"the host firewall rules could not be made ({error})")
        self.proxy_url = f"http://{gateway}:{port}"

    async def close(self) -> None:
        """Remove the rules, stop the proxy, remove the network (after its containers)."""
        await self.proxy.close()
        if self._rules:
            await remove_firewall(self.bridge)
        if self._network_id is not None:
            await remove_network(self.engine, self._network_id, self.log)


async def remove_firewall(bridge: str) -> None:
    """Remove a fence's firewall rules; parts already gone are skipped."""
    for program, args in firewall_removal(bridge):
        await _run(program, args)


async def remove_network(engine: DockerEngine, network_id: str, log: logging.Logger) -> None:
    try:
        await engine.remove_network(network_id)
    except Exception as e:  # noqa: BLE001 - logged; the next start removes leftovers
        log.warning("Install network %s not removed: %s", network_id[:12], e)


async def remove_leftover_fences(engine: DockerEngine, log: logging.Logger) -> None:
    """Gateway start: remove the fences (rules, networks) an earlier run of it left."""
    for network in await engine.labelled_networks(FENCE_LABEL):
        network_id = network["Id"]
        bridge = (network.get("Options") or {}).get("com.docker.network.bridge.name", "")
        if bridge.startswith(BRIDGE_PREFIX):
            await remove_firewall(bridge)
        await remove_network(engine, network_id, log)
