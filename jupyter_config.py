# kernelgate configuration: an example that works as it is.
#
# `kernelgate serve` and `kernelgate images` load ./jupyter_config.py (or --config=PATH).
# Every setting can also be given on the command line (--ServeApp.port=9000, or an alias
# such as --port=9000) or as an environment variable (KERNELGATE_PORT=9000, or
# KERNELGATE_ServeApp__port=9000). Precedence: environment < this file < command line.
# `kernelgate serve --help-all` lists every setting with its help.
#
# The values below are the defaults unless a comment says otherwise.

c = get_config()  # noqa: F821 - provided by traitlets when the file is loaded

# --- Listening ---------------------------------------------------------------------
# c.ServeApp.ip = "127.0.0.1"
# c.ServeApp.port = 8888
# c.ServeApp.base_url = "/"
# c.ServeApp.ws_ping_interval = 30          # seconds; 0 turns pings off
# c.ServeApp.max_message_size = 64 * 1024 * 1024  # WebSocket messages and file contents
# c.ServeApp.idle_connection_timeout = 75.0  # seconds a connection may wait for headers
# c.ServeApp.body_timeout = 300.0            # seconds a request body may take
# c.ServeApp.editor_dir = ""                 # the built web editor at {base_url}editor/; default: extensions/editor/dist

# --- Browsers: origins, hosts, CORS (docs/api.md) ------------------------------------
# Pages on another origin (a web editor, thebe) that may use the API: CORS answers them,
# and their POST/PUT/PATCH/DELETE and WebSockets are served; other origins get 403.
# Requests without an Origin header (curl, GatewayClient) are not affected.
# c.ServeApp.allow_origins = ["https://editor.example.org"]   # default: none
# c.ServeApp.allow_origin = ""                # Kernel Gateway's single value, added to the list
# c.ServeApp.allow_headers = "Authorization, Content-Type, X-XSRFToken, X-Requested-With"
# c.ServeApp.allow_methods = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
# c.ServeApp.allow_credentials = ""
# c.ServeApp.expose_headers = "Location"
# c.ServeApp.max_age = ""
# Against DNS rebinding: unless allow_remote_access, the Host header must be a loopback
# address, ServeApp.ip or one of local_hostnames. Default: False when listening on a
# loopback address, True otherwise. Behind a local reverse proxy, list its public name.
# c.ServeApp.allow_remote_access = False
# c.ServeApp.local_hostnames = ["localhost"]

# --- Where kernels run -------------------------------------------------------------
# "docker": one sandboxed container per kernel; "local": unsandboxed processes of the
# gateway's user (development only); "auto": docker, except with --no-auth when no
# engine answers (then local). With authentication, "auto" never runs local kernels:
# while the engine is unreachable, kernel starts answer 503 and /api/health is degraded.
# c.ServeApp.kernels = "auto"
# c.DockerEngine.docker_url = ""             # empty: DOCKER_HOST or the local socket; also
#                                            # `kernelgate images` (was ImageBuilder.docker_url)
# c.DockerEngine.gateway_id = "kernelgate"   # labels this gateway's containers
# c.KernelRegistry.max_kernels = 0           # 0 = no limit; beyond it: 403 Resource Limit
# c.KernelRegistry.runtime_dir = "/run/kernelgate"   # per-kernel ipc socket directories
# c.KernelRegistry.startup_timeout = 60.0
# c.KernelRegistry.adopt_timeout = 10.0      # a room kernel left running, re-adopted at start
# c.KernelRegistry.start_parallel = 4        # cold starts launched at once; the others wait in line
# c.KernelRegistry.max_pending_starts = 32   # in line at once; beyond: 503 with Retry-After (0: no limit)
# c.KernelRegistry.max_pending_starts_per_user = 8  # one user's; beyond: 429 with Retry-After (0: no limit)
# c.KernelRegistry.buffer_seconds = 60.0     # output kept for a reconnecting session
# c.KernelRegistry.max_kernel_frame = 64 * 1024 * 1024  # larger kernel messages are dropped unread
# c.KernelRegistry.client_backlog = 64 * 1024 * 1024    # a client leaving more unread is dropped
# c.KernelSpecCatalog.default_kernel_name = "python3"
# c.KernelSpecCatalog.kernelspec_dirs = ["/path/to/kernelgate/kernelspecs"]
# c.DockerProvisioner.uid = 1000             # the unprivileged user kernels run as
# c.DockerProvisioner.start_cpus_seconds = 10.0  # longest start-up CPU allowance (tiers' start_cpus)
# c.DockerProvisioner.tmp_inodes = 65536      # files each kernel tmpfs (/tmp, home) may hold
# Host uid/gid owning what the gateway gives sandboxes (socket folders, install staging
# areas, room workspaces). -1: derived from the engine: the container uid, or under
# Docker's userns-remap the host uid it maps to (docs/deployment.md, "User namespaces").
# c.UserNamespace.host_uid = -1
# c.UserNamespace.host_gid = -1

