"""The instance an ECS deployment runs on, for tests: PostgreSQL storage and the real `EcsRunLauncher`.

The database is created and dropped per test on the PostgreSQL at 127.0.0.1:5432 (trust auth, as in
`tests/e2e/test_postgres_instance.py`). Runs are launched with `dagster job launch`, the public way
to hand a run to the instance's launcher; `DefaultRunCoordinator` makes that call the launcher
directly (a deployment's queued coordinator calls the same `launch_run` from the daemon).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.deploy_common import PG
from tests.deploy.ecs_moto import EcsTarget

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")


def instance_config(database: str, target: EcsTarget, *, container_name: str | None = None) -> dict[str, Any]:
    """`dagster.yaml` for PostgreSQL storage and `EcsRunLauncher` on `target`'s task definition."""
    return {
        "telemetry": {"enabled": False},
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": PG["host"],
                    "port": PG["port"],
                    "username": PG["user"],
                    "password": "",
                    "db_name": database,
                }
            }
        },
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"},
        "run_launcher": {
            "module": "dagster_aws.ecs",
            "class": "EcsRunLauncher",
            "config": {
                "task_definition": target.family,
                "container_name": container_name or target.container,
                # Not inside an ECS task: take cluster and network from run_task_kwargs instead of
                # the (absent) task metadata endpoint.
                "use_current_ecs_task_config": False,
                "run_task_kwargs": target.run_task_kwargs(),
            },
        },
    }


def write_instance(home: Path, config: dict[str, Any]) -> Path:
    """Write `config` as `home/dagster.yaml`; returns its path."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def launch(workspace: Path, job: str, run_id: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`dagster job launch -w workspace -j job --run-id run_id` with `env` over this process's
    environment (DAGSTER_HOME and the AWS variables); raises with its output when it fails."""
    result = subprocess.run(
        [str(DAGSTER), "job", "launch", "-w", str(workspace), "-j", job, "--run-id", run_id],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"dagster job launch exited {result.returncode}\n--- stdout\n{result.stdout}\n"
            f"--- stderr\n{result.stderr[-6000:]}"
        )
    return result
