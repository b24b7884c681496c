"""The `kernelgate` command: `kernelgate serve` runs the gateway, `kernelgate images` builds
kernel images.

Configuration, lowest precedence first: `KERNELGATE_*` environment variables, the config
file (`jupyter_config.py` in the working directory, or `--config=PATH`), the command line.
An environment variable is either an alias (`KERNELGATE_PORT=9000` is `--port=9000`) or a
full trait name with `__` for the dot (`KERNELGATE_KernelRegistry__max_kernels=10`).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
from tornado import httpserver, web
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, List, Type, Unicode, default, validate
from traitlets.config import Application, catch_config_error

import kernelgate
from kernelgate import logs, metrics
from kernelgate.clock import utcnow
from kernelgate.engine import DockerEngine, EngineUnavailable
from kernelgate.environment.install import EnvironmentService
from kernelgate.handlers import routes
from kernelgate.handlers.base import SMALL_BODY, redacted
from kernelgate.health import HealthCheck
from kernelgate.identity import DevIdentityProvider, IdentityProvider
from kernelgate.images import ImageBuilder, ImageError
from kernelgate.jwt_auth import JWTIdentityProvider, mint
from kernelgate.kernels.registry import KernelRegistry
from kernelgate.kernelspecs import KernelSpecCatalog
from kernelgate.origins import ANY_ORIGIN, OriginPolicy, is_loopback
from kernelgate.plans import Plans
from kernelgate.ratelimit import ExecuteRateLimit
from kernelgate.provisioners.docker import DockerProvisioner
from kernelgate.sessions import SessionManager
from kernelgate.rooms import RoomService
from kernelgate.storage import RoomStorage
from kernelgate.storage.local import LocalBackend
from kernelgate.storage.s3 import S3Backend
from kernelgate.store import Store
from kernelgate.terminals import TerminalManager
from kernelgate.tiers import Tiers
from kernelgate.users import SeenUsers
from kernelgate.userns import UserNamespace

ENV_PREFIX = "KERNELGATE_"


class ConfiguredApp(Application):
    """An Application reading KERNELGATE_* variables and jupyter_config.py, then the CLI."""

    config_file = Unicode(
        "", config=True, help="Config file to load; default: ./jupyter_config.py if present."
    )
    #: A config file that cannot be read stops the command (traitlets' default logs the
    #: error and goes on without the file's settings: its security settings too).
    raise_config_file_errors = True

    @catch_config_error
    def initialize(self, argv=None):
        self.parse_command_line(self._environment_argv(os.environ))
        self.parse_command_line(argv)  # the command line wins over the environment
        if self.subapp is not None:
            return
        path = Path(self.config_file or "jupyter_config.py")
        if self.config_file and not path.is_file():
            raise SystemExit(f"Config file {path} does not exist or is not a file")
        if path.is_file():
            try:
                self.load_config_file(path.name, path=[str(path.parent.resolve())])
            except Exception as e:  # noqa: BLE001 - any error in the file's code
                raise SystemExit(f"Config file {path} cannot be loaded: {type(e).__name__}: {e}") from None

    def _environment_argv(self, environ) -> list[str]:
        """KERNELGATE_* variables as command-line options: KERNELGATE_Class__trait as
        --Class.trait, KERNELGATE_ALIAS (e.g. KERNELGATE_JWT_SECRET) as --alias."""
        argv = []
        for key, value in sorted(environ.items()):
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX):]
            if "__" in name:
                argv.append(f"--{name.replace('__', '.')}={value}")
            elif name.lower().replace("_", "-") in self.aliases:
                argv.append(f"--{name.lower().replace('_', '-')}={value}")
        return argv


@dataclass
class Services:
    """What the handlers use, in one place (tornado setting `kernelgate_services`)."""

    registry: KernelRegistry
    catalog: KernelSpecCatalog
    sessions: SessionManager
    identity_provider: IdentityProvider
    plans: Plans
    terminals: TerminalManager
    rooms: RoomService
    store: Store
    users: SeenUsers
    environment: EnvironmentService
    health: HealthCheck
    execute_limit: ExecuteRateLimit
    tiers: Tiers
    images: ImageBuilder
    engine: DockerEngine


class ServeApp(ConfiguredApp):
    """Runs the gateway."""

    name = "kernelgate-serve"
    description = "Serve the Jupyter kernel API over sandboxed kernels."

    ip = Unicode("127.0.0.1", config=True, help="Address to listen on.")
    port = Int(8888, config=True, help="Port to listen on.")
    base_url = Unicode("/", config=True, help="URL prefix of every route.")
    kernels = CaselessStrEnum(
        ["auto", "docker", "local"], "auto", config=True,
        help="Where kernels run: docker (sandboxed containers), local (unsandboxed "
        "processes of the gateway's user), auto (docker; local only with --no-auth when "
        "no engine answers). With authentication, auto never runs local kernels: starts "
        "answer 503 while the engine is unreachable.",
    )
    identity_provider_class = Type(
        JWTIdentityProvider, klass=IdentityProvider, config=True,
        help="Turns a request into the calling user. --no-auth selects "
        "DevIdentityProvider (one user, no credentials, loopback only).",
    )
    allow_origins = List(
        Unicode(), config=True,
        help="Web origins (scheme://host[:port]) other than the gateway's own that may use "
        "the API from a browser: CORS answers them, and their state-changing requests and "
        "WebSockets are served. '*': any origin (refused with --no-auth). None by default.",
    )
    allow_origin = Unicode(
        "", config=True,
        help="Kernel Gateway's single allowed origin; added to allow_origins.",
    )
    allow_headers = Unicode(
        "Authorization, Content-Type, X-XSRFToken, X-Requested-With", config=True,
        help="CORS Access-Control-Allow-Headers (to allowed origins).",
    )
    allow_methods = Unicode(
        "GET, POST, PUT, PATCH, DELETE, OPTIONS", config=True,
        help="CORS Access-Control-Allow-Methods (to allowed origins).",
    )
    allow_credentials = Unicode("", config=True, help="CORS Access-Control-Allow-Credentials.")
    expose_headers = Unicode("Location, X-Request-Id", config=True, help="CORS Access-Control-Expose-Headers.")
    max_age = Unicode("", config=True, help="CORS Access-Control-Max-Age (seconds).")
    allow_remote_access = Bool(
        config=True,
        help="Serve requests whatever their Host header. Default: True unless the gateway "
        "listens on a loopback address; when False, Host must be a loopback address, the "
        "listening address or one of local_hostnames (stops DNS rebinding).",
    )
    local_hostnames = List(
        Unicode(), ["localhost"], config=True,
        help="Host names served when allow_remote_access is False.",
    )
    idle_connection_timeout = Float(
        75.0, config=True, help="Seconds a connection may wait for a request's headers.",
    )
    body_timeout = Float(300.0, config=True, help="Seconds a request's body may take to arrive.")
    ws_ping_interval = Int(30, config=True, help="Seconds between WebSocket pings (0: off).")
    max_message_size = Int(
        64 * 1024 * 1024, config=True, help="Largest WebSocket message or request body, bytes."
    )
    cull_orphans = Bool(True, config=True, help="Remove kernels an earlier run left behind.")
    tornado_settings = Dict(config=True, help="Extra tornado Application settings.")
    log_style = CaselessStrEnum(
        ["text", "json"], "text", config=True,
        help="Log format: text, or json (one object per line: time, level, logger, event, "
        "request_id, user, kernel, room when known).",
    )
    log_max_length = Int(
        2000, config=True, help="Characters a log record may have; the rest is cut (kernels "
        "and clients control much of what is logged).",
    )
    log_rate = Float(
        5.0, config=True, help="Records per second one message template may log once its "
        "log_burst is spent; the rest are counted and reported as suppressed.",
    )
    log_burst = Int(50, config=True, help="Records one message template may log at once.")
    drain_timeout = Float(
        30.0, config=True, help="On SIGTERM, seconds the executions in flight may take to end "
        "while new kernels are refused (503, Retry-After); then rooms are synced, solo kernels "
        "stopped, room containers left for the next run to re-adopt.",
    )
    metrics_token = Unicode(
        "", config=True,
        help="Bearer token that may scrape GET /metrics (platform admins always may; with "
        "--no-auth it is open). Default: none.",
    )
    editor_dir = Unicode(
        "", config=True,
        help="Folder of the built web editor served at {base_url}editor/ (default: the "
        "checkout's extensions/editor/dist).",
    )

    aliases = {
        "ip": "ServeApp.ip",
        "port": "ServeApp.port",
        "base-url": "ServeApp.base_url",
        "kernels": "ServeApp.kernels",
        "config": "ServeApp.config_file",
        "max-kernels": "KernelRegistry.max_kernels",
        "runtime-dir": "KernelRegistry.runtime_dir",
        "gateway-id": "DockerEngine.gateway_id",
        "allow-origin": "ServeApp.allow_origin",
        "log-level": "Application.log_level",
        "log-format": "ServeApp.log_style",
        "metrics-token": "ServeApp.metrics_token",
        "data-dir": "Store.data_dir",
        "db-url": "Store.url",
        "jwt-secret": "JWTIdentityProvider.secret",
        "jwks-url": "JWTIdentityProvider.jwks_url",
    }
    flags = {
        "no-auth": (
            {"ServeApp": {"identity_provider_class": "kernelgate.identity.DevIdentityProvider"}},
            "Development: no authentication, every request acts as one user (with no "
            "execution rate limit); loopback only.",
        ),
    }

    classes = [
        KernelRegistry, KernelSpecCatalog, TerminalManager, RoomService, RoomStorage, LocalBackend,
        S3Backend, EnvironmentService, Store, Tiers, Plans, DockerEngine, DockerProvisioner,
        ImageBuilder, JWTIdentityProvider, DevIdentityProvider, HealthCheck, ExecuteRateLimit,
        UserNamespace,
    ]

    @default("allow_remote_access")
    def _remote_unless_loopback(self):
        return not is_loopback(self.ip)

    @validate("base_url")
    def _slashes(self, proposal):
        return "/" + proposal["value"].strip("/") + "/" if proposal["value"].strip("/") else "/"

    def start(self):
        asyncio.run(self.serve())

    def _execute_limit(self, development: bool) -> ExecuteRateLimit:
        """The execution rate limit; none in development mode unless configured."""
        if development and "per_minute" not in self.config.ExecuteRateLimit:
            return ExecuteRateLimit(parent=self, per_minute=0)
        return ExecuteRateLimit(parent=self)

    async def setup(self) -> web.Application:
        """Build the services and the tornado application (no listening yet).

        This is the one place services are built; each is handed what it uses
        (docs/architecture.md, "Wiring"). The steps, in dependency order: the
        configuration-only services, where kernels run, the kernel registry, the store and
        the rooms (re-adopting their kernels), what an earlier run left, the services the
        handlers use.
        """
        _raise_socket_limits()
        logs.configure(self.log, self.log_style, logs.FloodFilter(self.log_max_length, self.log_rate, self.log_burst))
        tiers, plans = Tiers(parent=self), Plans(parent=self)
        try:
            plans.check()
        except ValueError as e:
            raise SystemExit(str(e)) from None
        engine = DockerEngine(parent=self)
        images = ImageBuilder(parent=self, engine=engine)
        identity_provider = self._identity_provider()
        development = isinstance(identity_provider, DevIdentityProvider)
        catalog = await self._catalog(engine, images, development)
        registry = KernelRegistry(parent=self, catalog=catalog, tiers=tiers, engine=engine, images=images)
        store = await self._open_store()
        rooms = RoomService(store, registry, plans, RoomStorage(store, engine, parent=self), parent=self)
        await rooms.start()  # re-adopts running room kernels: before orphans are removed
        environment = EnvironmentService(rooms, registry, store, engine, images, parent=self)
        await self._remove_leftovers(registry, environment)
        registry.start_pools()
        self._record_solo_kernels(registry, store)
        sessions = SessionManager(registry, store)
        await sessions.start()
        terminals = TerminalManager(registry, rooms.kernel_role, parent=self)
        self._export_metrics(catalog, registry, terminals, rooms)
        health = HealthCheck(store, rooms.storage, registry, None if catalog.local_kernels else engine,
                             images=self._kernel_images(catalog, images), parent=self)
        self.registry, self.store, self.rooms = registry, store, rooms
        self.services = Services(
            registry=registry, catalog=catalog, sessions=sessions,
            identity_provider=identity_provider, plans=plans, terminals=terminals, rooms=rooms,
            store=store, users=SeenUsers(store), environment=environment, health=health,
            execute_limit=self._execute_limit(development), tiers=tiers, images=images,
            engine=engine,
        )
        return web.Application(routes(self.base_url), **self._tornado_settings(development))

    async def _catalog(self, engine: DockerEngine, images: ImageBuilder, development: bool) -> KernelSpecCatalog:
        """Where kernels run (ServeApp.kernels, and whether the engine answers), said in
        the log; the kernelspecs of that mode, loaded. With Docker, the image references
        are computed now (in a thread), so that later lookups read no files."""
        engine_answers = self.kernels != "local" and await engine.ping()
        local = self.kernels == "local" or (self.kernels == "auto" and development and not engine_answers)
        if not local:
            try:
                await asyncio.get_running_loop().run_in_executor(None, images.references)
            except (ImageError, OSError) as e:
                self.log.warning("Image references not computed: %s", e)
        if not local and not engine_answers:
            self.log.warning(
                "Docker engine not reachable: kernel starts answer 503 until it is%s",
                "" if self.kernels == "docker" else
                " (unsandboxed local kernels only with --kernels=local, or --no-auth)",
            )
        if local:
            self.log.warning(
                "LOCAL KERNELS: kernels run as unsandboxed processes of this user, with no "
                "container, no limits and full network access. Use only on a trusted machine."
            )
        catalog = KernelSpecCatalog(parent=self, local_kernels=local)
        await asyncio.get_running_loop().run_in_executor(None, catalog.load)
        return catalog

    async def _open_store(self) -> Store:
        """The store, migrated; the solo sessions an earlier run left open are ended."""
        store = Store(parent=self)
        await store.migrate()
        await store.end_open_solo_sessions("gateway stopped")
        return store

    async def _remove_leftovers(self, registry: KernelRegistry, environment: EnvironmentService) -> None:
        """With cull_orphans: the containers, socket folders and installs an earlier run
        left (after the rooms re-adopted theirs)."""
        if self.cull_orphans:
            try:
                await registry.remove_orphans()
                await environment.remove_leftovers()
            except EngineUnavailable as e:
                self.log.warning("Orphaned kernels not removed: %s", e)

    @staticmethod
    def _record_solo_kernels(registry: KernelRegistry, store: Store) -> None:
        """Solo kernels' starts and ends go into the store (rooms record their own)."""

        async def solo_started(kernel):
            if kernel.room is None:
                await store.solo_started(kernel.id, kernel.owner, kernel.name)

        async def solo_ended(kernel, reason):
            if kernel.room is None:
                await store.solo_ended(kernel.id, reason)

        registry.on_started.append(solo_started)
        registry.on_stopped.append(solo_ended)

    def _export_metrics(self, catalog: KernelSpecCatalog, registry: KernelRegistry,
                        terminals: TerminalManager, rooms: RoomService) -> None:
        metrics.prepare(list(catalog.find_kernel_specs()))
        metrics.register_state(registry, terminals, rooms)
        self._loop_watch = asyncio.ensure_future(metrics.watch_event_loop())

    def _tornado_settings(self, development: bool) -> dict:
        """tornado Application settings: the services, origin policy, CORS, limits."""
        cors = {
            "Access-Control-Allow-Headers": self.allow_headers,
            "Access-Control-Allow-Methods": self.allow_methods,
            "Access-Control-Allow-Credentials": self.allow_credentials,
            "Access-Control-Expose-Headers": self.expose_headers,
            "Access-Control-Max-Age": self.max_age,
        }
        return {
            "base_url": self.base_url,
            "kernelgate_services": self.services,
            "kernelgate_origins": self._origin_policy(development),
            "kernelgate_started": utcnow(),
            "kernelgate_max_body": self.max_message_size,
            "kernelgate_cors": cors,
            "websocket_ping_interval": self.ws_ping_interval or None,
            "websocket_max_message_size": self.max_message_size,
            "log_function": self._log_request,
            "kernelgate_editor_dir": self.editor_dir,
            "kernelgate_metrics_token": self.metrics_token,
            **self.tornado_settings,
        }

    @staticmethod
    def _kernel_images(catalog: KernelSpecCatalog, images: ImageBuilder) -> dict[str, str]:
        """Image -> reference of every Docker kernelspec (references are cached: no I/O)."""
        if catalog.local_kernels:
            return {}
        names = {catalog.image_of(name) for name in catalog.find_kernel_specs()} - {None}
        try:
            return {name: images.reference(name) for name in names}
        except (ImageError, OSError):  # logged at start (references)
            return {}

    def _identity_provider(self) -> IdentityProvider:
        try:
            identity_provider = self.identity_provider_class(parent=self)
        except ValueError as e:
            raise SystemExit(f"Cannot authenticate anyone: {e}") from None
        if isinstance(identity_provider, DevIdentityProvider):
            if not is_loopback(self.ip):
                raise SystemExit(
                    f"Refusing to listen on {self.ip} without authentication: the development "
                    "identity serves only loopback addresses."
                )
            self.log.warning("No authentication: every request acts as user %r", identity_provider.user)
        return identity_provider

    def _origin_policy(self, development: bool) -> OriginPolicy:
        origins = [*self.allow_origins, *([self.allow_origin] if self.allow_origin else [])]
        if development and ANY_ORIGIN in (o.strip() for o in origins):
            raise SystemExit(
                "Refusing allow_origins '*' without authentication: any web page could run "
                "code on this machine. List the origins that may use the gateway."
            )
        if development and self.allow_remote_access:
            self.log.warning("allow_remote_access without authentication: DNS rebinding is not stopped")
        try:
            return OriginPolicy.create(origins, self.allow_remote_access, self.local_hostnames, self.ip)
        except ValueError as e:
            raise SystemExit(f"ServeApp.allow_origins: {e}") from None

    async def serve(self) -> None:
        """Listen until SIGINT/SIGTERM, then stop every kernel (SIGTERM: after draining)."""
        app = await self.setup()
        server = httpserver.HTTPServer(  # APIHandler raises the body limit of file contents
            app, max_body_size=SMALL_BODY, xheaders=False,
            idle_connection_timeout=self.idle_connection_timeout, body_timeout=self.body_timeout,
        )
        server.listen(self.port, self.ip)
        self.log.info(
            "kernelgate %s listening on http://%s:%d%s (%s kernels)",
            kernelgate.__version__, self.ip, self.port, self.base_url,
            "local" if self.registry.catalog.local_kernels else "docker",
        )
        stop = asyncio.Event()
        received: list[int] = []
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda sig=sig: (received.append(sig), stop.set()))
        await stop.wait()
        if received[0] == signal.SIGTERM and self.drain_timeout > 0:
            self.log.warning("SIGTERM: draining (new kernels refused) for up to %gs", self.drain_timeout)
            left = await self.registry.drain(self.drain_timeout)  # /api/ready: draining
            if left:
                self.log.warning("Drain timed out with %d execution(s) still running", left)
        self.log.info("Shutting down: stopping %d kernel(s)", len(self.registry.kernels))
        server.stop()
        await self.rooms.stop()
        await self.registry.shutdown_all()
        await self.store.close()

    def _log_request(self, handler):
        """The access log (never a token: query tokens are redacted) and the HTTP metric."""
        status = handler.get_status()
        level = self.log.info if status < 400 else self.log.warning
        if status >= 500:
            level = self.log.error
        duration = handler.request.request_time()
        rid = getattr(handler, "request_id", "")
        level("%d %s %s %.1fms %s", status, handler.request.method, redacted(handler.request.uri),
              1000.0 * duration, rid, extra={
                  "request_id": rid, "status": status, "method": handler.request.method,
                  "path": handler.request.path, "duration_ms": round(1000.0 * duration, 1),
                  "user": handler.identity.user if getattr(handler, "identity", None) else ""})
        metrics.HTTP_REQUESTS.labels(handler.request.method, type(handler).__name__, str(status)).observe(duration)


