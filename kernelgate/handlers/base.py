"""What every kernelgate handler shares: identity, JSON errors, CORS, JSON bodies."""

from __future__ import annotations

import asyncio
import json
import logging

from tornado import web

from kernelgate.errors import BadRequest, GatewayError, TooLarge
from kernelgate.identity import Identity

#: Largest JSON body parsed on the event loop (every request but file contents), bytes.
SMALL_BODY = 256 * 1024

log = logging.getLogger("kernelgate.web")

_CORS_HEADERS = {
    "allow_origin": "Access-Control-Allow-Origin",
    "allow_headers": "Access-Control-Allow-Headers",
    "allow_methods": "Access-Control-Allow-Methods",
    "allow_credentials": "Access-Control-Allow-Credentials",
    "expose_headers": "Access-Control-Expose-Headers",
    "max_age": "Access-Control-Max-Age",
}


class GatewayMixin:
    """Identity and services for both HTTP and WebSocket handlers.

    Settings used: `kernelgate_services` (an object with registry, catalog, sessions,
    identity_provider) and `kernelgate_cors` (config name -> value).
    """

    identity: Identity | None = None
    public = False  # True: served without credentials

    @property
    def services(self):
        return self.settings["kernelgate_services"]

    async def prepare(self):
        if self.request.method == "OPTIONS" or self.public:
            return
        self.identity = await self.services.identity_provider.identify(self.request)
        if self.identity is None:
            raise web.HTTPError(401, reason="Unauthorized", log_message="Missing or invalid credentials")
        await self.services.users.seen(self.identity)

    def set_default_headers(self):
        for name, header in _CORS_HEADERS.items():
            value = self.settings.get("kernelgate_cors", {}).get(name)
            if value:
                self.set_header(header, str(value))

    def check_origin(self, origin: str) -> bool:
        """WebSockets from browsers: allowed for the configured origin, or same host."""
        allowed = self.settings.get("kernelgate_cors", {}).get("allow_origin")
        if allowed == "*" or origin == allowed:
            return True
        return super().check_origin(origin)

    def write_error(self, status_code: int, **kwargs) -> None:
        reason, message = self._reason, self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, GatewayError):
            self.set_status(exc.status, reason=exc.reason)
            reason, message = exc.reason, exc.message
        elif isinstance(exc, web.HTTPError):
            reason = exc.reason or self._reason
            message = exc.log_message % exc.args if exc.log_message else reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"reason": reason, "message": message}))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, GatewayError):
            log.info("%s %s -> %d %s", self.request.method, self.request.path, value.status, value.message)
        else:
            super().log_exception(typ, value, tb)


class APIHandler(GatewayMixin, web.RequestHandler):
    """Base of the JSON REST handlers: errors are always {"reason", "message"}."""

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def options(self, *args, **kwargs):
        """CORS preflight."""
        self.set_status(204)
        self.finish()

    def json_body(self, limit: int | None = SMALL_BODY) -> dict:
        """The request body as a JSON object (empty body = {}); BadRequest otherwise,
        TooLarge past `limit` bytes (it is parsed on the event loop: see json_body_in_thread)."""
        if not self.request.body:
            return {}
        if limit is not None and len(self.request.body) > limit:
            raise TooLarge(f"Request body over {limit} bytes")
        try:
            body = json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"Request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object")
        return body

    def write_json(self, value, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(value))

    async def json_body_in_thread(self) -> dict:
        """`json_body` parsed in a thread, up to the server's body limit: for bodies that
        can be large (file contents)."""
        return await asyncio.to_thread(self.json_body, None)

    async def write_json_in_thread(self, value, status: int = 200) -> None:
        """`write_json` encoded in a thread: for values that can be large (file contents)."""
        body = await asyncio.to_thread(json.dumps, value)
        self.set_status(status)
        self.finish(body)


class NotFoundHandler(APIHandler):
    """JSON 404 for every path no other handler serves."""

    public = True

    def prepare(self):
        raise web.HTTPError(404, "Not found: %s", self.request.path, reason="Not Found")
