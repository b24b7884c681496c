"""Kernelspecs: /api/kernelspecs, /api/kernelspecs/{name}, /kernelspecs/{name}/{file}."""

from __future__ import annotations

import os

from jupyter_client.kernelspec import NoSuchKernel
from tornado import web

from kernelgate.errors import NotFound
from kernelgate.handlers.base import APIHandler, GatewayMixin


def spec_model(base_url: str, name: str, spec) -> dict:
    """jupyter_server's kernelspec model: name, spec (kernel.json) and resource URLs."""
    resources = {}
    for file in sorted(os.listdir(spec.resource_dir)):
        stem = os.path.splitext(file)[0]
        if stem.startswith("logo-") or file in ("kernel.js", "kernel.css"):
            resources[stem if stem.startswith("logo-") else file] = (
                f"{base_url}kernelspecs/{name}/{file}"
            )
    return {"name": name, "spec": spec.to_dict(), "resources": resources}


class KernelSpecsHandler(APIHandler):
    async def get(self):
        catalog = self.services.catalog
        base_url = self.settings["base_url"]
        specs = {
            name: spec_model(base_url, name, catalog.get_kernel_spec(name))
            for name in sorted(catalog.find_kernel_specs())
        }
        self.write_json({"default": catalog.default_kernel_name, "kernelspecs": specs})


class KernelSpecHandler(APIHandler):
    async def get(self, name: str):
        try:
            spec = self.services.catalog.get_kernel_spec(name)
        except NoSuchKernel:
            raise NotFound(f"Kernel spec {name} not found") from None
        self.write_json(spec_model(self.settings["base_url"], name, spec))


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
