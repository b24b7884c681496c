"""Parsers of package manifests: file bytes in, declared packages out. No I/O.

Each parser returns a list of `Package`; it raises ManifestError for a file it cannot
read (the detection report lists such files, it does not fail).
"""

from __future__ import annotations

import json
import re
import tomllib
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass
from typing import Callable


class ManifestError(ValueError):
    """A manifest could not be parsed."""


@dataclass(frozen=True)
class Package:
    name: str
    spec: str = ""  # version constraint as written ('' = any)
    dev: bool = False

    def model(self, manifest: str) -> dict:
        return {**asdict(self), "manifest": manifest}


@dataclass(frozen=True)
class Manifest:
    """A kind of manifest: its language, its package manager, and its parser."""

    language: str
    package_manager: str
    parse: Callable[[bytes], list[Package]]


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError("not UTF-8 text") from None


def _toml(data: bytes) -> dict:
    try:
        return tomllib.loads(_text(data))
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"invalid TOML: {e}") from None


def _json(data: bytes) -> dict:
    try:
        value = json.loads(_text(data))
    except ValueError as e:
        raise ManifestError(f"invalid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ManifestError("not a JSON object")
    return value


_PEP508 = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)")


def _pep508(requirement: str, dev: bool = False) -> Package | None:
    match = _PEP508.match(requirement)
    if not match:
        return None
    spec = match.group(3).split(";")[0].strip().lstrip("(").rstrip(")").strip()
    return Package(match.group(1).lower().replace("_", "-"), spec, dev)


def requirements_txt(data: bytes) -> list[Package]:
    """pip requirements: one requirement a line; options and includes are skipped,
    URLs and local paths are listed as they are written."""
    packages = []
    for line in _text(data).replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-e ") or line.startswith("--editable"):
            packages.append(Package(line.split(None, 1)[-1].split("=", 1)[-1].strip()))
            continue
        if line.startswith("-"):
            continue
        if "://" in line or line.startswith((".", "/")):
            packages.append(Package(line))
            continue
        package = _pep508(line)
        if package:
            packages.append(package)
    return packages


def _spec_of(value) -> str:
    if isinstance(value, str):
        return "" if value == "*" else value
    if isinstance(value, dict):
        return str(value.get("version", "")).replace("*", "") if "version" in value else ""
    return ""


def pyproject_toml(data: bytes) -> list[Package]:
    """PEP 621 [project] dependencies, and Poetry's [tool.poetry.*dependencies]."""
    doc = _toml(data)
    packages = [p for p in (_pep508(r) for r in doc.get("project", {}).get("dependencies", [])
                            if isinstance(r, str)) if p]
    for extra in doc.get("project", {}).get("optional-dependencies", {}).values():
        packages += [p for p in (_pep508(r, dev=True) for r in extra if isinstance(r, str)) if p]
    poetry = doc.get("tool", {}).get("poetry", {})
    groups = [("dependencies", False), ("dev-dependencies", True)]
    groups += [(g, True) for g in poetry.get("group", {})]
    for key, dev in groups:
        table = poetry.get(key) if key in ("dependencies", "dev-dependencies") else \
            poetry["group"][key].get("dependencies", {})
        for name, value in (table or {}).items():
            if name.lower() != "python":
                packages.append(Package(name.lower(), _spec_of(value), dev))
    return packages


def pyproject_manager(data: bytes) -> str | None:
    """The tool a pyproject.toml declares itself for, if any."""
    try:
        tools = _toml(data).get("tool", {})
    except ManifestError:
        return None
    return next((t for t in ("poetry", "pdm", "hatch", "uv", "flit") if t in tools), None)


def pipfile(data: bytes) -> list[Package]:
    doc = _toml(data)
    return [Package(name.lower(), _spec_of(value), dev)
            for key, dev in (("packages", False), ("dev-packages", True))
            for name, value in doc.get(key, {}).items()]


def environment_yml(data: bytes) -> list[Package]:
    """Conda's environment.yml: the `dependencies:` list and its nested `pip:` list
    (a line-based reading of this simple YAML shape)."""
    packages, inside = [], False
    for raw in _text(data).splitlines():
        line = raw.split("#")[0].rstrip()
        if not line.strip():
            continue
        if not raw.startswith((" ", "-", "\t")):
            inside = line.strip().startswith("dependencies:")
            continue
        item = line.strip()
        if inside and item.startswith("- ") and not item.endswith(":"):
            match = re.match(r"([A-Za-z0-9_.:-]+)\s*(.*)", item[2:].strip().strip("'\""))
            name = match.group(1).split("::")[-1].lower() if match else "python"
            if name not in ("python", "pip"):
                packages.append(Package(name, match.group(2).strip()))
    return packages


def package_json(data: bytes) -> list[Package]:
    doc = _json(data)
    return [Package(name, str(spec), dev)
            for key, dev in (("dependencies", False), ("devDependencies", True),
                             ("peerDependencies", False), ("optionalDependencies", False))
            for name, spec in (doc.get(key) or {}).items()]


def go_mod(data: bytes) -> list[Package]:
    packages, block = [], False
    for raw in _text(data).splitlines():
        line, _, comment = raw.partition("//")
        line = line.strip()
        if line.startswith("require ("):
            block = True
            continue
        if block and line == ")":
            block = False
            continue
        if line.startswith("require "):
            line = line[len("require "):]
        elif not block or not line:
            continue
        parts = line.split()
        if len(parts) >= 2:
            packages.append(Package(parts[0], parts[1], dev="indirect" in comment))
    return packages