# --- Tiers: the limits of a kernel's container --------------------------------------
# Each kernelspec names its tier in metadata.kernel_provisioner.config.tier.
# memory and tmp_size in bytes; runtime "" = the engine's default, "runsc" = gVisor.
# start_cpus: the CPU limit while a new container's kernel starts (imports are CPU-bound);
# lowered to cpus once the kernel answers, before anyone can run code (0 = cpus), or after
# DockerProvisioner.start_cpus_seconds if it has not answered by then. A kernel restarted
# inside its container (the API's restart) gets no allowance: its terminals run meanwhile.
# burst_cpus (0 = none): the CPU limit instead of cpus, which becomes the kernel's share
# when CPUs are contended (cpu.shares 1024 x cpus): a burst of work is not stalled by a
# quota below what it uses (docs/benchmarks.md, "Round-trip p99"). E.g. "burst_cpus": 1.0.
# MiB = 1024 * 1024
# c.Tiers.tiers = {
#     "low": {"memory": 256 * MiB, "cpus": 0.5, "pids": 128, "exec_timeout": 30,
#             "idle_timeout": 600, "tmp_size": 64 * MiB, "max_file_size": 32 * MiB,
#             "start_cpus": 2.0},
#     "medium": {"memory": 512 * MiB, "cpus": 1.0, "pids": 256, "exec_timeout": 60,
#                "idle_timeout": 900, "tmp_size": 256 * MiB, "start_cpus": 2.0},
#     "high": {"memory": 1024 * MiB, "cpus": 2.0, "pids": 512, "exec_timeout": 120,
#              "idle_timeout": 1800, "tmp_size": 512 * MiB},
#     # gVisor (runsc, registered by scripts/install.sh); no start_cpus: runsc cannot
#     # change a running container's limits. A plan must list it in kernel_tiers.
#     "untrusted": {"memory": 256 * MiB, "cpus": 0.5, "pids": 128, "exec_timeout": 30,
#                   "idle_timeout": 600, "tmp_size": 64 * MiB, "runtime": "runsc"},
# }
# c.Tiers.default_tier = "low"

# --- Identity ----------------------------------------------------------------------
# JWTs from your auth service: a shared HS256 secret and/or a JWKS URL (RS256/ES256).
# Without either, `kernelgate serve` refuses to start unless --no-auth is given (one
# development user, loopback only).
# c.JWTIdentityProvider.secret = ""            # or KERNELGATE_JWT_SECRET
# c.JWTIdentityProvider.jwks_url = ""          # or KERNELGATE_JWKS_URL
# c.JWTIdentityProvider.algorithms = ["HS256", "RS256", "ES256"]
# Set both: unchecked, any token signed by the key is accepted, also one issued for
# another service (a warning at start says so).
# c.JWTIdentityProvider.issuer = ""            # the required `iss`; checked when set
# c.JWTIdentityProvider.audience = ""          # the required `aud`; checked when set
# A platform admin: a token whose admin_claim is admin_value or a list holding it.
# c.JWTIdentityProvider.admin_claim = "roles"  # "" = no token makes an admin
# c.JWTIdentityProvider.admin_value = "admin"
# c.JWTIdentityProvider.leeway = 30.0
# c.JWTIdentityProvider.jwks_min_refresh = 10.0
# c.JWTIdentityProvider.introspection_url = "" # POST {"sub"} -> {"active", "tier"?}
# c.DevIdentityProvider.user = "dev"

