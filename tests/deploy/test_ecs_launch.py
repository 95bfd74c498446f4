"""The real `EcsRunLauncher` launches `churn__retrain` on moto's ECS, and the task it asks for runs.

- moto's server on 127.0.0.1 behind a recording proxy stands in for AWS (`tests/deploy/ecs_moto.py`);
  the instance is PostgreSQL-backed with the launcher configured as a deployment would be: explicit
  `task_definition` and `container_name`, `use_current_ecs_task_config: false`.
- The RunTask request is checked as sent: the task definition and container configured, the run's
  `dagster api execute_run` command, and the task size from `pipelines/churn.yaml`'s `compute:`.
- With docker, the code location is the user-code image's gRPC server (as in a deployment, so the
  command refers to the image's own paths) and the recorded command is replayed in that image with
  the task definition's environment; the run must reach RUN_SUCCESS and the new version must be in
  the registry, read from the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from mlops_dagster.registry import records
from tests.deploy import docker_support
from tests.deploy.deploy_common import postgres_database
from tests.deploy.ecs_instance import ROOT, instance_config, launch, write_instance
from tests.deploy.ecs_moto import EcsCall, EcsTarget, aws_environment, create_ecs_target, recording_moto
from tests.deploy.ecs_replay import code_server, open_folders, task_container, workspace_file

JOB = "churn__retrain"
# `pipelines/churn.yaml`: compute.candidate is {cpu: "2", memory: 4Gi}, the largest request in the
# retrain job, so its run asks ECS for 2 vCPU = 2048 CPU units and 4 GiB = 4096 MiB.
ECS_CPU, ECS_MEMORY = 2048, 4096
DAYS = 5  # landed and materialized days of churn data the retrain trains on


def test_demo_spec_asks_for_the_size_checked_here() -> None:
    compute = yaml.safe_load((ROOT / "pipelines" / "churn.yaml").read_text())["compute"]
    assert compute["candidate"] == {"cpu": "2", "memory": "4Gi"}, (
        f"pipelines/churn.yaml compute.candidate is now {compute['candidate']}: update ECS_CPU / ECS_MEMORY"
    )


@pytest.fixture
def pg_database():  # type: ignore[no-untyped-def]
    try:
        with postgres_database("mlops_ecs") as name:
            yield name
    except RuntimeError as e:  # pragma: no cover - CI starts PostgreSQL
        pytest.fail(str(e))


@pytest.fixture
def moto_ecs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    with recording_moto() as (endpoint, proxy):
        yield endpoint, proxy, aws_environment(endpoint, monkeypatch, tmp_path)


def assert_run_task(call: EcsCall, target: EcsTarget, run_id: str) -> tuple[list[str], Any]:
    """The RunTask request as the launcher sent it; returns the container's command and the
    `ExecuteRunArgs` it carries."""
    request = call.request
    assert set(request) == {
        "clientToken", "cluster", "launchType", "networkConfiguration", "overrides", "tags", "taskDefinition"
    }
    assert request["taskDefinition"] == target.task_definition_arn
    assert request["cluster"] == target.cluster
    assert request["launchType"] == "FARGATE"
    assert request["networkConfiguration"] == target.run_task_kwargs()["networkConfiguration"]
    overrides = request["overrides"]
    (container,) = overrides["containerOverrides"]
    command = container["command"]
    # Task level: strings; container level: integers (the ECS API's own types).
    assert {k: v for k, v in overrides.items() if k != "containerOverrides"} == {
        "cpu": str(ECS_CPU),
        "memory": str(ECS_MEMORY),
    }
    assert container == {"name": target.container, "command": command, "cpu": ECS_CPU, "memory": ECS_MEMORY}
    assert command[:-1] == ["dagster", "api", "execute_run"], command[:-1]
    # `dagster api execute_run` reads serialized ExecuteRunArgs; dagster has no public name for them.
    from dagster._grpc.types import ExecuteRunArgs

    args = dg.deserialize_value(command[-1], ExecuteRunArgs)
    assert args.run_id == run_id
    assert args.job_origin.job_name == JOB
    assert args.instance_ref is not None
    tags = {t["key"]: t["value"] for t in request["tags"]}
    assert tags["dagster/run_id"] == run_id and tags["dagster/job_name"] == JOB
    return command, args


def test_ecs_launcher_sends_the_sized_run_task(storage: Path, pg_database: str, moto_ecs) -> None:  # type: ignore[no-untyped-def]
    endpoint, proxy, aws_env = moto_ecs
    target = create_ecs_target(endpoint, "mlops-dagster:test", {"DAGSTER_HOME": str(storage)})
    write_instance(storage, instance_config(pg_database, target))
    run_id = str(uuid.uuid4())
    registered = len(proxy.ecs_calls("RegisterTaskDefinition"))  # the test's own

    launch(ROOT / "workspace.yaml", JOB, run_id, {"DAGSTER_HOME": str(storage), **aws_env})

    (call,) = proxy.ecs_calls("RunTask")
    assert_run_task(call, target, run_id)
    # With an explicit task_definition the launcher runs it as it is: no task definition of its own.
    assert len(proxy.ecs_calls("RegisterTaskDefinition")) == registered
    with dg.DagsterInstance.from_config(str(storage)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.job_name == JOB
        assert run.tags["ecs/cpu"] == str(ECS_CPU) and run.tags["ecs/memory"] == str(ECS_MEMORY)
        # The launcher recorded the task moto started; nothing ran it, so the run is still STARTING.
        assert run.status == dg.DagsterRunStatus.STARTING
        task_arn = run.tags["ecs/task_arn"]
        assert task_arn.startswith(f"arn:aws:ecs:us-east-1:123456789012:task/{target.cluster}/")
    # moto kept the task with the same overrides.
    import boto3

    ecs = boto3.client("ecs", endpoint_url=endpoint)
    (task,) = ecs.describe_tasks(cluster=target.cluster, tasks=[task_arn])["tasks"]
    assert task["overrides"] == call.request["overrides"]
    assert task["taskDefinitionArn"] == target.task_definition_arn


def test_ecs_launcher_refuses_a_container_the_task_definition_lacks(  # type: ignore[no-untyped-def]
    storage: Path, pg_database: str, moto_ecs
) -> None:
    endpoint, _, _ = moto_ecs
    target = create_ecs_target(endpoint, "mlops-dagster:test", {})
    write_instance(storage, instance_config(pg_database, target, container_name="trainer"))
    with dg.DagsterInstance.from_config(str(storage)) as instance:
        refused = r"Cannot override container 'trainer' in task definition 'mlops-user-code'"
        with pytest.raises(Exception, match=refused):
            _ = instance.run_launcher


def land_and_materialize(storage: Path, data: Path, defs, materialize_range) -> None:  # type: ignore[no-untyped-def]
    """The retrain's input, made on the host in the shared folders: DAYS landed batches (the feed's
    CLI) and the churn dataset's partitions for them."""
    subprocess.run(
        [sys.executable, "-m", "assets.feed", "bootstrap", "--days", str(DAYS)],
        cwd=ROOT,
        env={**os.environ, "MLOPS_DEMO_DATA": str(data)},
        check=True,
        capture_output=True,
    )
    dataset = dg.AssetKey(["churn", "dataset"])
    with dg.DagsterInstance.from_config(str(storage)) as instance:
        assert materialize_range(defs, instance, [dataset], "2026-01-01", f"2026-01-{DAYS:02d}").success


