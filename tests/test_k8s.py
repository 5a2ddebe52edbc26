"""docker/k8s/: valid against the Kubernetes schemas (kubernetes-validate) and clean under checkov."""

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "docker" / "k8s").glob("*.yaml"))
# checkov pins many libraries of its own, so it lives in a virtualenv beside the project's (make install-test).
INFRA_BIN = ROOT / ".venv-infra" / "bin"


def tool(name: str) -> str:
    path = INFRA_BIN / name
    if not path.exists():
        pytest.skip(f"{path} is missing: `make install-test` installs kubernetes-validate and checkov there")
    return str(path)


def kinds() -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            found.setdefault(doc["kind"], []).append(doc)
    return found


def test_manifests_pass_the_kubernetes_schemas() -> None:
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", *map(str, MANIFESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") + result.stderr.count("passed") == len(MANIFESTS)


def test_checkov_finds_nothing() -> None:
    result = subprocess.run(
        [tool("checkov"), "-d", str(ROOT / "docker" / "k8s"), "--framework", "kubernetes", "--compact", "--quiet",
         "--skip-download"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Failed checks: 0" in result.stdout


def test_the_promised_objects_are_there() -> None:
    found = kinds()
    deployments = {d["metadata"]["name"]: d for d in found["Deployment"]}
    assert set(deployments) == {"charserve", "charserve-gpu"}
    for deployment in deployments.values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert {"requests", "limits"} <= set(container["resources"])
    # Read-only pods, but for a small /tmp in memory, where `charserve serve --workers N` puts the engine's socket
    # (the CPU image's speller beam step is compiled ahead of time, so nothing else needs writing).
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        api = pod["containers"][0]
        assert api["securityContext"]["readOnlyRootFilesystem"]
        assert api["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
        assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]
    gpu = deployments["charserve-gpu"]["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert found["Service"][0]["spec"]["selector"] == {"app.kubernetes.io/name": "charserve"}
    hpa = found["HorizontalPodAutoscaler"][0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "charserve" and hpa["spec"]["minReplicas"] >= 2


def test_the_grace_period_outlasts_preStop_and_uvicorns_shutdown_bound() -> None:
    """Kubernetes kills a pod at its grace period: uvicorn's own bound must end the drain before that."""
    for deployment in kinds()["Deployment"]:
        pod = deployment["spec"]["template"]["spec"]
        api = pod["containers"][0]
        env = {e["name"]: e["value"] for e in api["env"]}
        pre_stop = api.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        assert pod["terminationGracePeriodSeconds"] > int(env["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"]) + pre_stop
