"""A slow API server, for real: a validating admission webhook that takes ``delay`` seconds to
admit each pod it is asked about, so every pod the operator creates for the selected tasks
costs one of its workers that long. Slow webhooks are the usual way an API server becomes slow
for one kind of write; the operator sees only the slow call (TetherOperatorBacklog's "look for a
slow API server").

The webhook serves HTTPS on the address the doubles use (the API server reaches it there, as
pods do), with a certificate from a private CA (trustme) whose bundle goes in the
ValidatingWebhookConfiguration. It admits everything; failurePolicy Ignore, so a webhook gone
early never blocks a pod. The configuration is cluster-scoped: ``slow_admission`` deletes it
on exit.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme
from kubernetes import client

__all__ = ["slow_admission"]


class _Slow(ThreadingHTTPServer):
    delay: float
    asked: int  # admission requests received


class _Handler(BaseHTTPRequestHandler):
    server: _Slow

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.asked += 1
        time.sleep(self.server.delay)  # the slowness this double exists to add
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": {"uid": review["request"]["uid"], "allowed": True}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def slow_admission(api: client.ApiClient, host: str, namespace: str, tasks: Sequence[str],
                   delay: float) -> Iterator[_Slow]:
    """Pods of ``tasks`` in ``namespace`` wait ``delay`` seconds each for admission, from the
    moment this yields (the API server has called the webhook once)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    server = _Slow((host, 0), _Handler)
    server.delay, server.asked = delay, 0
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    admission = client.AdmissionregistrationV1Api(api)
    name = f"{namespace}-slow-pods"
    config: Any = {
        "metadata": {"name": name, "labels": {"tether.dev/e2e": "true"}},
        "webhooks": [{
            "name": "slow-pods.e2e.tether.dev", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore",
            "timeoutSeconds": int(delay * 2 + 1),
            "clientConfig": {"url": f"https://{host}:{server.server_address[1]}/",
                             "caBundle": base64.b64encode(ca.cert_pem.bytes()).decode()},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "objectSelector": {"matchExpressions": [
                {"key": "tether.dev/task", "operator": "In", "values": list(tasks)}]},
        }]}
    admission.create_validating_webhook_configuration(config)
    try:
        _until_called(client.CoreV1Api(api), server, namespace, tasks[0])
        yield server
    finally:
        admission.delete_validating_webhook_configuration(name)
        server.shutdown()
        server.server_close()
        thread.join(5)


def _until_called(core: client.CoreV1Api, server: _Slow, namespace: str, task: str) -> None:
    """A new webhook configuration reaches the API server's admission chain a moment after it
    is created (a watch): dry-run pods until the webhook is asked, then reset the count."""
    pod: Any = {"metadata": {"generateName": "probe-", "labels": {"tether.dev/task": task}},
                "spec": {"containers": [{"name": "probe", "image": "probe.invalid/none"}]}}
    deadline = time.monotonic() + 60
    while not server.asked:
        if time.monotonic() > deadline:
            raise AssertionError("the API server never called the slow webhook in 60 s")
        core.create_namespaced_pod(namespace, pod, dry_run="All")
        time.sleep(0.2)  # a poll interval, not a wait for an outcome
    server.asked = 0
