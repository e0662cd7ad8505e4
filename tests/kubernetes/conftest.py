"""The real Kubernetes API server of these tests (see ``_apiserver``), started once per session.

The session fixture applies the deploy/ CRDs (so the manifests users apply are the ones tested)
and two CRDs that stand in for core resources this server does not serve: a Service-shaped
``services.core-test.wot-agents.io`` (the watchers are written over a generic group/version/plural,
so the same code reads core ``v1/services`` in a cluster) and ``leases.coordination.k8s.io``
(the real group and shape of Kubernetes Leases, which this CRD-only server lacks).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.registry.conftest import http, make_td  # noqa: F401 - the same fixtures as the registry tests
from wot_agents import KubeClient

from ._apiserver import KubeApiServer, build_apiserver

REPO = Path(__file__).parents[2]
DEPLOY_CRDS = sorted((REPO / "deploy" / "base" / "crds").glob("*.yaml"))

#: The API group of the Service-shaped test CRD.
SERVICE_GROUP = "core-test.wot-agents.io"


def _open_crd(
    group: str, kind: str, plural: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "annotations": annotations or {}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


TEST_CRDS = [
    _open_crd(SERVICE_GROUP, "Service", "services"),
    # *.k8s.io groups need this annotation (KEP-2337); it names the API's own review.
    _open_crd(
        "coordination.k8s.io",
        "Lease",
        "leases",
        {"api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/80289"},
    ),
]


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    """etcd + apiextensions-apiserver with every CRD applied, for the whole session."""
    server = KubeApiServer(build_apiserver(), tmp_path_factory.mktemp("kube"))
    try:
        server.start()
        for path in DEPLOY_CRDS:
            server.apply_crd(yaml.safe_load(path.read_text()))
        for crd in TEST_CRDS:
            server.apply_crd(crd)
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace of this test's own (this server has no Namespace objects: any name works)."""
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]
    return f"t-{digest}"


@pytest.fixture
async def kube_client(kube: KubeApiServer) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(kubeconfig=kube.kubeconfig) as client:
        yield client
