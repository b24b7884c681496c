"""Authentication with real JWTs (HS256, and RS256/ES256 from a JWKS server) and per-user
scoping. Kernels run locally here: what is tested is the gateway's door, not the sandbox."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tornado import httpserver, web
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.harness import free_port

SECRET = "s3cret-for-tests-that-is-long-enough-for-hs256"
ISSUER = "https://auth.test"
AUDIENCE = "kernelgate"
PLANS_CONFIG = """
c.JWTIdentityProvider.issuer = {issuer!r}
c.JWTIdentityProvider.audience = {audience!r}
c.JWTIdentityProvider.leeway = 0
c.JWTIdentityProvider.jwks_min_refresh = 0.5
c.Plans.plans = {{
    "free": {{"kernel_tiers": ["medium"], "max_kernels": 1}},
    "pro": {{"kernel_tiers": ["low", "medium"], "max_kernels": 1}},
    "team": {{"kernel_tiers": ["low", "medium", "high"], "max_kernels": 5}},
}}
"""


def claims(sub="alice", **extra):
    now = int(time.time())
    base = {"sub": sub, "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE, "tier": "pro"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs(sub="alice", key=SECRET, **extra) -> str:
    return jwt.encode(claims(sub, **extra), key, algorithm="HS256")


def hmac_token(key: bytes, payload: dict, kid: str) -> str:
    """An HS256 token built by hand, with any bytes as the key (PyJWT refuses PEM keys)."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + b64(
        json.dumps(payload).encode()
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


class JWKSServer:
    """A stand-in auth service, started by the test: it publishes its public keys, and
    answers introspection from `users` (sub -> {"active", "tier"?})."""

    def __init__(self) -> None:
        self.keys: dict[str, object] = {}
        self.users: dict[str, dict] = {}
        self.fetches = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        self.introspection_url = f"http://127.0.0.1:{self.port}/introspect"
        server = self

        class Handler(web.RequestHandler):
            def get(self):
                server.fetches += 1
                self.write({"keys": [server.public_jwk(kid, key) for kid, key in server.keys.items()]})

        class Introspect(web.RequestHandler):
            def post(self):
                sub = json.loads(self.request.body)["sub"]
                self.write(server.users.get(sub, {"active": False}))

        self.http = httpserver.HTTPServer(web.Application([
            (r"/.well-known/jwks.json", Handler), (r"/introspect", Introspect),
        ]))
        self.http.listen(self.port, "127.0.0.1")

    def add(self, kid: str, key) -> None:
        self.keys[kid] = key

    @staticmethod
    def public_jwk(kid: str, key) -> dict:
        if isinstance(key, rsa.RSAPrivateKey):
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            jwk["alg"] = "RS256"
        else:
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            jwk["alg"] = "ES256"
        jwk["kid"] = kid
        return jwk

    def sign(self, kid: str, **extra) -> str:
        key = self.keys[kid]
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(claims(**extra), key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def jwks():
    server = JWKSServer()
    yield server
    server.http.stop()


@pytest.fixture
def authed_gateway(start_gateway, jwks, tmp_path):
    jwks.add("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    jwks.add("ec-1", ec.generate_private_key(ec.SECP256R1()))
    config = tmp_path / "auth_config.py"
    config.write_text(PLANS_CONFIG.format(issuer=ISSUER, audience=AUDIENCE))
    return start_gateway(
        "--kernels=local", f"--config={config}", f"--jwt-secret={SECRET}", f"--jwks-url={jwks.url}"
    )


async def test_valid_tokens_work_on_rest_and_websocket(authed_gateway, jwks):
    for token in (hs(), jwks.sign("rsa-1"), jwks.sign("ec-1")):
        for scheme in ("Bearer", "token"):
            response = await authed_gateway.client(token, scheme).request("GET", "/api/kernels")
            assert response.status == 200, response.body
    client = authed_gateway.client(jwks.sign("rsa-1"))
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    run = await ws.execute("import os; print(os.environ['KERNEL_USERNAME'])")
    assert run.stdout == "alice\n"
    ws.close()
    # browsers' WebSockets pass the token in the query
    url = authed_gateway.url.replace("http", "ws") + f"/api/kernels/{kernel['id']}/channels?token={hs()}"
    conn = await websocket_connect(url)
    conn.close()


async def test_bad_tokens_are_401(authed_gateway, jwks):
    rsa_key = jwks.keys["rsa-1"]
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = jwt.encode(claims(), None, algorithm="none")
    confused = hmac_token(public_pem, claims(), kid="rsa-1")  # HS256 keyed with the public key
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged_rs = jwt.encode(claims(), other_rsa, algorithm="RS256", headers={"kid": "rsa-1"})
    bad = {
        "missing": None,
        "malformed": "not.a.jwt",
        "garbage": "abc",
        "expired": hs(exp=int(time.time()) - 10),
        "not yet valid": hs(nbf=int(time.time()) + 300),
        "wrong signature": hs(key="another-secret-that-is-long-enough-for-hs256!!"),
        "wrong issuer": hs(iss="https://evil.test"),
        "wrong audience": hs(aud="someone-else"),
        "no exp": hs(exp=None),
        "no sub": hs(sub=None),
        "alg none": unsigned,
        "HS/RS key confusion": confused,
        "forged RS256": forged_rs,
        "unknown kid": jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "nope"}),
    }
    for what, token in bad.items():
        client = authed_gateway.client(token)
        response = await client.request("GET", "/api/kernels")
        assert response.status == 401, what
        assert set(response.body) == {"reason", "message"}, what
        url = authed_gateway.url.replace("http", "ws") + "/api/kernels/x/channels"
        with pytest.raises(HTTPClientError) as info:
            await websocket_connect(HTTPRequest(url, headers=client.headers))
        assert info.value.code == 401, what
    assert (await authed_gateway.client().request("GET", "/api")).status == 200  # public