# --- Plans: what a user's `tier` claim allows ---------------------------------------
# Per plan: max_* and snapshot_bytes 0 = none; workspace_bytes (>= 16 MiB) and
# workspace_inodes (>= 64) always apply; a key left out takes kernelgate.plans.Plan's
# default (1 GiB, 100000 inodes, 10 snapshots of 2 GiB, no lifetime limit).
# GiB, DAY = 1 << 30, 24 * 3600
# c.Plans.plans = {
#     "free": {"kernel_tiers": ["low"], "max_kernels": 2, "max_rooms": 1, "max_members": 5,
#              "workspace_bytes": 1 * GiB, "workspace_inodes": 100_000,
#              "max_snapshots": 10, "snapshot_bytes": 2 * GiB, "max_room_lifetime": 30 * DAY},
#     "pro": {"kernel_tiers": ["low", "medium"], "max_kernels": 5, "max_rooms": 5,
#             "max_members": 20, "workspace_bytes": 10 * GiB, "workspace_inodes": 500_000,
#             "max_snapshots": 30, "snapshot_bytes": 20 * GiB, "max_room_lifetime": 365 * DAY},
#     "team": {"kernel_tiers": ["low", "medium", "high"], "max_kernels": 10,
#              "max_rooms": 20, "max_members": 100, "workspace_bytes": 50 * GiB,
#              "workspace_inodes": 2_000_000, "max_snapshots": 100, "snapshot_bytes": 100 * GiB,
#              "max_room_lifetime": 0},
# }
# c.Plans.order = ["free", "pro", "team"]      # lowest first: the plan of a token without tier
# c.Plans.admin_plan = "team"

# --- Store, rooms, terminals ---------------------------------------------------------
# c.Store.data_dir = "/var/lib/kernelgate"     # the SQLite database, rooms/ and storage/
# c.Store.url = ""                             # e.g. "postgresql://user:pw@127.0.0.1/kernelgate"
# c.RoomService.expired_retention = 7 * 24 * 3600.0
# c.RoomService.check_interval = 30.0

# --- Room storage: working copies here, durable copies and snapshots in a backend ----
# c.RoomStorage.rooms_dir = ""                 # empty: <data_dir>/rooms (working copies)
# c.RoomStorage.workspace_quotas = "loop"      # ext4 volume per room (root, e2fsprogs); "off": no quotas
# c.RoomStorage.volumes_dir = ""               # empty: <data_dir>/volumes (the volumes' images)
# c.RoomStorage.preallocate_workspaces = False # True: reserve each volume on the host disk (a full disk cannot fail it)
# c.RoomStorage.sync_interval = 60.0           # seconds between syncs of changed workspaces
# c.RoomStorage.max_archive_bytes = 16 << 30   # file content per archive (apparent size); more: left out / 413
# c.RoomStorage.max_archive_members = 1_000_000  # entries per archive; more: left out / 413
# c.RoomStorage.max_archive_depth = 128        # nested folders; deeper: left out / 413
# c.RoomStorage.retry_interval = 10.0          # seconds between retries of degraded rooms
# c.RoomStorage.sweep_after = 3600.0           # at start, remove half-written objects older than this
# c.RoomStorage.snapshot_retention = 30 * 24 * 3600.0
# c.LocalBackend.root = ""                     # empty: <data_dir>/storage
# The "database" backend stores archives in the store's database (Store.url).
# "s3" is offered when a bucket is set; empty credentials use boto3's chain (AWS_* env).
# c.S3Backend.endpoint_url = ""                # empty: AWS; any S3-compatible server's URL
# c.S3Backend.bucket = ""
# c.S3Backend.prefix = "kernelgate/"
# c.S3Backend.region = "us-east-1"
# c.S3Backend.access_key_id = ""
# c.S3Backend.secret_access_key = ""
# c.TerminalManager.idle_timeout = 3600.0
# c.TerminalManager.scrollback_bytes = 64 * 1024
# c.TerminalManager.client_backlog = 16 * 1024 * 1024  # a client leaving more unread is dropped

# --- Kernel supervision and limits ---------------------------------------------------
# c.KernelRegistry.check_interval = 1.0        # dead-kernel and idle-culling checks
# c.KernelRegistry.restart_limit = 3           # automatic restarts within restart_window...
# c.KernelRegistry.restart_window = 60.0       # ...before a kernel is declared dead
# c.KernelRegistry.max_lifetime = 12 * 3600.0  # solo kernels; 0 = forever
# Warm pools (Docker): solo kernels started ahead of demand, handed out once (~45 ms to a
# first result instead of ~0.9 s), GatewayClient's starts included. Per kernelspec: N,
# or {"min": m, "max": M} sized by its starts in the last pool_window seconds. Not set:
# {default kernelspec: {"min": 1, "max": 2}}; {}: no pools. Starts passing a variable of
# allowed_client_env, and rooms, start afresh. Pools use spare max_kernels capacity only.
# c.KernelRegistry.pool_sizes = {"python3": {"min": 1, "max": 4}, "bash": 1}
# c.KernelRegistry.pool_window = 60.0
# c.KernelRegistry.pool_parallel = 2          # pool kernels started at once, all pools together
# c.KernelRegistry.pool_retry = 10.0
# Client variables passed into solo sandboxes (KERNEL_* names only; docs/api.md): none.
# c.KernelRegistry.allowed_client_env = ["KERNEL_SPARK_OPTS"]
# c.KernelRegistry.max_output = 4 * 1024 * 1024  # bytes of output per execution
# c.KernelRegistry.timeout_grace = 5.0         # after a timeout's interrupt, before a restart

