"""A Dagster deployment on Kubernetes, as the tests stand it up around the recording API endpoint.

What a Helm install of the `dagster/dagster` chart gives a run pod, and how it is stood in for here:

- The instance: PostgreSQL storage (a fresh database per test on 127.0.0.1:5432) and the real
  `K8sRunLauncher`, reaching "the cluster" through a kubeconfig (`load_incluster_config: false`) whose
  server is the recording endpoint (`tests/deploy/k8s_api.py`).
- The chart mounts the instance ConfigMap at `$DAGSTER_HOME/dagster.yaml`. Here the launcher declares
  the same volume (`instance_config_map`, mounted with `subPath`), and the replay serves each ConfigMap
  or Secret from a host folder (`Deployment.config_maps` / `.secrets`, one file per key): that folder
  stands in for the ConfigMap the chart would have created.
- `$DAGSTER_HOME` itself is a PersistentVolumeClaim (`dagster-home`) mounted at the host's own instance
  folder, so the mlops storage root (`$DAGSTER_HOME/mlops`: Parquet data, model mirrors) is shared by the
  host and every pod; the demo's landing files are a read-only claim (`demo-data`) at the same path.
- The kubeconfig is a Secret volume at its own path: in a cluster the run worker (which runs the
  `k8s_job_executor`) would use its service account instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from tests.deploy.deploy_common import DAGSTER, PG, wait_for_code_server
from tests.deploy.k8s_api import KubernetesApi

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "mlops"
SERVICE_ACCOUNT = "dagster-run"
INSTANCE_CONFIG_MAP = "dagster-instance"
KUBECONFIG_SECRET = "dagster-kubeconfig"
LOCATION = "mlops-demo"


@dataclass(frozen=True)
class Deployment:
    """The folders and names of one test deployment (see the module docstring)."""

    root: Path
    image: str
    database: str
    extra_config_maps: Mapping[str, Mapping[str, str]] = field(
        default_factory=dict
    )  # name -> {mount path: key}

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def demo_data(self) -> Path:
        return self.root / "demo-data"

    @property
    def config_maps(self) -> Path:
        return self.root / "cluster" / "configmaps"

    @property
    def secrets(self) -> Path:
        return self.root / "cluster" / "secrets"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kube" / "config"

    @property
    def claims(self) -> dict[str, Path]:
        """PersistentVolumeClaim name -> the host folder behind it."""
        return {"dagster-home": self.home, "demo-data": self.demo_data}

    def launcher_config(self) -> dict[str, Any]:
        """`K8sRunLauncher` config: image, service account, namespace, env and the volumes above."""
        volumes: list[dict[str, Any]] = [
            {"name": "dagster-home", "persistent_volume_claim": {"claim_name": "dagster-home"}},
            {"name": "instance", "config_map": {"name": INSTANCE_CONFIG_MAP}},
            {"name": "demo-data", "persistent_volume_claim": {"claim_name": "demo-data", "read_only": True}},
            {"name": "kubeconfig", "secret": {"secret_name": KUBECONFIG_SECRET}},
        ]
        mounts: list[dict[str, Any]] = [
            {"name": "dagster-home", "mount_path": str(self.home)},
            {"name": "instance", "mount_path": str(self.home / "dagster.yaml"), "sub_path": "dagster.yaml"},
            {"name": "demo-data", "mount_path": str(self.demo_data), "read_only": True},
            {"name": "kubeconfig", "mount_path": str(self.kubeconfig.parent), "read_only": True},
        ]
        for name, files in self.extra_config_maps.items():
            volumes.append({"name": name, "config_map": {"name": name}})
            mounts += [
                {"name": name, "mount_path": path, "sub_path": key, "read_only": True}
                for path, key in files.items()
            ]
        return {
            "load_incluster_config": False,
            "kubeconfig_file": str(self.kubeconfig),
            "job_namespace": NAMESPACE,
            "job_image": self.image,
            "service_account_name": SERVICE_ACCOUNT,
            "instance_config_map": INSTANCE_CONFIG_MAP,
            "dagster_home": str(self.home),
            "env_vars": [f"MLOPS_DEMO_DATA={self.demo_data}"],
            "volumes": volumes,
            "volume_mounts": mounts,
            "labels": {"app.kubernetes.io/part-of": "mlops-dagster"},
            # A failed run fails its pod (and so the Job), so the cluster's own view agrees.
            "fail_pod_on_run_failure": True,
        }

    def instance_config(self) -> dict[str, Any]:
        """The instance's `dagster.yaml` (also the content of the instance ConfigMap)."""
        db = {"hostname": PG["host"], "port": PG["port"], "username": PG["user"], "password": ""}
        return {
            "telemetry": {"enabled": False},
            "storage": {"postgres": {"postgres_db": {**db, "db_name": self.database}}},
            "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"},
            "run_launcher": {
                "module": "dagster_k8s",
                "class": "K8sRunLauncher",
                "config": self.launcher_config(),
            },
        }

    def write(self, api: KubernetesApi, extra_files: Mapping[str, Mapping[str, Path]] | None = None) -> None:
        """Write the instance, the kubeconfig and what each ConfigMap / Secret holds.

        Args:
            api: The recording endpoint the kubeconfig points at.
            extra_files: For `extra_config_maps`: ConfigMap name -> {key: host file to copy}.
        """
        text = yaml.safe_dump(self.instance_config(), sort_keys=False)
        self.home.mkdir(parents=True)
        self.demo_data.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(text)
        (self.config_maps / INSTANCE_CONFIG_MAP).mkdir(parents=True)
        (self.config_maps / INSTANCE_CONFIG_MAP / "dagster.yaml").write_text(text)
        self.kubeconfig.parent.mkdir(parents=True)
        api.write_kubeconfig(self.kubeconfig, NAMESPACE)
        (self.secrets / KUBECONFIG_SECRET).mkdir(parents=True)
        shutil.copy(self.kubeconfig, self.secrets / KUBECONFIG_SECRET / self.kubeconfig.name)
        for name, files in (extra_files or {}).items():
            (self.config_maps / name).mkdir(parents=True)
            for key, source in files.items():
                shutil.copy(source, self.config_maps / name / key)
        # The image runs as a non-root user; a cluster would give the claim's files to the pod's
        # fsGroup. Here the shared folders are made writable to all before pods use them.
        self.open_claims()

    def open_claims(self) -> None:
        """Make every claim's folder writable by the image's non-root user (the pod's fsGroup)."""
        for folder in self.claims.values():
            for path in [folder, *folder.rglob("*")]:
                path.chmod(path.stat().st_mode | (0o777 if path.is_dir() else 0o666))

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def host_env(self) -> dict[str, str]:
        """What a host process needs to use this deployment's instance and data."""
        return {"DAGSTER_HOME": str(self.home), "MLOPS_DEMO_DATA": str(self.demo_data)}


