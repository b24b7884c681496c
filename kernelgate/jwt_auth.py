"""JWTIdentityProvider: identity from a JWT issued by a dedicated auth service.

Tokens come from `Authorization: Bearer <jwt>`, `Authorization: token <jwt>` (jupyter_server
GatewayClient's default scheme) or `?token=<jwt>` (browsers' WebSockets). They are
verified with PyJWT against one of two key sources, each tied to its own algorithms so
that one key can never be used as the other (no HS/RS key confusion, never `none`):
- `secret`: a shared HS256 secret (small deployments, development);
- `jwks_url`: RS256/ES256 public keys from the auth service's JWKS, cached, refreshed
  when a token names an unknown `kid` (at most once per `jwks_min_refresh` seconds, so
  a flood of made-up kids cannot hammer the auth service).
Optionally `introspection_url` is asked, with a short cache, whether the user is still
active and which tier they have.

A platform admin is a token whose `admin_claim` (default `roles`) is `admin_value`
(default `admin`) or a list holding it. `iss` and `aud` are checked only when `issuer`
and `audience` are set; without them any token signed by the key is accepted, including
one the same auth service issued for another application: a warning says so at start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, List, Unicode

from kernelgate.errors import Unavailable
from kernelgate.identity import Identity, IdentityProvider

log = logging.getLogger("kernelgate.auth")

HMAC_ALGORITHMS = {"HS256", "HS384", "HS512"}
PUBLIC_KEY_ALGORITHMS = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}


class Rejected(Exception):
    """The token is not acceptable; the message says why (logged, never sent)."""


def token_from(request) -> str | None:
    """The raw token of a request, from the Authorization header or ?token=."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    values = request.query_arguments.get("token")
    return values[0].decode("utf-8", "replace") if values else None


