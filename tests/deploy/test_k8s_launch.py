"""The real `K8sRunLauncher` and `k8s_job_executor` post Kubernetes Jobs, and those Jobs run.

- No Kubernetes API server can run here: the real dagster-k8s code reaches a recording endpoint on
  127.0.0.1 through a kubeconfig (`tests/deploy/k8s_api.py`), which keeps the Jobs it accepts.
- The instance is PostgreSQL-backed with `K8sRunLauncher` configured as a Helm install would be
  (`tests/deploy/k8s_deployment.py`); runs are created from a gRPC code server and launched with the
  real `instance.launch_run`.
- Each posted Job is validated strictly for Kubernetes 1.31 with kubernetes-validate, and its
  container is sized by `pipelines/churn.yaml`'s `compute:`.
- With docker, the Job's container (image, args, env, volumes) is replayed with `docker run --network
  host` (`tests/deploy/k8s_replay.py`): the run must reach RUN_SUCCESS against the PostgreSQL instance
  and the new version must be in the registry, read from the host. The same for one step launched
  by `k8s_job_executor`, whose run worker is itself a replayed run Job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes_validate
import pytest
from dagster_k8s.client import DagsterK8sUnrecoverableAPIError

from tests.deploy.deploy_common import postgres_database
from tests.deploy.docker_support import IMAGE_TAG, free_port
from tests.deploy.k8s_api import KubernetesApi, kubernetes_api
from tests.deploy.k8s_checks import COMPUTE, RUN_JOB, STEP_JOB, assert_run_job, assert_step_job
from tests.deploy.k8s_deployment import (
    NAMESPACE,
    ROOT,
    Deployment,
    create_run,
    host_code_server,
    wait_for_run,
    workspace,
)
from tests.deploy.k8s_replay import Cluster, container_code_server, replay_of, run_in_docker, run_on_host


def test_demo_spec_sizes_training_above_the_rest() -> None:
    """What the assertions below rely on: training asks for more than the default."""
    assert COMPUTE["candidate"] == {"cpu": "2", "memory": "4Gi"}
    assert COMPUTE["default"] == {"cpu": "500m", "memory": "1Gi"}


@pytest.fixture
def api() -> Iterator[KubernetesApi]:
    with kubernetes_api() as server:
        yield server


@pytest.fixture
def pg_database() -> Iterator[str]:
    try:
        with postgres_database("mlops_k8s") as name:
            yield name
    except RuntimeError as e:  # pragma: no cover - CI starts PostgreSQL
        pytest.fail(str(e))


def test_launcher_posts_a_valid_job_sized_by_the_spec(
    api: KubernetesApi, pg_database: str, tmp_path: Path
) -> None:
    """`instance.launch_run` with the real `K8sRunLauncher`: one Job, valid and sized as the spec
    says; its health is read back from the API, and terminating the run deletes the Job."""
    deployment = Deployment(tmp_path, IMAGE_TAG, pg_database)
    deployment.write(api)
    port = free_port()
    with deployment.instance() as instance, host_code_server(port, IMAGE_TAG, deployment.host_env()):
        assert type(instance.run_launcher).__name__ == "K8sRunLauncher"
        with workspace(instance, port) as context:
            run = create_run(instance, context, RUN_JOB)
            assert "dagster-k8s/config" in run.tags
            instance.launch_run(run.run_id, context)

        (job,) = api.posted_jobs()
        assert_run_job(job, run, IMAGE_TAG, deployment)
        posts = [r for r in api.requests if r.method == "POST"]
        assert [r.path for r in posts] == [f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"]
        # What a replay of this Job gives its container: the pod's memory limit and cpu weight.
        replay = replay_of(job, Cluster(deployment.config_maps, deployment.secrets, deployment.claims))
        assert replay.memory_limit == 4 * 2**30
        assert replay.options[replay.options.index("--cpu-shares") + 1] == "2048"
        instance_file = deployment.config_maps / "dagster-instance" / "dagster.yaml"
        assert f"{instance_file}:{deployment.home / 'dagster.yaml'}:ro" in replay.options

        launched = instance.get_run_by_id(run.run_id)
        assert launched is not None and launched.status == dg.DagsterRunStatus.STARTING
        assert launched.tags["dagster/image"] == IMAGE_TAG
        messages = [e.message for e in instance.all_logs(run.run_id)]
        assert "[K8sRunLauncher] Kubernetes run worker job created" in messages

        launcher = instance.run_launcher
        assert launcher.check_run_worker_health(run).status.value == "RUNNING"
        name = job["metadata"]["name"]
        api.finish_job(NAMESPACE, name, exit_code=1, logs="Traceback: the pod failed")
        assert launcher.check_run_worker_health(run).status.value == "FAILED"
        assert "the pod failed" in (launcher.get_run_worker_debug_info(run) or "")

        assert launcher.terminate(run.run_id)
        deleted = [r.path for r in api.requests if r.method == "DELETE"]
        assert f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}" in deleted
    assert {r.status for r in api.requests} <= {200, 201}, "every call authenticated and answered"


def test_job_refused_by_the_api_fails_the_run(api: KubernetesApi, pg_database: str, tmp_path: Path) -> None:
    """A size the cluster refuses (a run tag overriding the spec's with `cpu: two`) fails the launch
    with the API server's answer naming the field, the run is FAILURE, and no Job exists."""
    deployment = Deployment(tmp_path, IMAGE_TAG, pg_database)
    deployment.write(api)
    bad = {"container_config": {"resources": {"requests": {"cpu": "two", "memory": "4Gi"}}}}
    port = free_port()
    with deployment.instance() as instance, host_code_server(port, IMAGE_TAG, deployment.host_env()):
        with workspace(instance, port) as context:
            run = create_run(instance, context, RUN_JOB, tags={"dagster-k8s/config": json.dumps(bad)})
            with pytest.raises(DagsterK8sUnrecoverableAPIError):
                instance.launch_run(run.run_id, context)
        failed = instance.get_run_by_id(run.run_id)
        assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
        events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]
        errors = [getattr(e.event_specific_data, "error", None) for e in events]
    text = "\n".join(error.to_string() for error in errors if error is not None)
    assert "resources.requests[cpu]: Invalid value: 'two'" in text
    assert api.posted_jobs() == []
    assert [r.status for r in api.requests if r.method == "POST"] == [422]


