"""R: the packages of a DESCRIPTION (Depends, Imports, LinkingTo), from Debian's
r-cran-* packages (debian.py's fetch). The unpacked site library becomes
/workspace/.kernelgate/r/library, on kernels' R_LIBS. A package the image's R already
loads (base packages, IRkernel's dependencies) is skipped.
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment.installers import debian
from kernelgate.environment.installers.base import Context, Fetch, PlanError, target

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


class R:
    language = "r"
    image = "r"
    manifests: dict = {}  # DESCRIPTION is read by manifests.py
    sources = "DESCRIPTION"

    def plan(self, at, parsed) -> dict:
        if at("DESCRIPTION") in parsed:
            return {"supported": True, "source": at("DESCRIPTION"),
                    "packages": [p.name for p in parsed[at("DESCRIPTION")] if not p.dev]}
        return {"supported": True, "source": None, "packages": []}

    def urls(self, config) -> list[str]:
        return debian.urls(config)

    def fetch(self, install: dict, context: Context) -> Fetch:
        bad = [p for p in install["packages"] if not _NAME.match(p)]
        if bad:
            raise PlanError(f"not R package names: {', '.join(bad)}")
        return debian.fetch(context, "r", {p: candidates(p) for p in install["packages"]},
                            _HAVE, {"library": "usr/lib/R/site-library"}, target(R_TARGET))

    def kernel_env(self, root: str) -> dict[str, str]:
        return {"R_LIBS": posixpath.join(root, R_TARGET, "library")}


INSTALLER = R()
