"""Lua: the dependencies of a rockspec, from Debian's lua-* packages (debian.py's fetch).
Their Lua modules become /workspace/.kernelgate/lua/share (those of Lua 5.1 to 5.4
merged in that order: many packages ship 5.1's files and links to them, and pure Lua
modules of an older Lua usually load in 5.4) and their C modules for the image's Lua
(5.4) /workspace/.kernelgate/lua/lib, which kernels' LUA_PATH and LUA_CPATH put
before Lua's own paths (the trailing `;;`).
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment import manifests
from kernelgate.environment.installers import debian

#: Where the rocks go, relative to the workspace.
LUA_TARGET = ".kernelgate/lua"
LUA_VERSION = "5.4"  # the lua image's
#: Rock -> Debian package, where Debian's is not lua-<name> or lua-<name without "lua">.
DEBIAN_NAMES = {"luafilesystem": "lua-filesystem", "lua-cjson": "lua-cjson"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_BLOCK = r"\b{}\s*=\s*\{{(.*?)\}}"
_STRING = re.compile(r"""["']([^"']+)["']""")


def rockspec(data: bytes) -> list[manifests.Package]:
    """A rockspec's `dependencies` (and `test_dependencies`, dev) strings, "name [op
    version]"; `lua` itself left out."""
    text = manifests._text(data)
    packages = []
    for key, dev in (("dependencies", False), ("test_dependencies", True), ("build_dependencies", True)):
        for block in re.findall(_BLOCK.format(key), text, re.S):
            for item in _STRING.findall(block):
                name, _, spec = item.strip().partition(" ")
                if name and name != "lua":
                    packages.append(manifests.Package(name, spec.strip(), dev))
    return packages


def candidates(rock: str) -> list[str]:
    """The Debian packages that may provide a rock."""
    if rock in DEBIAN_NAMES:
        return [DEBIAN_NAMES[rock]]
    name = rock.lower()
    if name.startswith("lua-"):
        return [name]
    return [f"lua-{name}"] + ([f"lua-{name[3:]}"] if name.startswith("lua") and len(name) > 3 else [])


class Lua(debian.DebianInstaller):
    language = "lua"
    image = "lua"
    manifests = {"*.rockspec": manifests.Manifest("lua", "luarocks", rockspec)}
    sources = "a .rockspec"
    what = "rock names"
    names = _NAME
    trees = {"share": " ".join(f"usr/share/lua/5.{n}" for n in range(1, 5)),
             "lib": f"usr/lib/*/lua/{LUA_VERSION}"}
    folder = LUA_TARGET
    candidates = staticmethod(candidates)

    def plan(self, at, parsed) -> dict:
        """The first rockspec (by name) of the folder."""
        folder = posixpath.dirname(at("x"))
        specs = sorted(p for p in parsed if p.endswith(".rockspec") and posixpath.dirname(p) == folder)
        if specs:
            return {"supported": True, "source": specs[0], "packages": [p.name for p in parsed[specs[0]] if not p.dev]}
        return {"supported": True, "source": None, "packages": []}

    def kernel_env(self, root: str) -> dict[str, str]:
        base = posixpath.join(root, LUA_TARGET)
        return {"LUA_PATH": f"{base}/share/?.lua;{base}/share/?/init.lua;;", "LUA_CPATH": f"{base}/lib/?.so;;"}


INSTALLER = Lua()
