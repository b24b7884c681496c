"""Errors the services raise for the handlers to answer: each knows its HTTP status.

The handlers render every one as JSON `{"reason", "message"}` (docs/api.md, "Errors");
anything else escaping a handler is a bug and answers a JSON 500 without details.
"""


class GatewayError(Exception):
    """An error meant for the client: `status` and `reason` are its HTTP status line."""

    status = 500
    reason = "Internal Server Error"

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


class BadRequest(GatewayError):
    status, reason = 400, "Bad Request"


class NotFound(GatewayError):
    status, reason = 404, "Not Found"


class Forbidden(GatewayError):
    status, reason = 403, "Forbidden"


class Capacity(GatewayError):
    """The gateway-wide kernel limit is reached (Kernel Gateway's answer, kept for clients)."""

    status, reason = 403, "Resource Limit"


class Conflict(GatewayError):
    status, reason = 409, "Conflict"


class TooLarge(GatewayError):
    """A request body, a file or an archive is over a limit (the handlers', the plan's,
    the storage's)."""

    status, reason = 413, "Payload Too Large"


class Unavailable(GatewayError):
    """A backend (Docker, an image, storage) cannot serve the request now."""

    status, reason = 503, "Service Unavailable"


class TooMany(GatewayError):
    """A per-user quota or rate limit is reached."""

    status, reason = 429, "Too Many Requests"
