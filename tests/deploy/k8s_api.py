"""A recording Kubernetes API endpoint on 127.0.0.1, for the real `K8sRunLauncher` and `k8s_job_executor`.

No Kubernetes API server can run here, so the real dagster-k8s code reaches this HTTP server through
a kubeconfig (bearer token). It answers what dagster-k8s 0.29 calls through the `kubernetes` client
(read from `dagster_k8s/client.py`, `launcher.py`, `executor.py`): `create_namespaced_job` (run and
step workers), `read_namespaced_job_status` (health checks), `list_namespaced_job`,
`list_namespaced_pod` (`labelSelector=job-name=NAME`), `read_namespaced_pod`,
`read_namespaced_pod_log`, `list_namespaced_event` (debug info), `delete_namespaced_job` and
`delete_namespaced_pod` (termination).

It records every request and keeps the Jobs it accepts, each with the one pod the Job controller
would create. Nothing runs pods: a test replays the Job's container and reports how it ended
(`finish_job`), which the health checks then read. Like a real API server it refuses a request
without the token (401), a body that is not a valid `batch/v1` Job (kubernetes-validate, the schema
check) or has a bad name or resource quantity (422), and a name already taken (409).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

KUBERNETES_VERSION = "1.31"  # the schema version the API server validates against
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The API server's own check on resource quantities (kubernetes-validate's schema does not check them).
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_ROUTES = [
    ("jobs", re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs$")),
    (
        "job",
        re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs/(?P<name>[^/]+)(?P<status>/status)?$"),
    ),
    ("pods", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")),
    ("pod", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)$")),
    ("log", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$")),
    ("events", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events$")),
]


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it, and the HTTP status it answered."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def _matches(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors (`a=b,c==d,e!=f`), the only kind dagster-k8s sends."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, op, value = re.split(r"(!=|==|=)", term, maxsplit=1)
        if (labels.get(key.strip()) == value.strip()) != (op != "!="):
            return False
    return True


def _bad_quantity(job: dict[str, Any]) -> str | None:
    """The first container resource that is not a Kubernetes quantity, as the API server words it."""
    containers = job.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    for i, container in enumerate(containers):
        for kind, values in (container.get("resources") or {}).items():
            for resource, value in (values or {}).items():
                if not _QUANTITY.match(str(value)):
                    field = f"spec.template.spec.containers[{i}].resources.{kind}[{resource}]"
                    return f"{field}: Invalid value: {value!r}: quantities must match the regular expression"
    return None


class KubernetesApi:
    """The recording endpoint: start it, write a kubeconfig for it, read what the launcher posted."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        self._lock = threading.Condition()
        self._requests: list[Recorded] = []
        self._posted: list[dict[str, Any]] = []  # Job bodies exactly as received
        self._jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}  # keyed by (namespace, job name)
        self._logs: dict[tuple[str, str], str] = {}  # keyed by (namespace, pod name)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="k8s-api", daemon=True)

    @property
    def url(self) -> str:
        """The API server's address, as a kubeconfig names it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KubernetesApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """Write a kubeconfig whose current context is this server (bearer token, `namespace`)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "recording", "cluster": {"server": self.url}}],
            "users": [{"name": "dagster", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "recording",
                    "context": {"cluster": "recording", "user": "dagster", "namespace": namespace},
                }
            ],
            "current-context": "recording",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # What the tests read and do.

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def posted_jobs(self) -> list[dict[str, Any]]:
        """Every Job body posted and accepted, as the client sent it (camelCase JSON)."""
        with self._lock:
            return copy.deepcopy(self._posted)

    def wait_for_jobs(self, count: int, timeout: float = 300.0) -> list[dict[str, Any]]:
        """Block until at least `count` Jobs were accepted; fail after `timeout` seconds."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._posted) >= count, timeout):
                raise TimeoutError(f"{len(self._posted)} Job(s) posted after {timeout}s, expected {count}")
            return copy.deepcopy(self._posted)

    def finished(self, namespace: str, name: str) -> bool:
        """Whether `finish_job` reported the Job's pod as terminated."""
        with self._lock:
            return self._pods[(namespace, name)]["status"]["phase"] in ("Succeeded", "Failed")

    def finish_job(self, namespace: str, name: str, exit_code: int, logs: str = "") -> None:
        """Report the Job's only pod as terminated with `exit_code`, as the Job controller would."""
        with self._lock:
            job, pod = self._jobs[(namespace, name)], self._pods[(namespace, name)]
            now, ok = _now(), exit_code == 0
            kind = ("SuccessCriteriaMet", "Complete") if ok else ("FailureTarget", "Failed")
            job["status"] = {
                "startTime": job["status"]["startTime"],
                **({"completionTime": now} if ok else {}),
                "ready": 0,
                "terminating": 0,
                "uncountedTerminatedPods": {},
                "conditions": [
                    {"type": t, "status": "True", "lastProbeTime": now, "lastTransitionTime": now}
                    for t in kind
                ],
                ("succeeded" if ok else "failed"): 1,
            }
            terminated = {"exitCode": exit_code, "reason": "Completed" if ok else "Error", "finishedAt": now}
            pod["status"]["phase"] = "Succeeded" if ok else "Failed"
            pod["status"]["containerStatuses"][0].update(state={"terminated": terminated}, ready=False)
            self._logs[(namespace, pod["metadata"]["name"])] = logs
            self._lock.notify_all()

    # The API.

    def handle(
        self, method: str, path: str, query: dict[str, str], body: Any, authorized: bool
    ) -> tuple[int, Any]:
        route = next(((n, m) for n, r in _ROUTES if (m := r.match(path))), None)
        with self._lock:
            if authorized:
                code, answer = self._dispatch(method, route, query, body)
            else:
                code, answer = 401, _status(401, "Unauthorized", "Unauthorized")
            self._requests.append(Recorded(method, path, query, body, code))
            self._lock.notify_all()
        return code, answer

    def _dispatch(self, method: str, route: Any, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if route is None:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        kind, match = route
        ns, name = match.groupdict().get("ns"), match.groupdict().get("name")
        if (kind, method) == ("jobs", "POST"):
            return self._create_job(ns, body)
        if (kind, method) == ("jobs", "GET"):
            items = [j for (n, _), j in self._jobs.items() if n == ns and self._selected(j, query)]
            return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": items}
        if kind == "job" and method in ("GET", "DELETE"):
            job = self._jobs.get((ns, name))
            if job is None:
                return 404, _status(
                    404, "NotFound", f'jobs.batch "{name}" not found', name=name, group="batch", kind="jobs"
                )
            if method == "GET":
                return 200, job
            del self._jobs[(ns, name)]
            return 200, _status(
                200, "", "", name=name, group="batch", kind="jobs", uid=job["metadata"]["uid"]
            )
        if (kind, method) == ("pods", "GET"):
            items = [p for (n, _), p in self._pods.items() if n == ns and self._selected(p, query)]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        if kind in ("pod", "log") and method in ("GET", "DELETE"):
            key = next(
                (k for k, p in self._pods.items() if k[0] == ns and p["metadata"]["name"] == name), None
            )
            if key is None:
                return 404, _status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
            if kind == "log":
                return 200, self._logs.get((ns, name), "")
            if method == "DELETE":
                return 200, self._pods.pop(key)
            return 200, self._pods[key]
        if (kind, method) == ("events", "GET"):
            return 200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": []}
        return 405, _status(405, "MethodNotAllowed", f"{method} is not supported on this resource")

    @staticmethod
    def _selected(obj: dict[str, Any], query: dict[str, str]) -> bool:
        labels = obj["metadata"].get("labels") or {}
        if not _matches(labels, query.get("labelSelector", "")):
            return False
        fields = {
            "metadata.name": obj["metadata"]["name"],
            "metadata.namespace": obj["metadata"]["namespace"],
        }
        return _matches(fields, query.get("fieldSelector", ""))

    def _create_job(self, ns: str, body: Any) -> tuple[int, Any]:
        import kubernetes_validate

        if not isinstance(body, dict) or body.get("kind") != "Job" or body.get("apiVersion") != "batch/v1":
            return 400, _status(400, "BadRequest", "the body is not a batch/v1 Job")
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        if not _NAME.match(name) or len(name) > 63:
            return 422, _status(
                422, "Invalid", f"Job.batch {name!r} is invalid: metadata.name: not a DNS-1123 label"
            )
        if meta.get("namespace", ns) != ns:
            return 400, _status(400, "BadRequest", "the namespace of the body does not match the request")
        try:
            kubernetes_validate.validate(body, KUBERNETES_VERSION)
        except kubernetes_validate.ValidationError as e:
            return 422, _status(422, "Invalid", f"Job.batch {name!r} is invalid: {e.message}")
        bad = _bad_quantity(body)
        if bad:
            return 422, _status(422, "Invalid", f"Job.batch {name!r} is invalid: {bad}")
        if (ns, name) in self._jobs:
            return 409, _status(
                409,
                "AlreadyExists",
                f'jobs.batch "{name}" already exists',
                name=name,
                group="batch",
                kind="jobs",
            )
        self._posted.append(copy.deepcopy(body))
        job, uid, now = copy.deepcopy(body), str(uuid.uuid4()), _now()
        job["metadata"].update(
            namespace=ns, uid=uid, resourceVersion=str(time.time_ns()), creationTimestamp=now, generation=1
        )
        job["spec"]["template"]["metadata"].setdefault("labels", {}).update(
            {"job-name": name, "batch.kubernetes.io/job-name": name, "controller-uid": uid}
        )
        job["status"] = {
            "active": 1,
            "ready": 0,
            "startTime": now,
            "terminating": 0,
            "uncountedTerminatedPods": {},
        }
        self._jobs[(ns, name)] = job
        self._pods[(ns, name)] = self._pod_for(job, now)
        return 201, job

    @staticmethod
    def _pod_for(job: dict[str, Any], now: str) -> dict[str, Any]:
        """The one pod the Job controller would create: `<job>-<5 chars>`, running its template."""
        template, meta = job["spec"]["template"], job["metadata"]
        spec = copy.deepcopy(template["spec"])
        container = spec["containers"][0]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{meta['name'][:57]}-{secrets.token_hex(3)[:5]}",
                "namespace": meta["namespace"],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now,
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {**spec, "nodeName": "recording-node"},
            "status": {
                "phase": "Running",
                "startTime": now,
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": f"docker://{container['image']}",
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            },
        }


def _handler(api: KubernetesApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _serve(self) -> None:
            split = urlsplit(self.path)
            query = dict(parse_qsl(split.query))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            authorized = self.headers.get("Authorization") == f"Bearer {api.token}"
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                code, answer = 400, _status(400, "BadRequest", "the body is not JSON")
            else:
                code, answer = api.handle(self.command, split.path, query, body, authorized)
            text = answer if isinstance(answer, str) else json.dumps(answer)
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    return Handler


@contextmanager
def kubernetes_api() -> Iterator[KubernetesApi]:
    """A started recording endpoint, stopped on exit."""
    api = KubernetesApi().start()
    try:
        yield api
    finally:
        api.stop()
