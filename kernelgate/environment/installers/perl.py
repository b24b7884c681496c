"""Perl: the modules of a cpanfile, from Debian's lib*-perl packages (debian.py's fetch).

Each module maps to a package (`candidates`); the Perl trees of the unpacked packages
become /workspace/.kernelgate/perl/lib, on kernels' PERL5LIB. A module the image already
loads is skipped.
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment import manifests
from kernelgate.environment.installers import debian

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
    "GD": "libgd-perl", "Gtk3": "libgtk3-perl",
}
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z0-9_]+)*\Z")
_REQUIRE = re.compile(
    r"""^\s*(requires|recommends|suggests|test_requires|build_requires|configure_requires|author_requires)"""
    r"""\s*\(?\s*['"]([^'"]+)['"]\s*(?:(?:,|=>)\s*['"]?([^'";)]*)['"]?)?""")
_PHASE = re.compile(r"""^\s*on\s*\(?\s*['"]?(\w+)['"]?\s*=>""")


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


class Perl(debian.DebianInstaller):
    language = "perl"
    image = "perl"
    manifests = {"cpanfile": manifests.Manifest("perl", "cpanm", cpanfile)}
    sources = "cpanfile"
    what = "Perl module names"
    names = _MODULE
    have = 'perl -M"$1" -e 1'
    trees = {"lib": "usr/share/perl5 usr/lib/*/perl5/*"}
    folder = PERL_TARGET
    candidates = staticmethod(candidates)

    def kernel_env(self, root: str) -> dict[str, str]:
        return {"PERL5LIB": posixpath.join(root, PERL_TARGET, "lib")}


INSTALLER = Perl()