class JWKSCache:
    """Public keys by kid from a JWKS URL, fetched without blocking the event loop."""

    def __init__(self, url: str, min_refresh: float, ttl: float, timeout: float = 5.0) -> None:
        self.url = url
        self.min_refresh = min_refresh
        self.ttl = ttl
        self.timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._fetching: asyncio.Future | None = None

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key named `kid`; refetches the set when it is unknown or stale."""
        now = time.monotonic()
        stale = now - self._fetched_at > self.ttl
        if (kid not in self._keys or stale) and now - self._fetched_at >= self.min_refresh:
            await self._refresh()
        if kid not in self._keys:
            raise Rejected(f"unknown key id {kid!r}")
        return self._keys[kid]

    async def _refresh(self) -> None:
        if self._fetching is None:  # concurrent callers share one fetch
            self._fetching = asyncio.ensure_future(self._fetch())
        fetching = self._fetching
        try:
            await asyncio.shield(fetching)
        finally:
            if self._fetching is fetching and fetching.done():
                self._fetching = None

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            response = await AsyncHTTPClient().fetch(HTTPRequest(self.url, request_timeout=self.timeout))
            keys = jwt.PyJWKSet.from_dict(json.loads(response.body)).keys
        except (HTTPClientError, OSError, ValueError, jwt.PyJWKSetError) as e:
            log.warning("JWKS fetch from %s failed: %s", self.url, e)
            if not self._keys:
                raise Unavailable("The authentication service's keys cannot be fetched") from None
            return
        self._keys = {k.key_id: k for k in keys if k.key_id}
        log.info("JWKS: %d key(s) from %s", len(self._keys), self.url)


class JWTIdentityProvider(IdentityProvider):
    """Verifies JWTs; `sub` is the user, `tier` the plan, `admin_claim` makes an admin."""

    secret = Unicode("", config=True, help="Shared secret for HS256 tokens; empty: none accepted.")
    jwks_url = Unicode("", config=True, help="JWKS URL of the auth service (RS256/ES256 keys).")
    algorithms = List(
        Unicode(), default_value=["HS256", "RS256", "ES256"], config=True,
        help="Accepted algorithms. HS* need `secret`, the others `jwks_url`.",
    )
    issuer = Unicode("", config=True, help="Required `iss` claim; empty: not checked.")
    audience = Unicode("", config=True, help="Required `aud` claim; empty: not checked.")
    admin_claim = Unicode(
        "roles", config=True,
        help="The claim naming platform admins: a string or a list of strings holding "
        "admin_value. Empty: no token makes an admin.",
    )
    admin_value = Unicode("admin", config=True, help="The admin_claim value of a platform admin.")
    leeway = Float(30.0, config=True, help="Seconds of clock skew allowed for exp/nbf/iat.")
    jwks_min_refresh = Float(10.0, config=True, help="Least seconds between two JWKS fetches.")
    jwks_ttl = Float(3600.0, config=True, help="Seconds before cached keys are refetched.")
    introspection_url = Unicode(
        "", config=True,
        help="Optional auth API asked about each user: POST {\"sub\": ...} -> "
        "{\"active\": bool, \"tier\"?: str}. Empty: not asked.",
    )
    introspection_ttl = Float(30.0, config=True, help="Seconds an introspection answer is reused.")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if not self.secret and not self.jwks_url:
            raise ValueError(
                "JWT authentication needs JWTIdentityProvider.secret or .jwks_url "
                "(or run with --no-auth for local development)"
            )
        self._jwks = JWKSCache(self.jwks_url, self.jwks_min_refresh, self.jwks_ttl) if self.jwks_url else None
        self._introspected: dict[str, tuple[float, dict]] = {}
        unchecked = [name for name in ("issuer", "audience") if not getattr(self, name)]
        if unchecked:
            self.log.warning(
                "JWT %s NOT CHECKED: any unexpired token signed by this key is accepted, "
                "also one issued for another service. Set JWTIdentityProvider.%s.",
                " and ".join({"issuer": "ISSUER (iss)", "audience": "AUDIENCE (aud)"}[n] for n in unchecked),
                " and .".join(unchecked),
            )

    async def identify(self, request) -> Identity | None:
        token = token_from(request)
        if not token:
            return None
        try:
            claims = await self.verify(token)
            identity = self._identity(claims)
            if self.introspection_url:
                identity = await self._introspect(identity, token)
        except Rejected as e:
            log.info("Rejected a token from %s: %s", request.remote_ip, e)
            return None
        return identity

    async def verify(self, token: str) -> dict:
        """The token's claims once its signature, algorithm and claims are valid."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as e:
            raise Rejected(f"malformed token: {e}") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise Rejected(f"algorithm {alg!r} is not accepted")
        if alg in HMAC_ALGORITHMS:
            if not self.secret:
                raise Rejected("HMAC tokens are not accepted (no secret configured)")
            key = self.secret
        elif alg in PUBLIC_KEY_ALGORITHMS and self._jwks is not None:
            jwk = await self._jwks.key(header.get("kid"))
            if jwk.algorithm_name != alg:
                raise Rejected(f"key {jwk.key_id!r} is for {jwk.algorithm_name}, not {alg}")
            key = jwk.key
        else:
            raise Rejected(f"no key source for algorithm {alg!r}")
        try:
            return jwt.decode(
                token, key, algorithms=[alg], leeway=self.leeway,
                issuer=self.issuer or None, audience=self.audience or None,
                options={"require": ["exp", "sub"], "verify_aud": bool(self.audience)},
            )
        except jwt.InvalidTokenError as e:
            raise Rejected(str(e) or type(e).__name__) from None

    def _identity(self, claims: dict) -> Identity:
        sub, tier = claims["sub"], claims.get("tier", "")
        if not isinstance(sub, str) or not sub:
            raise Rejected("sub must be a non-empty string")
        if not isinstance(tier, str):
            raise Rejected("tier must be a string")
        return Identity(
            user=sub, tier=tier, roles=frozenset({"admin"} if self._is_admin(claims) else ()),
            name=str(claims.get("name", "")), expires_at=float(claims["exp"]),
        )

    def _is_admin(self, claims: dict) -> bool:
        value = claims.get(self.admin_claim) if self.admin_claim else None
        if value is None:
            return False
        if isinstance(value, str):
            return value == self.admin_value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return self.admin_value in value
        raise Rejected(f"{self.admin_claim} must be a string or a list of strings")

    async def _introspect(self, identity: Identity, token: str) -> Identity:
        now = time.monotonic()
        cached = self._introspected.get(identity.user)
        if cached and now - cached[0] < self.introspection_ttl:
            answer = cached[1]
        else:
            request = HTTPRequest(
                self.introspection_url, method="POST", body=json.dumps({"sub": identity.user}),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
                request_timeout=5,
            )
            try:
                answer = json.loads((await AsyncHTTPClient().fetch(request)).body)
            except (HTTPClientError, OSError, ValueError) as e:
                log.warning("Introspection of %s failed: %s", identity.user, e)
                raise Unavailable("The authentication service cannot be reached") from None
            self._introspected[identity.user] = (now, answer)
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise Rejected(f"user {identity.user!r} is not active")
        tier = answer.get("tier")
        if isinstance(tier, str) and tier:
            identity = Identity(identity.user, tier, identity.roles, identity.name, identity.expires_at)
        return identity


def mint(secret: str, user: str, tier: str = "", extra: dict | None = None,
         expires_in: float = 3600, issuer: str = "", audience: str = "") -> str:
    """An HS256 token for local use (`kernelgate token`); `extra`: more claims."""
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + int(expires_in), **(extra or {})}
    if tier:
        claims["tier"] = tier
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
