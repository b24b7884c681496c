"""Detection: what a workspace's project needs, from its manifests, lockfiles, project
file and imports. The rules and their order are in docs/environment.md.

`scan` walks a `Tree` breadth first, within `Limits`, and reads the manifests and a
bounded number of source files; `analyze` turns what it read into the report. Nothing
here follows a symbolic link: links are listed in the report, never entered or read.
"""

from __future__ import annotations

import posixpath
import sys
from dataclasses import dataclass, field

from kernelgate.environment import frameworks, installers, manifests, project
from kernelgate.environment.tree import Tree, TreeError

#: Folders never entered: installed packages, build outputs, version control, caches.
SKIP_DIRS = frozenset({
    "node_modules", "venv", "env", "__pycache__", "site-packages", "target", "build", "dist",
    "vendor", "bower_components", "out",
})
#: Languages whose packages an install can put into the workspace.
INSTALLABLE = installers.LANGUAGES


@dataclass(frozen=True)
class Limits:
    max_depth: int = 4  # folders below the root that are entered
    max_entries: int = 5000  # directory entries listed, in all
    max_manifest_bytes: int = 512 * 1024
    max_sources: int = 200  # source files read for their imports
    max_source_bytes: int = 256 * 1024
    max_links_listed: int = 20


@dataclass
class Scan:
    """What a walk found: manifest texts, lockfile paths, source imports."""

    manifests: list[tuple[str, bytes]] = field(default_factory=list)
    lockfiles: list[str] = field(default_factory=list)
    imports: dict[str, dict[str, str]] = field(default_factory=dict)  # language -> name -> file
    project_file: bytes | None = None
    links: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    entries: int = 0
    sources_read: int = 0
    truncated: bool = False


async def scan(tree: Tree, limits: Limits = Limits()) -> Scan:
    """Walk the tree breadth first (sorted names), within the limits."""
    found = Scan()
    sources: list[str] = []
    queue = [("", 0)]
    while queue:
        folder, depth = queue.pop(0)
        try:
            entries = await tree.list(folder)
        except TreeError as e:
            found.errors.append({"path": folder or ".", "message": str(e)})
            continue
        for entry in sorted(entries, key=lambda e: e["name"]):
            found.entries += 1
            if found.entries > limits.max_entries:
                found.truncated = True
                queue.clear()
                break
            name, kind = entry["name"], entry["type"]
            path = posixpath.join(folder, name) if folder else name
            if kind == "symlink":
                if len(found.links) < limits.max_links_listed:
                    found.links.append(path)
            elif kind == "directory":
                if name.startswith(".") or name in SKIP_DIRS:
                    continue
                if depth < limits.max_depth:
                    queue.append((path, depth + 1))
                else:
                    found.truncated = True
            elif kind == "file":
                if path == project.PROJECT_FILE:
                    found.project_file = await _read(tree, path, project.MAX_PROJECT_FILE, found)
                elif installers.manifest_kind(name) is not None:
                    data = await _read(tree, path, limits.max_manifest_bytes, found)
                    if data is not None:
                        found.manifests.append((path, data))
                elif name in manifests.LOCKFILES:
                    found.lockfiles.append(path)
                elif posixpath.splitext(name)[1] in frameworks.SOURCES:
                    if entry.get("size", 0) <= limits.max_source_bytes:
                        sources.append(path)
    for path in sources[:limits.max_sources]:
        data = await _read(tree, path, limits.max_source_bytes, found)
        if data is None:
            continue
        found.sources_read += 1
        suffix = posixpath.splitext(path)[1]
        language = frameworks.SOURCES[suffix]
        for name in frameworks.imports(suffix, data):
            found.imports.setdefault(language, {}).setdefault(name, path)
    found.truncated = found.truncated or len(sources) > limits.max_sources
    return found


async def _read(tree: Tree, path: str, limit: int, found: Scan) -> bytes | None:
    try:
        return await tree.read(path, limit)
    except TreeError as e:
        found.errors.append({"path": path, "message": str(e)})
        return None