# --- Environments: package installs for rooms (docs/environment.md) ----------------
# Install containers are the only containers with a network; everything they get comes
# from here (never from the gateway's own PIP_*/proxy variables).
# "fenced": a per-install internal network whose only way out is the gateway's CONNECT
# proxy to the hosts of the index URLs below and egress_hosts ("bridge"/"host" refused).
# c.EnvironmentService.network = "fenced"      # or "none" + mirror_dir, or a network of your own
# c.EnvironmentService.egress_hosts = []       # more "host" / "host:port", e.g. the index's file host
# c.EnvironmentService.egress_private_hosts = []  # allowed hosts that may resolve to LAN addresses
# c.EnvironmentService.timeout = 600.0         # seconds per install step
# c.EnvironmentService.memory = 1024 * 1024 * 1024
# c.EnvironmentService.cpus = 1.0
# c.EnvironmentService.pids = 256
# c.EnvironmentService.disk = "512m"           # the most an install may write
# c.EnvironmentService.tmp_size = "256m"
# c.EnvironmentService.ca_bundle = "/etc/ssl/certs/ca-certificates.crt"  # default "": the image's
# c.EnvironmentService.pip_index_url = ""      # e.g. your mirror; "" = pip's default (fenced:
#                                              # then list its hosts in egress_hosts)
# c.EnvironmentService.pip_extra_index_urls = []
# c.EnvironmentService.npm_registry = ""       # NPM_CONFIG_REGISTRY for Deno; "" = its default
#                                              # (fenced: then list its host in egress_hosts)
# c.EnvironmentService.debian_mirror = ""       # Perl, R, Ruby, C, Lua, Go, PHP, Java installs (Debian's):
#                                              # an https URL of a Debian mirror (the folder with dists/);
#                                              # "" = those installs are refused
# c.EnvironmentService.debian_security_mirror = ""  # its security suite; "" = left out
# c.EnvironmentService.apt_options = []         # "Name=value", e.g. "Acquire::Check-Valid-Until=false"
# c.EnvironmentService.http_proxy = ""        # these three: only on a network of your own
# c.EnvironmentService.https_proxy = ""
# c.EnvironmentService.no_proxy = ""
# c.EnvironmentService.mirror_dir = ""         # mounted read-only at /mirror
# c.EnvironmentService.uid = 1000
# c.EnvironmentService.images = {"javascript": "deno", "perl": "perl", "python": "python", "r": "r", "ruby": "ruby",
#                                   "c": "gcc", "lua": "lua", "go": "go", "php": "php", "java": "java"}

# --- Images (kernelgate images build / list) ---------------------------------------
# c.ImageBuilder.debian_mirror = ""          # empty: debootstrap's default mirror
# c.ImageBuilder.pip_index_url = ""          # empty: pip's default index
# c.ImageBuilder.ca_bundle = "/etc/ssl/certs/ca-certificates.crt"

# --- Execution rate limit (per user, over all their kernels and connections) ---------
# c.ExecuteRateLimit.per_minute = 600        # 0: no limit; beyond it: ename RateLimited
# c.ExecuteRateLimit.burst = 60
# c.ExecuteRateLimit.max_users = 100000      # buckets kept; the least recently seen go first

# --- Health (GET /api/health, no credentials; error details for platform admins) ----
# c.HealthCheck.cache_seconds = 5.0          # how long the backends' answers are reused

# --- Operations (docs/operations.md) -------------------------------------------------
# c.ServeApp.metrics_token = ""              # Bearer token that may scrape GET /metrics
# c.ServeApp.log_style = "text"              # --log-format=json: one JSON object per line
# c.ServeApp.log_max_length = 2000           # characters per log record; the rest is cut
# c.ServeApp.log_rate = 5.0                  # records/s per message template after its burst
# c.ServeApp.log_burst = 50
# c.ServeApp.drain_timeout = 30.0            # SIGTERM: seconds executions in flight may take
