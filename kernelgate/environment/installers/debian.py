"""Installs from Debian's packages, for installers whose ecosystem Debian packages
(perl.py, r.py, ruby.py, c.py, lua.py): not an installer itself, but the base class they
share (`DebianInstaller`) and its fetch.

The fetch container (the language's image, a Debian release) reads the package lists
of the configured mirror (`debian_mirror`, `debian_security_mirror`) for the image's own
release into /tmp, maps each requested name to the first of its candidate packages the
lists have, resolves their dependencies against what the image already has
(`apt-get -s install`), fetches the missing ones with `apt-get download` and unpacks
them with `dpkg -x`: nothing is installed into the image and no maintainer script runs.
The unpacked trees the installer names are merged, in their order, into folders of
/install/<name>, links replaced by what they point to (the package's own relative links).

A name the image already has (the installer's `have` shell test) is skipped; names no
package provides fail the install with one line naming each and the packages tried.
"""

from __future__ import annotations

import re

from kernelgate.environment.installers.base import CA_PATH, STAGING_PATH, Context, Fetch, PlanError, target

#: Mirror URLs go into apt's sources list: plain http(s) URLs only.
_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]+)?(/[A-Za-z0-9._~/+-]*)?\Z")
_OPTION = re.compile(r"([A-Za-z0-9:_-]+)=([A-Za-z0-9._/:+-]*)\Z")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9.+-]+\Z")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def check_settings(config) -> None:
    """ValueError for a mirror or apt option that would not fit apt's files."""
    for name in ("debian_mirror", "debian_security_mirror"):
        url = getattr(config, name)
        if url and not _URL.match(url):
            raise ValueError(f"EnvironmentService.{name} {url!r} is not an http(s) URL of letters, digits and ._~/+-")
    for option in config.apt_options:
        if not _OPTION.match(option):
            raise ValueError(f"EnvironmentService.apt_options entry {option!r} is not Name=value")


_SCRIPT = r"""
set -eu
apt=/tmp/apt out="/install/$KG_NAME"
mkdir -p $apt/lists/partial $apt/cache $apt/archives/partial $apt/parts $apt/debs $apt/root "$out"
. /etc/os-release
printf '%s\n' "$KG_APT_SOURCES" | sed "s/@CODENAME@/$VERSION_CODENAME/g" > $apt/sources.list
printf '%s\n' "$KG_APT_CONF" > $apt/apt.conf
export APT_CONFIG=$apt/apt.conf
have() { eval "$KG_HAVE"; }
echo "[kernelgate] reading the package lists of Debian $VERSION_CODENAME"
apt-get -q update 2>&1 | grep -v '^Get:\|^Ign:\|^Hit:' || true
[ -n "$(ls $apt/lists | grep Packages)" ] || { echo "[kernelgate] no package list could be read from the mirror"; exit 2; }
packages=""; missing=""
for arg in "$@"; do
  name=${arg%%=*}
  if have "$name" >/dev/null 2>&1; then echo "$name: already in the image"; continue; fi
  found=""
  for package in $(echo "${arg#*=}" | tr , ' '); do
    if [ -n "$(apt-cache show --no-all-versions "$package" 2>/dev/null)" ]; then found=$package; break; fi
  done
  if [ -z "$found" ]; then missing="$missing $name (${arg#*=})"; else echo "$name: Debian package $found"; packages="$packages $found"; fi
done
if [ -n "$missing" ]; then echo "[kernelgate] no Debian package provides:$missing"; exit 3; fi
[ -n "$packages" ] || { echo "[kernelgate] everything is already in the image"; exit 0; }
plan=$(apt-get -s -q install --no-install-recommends $packages 2>&1) \
  || { echo "$plan" | tail -n 8; echo "[kernelgate] the Debian packages' dependencies cannot be resolved"; exit 4; }
needed=$(echo "$plan" | awk '/^Inst /{print $2}')
echo "[kernelgate] fetching:" $needed
cd $apt/debs
[ -z "$needed" ] || apt-get -q download $needed
for deb in $apt/debs/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" $apt/root; done
cd $apt/root
printf '%s\n' "$KG_TREES" | while read -r folder globs; do
  mkdir -p "$out/$folder"
  for dir in $globs; do
    if [ -d "$dir" ]; then cp -RL --preserve=mode,timestamps "$dir"/. "$out/$folder"/; fi
  done
done
echo $needed | tr ' ' '\n' > "$out/debian-packages.txt"
"""


