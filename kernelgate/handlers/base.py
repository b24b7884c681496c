"""What every kernelgate handler shares: where a request may come from (OriginPolicy),
identity, CORS, JSON errors, bounded JSON bodies, and logs that never show a token."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid

from tornado import web
from tornado.ioloop import IOLoop
from tornado.log import app_log, gen_log

from kernelgate import logs
from kernelgate.errors import BadRequest, Forbidden, GatewayError, TooLarge
from kernelgate.identity import Identity
from kernelgate.origins import OriginPolicy

#: Largest request body of every route but file contents, bytes (JSON parsed on the loop).
SMALL_BODY = 256 * 1024
#: Close code when the credentials of an open socket expire (RFC 6455: policy violation).
CLOSE_EXPIRED = 1008

log = logging.getLogger("kernelgate.web")

_TOKEN_VALUE = re.compile(r"([?&]token=)[^&#]*", re.IGNORECASE)
#: A client's X-Request-Id is kept when it looks like this; otherwise one is made.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def redacted(uri: str) -> str:
    """`uri` with the value of every `token` query parameter replaced by `[secret]`."""
    return _TOKEN_VALUE.sub(r"\1[secret]", uri)


class GatewayMixin:
    """Origin checks, identity and services for both HTTP and WebSocket handlers.

    Settings used: `kernelgate_services` (registry, catalog, sessions, identity_provider,
    ...), `kernelgate_origins` (an OriginPolicy) and `kernelgate_cors` (header -> value,
    sent to allowed cross-origin callers).
    """

    identity: Identity | None = None
    public = False  # True: served without credentials
    _expiry = None
    _request_id = ""

    @property
    def request_id(self) -> str:
        """The request's id: the client's X-Request-Id if it is a short token, else a new
        one; echoed in the X-Request-Id response header and in every log record."""
        if not self._request_id:
            sent = self.request.headers.get("X-Request-Id", "")
            self._request_id = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        return self._request_id

    @property
    def services(self):
        return self.settings["kernelgate_services"]

    @property
    def origins(self) -> OriginPolicy:
        return self.settings.get("kernelgate_origins") or OriginPolicy()

    async def prepare(self):
        logs.request_id.set(self.request_id)
        logs.kernel.set(self.path_kwargs.get("kernel_id", ""))
        logs.room.set(self.path_kwargs.get("room_id", ""))
        websocket = self.request.headers.get("Upgrade", "").lower() == "websocket"
        refusal = self.origins.refusal(self.request.method, self.request.headers, self.request.host, websocket)
        if refusal:
            raise Forbidden(refusal)
        if self.request.method == "OPTIONS" or self.public:
            return
        self.identity = await self.services.identity_provider.identify(self.request)
        if self.identity is None:
            raise web.HTTPError(401, reason="Unauthorized", log_message="Missing or invalid credentials")
        logs.user.set(self.identity.user)
        await self.services.users.seen(self.identity)

    def set_default_headers(self):
        self.set_header("X-Request-Id", self.request_id)
        origin = self.request.headers.get("Origin")
        if self.origins.allowed_origins:
            self.set_header("Vary", "Origin")
        if origin and self.origins.cross_origin_allowed(origin) and self.origins.host_allowed(self.request.host):
            self.set_header("Access-Control-Allow-Origin", origin)
            for header, value in self.settings.get("kernelgate_cors", {}).items():
                if value:
                    self.set_header(header, str(value))

    def check_origin(self, origin: str) -> bool:
        """WebSockets from browsers: the gateway's own origin or an allowed one."""
        return self.origins.origin_allowed(origin, self.request.host)

    def close_at_expiry(self) -> None:
        """WebSockets: close with 1008 `Token expired` when the caller's credentials
        expire (call in `open`, and `cancel_expiry` in `on_close`)."""
        if self.identity is not None and self.identity.expires_at is not None:
            delay = max(0.0, self.identity.expires_at - time.time())
            self._expiry = IOLoop.current().call_later(delay, self.close, CLOSE_EXPIRED, "Token expired")

    def cancel_expiry(self) -> None:
        if self._expiry is not None:
            IOLoop.current().remove_timeout(self._expiry)
            self._expiry = None

    def write_error(self, status_code: int, **kwargs) -> None:
        reason, message = self._reason, self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, GatewayError):
            self.set_status(exc.status, reason=exc.reason)
            reason, message = exc.reason, exc.message
            if getattr(exc, "retry_after", None):
                self.set_header("Retry-After", str(exc.retry_after))
        elif isinstance(exc, web.HTTPError):
            reason = exc.reason or self._reason
            message = exc.log_message % exc.args if exc.log_message else reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"reason": reason, "message": message}))

    def _request_summary(self) -> str:
        return f"{self.request.method} {redacted(self.request.uri)} ({self.request.remote_ip})"

    def log_exception(self, typ, value, tb) -> None:
        """Like tornado's, without the request's repr (its URI may hold a token)."""
        if isinstance(value, GatewayError):
            log.info("%s %s -> %d %s", self.request.method, self.request.path, value.status, value.message)
        elif isinstance(value, web.HTTPError):
            if value.log_message:
                gen_log.warning("%d %s: " + value.log_message, value.status_code,
                                self._request_summary(), *value.args)
        else:
            app_log.error("Uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))


@web.stream_request_body
class APIHandler(GatewayMixin, web.RequestHandler):
    """Base of the JSON REST handlers: errors are always {"reason", "message"}.

    The body is read only once `prepare` has checked the origin and the credentials, and
    only up to SMALL_BODY bytes, or the `kernelgate_max_body` setting for handlers with
    `large_body` (file contents): a larger declared body is 413 before a byte of it is
    read, and a larger chunked one ends the connection.
    """

    large_body = False
    _chunks: list[bytes] | None = None

    async def prepare(self):
        await super().prepare()
        limit = self.settings.get("kernelgate_max_body", SMALL_BODY) if self.large_body else SMALL_BODY
        declared = self.request.headers.get("Content-Length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise BadRequest("Content-Length is not a number")
            if int(declared) > limit:
                raise TooLarge(f"Request body over {limit} bytes")
        self.request.connection.set_max_body_size(limit)
        self._chunks = []

    def data_received(self, chunk: bytes) -> None:
        if self._chunks is not None:  # else refused in prepare: the connection is closing
            self._chunks.append(chunk)

    @property
    def body(self) -> bytes:
        """The request body (read once `prepare` is done)."""
        if self._chunks is not None:
            self.request.body, self._chunks = b"".join(self._chunks), None
        return self.request.body

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
        if not self.body:
            return {}
        if limit is not None and len(self.body) > limit:
            raise TooLarge(f"Request body over {limit} bytes")
        try:
            body = json.loads(self.body)
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
