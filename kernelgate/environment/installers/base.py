"""The interface every package manager's installer implements (one module each in this
package; docs/environment.md lists them).

An installer is told what detection parsed and answers four questions: which manifests
it reads (`manifests`, added to detection), what an install would do (`plan`), how the
fetch container runs (`fetch`: command, environment, folder, and what the swap moves
into the workspace), and what a kernel needs to find the result (`kernel_env`).
The service (install.py) runs the containers, the fence and the swap; installers only
describe.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Callable, Protocol

from kernelgate.environment import manifests, project

#: Where the fetch writes; the swap copies from here into the workspace.
STAGING_PATH = "/install"
#: Where install containers see the configured CA bundle.
CA_PATH = "/etc/kernelgate/ca.crt"


class PlanError(ValueError):
    """The install cannot run as asked (the message names the packages and why)."""


@dataclass(frozen=True)
class Fetch:
    """How one language's fetch container runs."""

    command: list[str]
    env: dict[str, str]
    working_dir: str
    moves: list[str]  # source, destination, source, destination... for the swap
    summary: str = ""  # the progress line that announces it; default: the command's start


@dataclass(frozen=True)
class Context:
    """What a fetch may depend on: the service's configuration (read-only), the project
    folder, and the network environment already chosen (proxies, CA)."""

    config: object  # the EnvironmentService (its traits)
    workdir: str
    network_env: dict[str, str] = field(default_factory=dict)

    @property
    def project_dir(self) -> str:
        return f"{project.MOUNT}/{self.workdir}".rstrip("/")


class Installer(Protocol):
    language: str  # detection's language name
    image: str  # the default image (a folder of images/) its installs run in
    manifests: dict[str, manifests.Manifest]  # manifests this installer adds to detection
    sources: str  # what it installs from, for the "nothing to install" message

    def plan(self, at: Callable[[str], str], parsed: dict[str, list[manifests.Package]]) -> dict:
        """{"supported": True, "source": path or None, "packages": [...], ...} from the
        parsed manifests of the project folder (`at(name)` is a manifest's path)."""

    def urls(self, config) -> list[str]:
        """Index URLs whose hosts the fence's proxy must allow."""

    def fetch(self, install: dict, context: Context) -> Fetch:
        """The fetch container; PlanError for a request it cannot run."""

    def kernel_env(self, root: str) -> dict[str, str]:
        """Variables kernels get so they find what the swap put in the workspace, whose
        root they see at `root` (/workspace in rooms, the home of solo kernels)."""


def target(relative: str) -> str:
    """A workspace-relative path as room containers see it."""
    return posixpath.join(project.MOUNT, relative)
