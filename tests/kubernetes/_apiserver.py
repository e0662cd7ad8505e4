"""A real Kubernetes API server for the tests: Debian's etcd and the upstream apiextensions-apiserver.

``scripts/k8s-apiserver.sh`` builds the server once (cached by package versions) and installs etcd;
this module starts both on free loopback ports, with a CA, a serving certificate and an admin client
certificate (``O=system:masters``) made by openssl, and a kubeconfig for clients. The server serves
CRDs and custom objects (not the core v1 API), which is what the kubernetes store and the watchers
are written over. Readiness is polled on the CRD list (``/readyz`` never turns OK on this server).

Both processes can be restarted (the same ports and data) to test that clients survive it.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.servers import free_port  # etcd and the apiserver cannot report a port 0 back

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "scripts" / "k8s-apiserver.sh"


def _resource_path(crd: dict[str, Any]) -> str:
    spec = crd["spec"]
    version = next(v["name"] for v in spec["versions"] if v.get("served", True))
    return f"/apis/{spec['group']}/{version}/{spec['names']['plural']}"


class ApiError(Exception):
    """An error answer of the API server: its HTTP status (``code``) and body."""

    def __init__(self, code: int, body: str) -> None:
        super().__init__(f"{code}: {body[:500]}")
        self.code = code
        self.body = body


def build_apiserver() -> Path:
    """The apiextensions-apiserver binary: built (minutes, once) or taken from the cache.

    Raises with the script's output when the build fails: never a skip.
    """
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{SCRIPT} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> None:
    """A CA, the server's certificate for 127.0.0.1/localhost, and an admin client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=wot-agents-test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in (("server", "/CN=127.0.0.1"), ("admin", "/O=system:masters/CN=admin")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        ext = "server.ext" if name == "server" else "client.ext"
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", ext, "-out", f"{name}.crt", cwd=folder)  # fmt: skip


def write_kubeconfig(path: Path, server: str, certs: Path, namespace: str = "default") -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": server, "certificate-authority": str(certs / "ca.crt")}}
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(certs / "admin.crt"),
                    "client-key": str(certs / "admin.key"),
                },
            }
        ],
        "contexts": [
            {"name": "test", "context": {"cluster": "test", "user": "admin", "namespace": namespace}}
        ],
        "current-context": "test",
    }
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML: every kubeconfig reader takes it


class KubeApiServer:
    """etcd + apiextensions-apiserver in ``folder``; :meth:`start` waits until both answer."""

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.certs = folder / "certs"
        self.etcd_port, self.peer_port, self.port = free_port(), free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = folder / "kubeconfig"
        self.etcd: subprocess.Popen[bytes] | None = None
        self.apiserver: subprocess.Popen[bytes] | None = None
        self._ssl = (
            ssl.create_default_context(cafile=str(self.certs / "ca.crt")) if self.certs.exists() else None
        )

    # -- processes ---------------------------------------------------------------------------
    def start(self) -> None:
        make_certificates(self.certs)
        self._ssl = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        self._ssl.load_cert_chain(str(self.certs / "admin.crt"), str(self.certs / "admin.key"))
        write_kubeconfig(self.kubeconfig, self.url, self.certs)
        self.start_etcd()
        self.start_apiserver()

    def start_etcd(self) -> None:
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        url = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = self._spawn(
            "etcd",
            [etcd, "--data-dir", str(self.folder / "etcd"), "--listen-client-urls", url,
             "--advertise-client-urls", url, "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-cluster", f"default=http://127.0.0.1:{self.peer_port}"],
        )  # fmt: skip
        self._wait(lambda: self._etcd_healthy(), "etcd", self.etcd)

    def start_apiserver(self) -> None:
        assert self.etcd is not None
        self.apiserver = self._spawn(
            "apiserver",
            [str(self.binary), f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
             "--bind-address=127.0.0.1", f"--secure-port={self.port}",
             f"--cert-dir={self.folder / 'serving'}",
             f"--tls-cert-file={self.certs / 'server.crt'}",
             f"--tls-private-key-file={self.certs / 'server.key'}",
             f"--client-ca-file={self.certs / 'ca.crt'}", "--authentication-skip-lookup",
             f"--authentication-kubeconfig={self.kubeconfig}",
             f"--authorization-kubeconfig={self.kubeconfig}",
             f"--kubeconfig={self.kubeconfig}", "--enable-priority-and-fairness=false",
             "--disable-admission-plugins=NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,"
             "ValidatingAdmissionPolicy,ValidatingAdmissionWebhook"],
        )  # fmt: skip
        self._wait(self._apiserver_ready, "the apiserver", self.apiserver)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def _wait(self, ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}:\n{self.log_tail(what)}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} did not get ready within 60 s:\n{self.log_tail(what)}")

    def log_tail(self, what: str) -> str:
        name = "etcd" if what == "etcd" else "apiserver"
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=1) as answer:
                return bool(json.load(answer).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _apiserver_ready(self) -> bool:
        """The CRD list answers, and so does every resource of a CRD (after a restart they come later)."""
        try:
            crds = self.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
            for crd in crds.get("items", []):
                self.request("GET", _resource_path(crd) + "?limit=1")
        except (OSError, ApiError):
            return False
        return True

    @staticmethod
    def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_apiserver(self, sig: int = signal.SIGTERM) -> None:
        self._stop(self.apiserver, sig)

    def stop_etcd(self, sig: int = signal.SIGTERM) -> None:
        self._stop(self.etcd, sig)

    def stop(self) -> None:
        self.stop_apiserver()
        self.stop_etcd()

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    def restart_etcd(self) -> None:
        self.stop_etcd()
        self.start_etcd()

    # -- a small synchronous client for fixtures ---------------------------------------------
    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=10) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as exc:
            with exc:  # closes the connection the error answer holds
                raise ApiError(exc.code, exc.read().decode(errors="replace")) from None

    def apply_crd(self, crd: dict[str, Any]) -> None:
        """Create (or replace) a CRD and wait until it is Established and its resource is served."""
        name = crd["metadata"]["name"]
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        try:
            current = self.request("GET", f"{base}/{name}")
        except ApiError as exc:
            if exc.code != 404:
                raise
            self.request("POST", base, crd)
        else:
            crd = {
                **crd,
                "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
            }
            self.request("PUT", f"{base}/{name}", crd)
        path = _resource_path(crd)

        def established() -> bool:
            status = self.request("GET", f"{base}/{name}").get("status", {})
            if not any(
                c["type"] == "Established" and c["status"] == "True" for c in status.get("conditions") or []
            ):
                return False
            try:
                self.request("GET", path)
            except ApiError:
                return False
            return True

        deadline = time.monotonic() + 30
        while not established():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the CRD {name} did not become Established")
            time.sleep(0.05)


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


def start_test_apiserver(folder: Path) -> KubeApiServer:
    """etcd + apiextensions-apiserver in ``folder`` with every CRD applied (stop it when done)."""
    server = KubeApiServer(build_apiserver(), folder)
    try:
        server.start()
        for path in DEPLOY_CRDS:
            server.apply_crd(yaml.safe_load(path.read_text()))
        for crd in TEST_CRDS:
            server.apply_crd(crd)
    except BaseException:
        server.stop()
        raise
    return server
