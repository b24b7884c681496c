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
from kernelgate.environment.installers.base import Context, Fetch, PlanError, target

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


class Ruby:
    language = "ruby"
    image = "ruby"
    manifests: dict = {}  # Gemfile is read by manifests.py
    sources = "Gemfile"

    def plan(self, at, parsed) -> dict:
        if at("Gemfile") in parsed:
            return {"supported": True, "source": at("Gemfile"),
                    "packages": [p.name for p in parsed[at("Gemfile")] if not p.dev]}
        return {"supported": True, "source": None, "packages": []}

    def urls(self, config) -> list[str]:
        return debian.urls(config)

    def fetch(self, install: dict, context: Context) -> Fetch:
        bad = [g for g in install["packages"] if not _NAME.match(g)]
        if bad:
            raise PlanError(f"not gem names: {', '.join(bad)}")
        return debian.fetch(context, "ruby", {g: candidates(g) for g in install["packages"]},
                            _HAVE,
                            {"gems": "usr/share/rubygems-integration/all usr/lib/*/rubygems-integration/*"},
                            target(RUBY_TARGET))

    def kernel_env(self, root: str) -> dict[str, str]:
        return {"GEM_PATH": posixpath.join(root, RUBY_TARGET, "gems") + ":"}  # ':': then Ruby's own


INSTALLER = Ruby()
