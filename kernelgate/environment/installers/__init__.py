"""Installers, one module per package manager (base.py is their interface). Every module
of this package that defines `INSTALLER` is one: adding a package manager is adding a
module."""

from __future__ import annotations

import importlib
import pkgutil

from kernelgate.environment import manifests, project
from kernelgate.environment.installers.base import Installer


def _load() -> dict[str, Installer]:
    found = {}
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        installer = getattr(importlib.import_module(f"{__name__}.{module}"), "INSTALLER", None)
        if installer is not None:
            found[installer.language] = installer
    return found


#: Language -> its installer.
INSTALLERS: dict[str, Installer] = _load()
#: Languages installs support, sorted.
LANGUAGES: tuple[str, ...] = tuple(sorted(INSTALLERS))
#: Every manifest detection reads: manifests.py's and the installers' own.
MANIFESTS: dict[str, manifests.Manifest] = {
    **manifests.MANIFESTS, **{name: kind for i in INSTALLERS.values() for name, kind in i.manifests.items()}}


def manifest_kind(name: str) -> manifests.Manifest | None:
    """The manifest a file name is, if any: an exact name, or a `*.suffix` key
    (`*.rockspec`)."""
    if name in MANIFESTS:
        return MANIFESTS[name]
    return next((kind for key, kind in MANIFESTS.items()
                 if key.startswith("*") and name.endswith(key[1:]) and len(name) > len(key) - 1), None)


#: Kernelspec languages (lower case) whose kernels use another language's installs.
KERNEL_LANGUAGES = {"c++": "c", "typescript": "javascript", "kotlin": "java"}


def installer_of(kernel_language: str) -> Installer | None:
    """The installer whose installs a kernel of this kernelspec language uses, if any."""
    language = kernel_language.lower()
    return INSTALLERS.get(KERNEL_LANGUAGES.get(language, language))


def kernel_env(kernel_language: str, root: str = project.MOUNT) -> dict[str, str]:
    """The variables a kernel of this kernelspec language gets from its language's installer
    (none for a language without one; `root`: where it sees its workspace)."""
    installer = installer_of(kernel_language)
    return installer.kernel_env(root) if installer else {}


def variable_names() -> frozenset[str]:
    """Every variable any installer sets (the project file may not set them)."""
    return frozenset(name for i in INSTALLERS.values() for name in i.kernel_env(project.MOUNT))
