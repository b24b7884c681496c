"""Build, list and prune the Docker images that kernelgate runs kernels in.

Every folder of ``images_dir`` that holds a ``Dockerfile`` and an ``image.json`` is an
image named after the folder and tagged ``<repository>/<name>:<tag>``.  ``image.json``
declares the parent: ``{"parent": "base"}`` builds on ``<repository>/base``;
``{"parent": null}`` builds on the Debian root filesystem that ``debootstrap`` makes
(imported as ``<repository>/rootfs``).  The Dockerfile starts with ``ARG BASE_IMAGE`` /
``FROM ${BASE_IMAGE}`` and receives the parent's reference in that build argument.

The tag is a digest of everything that shapes the image (see :meth:`ImageBuilder.reference`),
so an image whose reference exists in Docker is up to date and is not built again.

Run as ``python -m kernelgate.images build|list|prune`` or, mounted by the main
application, as ``kernelgate images build|list|prune``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import docker
import docker.errors
from traitlets import Bool, Dict, Instance, Unicode, default
from traitlets.config import Application, LoggingConfigurable

from kernelgate.engine import DockerEngine
from kernelgate.paths import shipped_folder

#: Reserved image name of the debootstrap root filesystem (not a folder of images_dir).
ROOTFS = "rootfs"
#: Part of the rootfs tag: bump it whenever :meth:`ImageBuilder._make_rootfs` changes
#: what ends up in the root filesystem.
ROOTFS_RECIPE = 1
#: Name of the host CA bundle inside every build context (for pip/npm inside builds).
BUILD_CA_FILE = "kernelgate-build-ca.crt"
#: Proxy variables forwarded to builds (Docker predefines them as build arguments).
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
#: Labels every image gets.
LABEL_IMAGE = "org.kernelgate.image"
LABEL_INPUTS = "org.kernelgate.inputs"
#: The classic builder wraps a step's stderr output in these colour codes; progress lines drop them.
STDERR_COLOUR_CODES = ("\x1b[91m", "\x1b[0m")
#: Lines of the classic builder's own bookkeeping, left out of ImageBuildError messages.
BUILDER_NOTE_PREFIXES = (" ---> ", "Removing intermediate container ")
#: How many output lines of a failing build step an ImageBuildError quotes.
ERROR_TAIL_LINES = 20

Progress = Callable[[str], None]


class ImageError(Exception):
    """An image definition is invalid or an image name is unknown."""


class ImageBuildError(ImageError):
    """Building an image failed; the message names the image, the failing step and its output."""


class ImageBuilder(LoggingConfigurable):
    """Computes references of, builds and lists kernelgate's images.

    References are cached per instance: create a new instance after editing image folders.
    """

    images_dir = Unicode(help="Folder holding one sub-folder per image.").tag(config=True)
    repository = Unicode("kernelgate", help="Images are named <repository>/<name>:<tag>.").tag(
        config=True
    )
    debian_mirror = Unicode(
        "", help="Debian mirror for debootstrap; empty uses debootstrap's default."
    ).tag(config=True)
    debian_suite = Unicode("bookworm", help="Debian suite of the root filesystem.").tag(
        config=True
    )
    pip_index_url = Unicode(
        "", help="Package index for pip inside builds; empty uses pip's default."
    ).tag(config=True)
    ca_bundle = Unicode(
        help="CA bundle copied into every build context as " + BUILD_CA_FILE + "."
    ).tag(config=True)
    engine = Instance(
        DockerEngine, help="The Docker engine images are built in and listed from (its "
        "docker_url); default: a DockerEngine of this builder's configuration.",
    )
    proxy_env = Dict(
        help="Proxy variables passed to debootstrap and as build arguments "
        "(default: those of " + ", ".join(PROXY_VARIABLES) + " set in the environment)."
    ).tag(config=True)

    @default("engine")
    def _engine_default(self) -> DockerEngine:
        return DockerEngine(parent=self)

    @default("images_dir")
    def _images_dir_default(self) -> str:
        return str(shipped_folder("images"))

    @default("ca_bundle")
    def _ca_bundle_default(self) -> str:
        env_file = os.environ.get("SSL_CERT_FILE", "")
        if env_file and os.path.isfile(env_file):
            return env_file
        return "/etc/ssl/certs/ca-certificates.crt"

    @default("proxy_env")
    def _proxy_env_default(self) -> dict[str, str]:
        return {name: os.environ[name] for name in PROXY_VARIABLES if os.environ.get(name)}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._references: dict[str, str] = {}
        self._client: docker.DockerClient | None = None

    # ------------------------------------------------------------------ graph

    def names(self) -> list[str]:
        """Names of all images in images_dir, sorted, parents before children."""
        root = Path(self.images_dir)
        if not root.is_dir():
            raise ImageError(f"images_dir {root} is not a folder")
        found = sorted(p.name for p in root.iterdir() if (p / "Dockerfile").is_file())
        return self._with_parents(found)

    def _meta(self, name: str) -> dict:
        meta_file = self._folder(name) / "image.json"
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ImageError(f"image {name!r}: cannot read {meta_file}: {e}") from e
        if not isinstance(meta, dict) or "parent" not in meta:
            raise ImageError(f'image {name!r}: {meta_file} must be {{"parent": <name or null>}}')
        return meta

    def packages_of(self, name: str) -> dict[str, Path]:
        """The project's Python packages the image's build context gets under packages/
        (image.json's "packages": [import names]), by name -> source folder."""
        found = {}
        for package in self._meta(name).get("packages", []):
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ImageError(f"image {name!r}: package {package!r} is not importable")
            found[package] = Path(spec.submodule_search_locations[0])
        return found

    def _inputs(self, name: str) -> list[tuple[str, Path]]:
        """(path in the build context, file) for every input file, in path order."""
        folder = self._folder(name)
        inputs = [(p.relative_to(folder).as_posix(), p) for p in folder.rglob("*")
                  if p.is_file() and not _generated(p)]
        for package, source in self.packages_of(name).items():
            inputs += [
                (f"packages/{package}/{p.relative_to(source).as_posix()}", p)
                for p in source.rglob("*.py") if not _generated(p)
            ]
        return sorted(inputs)

    def parent_of(self, name: str) -> str | None:
        """The image ``name`` builds on, or None if it builds on the debootstrap rootfs."""
        parent = self._meta(name)["parent"]
        if parent is not None:
            if not isinstance(parent, str):
                raise ImageError(f"image {name!r}: parent must be a name or null")
            self._folder(parent)
        return parent

    def _folder(self, name: str) -> Path:
        if name == ROOTFS:
            raise ImageError(f"{ROOTFS!r} is reserved for the debootstrap root filesystem")
        folder = Path(self.images_dir) / name
        if "/" in name or not (folder / "Dockerfile").is_file():
            raise ImageError(f"unknown image {name!r}: no {folder}/Dockerfile")
        return folder

    def _with_parents(self, names: Iterable[str]) -> list[str]:
        """``names`` plus their ancestors, each once, every parent before its children."""
        order: list[str] = []
        for name in names:
            chain: list[str] = []
            current: str | None = name
            while current is not None and current not in order:
                if current in chain:
                    cycle = " -> ".join(chain + [current])
                    raise ImageError(f"image parents form a cycle: {cycle}")
                chain.append(current)
                current = self.parent_of(current)
            order.extend(reversed(chain))
        return order

    # ------------------------------------------------------------- references

    def rootfs_reference(self) -> str:
        """Reference of the debootstrap root filesystem image for the current settings."""
        recipe = {
            "recipe": ROOTFS_RECIPE,
            "variant": "minbase",
            "suite": self.debian_suite,
            "mirror": self.debian_mirror,
        }
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
        return f"{self.repository}/{ROOTFS}:{digest[:12]}"

    def reference(self, name: str) -> str:
        """``<repository>/<name>:<tag>``, the tag being the first 12 hex digits of a sha256 over
        the image folder's files (relative paths, executable bits and contents, in path order)
        and the parent's reference (for a rootfs-based image: the rootfs reference, which
        digests the suite and mirror).  Mtimes and absolute paths do not count, so the
        reference is the same on every machine and clone.  Cached per instance; no Docker call.
        """
        if name not in self._references:
            parent = self.parent_of(name)
            parent_ref = self.rootfs_reference() if parent is None else self.reference(parent)
            digest = hashlib.sha256()
            digest.update(f"parent\0{parent_ref}\0".encode())
            for rel, path in self._inputs(name):
                data = path.read_bytes()
                mode = "x" if path.stat().st_mode & 0o111 else "-"
                digest.update(f"file\0{rel}\0{mode}\0{len(data)}\0".encode())
                digest.update(data)
            self._references[name] = f"{self.repository}/{name}:{digest.hexdigest()[:12]}"
        return self._references[name]

    def references(self) -> dict[str, str]:
        """Every image's reference by name, computed now where not cached yet. The gateway
        calls this in a thread at start, so that later calls on the event loop read no
        files (all folders take about 20 ms to hash here)."""
        return {name: self.reference(name) for name in self.names()}

    # ----------------------------------------------------------------- docker

    @property
    def client(self) -> docker.DockerClient:
        """A blocking client of `engine` (created on first use)."""
        if self._client is None:
            self._client = self.engine.new_client()
        return self._client

    def _inspect(self, reference: str) -> dict | None:
        try:
            return self.client.api.inspect_image(reference)
        except docker.errors.ImageNotFound:
            return None

    def list(self) -> list[dict]:
        """One dict per image in names() order: ``name``, ``reference``, ``built`` (the
        reference exists in Docker) and ``size`` (bytes, or None when not built).
        Raises docker.errors.DockerException when the engine cannot be reached."""
        rows = []
        for name in self.names():
            ref = self.reference(name)
            info = self._inspect(ref)
            rows.append(
                {
                    "name": name,
                    "reference": ref,
                    "built": info is not None,
                    "size": info["Size"] if info is not None else None,
                }
            )
        return rows

    def prune(self, dry_run: bool = False) -> list[tuple[str, str]]:
        """Remove the tags of this repository's images that are no longer current.

        Every change to an image folder (or a parent) builds the image under a new tag
        and leaves the old one behind. Only ``<repository>/<name>`` tags of known images
        and the root filesystem are looked at, and the current references are kept. A
        tag whose image a container still uses (a room kernel started before an upgrade,
        say) is kept too. Returns ``(reference, "removed" | "would remove" | "in use")``
        for each old tag. Raises docker.errors.DockerException when the engine cannot be
        reached.
        """
        current = {*self.references().values(), self.rootfs_reference()}
        repositories = {f"{self.repository}/{name}" for name in [*self.names(), ROOTFS]}
        results = []
        for image in self.client.api.images():
            for tag in image.get("RepoTags") or []:
                if tag.rsplit(":", 1)[0] not in repositories or tag in current:
                    continue
                if dry_run:
                    results.append((tag, "would remove"))
                    continue
                try:
                    self.client.api.remove_image(tag)
                    results.append((tag, "removed"))
                except docker.errors.APIError as e:
                    if e.status_code != 409:  # 409: a container uses it
                        raise
                    results.append((tag, "in use"))
        return sorted(results)

    # ------------------------------------------------------------------ build

    def build(
        self, names: Iterable[str] | None = None, progress: Progress | None = None
    ) -> list[str]:
        """Build ``names`` (default: all images) and their missing parents, parents first.

        Blocks until done.  Images whose reference already exists in Docker are skipped.
        ``progress`` receives each output line (without newline) as it arrives.
        Returns the references built by this call, in build order (empty if all existed).
        Raises ImageError for unknown names or bad definitions, ImageBuildError when a build
        fails (including Docker engine errors during it), docker.errors.DockerException when the
        engine cannot be reached.
        """
        emit = progress or (lambda line: None)
        order = self._with_parents(self.names() if names is None else list(names))
        built: list[str] = []
        for name in order:
            ref = self.reference(name)
            if self._inspect(ref) is not None:
                emit(f"==> {ref}: already built")
                continue
            if self.parent_of(name) is None:
                rootfs = self.rootfs_reference()
                if self._inspect(rootfs) is None:
                    _build_step(rootfs, emit, self._make_rootfs, rootfs, emit)
                    built.append(rootfs)
            _build_step(ref, emit, self._build_image, name, ref, emit)
            built.append(ref)
        return built

    def _make_rootfs(self, ref: str, emit: Progress) -> None:
        """debootstrap a minbase root filesystem, drop its caches and host files, and import
        it as ``ref``."""
        if shutil.which("debootstrap") is None:
            raise ImageBuildError(f"{ref}: debootstrap not installed (apt-get install debootstrap)")
        if os.geteuid() != 0:
            raise ImageBuildError(f"{ref}: debootstrap needs root")
        with tempfile.TemporaryDirectory(prefix="kernelgate-rootfs-") as tmp:
            root = Path(tmp) / "root"
            cmd = ["debootstrap", "--variant=minbase", self.debian_suite, str(root)]
            if self.debian_mirror:
                cmd.append(self.debian_mirror)
            try:
                self._run(cmd, ref, emit)
            finally:
                _unmount_below(root)
            caches = ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*")
            for pattern in caches:
                for path in root.glob(pattern):
                    if path.is_file():
                        path.unlink()
            (root / "var/log/bootstrap.log").unlink(missing_ok=True)
            for host_file in ("etc/hostname", "etc/resolv.conf"):
                (root / host_file).write_bytes(b"")
            tarball = Path(tmp) / "rootfs.tar"
            emit(f"{ref}: importing the root filesystem")
            self._run(
                ["tar", "--numeric-owner", "--xattrs", "--exclude=./dev/*", "-C", str(root),
                 "-cf", str(tarball), "."],
                ref,
                emit,
            )
            repository, tag = ref.rsplit(":", 1)
            self.client.api.import_image_from_file(
                str(tarball),
                repository=repository,
                tag=tag,
                changes=[f"LABEL {LABEL_IMAGE}={ROOTFS} {LABEL_INPUTS}={tag}"],
            )
        if self._inspect(ref) is None:
            raise ImageBuildError(f"{ref}: import finished but the image does not exist")

    def _run(self, cmd: list[str], ref: str, emit: Progress) -> None:
        """Run ``cmd`` streaming its output lines; ImageBuildError with the tail on failure."""
        tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.proxy_env},
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        with proc:
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                emit(line)
        if proc.returncode != 0:
            raise ImageBuildError(
                f"{ref}: {cmd[0]} exited with {proc.returncode}:\n" + "\n".join(tail)
            )

    def _build_image(self, name: str, ref: str, emit: Progress) -> None:
        """docker build the image folder plus the CA bundle as ``ref``."""
        if not os.path.isfile(self.ca_bundle):
            raise ImageBuildError(f"{ref}: CA bundle {self.ca_bundle} does not exist")
        parent = self.parent_of(name)
        base_image = self.rootfs_reference() if parent is None else self.reference(parent)
        build_args = {"BASE_IMAGE": base_image}
        if self.pip_index_url:
            build_args["KERNELGATE_PIP_INDEX_URL"] = self.pip_index_url
        build_args.update(self.proxy_env)
        with tempfile.TemporaryDirectory(prefix="kernelgate-build-") as tmp:
            context = Path(tmp) / "context"
            shutil.copytree(self._folder(name), context,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
            if (context / BUILD_CA_FILE).exists():
                raise ImageError(f"image {name!r}: {BUILD_CA_FILE} is reserved for the CA bundle")
            shutil.copyfile(self.ca_bundle, context / BUILD_CA_FILE)
            for rel, path in self._inputs(name):
                if rel.startswith("packages/"):
                    (context / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, context / rel)
            stream = self.client.api.build(
                path=str(context),
                tag=ref,
                buildargs=build_args,
                labels={LABEL_IMAGE: name, LABEL_INPUTS: ref.rsplit(":", 1)[1]},
                network_mode="host",
                rm=True,
                forcerm=True,
                decode=True,
                timeout=None,
            )
            _follow_build(stream, ref, emit)
        if self._inspect(ref) is None:
            raise ImageBuildError(f"{ref}: build finished but the image does not exist")


def _generated(path: Path) -> bool:
    """Files Python writes beside sources (bytecode): never inputs of an image."""
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def _build_step(ref: str, emit: Progress, step: Callable[..., None], *args) -> None:
    """Run ``step(*args)`` between "building" and "built in N s" progress lines for ``ref``;
    Docker engine errors become ImageBuildError."""
    emit(f"==> {ref}: building")
    start = time.monotonic()
    try:
        step(*args)
    except docker.errors.DockerException as e:
        raise ImageBuildError(f"{ref}: Docker engine error: {e}") from e
    emit(f"==> {ref}: built in {time.monotonic() - start:.1f} s")


def _follow_build(stream: Iterable[dict], ref: str, emit: Progress) -> None:
    """Emit the lines of a decoded ``docker build`` stream; raise ImageBuildError on its error."""
    step = "(before the first step)"
    step_output: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
    pending = ""

    def flush_lines(text: str) -> str:
        nonlocal step
        *lines, rest = text.split("\n")
        for line in lines:
            if line.startswith("Step "):
                step = line
                step_output.clear()
            elif not line.startswith(BUILDER_NOTE_PREFIXES):
                step_output.append(line)
            emit(line)
        return rest

    for chunk in stream:
        if "stream" in chunk:
            text = chunk["stream"]
            for code in STDERR_COLOUR_CODES:
                text = text.replace(code, "")
            pending = flush_lines(pending + text)
        elif "error" in chunk:
            if pending:
                flush_lines(pending + "\n")
            message = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            output = "\n".join(step_output)
            details = f"\n{output}" if output else ""
            raise ImageBuildError(f"{ref}: {step}: {message.strip()}{details}")
    if pending:
        flush_lines(pending + "\n")


def _unmount_below(root: Path) -> None:
    """Unmount whatever a failed debootstrap left mounted under ``root`` (deepest first), so
    deleting the tree cannot reach into /proc or /dev of the host."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=True)


# ---------------------------------------------------------------------- command line

_ALIASES = {
    "images-dir": "ImageBuilder.images_dir",
    "repository": "ImageBuilder.repository",
    "debian-mirror": "ImageBuilder.debian_mirror",
    "debian-suite": "ImageBuilder.debian_suite",
    "pip-index-url": "ImageBuilder.pip_index_url",
    "ca-bundle": "ImageBuilder.ca_bundle",
    "docker-url": "DockerEngine.docker_url",
}


class BuildImagesApp(Application):
    """``build [NAME ...]``: build the named images (default: all) and their parents."""

    name = "kernelgate-images-build"
    description = "Build kernelgate's kernel images (default: all) and their parent images."
    examples = "kernelgate images build python"
    classes = [ImageBuilder, DockerEngine]
    aliases = Dict(_ALIASES)

    def start(self) -> None:
        builder = ImageBuilder(parent=self)
        try:
            builder.build(self.extra_args or None, progress=lambda line: print(line, flush=True))
        except (ImageError, docker.errors.DockerException) as e:
            print(f"error: {e}", file=sys.stderr)
            self.exit(1)


class ListImagesApp(Application):
    """``list``: print a table of the images, their references, whether built and their size."""

    name = "kernelgate-images-list"
    description = "List kernelgate's images: name, reference, built, size."
    classes = [ImageBuilder, DockerEngine]
    aliases = Dict(_ALIASES)

    def start(self) -> None:
        builder = ImageBuilder(parent=self)
        try:
            rows = builder.list()
        except (ImageError, docker.errors.DockerException) as e:
            print(f"error: {e}", file=sys.stderr)
            self.exit(1)
        table = [("NAME", "REFERENCE", "BUILT", "SIZE MB")] + [
            (
                row["name"],
                row["reference"],
                "yes" if row["built"] else "no",
                f"{row['size'] / 1e6:.0f}" if row["size"] is not None else "-",
            )
            for row in rows
        ]
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for r in table:
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


class PruneImagesApp(Application):
    """``prune [--dry-run]``: remove the tags of images that are no longer current."""

    name = "kernelgate-images-prune"
    description = ("Remove kernelgate's image tags that no image folder produces any more "
                   "(images a container still uses are kept).")
    examples = "kernelgate images prune --dry-run"
    classes = [ImageBuilder, DockerEngine]
    aliases = Dict(_ALIASES)
    dry_run = Bool(False, config=True, help="Only say what would be removed.")
    flags = Dict({"dry-run": ({"PruneImagesApp": {"dry_run": True}}, "Only say what would be removed.")})

    def start(self) -> None:
        builder = ImageBuilder(parent=self)
        try:
            results = builder.prune(dry_run=self.dry_run)
        except (ImageError, docker.errors.DockerException) as e:
            print(f"error: {e}", file=sys.stderr)
            self.exit(1)
        for reference, outcome in results:
            print(f"{outcome}: {reference}")
        if not results:
            print("no old images")


class ImagesApp(Application):
    """``kernelgate images``: build, list and prune the kernel images."""

    name = "kernelgate-images"
    description = "Build, list and prune the Docker images kernelgate runs kernels in."
    subcommands = {
        "build": (BuildImagesApp, BuildImagesApp.description),
        "list": (ListImagesApp, ListImagesApp.description),
        "prune": (PruneImagesApp, PruneImagesApp.description),
    }

    def start(self) -> None:
        if self.subapp is None:
            self.print_subcommands()
            self.exit(1)
        self.subapp.start()


if __name__ == "__main__":
    ImagesApp.launch_instance()
