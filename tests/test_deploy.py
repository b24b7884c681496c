"""deploy/: every metric the Grafana dashboard and the Prometheus alert rules query is one
the gateway exports on GET /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
_METRIC = re.compile(r"\b((?:kernelgate|http_request|process)_[a-z0-9_]+)")


def queried() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "kernelgate.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in _METRIC.findall(expr)}


async def test_every_queried_metric_is_exported(start_gateway):
    gateway = start_gateway("--kernels=local")
    response = await gateway.client().request("GET", "/metrics")
    assert response.status == 200
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", response.body.decode(), re.M))
    names = queried()
    assert len(names) >= 15, names

    def exported(name: str) -> bool:
        if name in types:
            return True
        for suffix, kinds in (("_bucket", {"histogram"}), ("_count", {"histogram", "summary"}),
                              ("_sum", {"histogram", "summary"}), ("_total", {"counter"})):
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) in kinds:
                return True
        return False

    assert not [n for n in sorted(names) if not exported(n)]
