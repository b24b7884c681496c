"""Perl: the modules of a cpanfile, from Debian's lib*-perl packages.

The fetch container (the perl image, which is Debian's perl) reads the package lists of
the configured Debian mirror (`debian_mirror`, `debian_security_mirror`) for the image's
own release into /tmp, maps each module to a Debian package, resolves their dependencies
against what the image already has (`apt-get -s install`), fetches the missing ones with
`apt-get download` and unpacks them with `dpkg -x`: nothing is installed into the image,
no maintainer script runs. The Perl trees of the unpacked packages become
/workspace/.kernelgate/perl, on room kernels' PERL5LIB.

A module the image already loads is skipped. A module no Debian package provides is an
error naming it (the install then changes nothing).
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment import manifests
from kernelgate.environment.installers.base import CA_PATH, STAGING_PATH, Context, Fetch, PlanError, target

#: Where the modules go, relative to the workspace (on room kernels' PERL5LIB).
PERL_TARGET = ".kernelgate/perl"
#: Module -> Debian package, where Debian's name is not the module's (lib<a>-<b>-perl).
DEBIAN_NAMES = {
    "LWP": "libwww-perl", "LWP::UserAgent": "libwww-perl", "LWP::Simple": "libwww-perl",
    "HTTP::Request": "libhttp-message-perl", "HTTP::Response": "libhttp-message-perl",
    "HTTP::Headers": "libhttp-message-perl", "HTTP::Status": "libhttp-message-perl",
    "DBD::SQLite": "libdbd-sqlite3-perl", "Template": "libtemplate-perl",
    "Mojolicious": "libmojolicious-perl", "Mojo::UserAgent": "libmojolicious-perl",
    "YAML::XS": "libyaml-libyaml-perl", "Email::MIME": "libemail-mime-perl",
    "libwww::perl": "libwww-perl", "GD": "libgd-perl", "Gtk3": "libgtk3-perl",
}
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z0-9_]+)*\Z")
_REQUIRE = re.compile(
    r"""^\s*(requires|recommends|suggests|test_requires|build_requires|configure_requires|author_requires)"""
    r"""\s*\(?\s*['"]([^'"]+)['"]\s*(?:(?:,|=>)\s*['"]?([^'";)]*)['"]?)?""")
_PHASE = re.compile(r"""^\s*on\s*\(?\s*['"]?(\w+)['"]?\s*=>""")
#: Mirror URLs go into apt's sources list: plain http(s) URLs only.
_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]+)?(/[A-Za-z0-9._~/+-]*)?\Z")
_OPTION = re.compile(r"([A-Za-z0-9:_-]+)=([A-Za-z0-9._/:+-]*)\Z")


def cpanfile(data: bytes) -> list[manifests.Package]:
    """A cpanfile's `requires` (and recommends, suggests, *_requires), `dev` for every phase
    other than runtime and for recommends/suggests. `perl` itself is left out."""
    packages, phase = [], "runtime"
    for line in manifests._text(data).splitlines():
        line = line.split("#")[0]
        found = _PHASE.match(line)
        if found:
            phase = found.group(1)
        found = _REQUIRE.match(line)
        if found and found.group(2) != "perl":
            kind = found.group(1)
            dev = phase not in ("runtime", "configure", "build") or kind in ("recommends", "suggests") \
                or kind in ("test_requires", "author_requires")
            packages.append(manifests.Package(found.group(2), (found.group(3) or "").strip(), dev))
        if "};" in line or line.strip() == "}":
            phase = "runtime"
    return packages


