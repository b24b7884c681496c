"""OriginPolicy: which Host a request may name and which web origins may use the API.

Two browser attacks are stopped here, whatever the authentication:
- cross-site requests: a page on another origin makes the browser send a request to
  the gateway. A state-changing request (POST, PUT, PATCH, DELETE), a WebSocket upgrade
  or a CORS preflight that carries an `Origin` is served only when that origin is the
  gateway's own (the request's Host) or one of `allowed_origins`;
- DNS rebinding: a name the attacker controls resolves to the gateway's address, so the
  browser thinks the gateway is the attacker's origin. Unless `allow_remote_access`,
  the Host header must be a loopback address, the listening address, or one of
  `local_hostnames`.
Requests without an `Origin` header (curl, jupyter_server's GatewayClient, any
non-browser client) pass the origin check: browsers always send it on the requests above.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

ANY_ORIGIN = "*"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST_PORT = re.compile(r"^(.*?)(:\d+)?$")


def normal_origin(origin: str) -> str | None:
    """`scheme://host[:port]` in lower case without a default port; None when `origin`
    is not one (`null`, a path, garbage)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname or parts.path or parts.query:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    shown = f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme.lower()] else ""
    return f"{parts.scheme.lower()}://{host}{shown}"


def host_name(host_header: str) -> str:
    """The host of a Host header, without its port or an IPv6 address's brackets."""
    host = _HOST_PORT.match(host_header.strip()).group(1).lower()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(address: str) -> bool:
    """True for a loopback IP address or `localhost`."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OriginPolicy:
    allowed_origins: frozenset[str] = frozenset()  # normal origins, or ANY_ORIGIN
    allow_remote_access: bool = False
    local_hostnames: frozenset[str] = frozenset({"localhost"})
    listen_ip: str = "127.0.0.1"

    @classmethod
    def create(cls, origins, allow_remote_access: bool, local_hostnames, listen_ip: str) -> OriginPolicy:
        """ValueError names an entry of `origins` that is not an origin."""
        allowed = set()
        for origin in origins:
            normal = ANY_ORIGIN if origin.strip() == ANY_ORIGIN else normal_origin(origin)
            if normal is None:
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
            allowed.add(normal)
        return cls(frozenset(allowed), allow_remote_access,
                   frozenset(h.lower() for h in local_hostnames), listen_ip.lower())

    def host_allowed(self, host_header: str) -> bool:
        """Whether a request naming `host_header` may be served (DNS rebinding)."""
        if self.allow_remote_access:
            return True
        host = host_name(host_header)
        return host in self.local_hostnames or host == self.listen_ip or is_loopback(host)

    def cross_origin_allowed(self, origin: str) -> bool:
        """Whether `origin`, another than the gateway's, is allowed (CORS)."""
        return ANY_ORIGIN in self.allowed_origins or normal_origin(origin) in self.allowed_origins

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """Whether a browser request from `origin` to the gateway at `host_header` is
        same-origin or from an allowed origin."""
        try:
            same = urlsplit(origin.strip()).netloc.lower() == host_header.strip().lower()
        except ValueError:
            same = False
        return same or self.cross_origin_allowed(origin)

    def refusal(self, method: str, headers, host_header: str, websocket: bool) -> str | None:
        """Why a request must be refused (403), or None. `headers`: the request's."""
        if not self.host_allowed(host_header):
            return (f"Host {host_header!r} is not served: add it to ServeApp.local_hostnames "
                    "(or set ServeApp.allow_remote_access)")
        origin = headers.get("Origin")
        checked = method in STATE_CHANGING or method == "OPTIONS" or websocket
        if origin is not None and checked and not self.origin_allowed(origin, host_header):
            return f"Origin {origin!r} is not allowed: add it to ServeApp.allow_origins"
        return None
