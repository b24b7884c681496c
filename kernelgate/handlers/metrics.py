"""GET /metrics: every metric in the Prometheus text format (kernelgate.metrics)."""

from __future__ import annotations

import hmac

from kernelgate.errors import Forbidden, GatewayError
from kernelgate.handlers.base import APIHandler
from kernelgate import metrics


class MetricsHandler(APIHandler):
    """For platform admins (with --no-auth, the one user is one), or a scraper sending
    `Authorization: Bearer <ServeApp.metrics_token>`; 403 otherwise."""

    public = True  # the scrape token is no identity: checked here

    async def get(self):
        token = self.settings.get("kernelgate_metrics_token", "")
        sent = self.request.headers.get("Authorization", "")
        allowed = bool(token) and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
        if not allowed:
            try:
                identity = await self.services.identity_provider.identify(self.request)
            except GatewayError:
                identity = None
            allowed = identity is not None and identity.is_admin
        if not allowed:
            raise Forbidden("Metrics are for platform admins or the configured scrape token")
        body = metrics.exposition()  # on the loop: it reads the services' state; a few kB
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.finish(body)