def registry_listing(storage: Path) -> dict:  # type: ignore[type-arg]
    """`mlops-dagster registry list churn --json` on the host's instance."""
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("mlops-dagster")), "registry", "list", "churn", "--json"],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(storage)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(listed.stdout)  # type: ignore[no-any-return]


def test_ecs_task_replayed_in_the_image_reaches_success(  # type: ignore[no-untyped-def]
    storage: Path, pg_database: str, moto_ecs, user_code_image: str, demo_defs, helpers, tmp_path: Path
) -> None:
    endpoint, proxy, aws_env = moto_ecs
    data = Path(os.environ["MLOPS_DEMO_DATA"])
    # The task definition's environment: the instance and the shared folders, at the host's paths.
    task_env = {
        "DAGSTER_HOME": str(storage),
        "MLOPS_DEMO_DATA": str(data),
        "BENTOML_HOME": str(storage / "bentoml"),
    }
    target = create_ecs_target(endpoint, user_code_image, task_env)
    write_instance(storage, instance_config(pg_database, target))
    land_and_materialize(storage, data, demo_defs, helpers.range)
    open_folders(storage, data)
    volumes: dict[str | Path, str] = {storage: str(storage), data: str(data)}

    # The code location is the image's gRPC server, as an ECS service of this task definition runs it.
    port, run_id = docker_support.free_port(), str(uuid.uuid4())
    with code_server(user_code_image, port, task_env, volumes, tmp_path / "code-server.log"):
        workspace = workspace_file(tmp_path / "workspace.yaml", port)
        launched_at = time.time()
        launch(workspace, JOB, run_id, {"DAGSTER_HOME": str(storage), **aws_env})
        launch_seconds = time.time() - launched_at

    (call,) = proxy.ecs_calls("RunTask")
    command, args = assert_run_task(call, target, run_id)
    # The job's origin is the image's own (from its code server), so the task can load the job.
    origin = args.job_origin.repository_origin
    assert origin.code_pointer.working_directory == "/opt/dagster/app" and origin.entry_point == ["dagster"]

    # What the ECS agent would start: the task definition's container with the override's command,
    # limited to the override's size (1024 CPU units per core, memory in MiB).
    container = task_container(endpoint, target)
    assert container.image == user_code_image and container.environment == task_env
    started_at = time.time()
    rc, output = docker_support.docker_run(
        container.image,
        *command,
        env=container.environment,
        volumes=volumes,
        name=f"mlops-ecs-run-{run_id[:8]}",
        timeout=1800,
        extra=["--cpus", str(ECS_CPU / 1024), "--memory", f"{ECS_MEMORY}m"],
    )
    task_seconds = time.time() - started_at
    assert rc == 0, f"the replayed task exited {rc}:\n{output[-6000:]}"

    with dg.DagsterInstance.from_config(str(storage)) as instance:
        record = instance.get_run_record_by_id(run_id)
        assert record is not None and record.end_time is not None
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, output[-6000:]
        # The registry of record, read from the host: the version the task trained is the champion.
        candidate = records.latest_candidate(instance, "churn")
        champion = records.current_champion(instance, "churn")
    assert candidate is not None and candidate.run_id == run_id
    assert champion is not None and champion.run_id == run_id
    assert champion.version == candidate.version and champion.decision == "promote"
    listing = registry_listing(storage)
    assert listing["champion"] == candidate.version
    assert [(v["version"], v["run_id"]) for v in listing["versions"]] == [(candidate.version, run_id)]
    print(
        f"\nECS replay: launch-to-RUN_SUCCESS {record.end_time - launched_at:.1f}s "
        f"(dagster job launch {launch_seconds:.1f}s, task container start to exit {task_seconds:.1f}s)"
    )

