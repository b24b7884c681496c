"""C and C++: the libraries of a vcpkg.json, from Debian's -dev packages (debian.py's
fetch). Their headers become /workspace/.kernelgate/c/include (kernels' CPATH) and their
libraries /workspace/.kernelgate/c/lib (LIBRARY_PATH, LD_LIBRARY_PATH) for the gcc image's
C and C++ kernels. What the image already has is left to apt (nothing is fetched for
it).
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment import manifests
from kernelgate.environment.installers import debian

#: Where the libraries go, relative to the workspace.
C_TARGET = ".kernelgate/c"
#: vcpkg port -> Debian package, where Debian's is not lib<name>-dev or <name>-dev.
DEBIAN_NAMES = {
    "zlib": "zlib1g-dev", "openssl": "libssl-dev", "curl": "libcurl4-openssl-dev", "sqlite3": "libsqlite3-dev",
    "nlohmann-json": "nlohmann-json3-dev", "eigen3": "libeigen3-dev", "gtest": "libgtest-dev",
    "boost": "libboost-dev", "libyaml": "libyaml-dev", "libpng": "libpng-dev", "libxml2": "libxml2-dev",
    "pcre2": "libpcre2-dev", "readline": "libreadline-dev", "bzip2": "libbz2-dev", "liblzma": "liblzma-dev",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


def vcpkg_json(data: bytes) -> list[manifests.Package]:
    """vcpkg's manifest: its dependencies (names, or objects with a name; `host`
    dependencies are build tools, dev)."""
    doc = manifests._json(data)
    packages = []
    for item in doc.get("dependencies") or []:
        if isinstance(item, str):
            packages.append(manifests.Package(item))
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            spec = item.get("version>=", "")
            packages.append(manifests.Package(item["name"], f">={spec}" if spec else "", bool(item.get("host"))))
    return packages


def candidates(library: str) -> list[str]:
    """The Debian packages that may provide a library: the explicit name, else
    lib<name>-dev, then <name>-dev."""
    if library in DEBIAN_NAMES:
        return [DEBIAN_NAMES[library]]
    name = library.lower()
    return [f"{name}-dev"] if name.startswith("lib") else [f"lib{name}-dev", f"{name}-dev"]


class C(debian.DebianInstaller):
    language = "c"
    image = "gcc"
    manifests = {"vcpkg.json": manifests.Manifest("c", "vcpkg", vcpkg_json)}
    sources = "vcpkg.json"
    what = "library names"
    names = _NAME
    trees = {"include": "usr/include", "lib": "usr/lib/*-linux-gnu*"}
    folder = C_TARGET
    candidates = staticmethod(candidates)

    def kernel_env(self, root: str) -> dict[str, str]:
        base = posixpath.join(root, C_TARGET)
        return {"CPATH": f"{base}/include", "LIBRARY_PATH": f"{base}/lib", "LD_LIBRARY_PATH": f"{base}/lib"}


INSTALLER = C()
