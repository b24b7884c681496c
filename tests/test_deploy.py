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


def kubernetes_documents() -> list[tuple[str, dict]]:
    """(file name, document) of every manifest under deploy/kubernetes/."""
    return [(path.name, doc) for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_kubernetes_manifests_match_the_api_schemas():
    """Every manifest is valid, unknown fields rejected, against the Kubernetes API schemas
    kubernetes-validate carries (its newest version)."""
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    documents = kubernetes_documents()
    kinds = {doc["kind"] for _, doc in documents}
    assert {"Deployment", "Role", "NetworkPolicy", "RuntimeClass", "Pod"} <= kinds, kinds
    for name, doc in documents:
        try:
            kubernetes_validate.validate(doc, latest_version(), strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{name}: {doc['kind']} {doc['metadata']['name']}: {e.message}") from e


def test_the_kernel_pod_is_confined_as_the_docker_sandbox():
    """deploy/kubernetes/kernel-pod.yaml (a medium-tier kernel, as the designed provisioner
    would make it) confines as SandboxSpec.for_tier does on Docker, and the kernels'
    namespace denies all traffic but the gateway's."""
    from kernelgate.sandbox import HOME, SandboxSpec
    from kernelgate.tiers import Tiers

    spec = SandboxSpec.for_tier(Tiers().get("medium"))
    docker = spec.run_options()
    by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in kubernetes_documents()}
    pod = next(doc for (kind, _), doc in by_kind.items() if kind == "Pod")["spec"]
    container = pod["containers"][0]
    security = {**pod["securityContext"], **container["securityContext"]}
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == docker["user"]
    assert security["readOnlyRootFilesystem"] is docker["read_only"] is True
    assert security["capabilities"]["drop"] == docker["cap_drop"] == ["ALL"]
    assert security["allowPrivilegeEscalation"] is False and "no-new-privileges" in docker["security_opt"]
    assert security["seccompProfile"]["type"] == "Localhost"  # never Unconfined, as on Docker
    assert not pod["automountServiceAccountToken"] and not pod["enableServiceLinks"]
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"))

    def quantity(text: str) -> float:
        units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "m": 1e-3}
        unit = next((u for u in units if str(text).endswith(u)), "")
        return float(str(text)[: len(str(text)) - len(unit)]) * units.get(unit, 1)

    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert quantity(limits["memory"]) == quantity(requests["memory"]) == docker["mem_limit"] == docker["memswap_limit"]
    assert quantity(limits["cpu"]) == Tiers().get("medium").cpu_limit
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/tmp", HOME):
        assert path in docker["tmpfs"]
        tmpfs = volumes[mounts[path]]["emptyDir"]
        assert tmpfs["medium"] == "Memory" and quantity(tmpfs["sizeLimit"]) == spec.tmp_size

    deny = by_kind[("NetworkPolicy", "default-deny")]
    assert deny["metadata"]["namespace"] == "kernelgate-kernels" and deny["spec"]["podSelector"] == {}
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"] and "ingress" not in deny["spec"]
    assert docker["network_mode"] == "none"
    allowed = by_kind[("NetworkPolicy", "gateway-to-sandboxes")]["spec"]
    assert allowed["policyTypes"] == ["Ingress"]
    ports = allowed["ingress"][0]["ports"][0]
    assert {p["containerPort"] for p in container["ports"]} == set(range(ports["port"], ports["endPort"] + 1))
