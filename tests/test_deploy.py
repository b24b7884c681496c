"""deploy/: every metric the Grafana dashboard and the Prometheus alert rules query is one
the gateway exports on GET /metrics, and the alert rules pass promtool's checks and unit tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.ci import require

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


def promtool() -> str:
    """Prometheus' own rule checker (scripts/install.sh takes it out of Debian's package)."""
    found = shutil.which("promtool") or next(
        (p for p in ("/opt/kernelgate/bin/promtool",) if Path(p).is_file()), None)
    require(None if found else "promtool is not installed (scripts/install.sh extracts it)")
    return found


def test_the_alert_rules_are_valid_and_fire_as_meant():
    """promtool parses the rules, and its rule unit tests (deploy/prometheus/alerts_test.yml:
    series as /metrics exports them) fire each alert when it should, and not before."""
    tool = promtool()
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([tool, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