def cargo_toml(data: bytes) -> list[Package]:
    doc = _toml(data)
    return [Package(name, _spec_of(value), dev)
            for key, dev in (("dependencies", False), ("dev-dependencies", True),
                             ("build-dependencies", True))
            for name, value in doc.get(key, {}).items()]


def _strip_namespaces(root: ElementTree.Element) -> None:
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]


def pom_xml(data: bytes) -> list[Package]:
    """Maven: the parent and the project's dependencies, as groupId:artifactId."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ManifestError("document type declarations are not read")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as e:
        raise ManifestError(f"invalid XML: {e}") from None
    _strip_namespaces(root)
    packages = []
    parent = root.find("parent")
    if parent is not None:
        packages.append(Package(f"{parent.findtext('groupId', '')}:{parent.findtext('artifactId', '')}",
                                parent.findtext("version", "")))
    for dependency in root.findall("./dependencies/dependency"):
        name = f"{dependency.findtext('groupId', '')}:{dependency.findtext('artifactId', '')}"
        packages.append(Package(name, dependency.findtext("version", ""),
                                dependency.findtext("scope", "") == "test"))
    return packages


_GRADLE = re.compile(
    r"""\b(implementation|api|compileOnly|runtimeOnly|testImplementation|kapt|annotationProcessor)"""
    r"""\s*\(?\s*['"]([^'":\s]+):([^'":\s]+)(?::([^'"\s]+))?['"]""")
_GRADLE_PLUGIN = re.compile(r"""id\s*\(?\s*['"]([^'"]+)['"]\s*\)?(?:\s*version\s*\(?\s*['"]([^'"]+)['"])?""")


def build_gradle(data: bytes) -> list[Package]:
    text = _text(data)
    packages = [Package(f"{g}:{a}", v or "", conf.startswith("test"))
                for conf, g, a, v in _GRADLE.findall(text)]
    packages += [Package(plugin, version) for plugin, version in _GRADLE_PLUGIN.findall(text)]
    return packages


_GEM = re.compile(r"""^\s*gem\s+['"]([^'"]+)['"](?:\s*,\s*['"]([^'"]+)['"])?""", re.M)


def gemfile(data: bytes) -> list[Package]:
    return [Package(name, spec) for name, spec in _GEM.findall(_text(data))]


def composer_json(data: bytes) -> list[Package]:
    doc = _json(data)
    return [Package(name, str(spec), dev)
            for key, dev in (("require", False), ("require-dev", True))
            for name, spec in (doc.get(key) or {}).items()
            if name != "php" and not name.startswith("ext-")]


def r_description(data: bytes) -> list[Package]:
    """R's DESCRIPTION (DCF): Depends, Imports, LinkingTo and Suggests."""
    fields, current = {}, None
    for line in _text(data).splitlines():
        if line[:1].isspace() and current:
            fields[current] += " " + line.strip()
        elif ":" in line:
            current, _, value = line.partition(":")
            fields[current] = value.strip()
    packages = []
    for key, dev in (("Depends", False), ("Imports", False), ("LinkingTo", False), ("Suggests", True)):
        for item in fields.get(key, "").split(","):
            match = re.match(r"\s*([A-Za-z][A-Za-z0-9.]*)\s*(?:\(([^)]*)\))?", item)
            if match and match.group(1) != "R":
                packages.append(Package(match.group(1), (match.group(2) or "").strip(), dev))
    return packages


#: Manifest file name -> what it is. Also the detection order within a folder.
MANIFESTS: dict[str, Manifest] = {
    "requirements.txt": Manifest("python", "pip", requirements_txt),
    "pyproject.toml": Manifest("python", "pip", pyproject_toml),
    "Pipfile": Manifest("python", "pipenv", pipfile),
    "environment.yml": Manifest("python", "conda", environment_yml),
    "environment.yaml": Manifest("python", "conda", environment_yml),
    "package.json": Manifest("javascript", "npm", package_json),
    "go.mod": Manifest("go", "go", go_mod),
    "Cargo.toml": Manifest("rust", "cargo", cargo_toml),
    "pom.xml": Manifest("java", "maven", pom_xml),
    "build.gradle": Manifest("java", "gradle", build_gradle),
    "build.gradle.kts": Manifest("java", "gradle", build_gradle),
    "Gemfile": Manifest("ruby", "bundler", gemfile),
    "composer.json": Manifest("php", "composer", composer_json),
    "DESCRIPTION": Manifest("r", "R", r_description),
}

#: Lockfile name -> (language, the package manager it reveals).
LOCKFILES: dict[str, tuple[str, str]] = {
    "package-lock.json": ("javascript", "npm"),
    "npm-shrinkwrap.json": ("javascript", "npm"),
    "yarn.lock": ("javascript", "yarn"),
    "pnpm-lock.yaml": ("javascript", "pnpm"),
    "bun.lockb": ("javascript", "bun"),
    "bun.lock": ("javascript", "bun"),
    "deno.lock": ("javascript", "deno"),
    "poetry.lock": ("python", "poetry"),
    "Pipfile.lock": ("python", "pipenv"),
    "uv.lock": ("python", "uv"),
    "pdm.lock": ("python", "pdm"),
    "go.sum": ("go", "go"),
    "Cargo.lock": ("rust", "cargo"),
    "Gemfile.lock": ("ruby", "bundler"),
    "composer.lock": ("php", "composer"),
    "renv.lock": ("r", "renv"),
}