def candidates(module: str) -> list[str]:
    """Debian packages that may provide a module: the explicit name, else lib<a>-<b>-perl
    for the module and each of its parents (Moose::Role -> libmoose-role-perl,
    libmoose-perl)."""
    if module in DEBIAN_NAMES:
        return [DEBIAN_NAMES[module]]
    parts = module.split("::")
    return [f"lib{'-'.join(parts[:n]).lower().replace('_', '-')}-perl" for n in range(len(parts), 0, -1)]


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
apt=/tmp/apt
mkdir -p $apt/lists/partial $apt/cache $apt/archives/partial $apt/parts $apt/debs $apt/root /install/perl/lib
. /etc/os-release
printf '%s\n' "$KG_APT_SOURCES" | sed "s/@CODENAME@/$VERSION_CODENAME/g" > $apt/sources.list
printf '%s\n' "$KG_APT_CONF" > $apt/apt.conf
export APT_CONFIG=$apt/apt.conf
echo "[kernelgate] reading the package lists of Debian $VERSION_CODENAME"
apt-get -q update 2>&1 | grep -v '^Get:\|^Ign:\|^Hit:' || true
[ -n "$(ls $apt/lists | grep Packages)" ] || { echo "[kernelgate] no package list could be read from the mirror"; exit 2; }
packages=""; missing=""
for arg in "$@"; do
  module=${arg%%=*}
  if perl -M"$module" -e 1 2>/dev/null; then echo "$module: already in the image"; continue; fi
  found=""
  for package in $(echo "${arg#*=}" | tr , ' '); do
    if [ -n "$(apt-cache show --no-all-versions "$package" 2>/dev/null)" ]; then found=$package; break; fi
  done
  if [ -z "$found" ]; then missing="$missing $module (${arg#*=})"; else echo "$module: Debian package $found"; packages="$packages $found"; fi
done
if [ -n "$missing" ]; then echo "[kernelgate] no Debian package provides:$missing"; exit 3; fi
[ -n "$packages" ] || { echo "[kernelgate] every module is already in the image"; exit 0; }
plan=$(apt-get -s -q install --no-install-recommends $packages 2>&1) \
  || { echo "$plan" | tail -n 8; echo "[kernelgate] the Debian packages' dependencies cannot be resolved"; exit 4; }
needed=$(echo "$plan" | awk '/^Inst /{print $2}')
echo "[kernelgate] fetching:" $needed
cd $apt/debs
[ -z "$needed" ] || apt-get -q download $needed
for deb in $apt/debs/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" $apt/root; done
for dir in $apt/root/usr/share/perl5 $apt/root/usr/lib/*/perl5/*; do
  if [ -d "$dir" ]; then cp -a "$dir"/. /install/perl/lib/; fi
done
echo $needed | tr ' ' '\n' > /install/perl/debian-packages.txt
"""


class Perl:
    language = "perl"
    image = "perl"
    manifests = {"cpanfile": manifests.Manifest("perl", "cpanm", cpanfile)}
    sources = "cpanfile"

    def plan(self, at, parsed) -> dict:
        if at("cpanfile") in parsed:
            return {"supported": True, "source": at("cpanfile"),
                    "packages": [p.name for p in parsed[at("cpanfile")] if not p.dev]}
        return {"supported": True, "source": None, "packages": []}

    def urls(self, config) -> list[str]:
        return [config.debian_mirror, config.debian_security_mirror]

    def fetch(self, install: dict, context: Context) -> Fetch:
        config = context.config
        if not config.debian_mirror:
            raise PlanError("no Debian mirror is configured (EnvironmentService.debian_mirror)")
        bad = [m for m in install["packages"] if not _MODULE.match(m)]
        if bad:
            raise PlanError(f"not Perl module names: {', '.join(bad)}")
        key = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
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
        env = {**context.network_env, "KG_APT_SOURCES": "\n".join(sources),
               "KG_APT_CONF": "\n".join(f'{name} "{value}";' for name, value in conf.items())}
        modules = [f"{m}={','.join(candidates(m))}" for m in install["packages"]]
        return Fetch(["sh", "-c", _SCRIPT, "sh", *modules], env, "/tmp",
                     [f"{STAGING_PATH}/perl", target(PERL_TARGET)])

    def kernel_env(self, root: str) -> dict[str, str]:
        return {"PERL5LIB": posixpath.join(root, PERL_TARGET, "lib")}


INSTALLER = Perl()