def fetch(context: Context, name: str, wanted: dict[str, list[str]], have: str, trees: dict[str, str],
          destination: str) -> Fetch:
    """The fetch of Debian packages: `wanted` maps each requested name to its candidate
    packages; `have` is a shell test of "$1" (the name) the image already provides;
    `trees` maps a folder of /install/<name> to the unpacked folders merged into it
    (shell globs below /, space-separated); the swap moves /install/<name> to
    `destination`."""
    config = context.config
    if not config.debian_mirror:
        raise PlanError("no Debian mirror is configured (EnvironmentService.debian_mirror)")
    bad = sorted({p for candidates in wanted.values() for p in candidates if not _PACKAGE.match(p)})
    if bad:
        raise PlanError(f"not Debian package names: {', '.join(bad)}")
    key = f"[signed-by={KEYRING}]"
    sources = [f"deb {key} {config.debian_mirror} @CODENAME@ main",
               f"deb {key} {config.debian_mirror} @CODENAME@-updates main"]
    if config.debian_security_mirror:
        sources.append(f"deb {key} {config.debian_security_mirror} @CODENAME@-security main")
    conf = {"Dir::Etc::SourceList": "/tmp/apt/sources.list", "Dir::Etc::SourceParts": "/tmp/apt/parts",
            "Dir::State::Lists": "/tmp/apt/lists", "Dir::Cache": "/tmp/apt/cache",
            "Dir::Cache::archives": "/tmp/apt/archives", "Debug::NoLocking": "true",
            "Acquire::Languages": "none",
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled": "false"}
    proxy = context.network_env.get("HTTPS_PROXY")
    if proxy:
        conf["Acquire::http::Proxy"] = conf["Acquire::https::Proxy"] = proxy
    if config.ca_bundle:
        conf["Acquire::https::CaInfo"] = CA_PATH
    conf.update(option.split("=", 1) for option in config.apt_options)
    env = {**context.network_env, "KG_APT_SOURCES": "\n".join(sources), "KG_NAME": name, "KG_HAVE": have,
           "KG_TREES": "\n".join(f"{folder} {globs}" for folder, globs in trees.items()),
           "KG_APT_CONF": "\n".join(f'{key} "{value}";' for key, value in conf.items())}
    args = [f"{requested}={','.join(candidates)}" for requested, candidates in wanted.items()]
    return Fetch(["sh", "-c", _SCRIPT, "sh", *args], env, "/tmp", [f"{STAGING_PATH}/{name}", destination],
                 f"apt-get download of Debian packages for {', '.join(wanted) or 'nothing'}")


def urls(config) -> list[str]:
    return [config.debian_mirror, config.debian_security_mirror]


class DebianInstaller:
    """What the installers of Debian-packaged ecosystems share: the plan from their one
    manifest, the fence's URLs (`urls`), and `fetch` of each name's candidates. A subclass
    sets language, image, manifests, sources (the manifest's file name), what (what its
    names are, for errors), names (their pattern), have (a shell test: the image already
    has the name), trees (folder -> unpacked trees) and folder (its place in the
    workspace), and defines candidates(name) and kernel_env(root)."""

    manifests: dict = {}
    have = "false"

    def plan(self, at, parsed) -> dict:
        source = at(self.sources)
        if source in parsed:
            return {"supported": True, "source": source,
                    "packages": [p.name for p in parsed[source] if not p.dev]}
        return {"supported": True, "source": None, "packages": []}

    def urls(self, config) -> list[str]:
        return urls(config)

    def fetch(self, install: dict, context: Context) -> Fetch:
        bad = [name for name in install["packages"] if not self.names.match(name)]
        if bad:
            raise PlanError(f"not {self.what}: {', '.join(bad)}")
        return fetch(context, self.language, {n: self.candidates(n) for n in install["packages"]},
                     self.have, self.trees, target(self.folder))
