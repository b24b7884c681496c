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
# Browsers on another origin (a web editor) need CORS:
# c.ServeApp.allow_origin = "https://editor.example.org"
# c.ServeApp.ws_ping_interval = 30          # seconds; 0 turns pings off
# c.ServeApp.max_message_size = 64 * 1024 * 1024

# --- Where kernels run -------------------------------------------------------------
# "docker": one sandboxed container per kernel; "local": unsandboxed processes of the
# gateway's user (development only); "auto": docker when an engine answers.
# c.ServeApp.kernels = "auto"
# c.DockerEngine.docker_url = ""             # empty: DOCKER_HOST or the local socket
# c.DockerEngine.gateway_id = "kernelgate"   # labels this gateway's containers
# c.KernelRegistry.max_kernels = 0           # 0 = no limit; beyond it: 403 Resource Limit
# c.KernelRegistry.runtime_dir = "/run/kernelgate"   # per-kernel ipc socket directories
# c.KernelRegistry.startup_timeout = 60.0
# c.KernelRegistry.buffer_seconds = 60.0     # output kept for a reconnecting session
# c.KernelSpecCatalog.default_kernel_name = "python3"
# c.KernelSpecCatalog.kernelspec_dirs = ["/path/to/kernelgate/kernelspecs"]
# c.DockerProvisioner.uid = 1000             # the unprivileged user kernels run as

# --- Tiers: the limits of a kernel's container --------------------------------------
# Each kernelspec names its tier in metadata.kernel_provisioner.config.tier.
# memory and tmp_size in bytes; runtime "" = the engine's default, "runsc" = gVisor.
# MiB = 1024 * 1024
# c.Tiers.tiers = {
#     "low": {"memory": 256 * MiB, "cpus": 0.5, "pids": 128, "exec_timeout": 30,
#             "idle_timeout": 600, "tmp_size": 64 * MiB},
#     "medium": {"memory": 512 * MiB, "cpus": 1.0, "pids": 256, "exec_timeout": 60,
#                "idle_timeout": 900, "tmp_size": 256 * MiB},
#     "high": {"memory": 1024 * MiB, "cpus": 2.0, "pids": 512, "exec_timeout": 120,
#              "idle_timeout": 1800, "tmp_size": 512 * MiB},
# }
# c.Tiers.default_tier = "low"

# --- Identity ----------------------------------------------------------------------
# Without an identity provider every request acts as one development user, and the
# gateway refuses to listen on anything but loopback.
# c.DevIdentityProvider.user = "dev"

# --- Images (kernelgate images build / list) ---------------------------------------
# c.ImageBuilder.debian_mirror = ""          # empty: debootstrap's default mirror
# c.ImageBuilder.pip_index_url = ""          # empty: pip's default index
# c.ImageBuilder.ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
