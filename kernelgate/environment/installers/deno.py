"""JavaScript: `deno install` of a package.json into <workdir>/node_modules (Deno's npm
support; the deno image has no node or npm, and Deno runs no lifecycle scripts)."""

from __future__ import annotations

import json

from kernelgate.environment.installers.base import STAGING_PATH, Context, Fetch, target


class Deno:
    language = "javascript"
    image = "deno"
    manifests: dict = {}
    sources = "package.json"

    def plan(self, at, parsed) -> dict:
        if at("package.json") in parsed:
            return {"supported": True, "source": at("package.json"), "packages": []}
        return {"supported": True, "source": None, "packages": []}

    def urls(self, config) -> list[str]:
        return [config.npm_registry]

    def fetch(self, install: dict, context: Context) -> Fetch:
        env = {**context.network_env, "DENO_DIR": "/tmp/deno", "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1",
               "DENO_NO_PROMPT": "1"}
        if context.config.npm_registry:
            env["NPM_CONFIG_REGISTRY"] = context.config.npm_registry
        if install["packages"]:
            manifest = json.dumps({"dependencies": dict(npm_spec(s) for s in install["packages"])})
            source = 'printf "%s" "$1" > package.json'
        else:
            manifest = target(install["source"])
            source = 'cat -- "$1" > package.json'
        command = ["sh", "-c", f'set -e; mkdir -p {STAGING_PATH}/js; cd {STAGING_PATH}/js; {source};'
                   ' exec deno install', "sh", manifest]
        return Fetch(command, env, "/tmp", [f"{STAGING_PATH}/js/node_modules", f"{context.project_dir}/node_modules"])

    def kernel_env(self, root: str) -> dict[str, str]:
        return {}  # Deno resolves bare specifiers through package.json and node_modules


def npm_spec(spec: str) -> tuple[str, str]:
    """'name@version' (or '@scope/name@version') -> (name, version or '*')."""
    head, at, version = spec[1:].partition("@") if spec.startswith("@") else spec.partition("@")
    name = "@" + head if spec.startswith("@") else head
    return name, version if at else "*"


INSTALLER = Deno()
