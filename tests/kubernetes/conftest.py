"""Fixtures of the Kubernetes tests; the API server itself (``kube``) is in tests/conftest.py.

The session's API server has the deploy/ CRDs applied (so the manifests users apply are the
ones tested) and two CRDs that stand in for core resources this server does not serve: a
Service-shaped ``services.core-test.wot-agents.io`` (the watchers are written over a generic
group/version/plural, so the same code reads core ``v1/services`` in a cluster) and
``leases.coordination.k8s.io`` (the real group and shape of Kubernetes Leases).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from wot_agents import KubeClient

from ._apiserver import SERVICE_GROUP, KubeApiServer

__all__ = ["SERVICE_GROUP"]


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace of this test's own (this server has no Namespace objects: any name works)."""
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]
    return f"t-{digest}"


@pytest.fixture
async def kube_client(kube: KubeApiServer) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(kubeconfig=kube.kubeconfig) as client:
        yield client
