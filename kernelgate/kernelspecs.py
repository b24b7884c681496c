"""The kernelspecs kernelgate serves: the project's kernelspecs/ folder, nothing else."""

from __future__ import annotations

import sys

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from traitlets import Bool, List, Unicode, default

from kernelgate.paths import shipped_folder

LOCAL_PROVISIONER = {"provisioner_name": "local-provisioner", "config": {}}


class KernelSpecCatalog(KernelSpecManager):
    """Kernelspecs from `kernelspec_dirs` only (never the host's installed kernels).

    With `local_kernels` set, every spec's provisioner becomes jupyter_client's local
    provisioner: the fallback when no Docker engine is available.
    """

    kernelspec_dirs = List(
        Unicode(), config=True, help="Folders holding one kernelspec directory per language."
    )
    default_kernel_name = Unicode(
        "python3", config=True, help="Kernelspec started when a client names none."
    )
    local_kernels = Bool(False, help="Run kernels as local processes (set by the app).")

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
        specs = super().find_kernel_specs()
        if not self.local_kernels:
            return specs
        return {name: path for name, path in specs.items()
                if KernelSpecManager.get_kernel_spec(self, name).metadata.get("kernelgate", {}).get("local")}

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """The named spec. In local mode its provisioner is jupyter_client's local one and
        its argv runs under the agent, in the working directory the launcher is given."""
        spec = super().get_kernel_spec(kernel_name)
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
        spec = super().get_kernel_spec(kernel_name)
        return spec.metadata.get("kernel_provisioner", {}).get("config", {}).get("image")

    def tier_of(self, kernel_name: str) -> str:
        """The tier the spec's Docker provisioner config names ('' = the default tier)."""
        spec = super().get_kernel_spec(kernel_name)
        return spec.metadata.get("kernel_provisioner", {}).get("config", {}).get("tier", "")