async def test_jwks_key_rotation(authed_gateway, jwks):
    assert (await authed_gateway.client(jwks.sign("rsa-1")).request("GET", "/api/kernels")).status == 200
    jwks.keys.clear()
    jwks.add("rsa-2", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    await asyncio.sleep(0.6)  # past jwks_min_refresh
    response = await authed_gateway.client(jwks.sign("rsa-2")).request("GET", "/api/kernels")
    assert response.status == 200
    # a flood of unknown kids does not turn into a flood of fetches
    before = jwks.fetches
    bogus = [jwt.encode(claims(), jwks.keys["rsa-2"], algorithm="RS256", headers={"kid": f"k{i}"})
             for i in range(30)]
    statuses = await asyncio.gather(
        *(authed_gateway.client(t).request("GET", "/api/kernels") for t in bogus)
    )
    assert {r.status for r in statuses} == {401}
    assert jwks.fetches - before <= 2


async def test_plans_limit_languages_and_kernels(authed_gateway):
    free = authed_gateway.client(hs("frank", tier="free"))  # free: only "medium" kernels
    specs = (await free.request("GET", "/api/kernelspecs")).body
    assert "python3" not in specs["kernelspecs"] and specs["default"] is None
    languages = (await free.request("GET", "/api/languages")).body
    assert all(lang["allowed"] == (lang["tier"] == "medium") for lang in languages)
    assert (await free.request("GET", "/api/kernelspecs/python3")).status == 404
    response = await free.request("POST", "/api/kernels", {"name": "python3"})
    assert response.status == 403
    assert "'low'" in response.body["message"] and "pro" in response.body["message"]
    session = await free.request("POST", "/api/sessions", {"path": "a", "kernel": {"name": "python3"}})
    assert session.status == 403  # sessions start kernels under the same rules

    pro = authed_gateway.client(hs("paula", tier="pro"))  # pro: one kernel at a time
    assert "python3" in (await pro.request("GET", "/api/kernelspecs")).body["kernelspecs"]
    first = await pro.start_kernel()
    second = await pro.request("POST", "/api/kernels", {"name": "python3"})
    assert second.status == 429, second.body
    await pro.request("DELETE", f"/api/kernels/{first['id']}")
    again = await pro.start_kernel()
    await pro.request("DELETE", f"/api/kernels/{again['id']}")

    nobody = authed_gateway.client(hs("nina", tier=None))  # no tier claim: the lowest plan
    assert "python3" not in (await nobody.request("GET", "/api/kernelspecs")).body["kernelspecs"]


async def test_users_cannot_reach_each_others_kernels(authed_gateway):
    alice = authed_gateway.client(hs("alice"))
    bob = authed_gateway.client(hs("bob"))
    kernel = await alice.start_kernel()
    kid = kernel["id"]
    assert (await bob.request("GET", "/api/kernels")).body == []
    for method, path in [
        ("GET", f"/api/kernels/{kid}"),
        ("POST", f"/api/kernels/{kid}/interrupt"),
        ("POST", f"/api/kernels/{kid}/restart"),
        ("DELETE", f"/api/kernels/{kid}"),
    ]:
        response = await bob.request(method, path)
        assert response.status == 404, (method, path)
    with pytest.raises(HTTPClientError) as info:
        await bob.connect(kid)
    assert info.value.code == 404
    session = await bob.request("POST", "/api/sessions", {"path": "x", "kernel": {"id": kid}})
    assert session.status == 404
    assert (await alice.request("GET", f"/api/kernels/{kid}")).status == 200
    await alice.request("DELETE", f"/api/kernels/{kid}")


async def test_socket_closes_when_its_token_expires(authed_gateway):
    token = hs(exp=int(time.time()) + 3)
    client = authed_gateway.client(token)
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    started = time.monotonic()
    while True:
        message = await asyncio.wait_for(ws.conn.read_message(), 10)
        if message is None:
            break
    assert ws.conn.close_code == 1008 and "expired" in ws.conn.close_reason.lower()
    assert time.monotonic() - started < 6
    fresh = authed_gateway.client(hs())
    await fresh.request("DELETE", f"/api/kernels/{kernel['id']}")


async def test_introspection_decides_activity_and_tier(start_gateway, jwks, tmp_path):
    config = tmp_path / "auth_config.py"
    config.write_text(PLANS_CONFIG.format(issuer=ISSUER, audience=AUDIENCE))
    gateway = start_gateway(
        "--kernels=local", f"--config={config}", f"--jwt-secret={SECRET}",
        f"--JWTIdentityProvider.introspection_url={jwks.introspection_url}",
    )
    jwks.users = {"upgraded": {"active": True, "tier": "pro"}, "banned": {"active": False}}
    upgraded = gateway.client(hs("upgraded", tier="free"))  # the token says free, the API pro
    assert "python3" in (await upgraded.request("GET", "/api/kernelspecs")).body["kernelspecs"]
    assert (await gateway.client(hs("banned")).request("GET", "/api/kernels")).status == 401
    assert (await gateway.client(hs("stranger")).request("GET", "/api/kernels")).status == 401


async def test_unreachable_jwks_is_503_not_a_crash(start_gateway):
    gateway = start_gateway("--kernels=local", f"--jwks-url=http://127.0.0.1:{free_port()}/jwks")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "k"})
    response = await gateway.client(token).request("GET", "/api/kernels")
    assert response.status == 503
    assert (await gateway.client().request("GET", "/api")).status == 200


