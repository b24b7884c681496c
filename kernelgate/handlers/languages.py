"""GET /api/languages: every language, its tier's resources, whether the caller's plan
allows it and whether its image is built."""

import asyncio

from kernelgate.engine import EngineUnavailable
from kernelgate.handlers.base import APIHandler


class LanguagesHandler(APIHandler):
    async def get(self):
        catalog, registry = self.services.catalog, self.services.registry
        plan = self.services.plans.of(self.identity)
        names = sorted(catalog.find_kernel_specs())
        images = [None if catalog.local_kernels else catalog.image_of(n) for n in names]
        references = [self.services.images.reference(i) if i else None for i in images]
        ready = await asyncio.gather(*(self._built(r) for r in references))
        languages = []
        for name, reference, built in zip(names, references, ready):
            spec = catalog.get_kernel_spec(name)
            tier = self.services.tiers.get(registry.tier_of(name))
            languages.append({
                "name": spec.language,
                "display_name": spec.display_name,
                "version": spec.metadata.get("kernelgate", {}).get("version"),
                "kernelspec": name,
                "tier": tier.name,
                "image": reference,
                "resources": {k: getattr(tier, k) for k in
                              ("memory", "cpus", "pids", "exec_timeout", "idle_timeout")},
                "allowed": plan.allows(tier.name),
                "ready": built,
            })
        self.write_json(languages)

    async def _built(self, reference: str | None) -> bool:
        if reference is None:
            return True  # local kernels need no image
        try:
            return await self.services.engine.image_exists(reference)
        except EngineUnavailable:
            return False
