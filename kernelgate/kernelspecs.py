"""The kernelspecs kernelgate serves: the project's kernelspecs/ folder, nothing else.

The folders are read once, by `load` in a thread at the gateway's start, and kept:
requests never read files on the event loop. Changing a kernelspec takes a gateway
restart.
"""

from __future__ import annotations

import copy
import os
import sys

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from traitlets import Bool, List, Unicode, default

from kernelgate.paths import shipped_folder

LOCAL_PROVISIONER = {"provisioner_name": "kernelgate-local-provisioner", "config": {}}


class KernelSpecCatalog(KernelSpecManager):
    """Kernelspecs from `kernelspec_dirs` only (never the host's installed kernels).

    With `local_kernels` set, every spec's provisioner becomes the local one
    (kernelgate.provisioners.base): the fallback when no Docker engine is available.
    """

    kernelspec_dirs = List(
        Unicode(), config=True, help="Folders holding one kernelspec directory per language."
    )
    default_kernel_name = Unicode(
        "python3", config=True, help="Kernelspec started when a client names none."
    )
    local_kernels = Bool(False, help="Run kernels as local processes (set by the app).")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._found: dict[str, str] | None = None
        self._specs: dict[str, KernelSpec] = {}
        self._files: dict[str, list[str]] = {}

    @default("kernelspec_dirs")
    def _default_kernelspec_dirs(self):
        return [str(shipped_folder("kernelspecs"))]

    @default("kernel_dirs")
    def _default_kernel_dirs(self):
        return list(self.kernelspec_dirs)

    @default("ensure_native_kernel")
    def _default_ensure_native_kernel(self):
        return False

    def find_kernel_specs(self) -> dict[str, str]:
        """Name -> folder of the served kernelspecs. In local mode only those whose
        metadata says `"kernelgate": {"local": true}`: the others' kernels exist only
        inside their images."""
        if self._found is None:
            specs = super().find_kernel_specs()
            if self.local_kernels:
                specs = {name: path for name, path in specs.items()
                         if self._read(name).metadata.get("kernelgate", {}).get("local")}
            self._found = specs
        return dict(self._found)

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """The named spec. In local mode its provisioner is the local one and
        its argv runs under the agent, in the working directory the launcher is given."""
        read = self._read(kernel_name)
        spec = KernelSpec(resource_dir=read.resource_dir, **copy.deepcopy(read.to_dict()))
        if self.local_kernels:
            argv = list(spec.argv)
            if argv and argv[0] in ("python", "python3"):
                argv[0] = sys.executable
            spec.argv = [
                sys.executable, "-m", "kernelgate_agent", "--connection-file", "{connection_file}",
                "--workspace", ".", "--", *argv,
            ]
            spec.metadata = {**spec.metadata, "kernel_provisioner": LOCAL_PROVISIONER}
        return spec

    def image_of(self, kernel_name: str) -> str | None:
        """The images/ folder the spec's Docker provisioner runs, if it names one."""
        spec = self._read(kernel_name)
        return spec.metadata.get("kernel_provisioner", {}).get("config", {}).get("image")

    def tier_of(self, kernel_name: str) -> str:
        """The tier the spec's Docker provisioner config names ('' = the default tier)."""
        spec = self._read(kernel_name)
        return spec.metadata.get("kernel_provisioner", {}).get("config", {}).get("tier", "")

    def resource_files(self, kernel_name: str) -> list[str]:
        """The names of the files in the spec's folder (logos, kernel.js), sorted."""
        if kernel_name not in self._files:
            self._files[kernel_name] = sorted(os.listdir(self._read(kernel_name).resource_dir))
        return self._files[kernel_name]

    def load(self) -> None:
        """Read every served spec and list its folder now (blocking: the app calls this in
        a thread at start, so that requests find everything cached)."""
        for name in self.find_kernel_specs():
            self.resource_files(name)

    def _read(self, kernel_name: str) -> KernelSpec:
        """The spec as its folder says, read once (NoSuchKernel for an unknown name);
        callers must not change it."""
        if kernel_name not in self._specs:
            self._specs[kernel_name] = super().get_kernel_spec(kernel_name)
        return self._specs[kernel_name]