def _raise_socket_limits() -> None:
    """Every kernel costs the gateway about ten file descriptors and seven ZeroMQ sockets:
    lift the process's open-file limit to its hard limit, and ZeroMQ's default of 1023
    sockets per context with it (before any socket exists)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    zmq.asyncio.Context.instance().set(zmq.MAX_SOCKETS, max(1024, hard))  # the one all kernels use


class TokenApp(ConfiguredApp):
    """Prints an HS256 token for local use, signed with JWTIdentityProvider.secret."""

    name = "kernelgate-token"
    description = "Mint an HS256 JWT for local use."
    user = Unicode("dev", config=True, help="The token's sub claim.")
    tier = Unicode("", config=True, help="The token's tier claim (a plan).")
    admin = Bool(False, config=True, help="A platform admin's token (JWTIdentityProvider.admin_claim).")
    expires_in = Int(3600, config=True, help="Seconds until the token expires.")
    classes = [JWTIdentityProvider]
    aliases = {
        "user": "TokenApp.user", "tier": "TokenApp.tier", "expires-in": "TokenApp.expires_in",
        "secret": "JWTIdentityProvider.secret", "jwt-secret": "JWTIdentityProvider.secret",
        "config": "TokenApp.config_file",
    }
    flags = {"admin": ({"TokenApp": {"admin": True}}, "A platform admin's token.")}

    def start(self):
        provider = self.config.JWTIdentityProvider
        secret = provider.get("secret", "")
        if not secret:
            raise SystemExit("No secret: pass --secret or set KERNELGATE_JWT_SECRET "
                             "(JWTIdentityProvider.secret)")
        admin = {provider.get("admin_claim", "roles"): [provider.get("admin_value", "admin")]}
        print(mint(secret, self.user, self.tier, admin if self.admin else None,
                   self.expires_in, provider.get("issuer", ""), provider.get("audience", "")))


class KernelGateApp(ConfiguredApp):
    """`kernelgate`: the root command."""

    name = "kernelgate"
    version = kernelgate.__version__
    description = "A Jupyter kernel gateway running every kernel in a sandboxed container."
    subcommands = {
        "serve": (ServeApp, ServeApp.description),
        "images": ("kernelgate.images.ImagesApp", "Build, list and prune the kernel images."),
        "token": (TokenApp, TokenApp.description),
    }

    def start(self):
        if self.subapp is None:
            self.print_help()
            self.exit(1)
        self.subapp.start()


def main(argv=None):
    KernelGateApp.launch_instance(argv=argv if argv is not None else sys.argv[1:])
