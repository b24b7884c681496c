"""R: the packages of a DESCRIPTION (Depends, Imports, LinkingTo), from Debian's
r-cran-* packages (debian.py's fetch). The unpacked site library becomes
/workspace/.kernelgate/r/library, on kernels' R_LIBS. A package the image's R already
loads (base packages, IRkernel's dependencies) is skipped.
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment.installers import debian

#: Where the packages go, relative to the workspace (on kernels' R_LIBS).
R_TARGET = ".kernelgate/r"
#: R package -> Debian package, where Debian's is not r-cran-<name in lower case>.
DEBIAN_NAMES: dict[str, str] = {}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.]*\Z")
_HAVE = """Rscript -e 'quit(status = !requireNamespace(commandArgs(TRUE)[1], quietly = TRUE))' "$1\""""


def candidates(package: str) -> list[str]:
    """The Debian packages that may provide an R package: the explicit name, else
    r-cran-<name in lower case>."""
    return [DEBIAN_NAMES.get(package, f"r-cran-{package.lower()}")]


class R(debian.DebianInstaller):
    language = "r"
    image = "r"
    sources = "DESCRIPTION"  # read by manifests.py
    what = "R package names"
    names = _NAME
    have = _HAVE
    trees = {"library": "usr/lib/R/site-library"}
    folder = R_TARGET
    candidates = staticmethod(candidates)

    def kernel_env(self, root: str) -> dict[str, str]:
        return {"R_LIBS": posixpath.join(root, R_TARGET, "library")}


INSTALLER = R()