# ---- The posted Jobs run: replayed with docker (and, for the executor, also as host processes).

DAYS = 10  # landing days bootstrapped (and churn/dataset partitions materialized) before the retrain


def bootstrap(deployment: Deployment, days: int) -> None:
    """Land `days` days of demo data in the deployment's data claim (`python -m assets.feed bootstrap`)."""
    env = {**os.environ, **deployment.host_env()}
    cmd = [sys.executable, "-m", "assets.feed", "bootstrap", "--days", str(days)]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)


def launch_to_success(instance: dg.DagsterInstance, run_id: str) -> float:
    """Seconds from the launcher's "Creating Kubernetes run worker job" to RUN_SUCCESS, from the
    instance's own event log."""
    logs = instance.all_logs(run_id)
    start = next(
        e.timestamp for e in logs if e.message == "[K8sRunLauncher] Creating Kubernetes run worker job"
    )
    kinds = [(e.timestamp, e.dagster_event.event_type) for e in logs if e.dagster_event]
    return next(t for t, kind in kinds if kind == dg.DagsterEventType.RUN_SUCCESS) - start


def test_replayed_run_job_retrains_on_postgres(
    user_code_image: str,
    api: KubernetesApi,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    helpers: Any,
    record_property: Any,
) -> None:
    """The run Job of `churn__retrain`, launched from the image's own code server, replayed with
    docker: RUN_SUCCESS on the PostgreSQL instance, and the new version in the registry on the host."""
    from mlops_dagster import build_definitions
    from mlops_dagster.registry import records

    image = user_code_image  # tests/deploy/conftest.py: skips with the reason when docker cannot run
    deployment = Deployment(tmp_path, image, pg_database)
    deployment.write(api)
    for key, value in deployment.host_env().items():
        monkeypatch.setenv(key, value)
    bootstrap(deployment, DAYS)
    port = free_port()
    with deployment.instance() as instance:
        # What the deployment's sensors would have done: the daily datasets the retrain reads.
        defs = build_definitions(ROOT / "pipelines")
        first, last = "2026-01-01", f"2026-01-{DAYS:02d}"
        assert helpers.range(defs, instance, [dg.AssetKey(["churn", "dataset"])], first, last).success
        assert records.candidate_history(instance, "churn") == []

        server = f"k8s-code-server-{uuid.uuid4().hex[:8]}"
        env = {"MLOPS_DEMO_DATA": str(deployment.demo_data)}
        with container_code_server(image, port, server, env), workspace(instance, port) as context:
            run = create_run(instance, context, RUN_JOB)
            instance.launch_run(run.run_id, context)
        (job,) = api.posted_jobs()
        container = assert_run_job(job, run, image, deployment)
        assert "/opt/dagster/app" in container["args"][3], "the origin is the image's own code location"

        rc, out = run_in_docker(
            api, job, deployment, name=f"{job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        )
        run = wait_for_run(instance, run.run_id)
        assert rc == 0 and run.status == dg.DagsterRunStatus.SUCCESS, (
            f"exit {rc}, {run.status}:\n{out[-6000:]}"
        )
        assert instance.run_launcher.check_run_worker_health(run).status.value == "SUCCESS"
        took = launch_to_success(instance, run.run_id)
        record_property("k8s_launch_to_run_success_s", round(took, 1))
        print(f"\nk8s replayed run {RUN_JOB}: launch to RUN_SUCCESS {took:.1f}s")
        (trained,) = records.candidate_history(instance, "churn")
        assert trained.run_id == run.run_id

    # The registry of record, read from the host with the CLI against the same instance.
    listing = subprocess.run(
        [str(Path(sys.executable).with_name("mlops-dagster")), "registry", "list", "churn", "--json"],
        env={**os.environ, **deployment.host_env()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    assert [v["version"] for v in json.loads(listing.stdout)["versions"]] == [trained.version]


STEP_CODE = "mlops-k8s-step-code"  # the ConfigMap that brings that file into the image's pods
STEP_DEFS = "/opt/dagster/extra/k8s_step_defs.py"
STEP_DAY = "2026-01-03"


@pytest.mark.parametrize("where", ["docker", "host"])
def test_k8s_job_executor_step_job(
    where: str, request: pytest.FixtureRequest, api: KubernetesApi, pg_database: str, tmp_path: Path
) -> None:
    """`churn__dataset_on_k8s` (`k8s_job_executor`) for one partition. Its run Job runs; that run
    worker's executor posts the step's own Job, sized by the asset's op tags; that Job runs too, the
    partition is materialized and the run succeeds.

    `docker`: the image's code server (the step code arrives by ConfigMap) and both Jobs replayed in
    the image. `host` (no docker needed): the working tree's code server, both Jobs run as host
    processes with their args and env, so the executor's Job is checked on any machine."""
    port, server = free_port(), f"k8s-step-code-server-{uuid.uuid4().hex[:8]}"
    if where == "docker":
        image = request.getfixturevalue("user_code_image")  # skips when docker cannot run
        deployment = Deployment(tmp_path, image, pg_database, {STEP_CODE: {STEP_DEFS: "k8s_step_defs.py"}})
        deployment.write(api, {STEP_CODE: {"k8s_step_defs.py": Path(__file__).with_name("k8s_step_defs.py")}})
        code = ["-v", f"{deployment.config_maps / STEP_CODE / 'k8s_step_defs.py'}:{STEP_DEFS}:ro"]
        command = [
            "dagster",
            "api",
            "grpc",
            "--python-file",
            STEP_DEFS,
            "--working-directory",
            "/opt/dagster/app",
        ]
        env = {"MLOPS_DEMO_DATA": str(deployment.demo_data)}
        code_server = container_code_server(image, port, server, env, code, *command)
        run_pod = run_in_docker
    else:
        image = IMAGE_TAG
        deployment = Deployment(tmp_path, image, pg_database)
        deployment.write(api)
        code_server = host_code_server(
            port, image, deployment.host_env(), Path(__file__).with_name("k8s_step_defs.py")
        )
        run_pod = run_on_host
    bootstrap(deployment, 3)

    with deployment.instance() as instance:
        with code_server, workspace(instance, port) as context:
            run = create_run(instance, context, STEP_JOB, tags={"dagster/partition": STEP_DAY})
            instance.launch_run(run.run_id, context)
        (run_job,) = api.posted_jobs()
        kubernetes_validate.validate(run_job, "1.31", strict=True)
        (run_container,) = run_job["spec"]["template"]["spec"]["containers"]
        assert not run_container.get("resources"), (
            "no run-level size: the run worker only drives the executor"
        )

        # The run worker runs in the background until its step Job has finished.
        worker: dict[str, tuple[int, str]] = {}
        worker_name = f"{run_job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        thread = threading.Thread(
            target=lambda: worker.setdefault("done", run_pod(api, run_job, deployment, worker_name))
        )
        thread.start()
        try:
            deadline = time.monotonic() + 900
            while len(api.posted_jobs()) < 2:
                assert thread.is_alive(), (
                    f"the run worker ended before posting a step:\n{worker['done'][1][-6000:]}"
                )
                assert time.monotonic() < deadline, "no step Job was posted within 900s"
                time.sleep(1)
            step_job = api.posted_jobs()[1]
            assert_step_job(step_job, run, image)
            rc, out = run_pod(
                api, step_job, deployment, f"{step_job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
            )
            assert rc == 0, f"the step's pod exited {rc}:\n{out[-6000:]}"
        finally:
            # A step Job left running (a failed assertion above) fails, so the run worker ends.
            for job in api.posted_jobs()[1:]:
                if not api.finished(NAMESPACE, job["metadata"]["name"]):
                    api.finish_job(NAMESPACE, job["metadata"]["name"], exit_code=137)
            thread.join(timeout=900)
        rc, out = worker["done"]
        run = wait_for_run(instance, run.run_id)
        assert rc == 0 and run.status == dg.DagsterRunStatus.SUCCESS, (
            f"exit {rc}, {run.status}:\n{out[-6000:]}"
        )
        took = launch_to_success(instance, run.run_id)
        print(f"\nk8s_job_executor run ({where}): launch to RUN_SUCCESS {took:.1f}s")

        events = [
            (e.step_key, e.dagster_event.event_type) for e in instance.all_logs(run.run_id) if e.dagster_event
        ]
        assert ("churn__dataset", dg.DagsterEventType.STEP_WORKER_STARTING) in events
        assert ("churn__dataset", dg.DagsterEventType.STEP_SUCCESS) in events
        assert instance.get_materialized_partitions(dg.AssetKey(["churn", "dataset"])) == {STEP_DAY}
        assert len(api.posted_jobs()) == 2, "one run Job and one step Job"
