"""Kernelspecs: /api/kernelspecs, /api/kernelspecs/{name}, /kernelspecs/{name}/{file}."""

from __future__ import annotations

import os

from jupyter_client.kernelspec import NoSuchKernel
from tornado import web

from kernelgate.errors import NotFound
from kernelgate.handlers.base import APIHandler, GatewayMixin


def spec_model(base_url: str, name: str, spec, files: list[str]) -> dict:
    """jupyter_server's kernelspec model: name, spec (kernel.json) and the URLs of the
    resources among `files`, the spec folder's file names."""
    resources = {}
    for file in files:
        stem = os.path.splitext(file)[0]
        if stem.startswith("logo-") or file in ("kernel.js", "kernel.css"):
            resources[stem if stem.startswith("logo-") else file] = (
                f"{base_url}kernelspecs/{name}/{file}"
            )
    return {"name": name, "spec": spec.to_dict(), "resources": resources}


class AllowedSpecs:
    """The kernelspecs the caller's plan allows; the others do not exist for them."""

    def allowed_names(self) -> list[str]:
        plan = self.services.plans.of(self.identity)
        registry = self.services.registry
        return [n for n in sorted(self.services.catalog.find_kernel_specs())
                if plan.allows(registry.tier_of(n))]


class KernelSpecsHandler(AllowedSpecs, APIHandler):
    async def get(self):
        catalog = self.services.catalog
        base_url = self.settings["base_url"]
        names = self.allowed_names()
        specs = {name: spec_model(base_url, name, catalog.get_kernel_spec(name), catalog.resource_files(name))
                 for name in names}
        default = catalog.default_kernel_name if catalog.default_kernel_name in names else None
        self.write_json({"default": default, "kernelspecs": specs})


class KernelSpecHandler(AllowedSpecs, APIHandler):
    async def get(self, name: str):
        if name not in self.allowed_names():
            raise NotFound(f"Kernel spec {name} not found")
        catalog = self.services.catalog
        self.write_json(spec_model(self.settings["base_url"], name, catalog.get_kernel_spec(name),
                                   catalog.resource_files(name)))


class KernelSpecResourceHandler(GatewayMixin, web.StaticFileHandler):
    """A file of a kernelspec's directory (logos); never anything outside it."""

    def initialize(self):
        super().initialize(path="")

    async def get(self, name: str, file: str, include_body: bool = True):
        try:
            self.root = self.services.catalog.get_kernel_spec(name).resource_dir
        except NoSuchKernel:
            raise NotFound(f"Kernel spec {name} not found") from None
        await super().get(file, include_body)
