"""The project file, `kernelgate.toml` at the workspace root, and what it does to room
kernels.

It overrides detection (docs/environment.md)::

    workdir = "app"                  # the project's folder: kernels start there
    [env]                            # variables of the room's kernels
    FLASK_DEBUG = "1"
    [packages]                       # installed instead of the detected manifests
    python = ["six==1.16.0"]
    javascript = ["is-number@7.0.0"]

Room kernels start as ``/usr/bin/env [-C /workspace/<workdir>] PYTHONPATH=... VAR=...
<kernel argv>``: the variables reach the kernel process only, never the sandbox's agent,
so a bad value cannot take the room's files API down with the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kernelgate_agent.files import FileError, Workspace

log = logging.getLogger(__name__)

PROJECT_FILE = "kernelgate.toml"
MAX_PROJECT_FILE = 64 * 1024
#: Where a room's containers see its workspace.
MOUNT = "/workspace"
#: Where installs put Python packages (relative to the workspace), on room kernels' PYTHONPATH.
PYTHON_TARGET = ".kernelgate/python"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PATH = re.compile(r"[A-Za-z0-9._/-]*\Z")
_RESERVED = ("KERNEL_", "JPY_", "LD_")
_RESERVED_NAMES = {"PATH", "HOME", "PYTHONHOME", "PYTHONPATH"}
_MAX_VARIABLES, _MAX_VALUE, _MAX_PACKAGES, _MAX_SPEC = 100, 4096, 200, 200


class ProjectFileError(ValueError):
    """The project file is not valid; the message says where and why."""


@dataclass(frozen=True)
class ProjectFile:
    workdir: str = ""  # relative to the workspace; "" = its root
    env: dict[str, str] = field(default_factory=dict)
    packages: dict[str, list[str]] = field(default_factory=dict)

    def model(self) -> dict:
        return {"path": PROJECT_FILE, "workdir": self.workdir, "env": dict(self.env),
                "packages": {k: list(v) for k, v in self.packages.items()}}


def clean_relative(path: str, what: str) -> str:
    """A relative path inside the workspace, normalized ('' for the root), made of
    letters, digits and . _ - / only."""
    if path.startswith("/") or not _PATH.match(path):
        raise ProjectFileError(f"{what} must be a relative path inside the workspace, of letters,"
                               " digits and . _ - / only")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ProjectFileError(f"{what} must not contain '..'")
    return "/".join(parts)


def parse(data: bytes) -> ProjectFile:
    """The project file's settings; ProjectFileError for anything invalid."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ProjectFileError(f"{PROJECT_FILE} is not valid TOML: {e}") from None
    unknown = set(doc) - {"workdir", "env", "packages"}
    if unknown:
        raise ProjectFileError(f"{PROJECT_FILE}: unknown keys {', '.join(sorted(unknown))};"
                               " known: workdir, env, packages")
    workdir = doc.get("workdir", "")
    if not isinstance(workdir, str):
        raise ProjectFileError(f"{PROJECT_FILE}: workdir must be a string")
    return ProjectFile(clean_relative(workdir, "workdir"), _env(doc.get("env", {})),
                       _packages(doc.get("packages", {})))


def _env(table) -> dict[str, str]:
    from kernelgate.environment import installers  # they import this module

    if not isinstance(table, dict):
        raise ProjectFileError(f"{PROJECT_FILE}: [env] must be a table of strings")
    if len(table) > _MAX_VARIABLES:
        raise ProjectFileError(f"{PROJECT_FILE}: at most {_MAX_VARIABLES} variables in [env]")
    env = {}
    for name, value in table.items():
        if not _NAME.match(name):
            raise ProjectFileError(f"{PROJECT_FILE}: {name!r} is not a variable name")
        if name in _RESERVED_NAMES or name.startswith(_RESERVED) or name in installers.variable_names():
            raise ProjectFileError(f"{PROJECT_FILE}: {name} is managed by kernelgate and cannot be set")
        if not isinstance(value, str) or "\x00" in value or len(value) > _MAX_VALUE:
            raise ProjectFileError(f"{PROJECT_FILE}: env.{name} must be a string of at most {_MAX_VALUE} characters")
        env[name] = value
    return env


def _packages(table) -> dict[str, list[str]]:
    if not isinstance(table, dict):
        raise ProjectFileError(f"{PROJECT_FILE}: [packages] must be a table of lists")
    from kernelgate.environment import installers  # they import this module

    packages = {}
    for language, specs in table.items():
        if language not in installers.LANGUAGES:
            raise ProjectFileError(f"{PROJECT_FILE}: packages.{language}: installs support "
                                   f"{', '.join(installers.LANGUAGES)}")
        if (not isinstance(specs, list) or len(specs) > _MAX_PACKAGES
                or not all(isinstance(s, str) and 0 < len(s) <= _MAX_SPEC for s in specs)):
            raise ProjectFileError(f"{PROJECT_FILE}: packages.{language} must be a list of at most "
                                   f"{_MAX_PACKAGES} package names")
        for spec in specs:
            if spec.strip() != spec or spec.startswith("-") or any(c.isspace() for c in spec):
                raise ProjectFileError(f"{PROJECT_FILE}: packages.{language}: {spec!r} is not a package")
        packages[language] = list(specs)
    return packages


def load(root: Path) -> ProjectFile | None:
    """The host workspace's project file (blocking, no links followed); None if absent.
    ProjectFileError if it is invalid or too large."""
    try:
        data = Workspace(str(root), MAX_PROJECT_FILE).read(PROJECT_FILE)
    except FileError as e:
        if e.code == "ENOENT":
            return None
        raise ProjectFileError(f"{PROJECT_FILE} cannot be read: {e}") from None
    return parse(data)


def _is_directory(root: Path, path: str) -> bool:
    try:
        return Workspace(str(root)).stat(path)["type"] == "directory"
    except FileError:
        return False


def kernel_prefix(root: Path, language: str) -> list[str]:
    """The command prefix of a room kernel of a kernelspec language (blocking): its
    language's installer's variables, the project file's and its working folder.

    An invalid project file, or a workdir that is not a folder, is logged and left out:
    the kernel still starts, so that the room's files stay reachable to fix it.
    """
    from kernelgate.environment import installers  # they import this module

    env = installers.kernel_env(language)
    prefix = ["/usr/bin/env"]
    try:
        project = load(root)
    except ProjectFileError as e:
        log.warning("Workspace %s: %s (ignored)", root.name, e)
        project = None
    if project is not None:
        if project.workdir and _is_directory(root, project.workdir):
            prefix += ["-C", posixpath.join(MOUNT, project.workdir)]
        env.update(project.env)
    return prefix + [f"{name}={value}" for name, value in env.items()]


def solo_prefix(language: str) -> list[str]:
    """The command prefix of a sandboxed solo kernel of a kernelspec language: its
    language's installer's variables for its home, where its installs go
    (docs/environment.md)."""
    from kernelgate.environment import installers  # they import this module
    from kernelgate.sandbox import HOME

    return ["/usr/bin/env", *(f"{name}={value}" for name, value in installers.kernel_env(language, HOME).items())]


async def kernel_prefix_async(root: Path, language: str) -> list[str]:
    """kernel_prefix, off the event loop."""
    return await asyncio.to_thread(kernel_prefix, root, language)
