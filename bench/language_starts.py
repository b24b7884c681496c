#!/usr/bin/env python
"""Time to a ready kernel for every language, with and without the start-up CPU allowance.

Usage: python -m bench.language_starts [--starts 3] [--only python3,r,...]

Starts two `kernelgate serve --kernels=docker --no-auth` gateways: one with the project's
tiers, one with the same tiers but `start_cpus` 0 (containers start with their tier's
`cpus`, as before the allowance existed). For each kernelspec, `--starts` times, it times
`POST /api/kernels` (which returns once the kernel answers) on each gateway in turn and
deletes the kernel. Prints p50 and max per kernelspec and gateway, in seconds. A
kernelspec whose image is not built is reported and skipped. Everything runs on
127.0.0.1 and is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.docker_gateway import ROOT, docker_gateway

from kernelgate.tiers import DEFAULT_TIERS

PLANS = (  # one plan with every tier and no kernel limit: the benchmark is one user
    'c.Plans.plans = {"bench": {"kernel_tiers": ["low", "medium", "high"], "max_kernels": 0}}\n'
    'c.Plans.order = ["bench"]\nc.Plans.admin_plan = "bench"\n'
)


def without_allowance() -> str:
    tiers = {name: {**spec, "start_cpus": 0.0} for name, spec in DEFAULT_TIERS.items()}
    return PLANS + f"c.Tiers.tiers = {tiers!r}\n"


async def time_start(client, name: str) -> float | str:
    """Seconds until the kernel answers, or the error the gateway gave."""
    start = time.perf_counter()
    response = await client.request("POST", "/api/kernels", {"name": name})
    elapsed = time.perf_counter() - start
    if response.status != 201:
        return f"{response.status}: {response.body.get('message', '')}"
    await client.request("DELETE", f"/api/kernels/{response.body['id']}")
    return elapsed


async def main(starts: int, only: list[str]) -> None:
    with docker_gateway("lang", PLANS) as boosted, docker_gateway("lang0", without_allowance()) as plain:
        specs = (await boosted.client.request("GET", "/api/kernelspecs")).body["kernelspecs"]
        names = [n for n in sorted(specs) if not only or n in only]
        rows = []
        for name in names:
            tier = specs[name]["spec"]["metadata"]["kernel_provisioner"]["config"].get("tier", "low")
            samples: dict[str, list[float]] = {"plain": [], "boosted": []}
            error = ""
            for _ in range(starts):
                for label, gateway in (("plain", plain), ("boosted", boosted)):
                    result = await time_start(gateway.client, name)
                    if isinstance(result, str):
                        error = result
                        break
                    samples[label].append(result)
                if error:
                    break
            if error:
                print(f"{name}: skipped ({error})", flush=True)
                continue
            row = (name, tier, samples["plain"], samples["boosted"])
            rows.append(row)
            print(f"{name}: {[f'{s:.2f}' for s in samples['plain']]} -> "
                  f"{[f'{s:.2f}' for s in samples['boosted']]}", flush=True)
    print(f"\nkernelgate: {ROOT}; {starts} starts per kernelspec and gateway, alternated\n")
    print("| kernelspec | tier | tier's cpus | without allowance p50 / max s | with start_cpus p50 / max s | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for name, tier, plain_s, boosted_s in rows:
        p, b = statistics.median(plain_s), statistics.median(boosted_s)
        print(f"| {name} | {tier} | {DEFAULT_TIERS[tier]['cpus']:g} | {p:.2f} / {max(plain_s):.2f} | "
              f"{b:.2f} / {max(boosted_s):.2f} | {b / p:.2f}× |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated kernelspec names (default: all)")
    options = parser.parse_args()
    if not 1 <= options.starts <= 50:
        parser.error("--starts must be 1..50")
    asyncio.run(main(options.starts, [n for n in options.only.split(",") if n]))