def _third_party(language: str, name: str) -> bool:
    if language == "python":
        return name not in sys.stdlib_module_names and name != "__future__"
    if language == "go":
        return "." in name.split("/")[0] or name == "net/http"
    return True


def analyze(found: Scan) -> dict:
    """The detection report of a scan (the shape is documented in docs/environment.md)."""
    settings, project_error = None, None
    if found.project_file is not None:
        try:
            settings = project.parse(found.project_file)
        except project.ProjectFileError as e:
            project_error = str(e)
    workdir = settings.workdir if settings else ""
    lock_managers = {}
    for path in found.lockfiles:
        language, manager = manifests.LOCKFILES[posixpath.basename(path)]
        lock_managers.setdefault((posixpath.dirname(path), language), manager)
    languages: dict[str, dict] = {}

    def language_entry(language: str) -> dict:
        return languages.setdefault(language, {
            "language": language, "package_manager": None, "manifests": [], "lockfiles": [],
            "packages": [], "frameworks": [], "imports": [],
        })

    parsed: dict[str, list[manifests.Package]] = {}
    for path, data in found.manifests:
        kind = installers.manifest_kind(posixpath.basename(path))
        entry = language_entry(kind.language)
        manager = lock_managers.get((posixpath.dirname(path), kind.language))
        if manager is None and posixpath.basename(path) == "pyproject.toml":
            manager = manifests.pyproject_manager(data)
        manager = manager or kind.package_manager
        entry["package_manager"] = entry["package_manager"] or manager
        entry["manifests"].append({"path": path, "package_manager": manager})
        try:
            packages = kind.parse(data)
        except manifests.ManifestError as e:
            found.errors.append({"path": path, "message": str(e)})
            continue
        parsed[path] = packages
        entry["packages"] += [p.model(path) for p in packages]
        for package in packages:
            _add_framework(entry, kind.language, package.name, path)
    for path in found.lockfiles:
        language, manager = manifests.LOCKFILES[posixpath.basename(path)]
        entry = language_entry(language)
        entry["lockfiles"].append(path)
        entry["package_manager"] = entry["package_manager"] or manager
    for language, names in found.imports.items():
        third_party = sorted(n for n in names if _third_party(language, n))
        if not third_party and language not in languages:
            continue
        entry = language_entry(language)
        entry["imports"] = third_party[:100]
        for name in third_party:
            _add_framework(entry, language, name, names[name])
    for language in settings.packages if settings else ():
        language_entry(language)
    for language, entry in languages.items():
        entry["install"] = _install(language, workdir, settings, parsed)
    return {
        "workdir": workdir,
        "project_file": settings.model() if settings else None,
        "project_file_error": project_error,
        "languages": [languages[k] for k in sorted(languages)],
        "scan": {"entries": found.entries, "sources_read": found.sources_read,
                 "truncated": found.truncated, "links_not_followed": found.links,
                 "errors": found.errors},
    }


def _add_framework(entry: dict, language: str, name: str, evidence: str) -> None:
    framework = frameworks.framework_of(language, name)
    if framework and all(f["name"] != framework for f in entry["frameworks"]):
        entry["frameworks"].append({"name": framework, "evidence": f"{evidence}: {name}"})


def _install(language: str, workdir: str, settings: project.ProjectFile | None,
             parsed: dict[str, list[manifests.Package]]) -> dict:
    """What an install of this language would do: {"supported", "source", "packages", ...}
    (the project file's [packages] first, then the language's installer's plan)."""
    if language not in INSTALLABLE:
        return {"supported": False, "source": None, "packages": []}
    if settings and language in settings.packages:
        return {"supported": True, "source": project.PROJECT_FILE, "packages": settings.packages[language]}

    def at(name: str) -> str:
        return posixpath.join(workdir, name) if workdir else name

    return installers.INSTALLERS[language].plan(at, parsed)