@contextmanager
def host_code_server(
    port: int, image: str, env: Mapping[str, str], python_file: Path = ROOT / "definitions.py"
) -> Iterator[None]:
    """A code location served from the working tree on the host (`dagster api grpc`), its origin
    carrying `image` as the container image, as a code server in that image would report."""
    cmd = [str(DAGSTER), "api", "grpc", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["-f", str(python_file), "-d", str(ROOT), "--location-name", LOCATION, "--container-image", image]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )

    def gone() -> str | None:
        return proc.communicate()[0].decode(errors="replace") if proc.poll() is not None else None

    try:
        wait_for_code_server(port, alive=gone)
        yield
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@contextmanager
def workspace(instance: dg.DagsterInstance, port: int) -> Iterator[Any]:
    """A workspace request context on the code server at 127.0.0.1:`port`, as the webserver and the
    daemon hold one. Dagster has no public API to load a workspace in-process, hence the private
    imports (the same ones `dagster job launch` uses)."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import GrpcServerTarget

    target = GrpcServerTarget(host="127.0.0.1", port=port, socket=None, location_name=LOCATION)
    with WorkspaceProcessContext(instance, target) as process_context:
        context = process_context.create_request_context()
        error = context.get_code_location_error(LOCATION)
        if error is not None:
            raise RuntimeError(f"code location {LOCATION} failed to load:\n{error.to_string()}")
        yield context


def create_run(
    instance: dg.DagsterInstance, context: Any, job_name: str, tags: Mapping[str, str] | None = None
) -> dg.DagsterRun:
    """Create a run of `job_name` from the code server, as `dagster job launch` does (the job's own
    tags, such as `dagster-k8s/config`, become run tags)."""
    location = context.get_code_location(LOCATION)
    (repository,) = location.get_repositories().values()
    remote_job = repository.get_full_job(job_name)
    plan = location.get_execution_plan(
        remote_job, {}, step_keys_to_execute=None, known_state=None, instance=instance
    )
    snapshot = plan.execution_plan_snapshot
    return instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config={},
        resolved_op_selection=None,
        step_keys_to_execute=snapshot.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**remote_job.tags, **(tags or {})},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )


def wait_for_run(instance: dg.DagsterInstance, run_id: str, timeout: float = 1200.0) -> dg.DagsterRun:
    """Poll the instance until the run finished (success, failure or canceled); returns it.

    Raises:
        TimeoutError: The run did not finish in time (its last status is named).
    """
    deadline = time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        assert run is not None, f"run {run_id} is not in the instance"
        if run.is_finished or time.monotonic() > deadline:
            break
        time.sleep(1)
    if not run.is_finished:
        raise TimeoutError(f"run {run_id} still {run.status.value} after {timeout:.0f}s")
    return run
