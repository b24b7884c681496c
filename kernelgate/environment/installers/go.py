"""Go: the modules a go.mod requires, from Debian's golang-*-dev packages (debian.py's
fetch). Their sources (/usr/share/gocode/src, a GOPATH tree) are merged into
/workspace/.kernelgate/go/src. The Go kernel builds each cell with `go build main.go`;
its variables put it in GOPATH mode on that tree (GO111MODULE=off, GOPATH, GOPROXY=off),
so an installed module's import compiles with no network. Versions are Debian's;
`// indirect` requirements are left out (Debian's packages bring their dependencies).
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment.installers import debian

#: Where the GOPATH tree goes, relative to the workspace.
GO_TARGET = ".kernelgate/go"
#: Module path -> Debian package, where Debian's is not the rule's (see candidates).
DEBIAN_NAMES = {
    "go.uber.org/zap": "golang-go.uber-zap-dev", "go.uber.org/atomic": "golang-go.uber-atomic-dev",
    "go.uber.org/multierr": "golang-go.uber-multierr-dev", "gopkg.in/yaml.v2": "golang-gopkg-yaml.v2-dev",
    "gopkg.in/yaml.v3": "golang-gopkg-yaml.v3-dev", "github.com/stretchr/testify": "golang-github-stretchr-testify-dev",
    "google.golang.org/protobuf": "golang-google-protobuf-dev", "google.golang.org/grpc": "golang-google-grpc-dev",
}
#: A module path: a first element with a dot (a host), then path elements.
_MODULE = re.compile(r"[a-z0-9][a-z0-9.-]*\.[a-z]+(/[A-Za-z0-9._~-]+)+\Z")
#: Hosts whose Debian prefix is not the host name without its top-level domain.
_HOSTS = {"github.com": "github", "golang.org": "golang", "gopkg.in": "gopkg", "google.golang.org": "google",
          "gitlab.com": "gitlab", "bitbucket.org": "bitbucket"}


def candidates(module: str) -> list[str]:
    """Debian packages that may provide a module: the explicit name, else
    golang-<host>-<path, / as ->-dev (github.com/google/uuid ->
    golang-github-google-uuid-dev), then the same without a /vN major suffix."""
    if module in DEBIAN_NAMES:
        return [DEBIAN_NAMES[module]]
    host, *path = module.lower().split("/")
    prefix = _HOSTS.get(host, host.rsplit(".", 1)[0])
    names = [f"golang-{'-'.join([prefix, *path])}-dev"]
    if len(path) > 1 and re.fullmatch(r"v[0-9]+", path[-1]):
        names.append(f"golang-{'-'.join([prefix, *path[:-1]])}-dev")
    return names


class Go(debian.DebianInstaller):
    language = "go"
    image = "go"
    sources = "go.mod"  # read by manifests.py
    what = "Go module paths"
    names = _MODULE
    trees = {"src": "usr/share/gocode/src"}
    folder = GO_TARGET
    candidates = staticmethod(candidates)

    def kernel_env(self, root: str) -> dict[str, str]:
        return {"GOPATH": posixpath.join(root, GO_TARGET), "GO111MODULE": "off", "GOPROXY": "off"}


INSTALLER = Go()
