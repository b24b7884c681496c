"""Python: pip installs into /workspace/.kernelgate/python (on room kernels' PYTHONPATH)."""

from __future__ import annotations

import posixpath

from kernelgate.environment import project
from kernelgate.environment.installers.base import STAGING_PATH, Context, Fetch, target

#: Comparison operators that make a PEP 440 version specifier.
_PEP440 = ("==", ">=", "<=", "~=", "!=", ">", "<")


class Pip:
    language = "python"
    image = "python"
    manifests: dict = {}
    sources = "requirements.txt, pyproject.toml or Pipfile"

    def plan(self, at, parsed) -> dict:
        if at("requirements.txt") in parsed:
            return {"supported": True, "source": at("requirements.txt"), "packages": [],
                    "requirements": at("requirements.txt")}
        for name in ("pyproject.toml", "Pipfile"):
            if at(name) in parsed:
                specs = [p.name + (p.spec if p.spec.startswith(_PEP440) else "")
                         for p in parsed[at(name)] if not p.dev]
                return {"supported": True, "source": at(name), "packages": specs}
        return {"supported": True, "source": None, "packages": []}

    def urls(self, config) -> list[str]:
        return [config.pip_index_url, *config.pip_extra_index_urls]

    def fetch(self, install: dict, context: Context) -> Fetch:
        config = context.config
        env = {**context.network_env, "PIP_CONFIG_FILE": "/dev/null", "PIP_CACHE_DIR": "/tmp/pip-cache",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        command = ["pip", "install", "--no-input", "--progress-bar", "off", "--no-warn-script-location",
                   "--target", f"{STAGING_PATH}/python"]
        if config.pip_index_url:
            command += ["--index-url", config.pip_index_url]
        for url in config.pip_extra_index_urls:
            command += ["--extra-index-url", url]
        if install.get("requirements"):
            command += ["-r", target(install["requirements"])]
            working_dir = posixpath.dirname(target(install["requirements"]))
        else:
            command += ["--", *install["packages"]]
            working_dir = "/tmp"
        return Fetch(command, env, working_dir, [f"{STAGING_PATH}/python", target(project.PYTHON_TARGET)])

    def kernel_env(self, root: str) -> dict[str, str]:
        return {"PYTHONPATH": posixpath.join(root, project.PYTHON_TARGET)}


INSTALLER = Pip()
