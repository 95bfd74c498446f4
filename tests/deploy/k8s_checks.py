"""What the tests check on the Jobs dagster-k8s posts: valid for Kubernetes 1.31, sized by the spec.

`expected_resources` reads `pipelines/churn.yaml` itself (not the library's tag builder), so a change
in how `compute:` becomes `dagster-k8s/config` cannot agree with itself by construction.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import kubernetes_validate
import yaml

from tests.deploy.k8s_deployment import ROOT, SERVICE_ACCOUNT, Deployment

RUN_JOB = "churn__retrain"
STEP_JOB = "churn__dataset_on_k8s"  # tests/deploy/k8s_step_defs.py
COMPUTE = yaml.safe_load((ROOT / "pipelines" / "churn.yaml").read_text())["compute"]


def expected_resources(asset: str) -> dict[str, Any]:
    """Container resources for `asset` of churn as `pipelines/churn.yaml` asks: requests are the
    spec's cpu and memory, the memory is also the limit (a pod over it is killed, not throttled)."""
    wanted = COMPUTE.get(asset, COMPUTE["default"])
    return {
        "requests": {"cpu": wanted["cpu"], "memory": wanted["memory"]},
        "limits": {"memory": wanted["memory"]},
    }


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def assert_run_job(
    job: dict[str, Any], run: dg.DagsterRun, image: str, deployment: Deployment
) -> dict[str, Any]:
    """The run worker Job as posted: valid for Kubernetes 1.31 (strict), sized by the spec, running
    `dagster api execute_run` for this run in the code location's image. Returns its container."""
    from dagster._cli.api import ExecuteRunArgs  # the launcher's argument record; no public name

    kubernetes_validate.validate(job, "1.31", strict=True)
    assert job["metadata"]["name"] == f"dagster-run-{run.run_id}"
    assert job["metadata"]["labels"]["dagster/run-id"] == run.run_id
    assert job["metadata"]["labels"]["dagster/job"] == RUN_JOB
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == image
    # The run's pod runs every step of the retrain job, so it gets the largest request: training's.
    assert container["resources"] == expected_resources("candidate")
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    args = dg.deserialize_value(container["args"][3], ExecuteRunArgs)
    assert args.run_id == run.run_id
    assert args.job_origin.job_name == RUN_JOB
    assert args.job_origin.repository_origin.container_image == image
    assert args.set_exit_code_on_failure, "fail_pod_on_run_failure: a failed run fails the pod"
    env = env_of(container)
    assert env["DAGSTER_RUN_JOB_NAME"] == RUN_JOB
    assert env["DAGSTER_HOME"] == str(deployment.home)
    assert env["MLOPS_DEMO_DATA"] == str(deployment.demo_data)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[str(deployment.home / "dagster.yaml")]["subPath"] == "dagster.yaml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes[mounts[str(deployment.home / "dagster.yaml")]["name"]]["configMap"]["name"]
        == "dagster-instance"
    )
    return container


def assert_step_job(job: dict[str, Any], run: dg.DagsterRun, image: str) -> None:
    """The step Job `k8s_job_executor` posted: valid (strict, 1.31), sized by the asset's own op tags."""
    kubernetes_validate.validate(job, "1.31", strict=True)
    labels = job["metadata"]["labels"]
    assert labels["dagster/op"] == "churn__dataset" and labels["dagster/run-id"] == run.run_id
    assert labels["app.kubernetes.io/component"] == "step_worker"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    # The step's pod is sized by its own asset (the spec's default), not by the job or the run.
    assert container["resources"] == expected_resources("dataset")
    assert container["image"] == image
    assert container["args"] == ["dagster", "api", "execute_step"]
    env = env_of(container)
    assert env["DAGSTER_RUN_STEP_KEY"] == "churn__dataset" and env["DAGSTER_RUN_JOB_NAME"] == STEP_JOB
    assert "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS" in env
