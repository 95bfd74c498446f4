"""Deployment configuration for one environment: `deploy render` writes it, `deploy check` validates it.

    plan = build_plan(["pipelines"], Settings(target="k8s", env="prod", image=parse_image("repo/app:1.0")))
    write_files(render_files(plan), Path("deploy/out/prod"))
    checked, issues = check_dir(Path("deploy/out/prod"))

Targets: `k8s` (values for the `dagster/dagster` Helm chart), `ecs` (`dagster.yaml` with
EcsRunLauncher and a task definition), `dagster-plus` (`build.yaml`, `container_context.yaml`).
Secrets are referenced by name, never written. Nothing here imports dagster-k8s, dagster-aws or
kubernetes-validate until a check runs.
"""

from __future__ import annotations

from mlops_dagster.deploy.check import check_dir
from mlops_dagster.deploy.plan import TARGETS, DeployError, ImageRef, Plan, Settings, build_plan, parse_image
from mlops_dagster.deploy.render import render_files, write_files

__all__ = [
    "TARGETS",
    "DeployError",
    "ImageRef",
    "Plan",
    "Settings",
    "build_plan",
    "check_dir",
    "parse_image",
    "render_files",
    "write_files",
]
