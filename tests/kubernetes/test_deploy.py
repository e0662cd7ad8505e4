"""The deploy/ kustomize base and overlays: rendered by kubectl's kustomize, checked, and applied.

The CRDs are applied to the real API server by the session fixture (conftest); here they are
exercised: the schema refuses a malformed object, the Channel status subresource works.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from wot_agents.cli import build_parser

from ._apiserver import ApiError, KubeApiServer

DEPLOY = Path(__file__).parents[2] / "deploy"
OVERLAYS = ("kubernetes", "embedded")


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (its built-in kustomize renders the overlays) is not installed")
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_manifest_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc is None or ("kind" in doc and "apiVersion" in doc), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_a_complete_deployment(overlay: str) -> None:
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"wot-directory", "wot-runtime"}
    assert set(by_kind(docs, "Service")) == {"wot-directory", "wot-runtime"}
    assert set(by_kind(docs, "PodDisruptionBudget")) == {"wot-directory", "wot-runtime"}
    assert len(by_kind(docs, "CustomResourceDefinition")) == 4
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == deployment["metadata"]["name"]
        for container in pod["containers"]:
            assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
            assert "readinessProbe" in container and "livenessProbe" in container
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    directory = deployments["wot-directory"]["spec"]
    args = directory["template"]["spec"]["containers"][0]["args"]
    parsed = build_parser().parse_args(args)  # the manifest's command line is one the CLI takes
    if overlay == "kubernetes":
        assert directory["replicas"] >= 2 and parsed.backend == "kubernetes"
        assert by_kind(docs, "PodDisruptionBudget")["wot-directory"]["spec"]["minAvailable"] == 1
    else:
        assert directory["replicas"] == 1 and parsed.db == "/data/wot-directory.db"
        assert "PersistentVolumeClaim" in {d["kind"] for d in docs}
        assert by_kind(docs, "PodDisruptionBudget")["wot-directory"]["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "wot-directory"}},
        }


def test_rbac_is_least_privilege() -> None:
    docs = render("kubernetes")
    roles = by_kind(docs, "Role")
    assert not by_kind(docs, "ClusterRole")
    for role in roles.values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    runtime_verbs = {v for rule in roles["wot-runtime"]["rules"] for v in rule["verbs"]}
    assert runtime_verbs == {"get", "list", "watch"}
    directory = roles["wot-directory"]["rules"]

    def verbs(group: str, resource: str) -> set[str]:
        return {
            v for r in directory if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]
        }

    assert verbs("", "services") == {"get", "list", "watch"}
    assert "delete" in verbs("wot-agents.io", "thingdescriptions")
    assert verbs("lmos.eclipse", "channels") == {"get", "list", "watch"}
    lease_rules = [r for r in directory if "leases" in r["resources"]]
    assert all(
        r.get("resourceNames") == ["wot-directory-leader"] for r in lease_rules if r["verbs"] != ["create"]
    )
    bindings = by_kind(docs, "RoleBinding")
    assert {b["roleRef"]["name"] for b in bindings.values()} == set(roles)


def test_the_crd_schema_is_enforced_by_the_api_server(kube: KubeApiServer, namespace: str) -> None:
    path = f"/apis/wot-agents.io/v1alpha1/namespaces/{namespace}/thingdescriptions"
    good = {
        "apiVersion": "wot-agents.io/v1alpha1",
        "kind": "ThingDescription",
        "metadata": {"name": "td-one"},
        "spec": {"id": "urn:x", "document": '{"id": "urn:x"}', "expires": 1.5},
    }
    assert kube.request("POST", path, good)["spec"]["expires"] == 1.5
    bad = {**good, "metadata": {"name": "td-two"}, "spec": {"id": "urn:y"}}
    with pytest.raises(ApiError) as refused:
        kube.request("POST", path, bad)
    assert refused.value.code == 422


def test_channel_status_is_a_subresource(kube: KubeApiServer, namespace: str) -> None:
    base = f"/apis/lmos.eclipse/v1/namespaces/{namespace}/channels"
    channel = {
        "apiVersion": "lmos.eclipse/v1",
        "kind": "Channel",
        "metadata": {"name": "acme-web-stable", "labels": {"tenant": "acme", "channel": "web"}},
        "spec": {"requiredCapabilities": [{"id": "urn:c", "version": ">=1.0.0", "strategy": "HIGHEST"}]},
        "status": {"resolveStatus": "RESOLVED"},
    }
    created = kube.request("POST", base, channel)
    assert "status" not in created  # status is written through /status only
    status = {"status": {"resolveStatus": "UNRESOLVED", "unresolvedRequiredCapabilities": [{"id": "urn:c"}]}}
    patched = kube.request("PATCH", f"{base}/acme-web-stable/status", status, "application/merge-patch+json")
    assert patched["status"]["resolveStatus"] == "UNRESOLVED"
    assert patched["spec"] == channel["spec"]