async def test_token_command_mints_accepted_tokens(authed_gateway):
    out = subprocess.run(
        [sys.executable, "-m", "kernelgate", "token", f"--secret={SECRET}", "--user=tom", "--tier=pro",
         f"--JWTIdentityProvider.issuer={ISSUER}", f"--JWTIdentityProvider.audience={AUDIENCE}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert jwt.decode(out, SECRET, algorithms=["HS256"], audience=AUDIENCE)["sub"] == "tom"
    assert (await authed_gateway.client(out).request("GET", "/api/kernels")).status == 200


def test_serving_without_any_key_source_is_refused(tmp_path):
    from tests.harness import GatewayProcess

    gateway = GatewayProcess(tmp_path, "--kernels=local", "--JWTIdentityProvider.leeway=1")
    with pytest.raises(RuntimeError, match="Cannot authenticate anyone"):
        gateway.start(timeout=20)


async def test_the_admin_claim_is_configurable(start_gateway, tmp_path):
    """Only the configured claim and value make a platform admin."""
    default = start_gateway("--kernels=local", f"--jwt-secret={SECRET}")
    assert (await default.client(hs(roles=["admin"])).request("GET", "/api/admin/kernels")).status == 200
    assert (await default.client(hs(roles=["user"])).request("GET", "/api/admin/kernels")).status == 403
    configured = start_gateway(
        "--kernels=local", f"--jwt-secret={SECRET}", "--JWTIdentityProvider.admin_claim=groups",
        "--JWTIdentityProvider.admin_value=kg-admins",
    )
    admin_paths = [("GET", "/api/admin/kernels"), ("GET", "/api/admin/audit")]
    for method, path in admin_paths:
        assert (await configured.client(hs(groups=["staff", "kg-admins"])).request(method, path)).status == 200
        assert (await configured.client(hs(groups="kg-admins")).request(method, path)).status == 200
        for not_admin in (hs(roles=["admin"]), hs(groups=["staff"]), hs(groups="admin")):
            assert (await configured.client(not_admin).request(method, path)).status == 403
    malformed = await configured.client(hs(groups={"kg-admins": True})).request("GET", "/api/kernels")
    assert malformed.status == 401
    out = subprocess.run(
        [sys.executable, "-m", "kernelgate", "token", f"--secret={SECRET}", "--admin",
         "--JWTIdentityProvider.admin_claim=groups", "--JWTIdentityProvider.admin_value=kg-admins"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert (await configured.client(out).request("GET", "/api/admin/kernels")).status == 200


async def test_start_warns_when_issuer_and_audience_are_unchecked(start_gateway, tmp_path):
    unchecked = start_gateway("--kernels=local", f"--jwt-secret={SECRET}")
    assert "ISSUER (iss) and AUDIENCE (aud) NOT CHECKED" in unchecked.log()
    half = start_gateway("--kernels=local", f"--jwt-secret={SECRET}", f"--JWTIdentityProvider.issuer={ISSUER}")
    assert "AUDIENCE (aud) NOT CHECKED" in half.log() and "ISSUER" not in half.log()
    config = tmp_path / "auth_config.py"
    config.write_text(PLANS_CONFIG.format(issuer=ISSUER, audience=AUDIENCE))
    checked = start_gateway("--kernels=local", f"--config={config}", f"--jwt-secret={SECRET}")
    assert "NOT CHECKED" not in checked.log()
    # the same key, but a token issued for another service
    assert (await checked.client(hs(aud="another-service")).request("GET", "/api/kernels")).status == 401
    assert (await unchecked.client(hs(aud="another-service")).request("GET", "/api/kernels")).status == 200


async def test_terminal_socket_closes_when_its_token_expires(authed_gateway):
    token = hs(exp=int(time.time()) + 3)
    client = authed_gateway.client(token)
    kernel = await client.start_kernel()
    opened = await client.request("POST", "/api/terminals", {"kernel": kernel["id"]})
    assert opened.status == 201, opened.body
    url = authed_gateway.url.replace("http", "ws") + f"/terminals/websocket/{opened.body['name']}?token={token}"
    conn = await websocket_connect(url)
    started = time.monotonic()
    while await asyncio.wait_for(conn.read_message(), 10) is not None:
        pass
    assert conn.close_code == 1008 and "expired" in conn.close_reason.lower()
    assert time.monotonic() - started < 6
    with pytest.raises(HTTPClientError) as info:  # and the expired token opens nothing new
        await websocket_connect(url)
    assert info.value.code == 401
    await authed_gateway.client(hs()).request("DELETE", f"/api/kernels/{kernel['id']}")
