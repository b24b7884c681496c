"""Ruby: the gems of a Gemfile, from Debian's ruby-* packages (debian.py's fetch). Their
rubygems-integration trees (specifications, gems, extensions) are merged into
/workspace/.kernelgate/ruby/gems, which kernels' GEM_PATH puts before Ruby's own gem
paths, so `require` activates them and their dependencies (Bundler is not used). A gem
the image's Ruby already requires is skipped.
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment.installers import debian

#: Where the gems go, relative to the workspace (on kernels' GEM_PATH).
RUBY_TARGET = ".kernelgate/ruby"
#: Gem -> Debian package, where Debian's is not ruby-<name> (lower case, _ as -).
DEBIAN_NAMES = {"rails": "rails", "rake": "rake", "bundler": "bundler", "pry": "pry", "rubocop": "rubocop",
                "concurrent-ruby": "ruby-concurrent", "activesupport": "ruby-activesupport"}
_HAVE = """ruby -e 'require ARGV[0]' "$1\""""  # a shell test: the image's Ruby has it
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def candidates(gem: str) -> list[str]:
    """The Debian packages that may provide a gem."""
    return [DEBIAN_NAMES.get(gem, "ruby-" + gem.lower().replace("_", "-"))]


class Ruby(debian.DebianInstaller):
    language = "ruby"
    image = "ruby"
    sources = "Gemfile"  # read by manifests.py
    what = "gem names"
    names = _NAME
    have = _HAVE
    trees = {"gems": "usr/share/rubygems-integration/all usr/lib/*/rubygems-integration/*"}
    folder = RUBY_TARGET
    candidates = staticmethod(candidates)

    def kernel_env(self, root: str) -> dict[str, str]:
        return {"GEM_PATH": posixpath.join(root, RUBY_TARGET, "gems") + ":"}  # ':': then Ruby's own


INSTALLER = Ruby()
