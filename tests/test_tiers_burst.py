"""A tier's burst_cpus: cpus becomes the kernel's share (cpu.shares) and burst_cpus its
limit (the CFS quota), so a burst of work is not stalled by a quota below what the
kernel uses meanwhile (issue 19, round-trip p99; docs/benchmarks.md)."""

from __future__ import annotations

import json

from kernelgate.engine import KERNEL_LABEL
from kernelgate.sandbox import SandboxSpec
from kernelgate.tiers import DEFAULT_TIERS, Tier, Tiers

#: What the kernel's own cgroup says (cgroup v1, then v2): quota, period and weight.
CGROUP = ("import pathlib\n"
          "v1 = pathlib.Path('/sys/fs/cgroup/cpu')\n"
          "if (v1 / 'cpu.cfs_quota_us').exists():\n"
          "    print((v1 / 'cpu.cfs_quota_us').read_text().strip(), (v1 / 'cpu.cfs_period_us').read_text().strip(),"
          " (v1 / 'cpu.shares').read_text().strip())\n"
          "else:\n"
          "    print(pathlib.Path('/sys/fs/cgroup/cpu.max').read_text().strip(),"
          " pathlib.Path('/sys/fs/cgroup/cpu.weight').read_text().strip())\n")


def test_a_burst_makes_cpus_a_share_and_burst_cpus_the_limit():
    low = Tier(name="low", **DEFAULT_TIERS["low"])
    assert (low.cpu_limit, low.cpu_shares) == (0.5, 0)  # the default tiers: a hard limit
    burst = Tier(name="b", **{**DEFAULT_TIERS["low"], "burst_cpus": 1.0, "start_cpus": 0})
    assert (burst.cpu_limit, burst.cpu_shares, burst.cpus_at_start) == (1.0, 512, 1.0)
    options = SandboxSpec.for_tier(burst).run_options()
    assert (options["cpu_quota"], options["cpu_period"], options["cpu_shares"]) == (100_000, 100_000, 512)
    assert "cpu_shares" not in SandboxSpec.for_tier(low).run_options()
    below = Tier(name="c", **{**DEFAULT_TIERS["low"], "burst_cpus": 0.25})
    assert (below.cpu_limit, below.cpu_shares) == (0.5, 0)  # a burst below cpus is none
    assert Tiers(tiers={"b": {**DEFAULT_TIERS["low"], "burst_cpus": 1.0}}).get("b").burst_cpus == 1.0


async def test_a_kernel_of_a_burst_tier_runs_with_its_share_and_limit(start_gateway, docker_engine, tmp_path):
    config = tmp_path / "config.py"
    config.write_text("from kernelgate.tiers import DEFAULT_TIERS\n"
                      f"c.Tiers.tiers = {{**DEFAULT_TIERS, 'low': {json.dumps({**DEFAULT_TIERS['low'], 'burst_cpus': 1.0})}}}\n")
    client = start_gateway("--kernels=docker", f"--config={config}").client()
    kernel = await client.start_kernel("python3")
    ws = await client.connect(kernel["id"])
    try:
        run = await ws.execute(CGROUP, timeout=120)
        assert run.status == "ok", run.reply
        assert run.stdout.split() in (["100000", "100000", "512"], ["100000", "100000", "20"]), run.stdout
    finally:
        ws.close()
    (container,) = docker_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kernel['id']}"})
    host = container.attrs["HostConfig"]
    assert (host["CpuQuota"], host["CpuPeriod"], host["CpuShares"]) == (100_000, 100_000, 512)
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}", timeout=60)).status == 204
