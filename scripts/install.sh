#!/usr/bin/env bash
# Installs everything kernelgate needs on a Debian bookworm machine, idempotently:
#   Debian packages (docker.io, debootstrap, python3-venv, postgresql for the store's
#   tests), a running Docker engine, a virtualenv .venv with kernelgate and its test
#   dependencies, the kernel images.
# Run as root. Without a usable Docker engine it still installs kernelgate, which then
# runs local (unsandboxed) kernels; with CI=true a missing engine is an error.
# Images to build: $KERNELGATE_IMAGES (names of images/ folders; default: all of them).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
ci() { [ "${CI:-}" = "true" ]; }

export DEBIAN_FRONTEND=noninteractive
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || missing+=(chromium)  # the browser tests' browser (Playwright drives it)
command -v runsc >/dev/null || missing+=(runsc)        # gVisor, the untrusted tier's Docker runtime
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs) # room workspace volumes (RoomStorage.workspace_quotas)
command -v iptables >/dev/null || missing+=(iptables)   # the install fence's host rules (environment/egress.py)
command -v ip >/dev/null || missing+=(iproute2)         # network namespaces (tests/test_userns.py's second dockerd)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || missing+=(faketime)  # tests/test_faults_clock.py jumps a gateway's wall clock
if [ ${#missing[@]} -gt 0 ]; then
  log "Installing Debian packages: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null || { ci && exit 1; echo "apt-get failed: continuing"; }
fi

# promtool (Prometheus' rule checker and rule unit tester) for tests/test_deploy.py, taken
# out of Debian's prometheus package without installing it (no server, no service user).
PROMTOOL=/opt/kernelgate/bin/promtool
if [ ! -x "$PROMTOOL" ]; then
  log "Extracting promtool from Debian's prometheus package"
  work=$(mktemp -d)
  if (cd "$work" && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; } \
        && dpkg-deb -x prometheus_*.deb root) >/dev/null; then
    install -D -m 755 "$work/root/usr/bin/promtool" "$PROMTOOL"
  else
    ci && exit 1
    echo "promtool not installed: continuing"
  fi
  rm -rf "$work"
fi

# gVisor as the Docker runtime "runsc" (the untrusted tier's, kernelgate.tiers): merged
# into daemon.json, nothing else there changed. Sandboxes get no network from runsc
# whatever Docker asks, and may create and open host unix sockets (the ipc sockets of
# their bind-mounted socket folder). A running dockerd reloads on SIGHUP only if the file
# changed: a reload keeps running containers.
if command -v runsc >/dev/null; then
  runsc_changed=$(python3 - "$(command -v runsc)" <<'EOF'
import json, os, sys
path = "/etc/docker/daemon.json"
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
wanted = {"path": sys.argv[1], "runtimeArgs": ["--network=none", "--host-uds=all"]}
if config.get("runtimes", {}).get("runsc") == wanted:
    print("no")
else:
    config.setdefault("runtimes", {})["runsc"] = wanted
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".kernelgate-new", "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(path + ".kernelgate-new", path)
    print("yes")
EOF
)
  if [ "$runsc_changed" = yes ] && pidof dockerd >/dev/null; then
    log "Registering the runsc runtime: reloading dockerd"
    kill -HUP $(pidof dockerd)
    for _ in $(seq 30); do
      docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' && break
      sleep 1
    done
  fi
fi

docker_ok=false
if docker info >/dev/null 2>&1; then
  docker_ok=true
elif command -v dockerd >/dev/null; then
  log "Starting dockerd"
  nohup dockerd >/var/log/kernelgate-dockerd.log 2>&1 &
  for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then docker_ok=true; break; fi
    sleep 1
  done
  $docker_ok || echo "dockerd did not start; see /var/log/kernelgate-dockerd.log"
fi
if ! $docker_ok && ci; then
  echo "CI=true needs a Docker engine, and none could be started" >&2
  exit 1
fi

log "Installing kernelgate into .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

# The clients (extensions/): the web editor page is built with Vite into
# extensions/editor/dist (served by the gateway at /editor/); the JupyterLab extension is
# a pip package whose wheel build runs the JupyterLab extension toolchain.
if [ -f extensions/editor/package.json ]; then
  log "Building the web editor (extensions/editor)"
  (cd extensions/editor && npm ci --no-audit --no-fund --loglevel=error && npm run build)
fi
if [ -f extensions/jupyter/pyproject.toml ]; then
  log "Installing the JupyterLab extension (extensions/jupyter)"
  # jlpm (yarn) takes npm's configured registry and CA bundle, never a host of its own
  YARN_NPM_REGISTRY_SERVER="$(npm config get registry)"; export YARN_NPM_REGISTRY_SERVER
  if [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then export YARN_CA_FILE_PATH="$NODE_EXTRA_CA_CERTS"; fi
  .venv/bin/python -m pip install -q ./extensions/jupyter
fi

if $docker_ok; then
  log "Building kernel images: ${KERNELGATE_IMAGES:-all}"
  # shellcheck disable=SC2086
  .venv/bin/kernelgate images build ${KERNELGATE_IMAGES:-}
else
  echo "No Docker engine: 'kernelgate serve' will run local, unsandboxed kernels."
fi
log "Ready"
