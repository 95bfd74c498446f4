"""What ECS would run, run with docker: the code server's service and the run's task.

Nothing in moto runs containers. The tests therefore start the user-code image themselves
(`docker run --network host`, the only network containers get here):

- as the code location's gRPC server, the way an ECS service of the same task definition serves it
  (the image's own command; `DAGSTER_GRPC_HOST` / `DAGSTER_GRPC_PORT` move it to a free port on
  127.0.0.1, because containers share the host's ports here);
- as the run's task: the task definition's image and environment (read back from moto) with the
  RunTask container override's command, which is what the ECS agent would start.

`$DAGSTER_HOME` and the demo's landing folder are bind-mounted at their host paths. They stand in for
the shared file system (EFS) a task would mount: the storage root (`$DAGSTER_HOME/mlops`) is then the
same for the host and the containers, and `$DAGSTER_HOME/dagster.yaml` stands in for the instance
config a task gets in its image or from its `DAGSTER_HOME` volume (the code server reads it; the run
worker gets the same config as the instance ref inside its `execute_run` command).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.deploy_common import wait_for_code_server
from tests.deploy.docker_support import docker_run, remove_container
from tests.deploy.ecs_moto import REGION, EcsTarget

DAGSTER = Path(sys.executable).with_name("dagster")
LOCATION = "mlops-demo"


@dataclass(frozen=True)
class TaskContainer:
    """The container a task definition declares: its image and environment."""

    image: str
    environment: dict[str, str]


def task_container(endpoint: str, target: EcsTarget) -> TaskContainer:
    """Read the run container's image and environment back from moto's task definition."""
    import boto3

    ecs = boto3.client("ecs", endpoint_url=endpoint, region_name=REGION)
    definition = ecs.describe_task_definition(taskDefinition=target.task_definition_arn)["taskDefinition"]
    (container,) = [c for c in definition["containerDefinitions"] if c["name"] == target.container]
    environment = {e["name"]: e["value"] for e in container.get("environment", [])}
    return TaskContainer(container["image"], environment)


def open_folders(*folders: Path) -> None:
    """Make `folders` writable by the image's non-root user (an EFS access point's job in ECS)."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | (0o777 if path.is_dir() else 0o666))


def _gone(container: str, log: Path) -> str | None:
    """The end of the container's log once it has stopped; None while it runs."""
    state = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Running}}", container],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if state.stdout.strip() == "true":
        return None
    time.sleep(1)  # let `docker logs -f` write the last lines
    return f"container {container}:\n{log.read_text()[-4000:]}"


@contextmanager
def code_server(
    image: str, port: int, env: Mapping[str, str], volumes: Mapping[str | Path, str], log: Path
) -> Iterator[str]:
    """The image's code server on 127.0.0.1:`port` (detached, removed afterwards); yields its
    container name. Its output goes to `log` (followed from the start: `--rm` takes a dead
    container's log with it)."""
    name = f"mlops-ecs-code-{uuid.uuid4().hex[:8]}"
    listen = {"DAGSTER_GRPC_HOST": "127.0.0.1", "DAGSTER_GRPC_PORT": str(port)}
    rc, out = docker_run(image, env={**env, **listen}, volumes=volumes, name=name, detach=True)
    if rc != 0:
        raise RuntimeError(f"docker run {image} (code server on port {port}) failed ({rc}):\n{out}")
    with open(log, "wb") as sink:
        follower = subprocess.Popen(["docker", "logs", "-f", name], stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for_code_server(port, timeout=600.0, alive=lambda: _gone(name, log))
        yield name
    finally:
        remove_container(name)
        try:
            follower.wait(timeout=30)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait()


def workspace_file(path: Path, port: int) -> Path:
    """A workspace with one location: the gRPC server on 127.0.0.1:`port`."""
    server = {"host": "127.0.0.1", "port": port, "location_name": LOCATION}
    path.write_text(json.dumps({"load_from": [{"grpc_server": server}]}))
    return path
