"""`mlops-dagster deploy render`: write one environment's ready-to-apply configuration for a target.

`render_files` is pure (plan -> file name -> text); `write_files` puts them in the output folder. Every
folder also gets a NOTES.md with the commands that create what the files only name (namespace,
secrets, log group) and apply them, in order.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from mlops_dagster.deploy import targets
from mlops_dagster.deploy.plan import PG_PASSWORD_VAR, DeployError, Plan

NOTES = "NOTES.md"
HELM_CHART_VERSION = "1.13.27"  # the chart versions with dagster; this project pins dagster 1.13.27
TARGET_FILES = {
    "k8s": ("values.yaml", "namespace.yaml", NOTES),
    "ecs": ("dagster.yaml", "task-definition.json", NOTES),
    "dagster-plus": ("build.yaml", "container_context.yaml", NOTES),
}


def _yaml(data: Any, header: str) -> str:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
    return "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body


def _header(plan: Plan, what: str) -> str:
    s = plan.settings
    return (
        f"{what}\n"
        f"Rendered by `mlops-dagster deploy render --target {s.target} --env {s.env} "
        f"--image {s.image.ref}`.\n"
        "Re-render rather than edit; `mlops-dagster deploy check <folder>` validates the folder offline.\n"
        "Secrets are referenced by name only: NOTES.md says how to create them."
    )


def render_files(plan: Plan, out: str = "<folder>") -> dict[str, str]:
    """The files of `plan`'s target, by name; `out` is the folder as NOTES.md names it in commands."""
    target = plan.settings.target
    if target == "k8s":
        values = _header(plan, "Values for the dagster/dagster Helm chart.")
        return {
            "values.yaml": _yaml(targets.helm_values(plan), values),
            "namespace.yaml": _yaml(targets.k8s_namespace(plan), _header(plan, "The release's Namespace.")),
            NOTES: k8s_notes(plan),
        }
    if target == "ecs":
        return {
            "dagster.yaml": _yaml(
                targets.ecs_instance(plan), _header(plan, "dagster.yaml for the webserver and daemon tasks.")
            ),
            "task-definition.json": json.dumps(targets.ecs_code_server_task(plan), indent=2) + "\n",
            NOTES: ecs_notes(plan),
        }
    context = f"The {plan.settings.agent} agent's container context (also inlined in build.yaml)."
    build = _header(plan, "The code location for `dagster-cloud ci`.")
    return {
        "build.yaml": _yaml(targets.build_yaml(plan), build),
        "container_context.yaml": _yaml(targets.container_context(plan), _header(plan, context)),
        NOTES: dagster_plus_notes(plan, out),
    }


def write_files(files: dict[str, str], out: Path) -> list[Path]:
    """Write `files` into `out` (created when its parent exists); return the paths written.

    Raises:
        DeployError: `out` is a file, or its parent folder does not exist.
    """
    if out.exists() and not out.is_dir():
        raise DeployError(f"--out {out} is a file; give a folder")
    if not out.exists():
        if not out.parent.is_dir():
            raise DeployError(f"--out {out}: its parent folder {out.parent} does not exist; create it first")
        out.mkdir()
    written = []
    for name, text in files.items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written


def _kubectl_secret(namespace: str, name: str, keys: list[tuple[str, str]]) -> list[str]:
    """`kubectl create secret generic` taking each key's value from the shell variable named."""
    lines = [f"kubectl -n {namespace} create secret generic {name} \\"]
    lines += [f'  --from-literal={key}="${var}" \\' for key, var in keys]
    lines[-1] = lines[-1].removesuffix(" \\")
    return lines


def _ssm_put(name: str, var: str) -> str:
    return f'aws ssm put-parameter --type SecureString --name {shlex.quote(name)} --value "${var}"'


def _fence(lines: list[str]) -> str:
    return "```sh\n" + "\n".join(lines) + "\n```\n"


def _warnings(plan: Plan) -> str:
    if not plan.warnings:
        return ""
    return "## Warnings\n\n" + "".join(f"- {w}\n" for w in plan.warnings) + "\n"


def k8s_notes(plan: Plan) -> str:
    """NOTES.md for Kubernetes: the Namespace, the two Secrets from shell variables, the Helm install."""
    s = plan.settings
    ns = shlex.quote(s.k8s_namespace)
    lines = [
        "kubectl apply -f namespace.yaml",
        *_kubectl_secret(ns, s.pg_secret_name, [("postgresql-password", PG_PASSWORD_VAR)]),
    ]
    if plan.secret_vars or plan.aws_vars:
        lines += _kubectl_secret(ns, s.secret_name, [(v, v) for v in (*plan.secret_vars, *plan.aws_vars)])
    lines += [
        "helm repo add dagster https://dagster-io.github.io/helm && helm repo update",
        f"helm upgrade --install mlops-{s.env} dagster/dagster --version {HELM_CHART_VERSION} \\",
        f"  --namespace {ns} -f values.yaml",
    ]
    aws_note = (
        f"The AWS keys are optional: without them in `{s.secret_name}`, boto3 uses the pod's "
        "service-account role (IRSA), which is preferable.\n\n"
        if plan.aws_vars
        else ""
    )
    return (
        f"# Deploying environment `{s.env}` on Kubernetes\n\n{_warnings(plan)}"
        f"PostgreSQL: `{s.postgres_user}@{s.postgres_host}:{s.postgres_port}/{s.postgres_db}` (change with "
        "`--postgres-host/--postgres-port/--postgres-db/--postgres-user`). Its password and the secrets "
        "below are read from your shell's variables of the same names; nothing secret is in these files.\n\n"
        f"{aws_note}{_fence(lines)}\n"
        f"Check: `kubectl -n {ns} get pods` shows the `{s.location}` user deployment Ready (gRPC health "
        f"check on port {targets.CODE_PORT}); the webserver lists location `{s.location}`.\n"
    )


def ecs_notes(plan: Plan) -> str:
    """NOTES.md for ECS: the tasks' environment, the log group, the secrets, the code server's task."""
    s = plan.settings
    params = [PG_PASSWORD_VAR, *plan.secret_vars]
    lines = [f"aws logs create-log-group --log-group-name /mlops-dagster/{s.env}"]
    if s.secret_prefix is None:
        lines += [_ssm_put(s.secret_ref(v), v) for v in params]
    lines += [
        "aws ecs register-task-definition --cli-input-json file://task-definition.json \\",
        '  --execution-role-arn "$DAGSTER_ECS_EXECUTION_ROLE_ARN" \\',
        '  --task-role-arn "$DAGSTER_ECS_TASK_ROLE_ARN"',
    ]
    env_names = ", ".join(f"`{v}`" for v in (*targets.ECS_PG_VARS, *targets.ECS_ROLE_VARS))
    return (
        f"# Deploying environment `{s.env}` on ECS\n\n{_warnings(plan)}"
        "`dagster.yaml` is the instance of the webserver and daemon tasks (put it in `$DAGSTER_HOME`). "
        f"Those tasks need the variables {env_names} in their environment and `{PG_PASSWORD_VAR}` as a "
        f"secret; runs get the same through the launcher's `env_vars` and `secrets` (valueFrom "
        f"`{s.secret_ref('<VAR>')}`), and S3 access through the task role.\n\n"
        f"{_fence(lines)}\n"
        f"Then run the registered family `mlops-{s.env}-{s.location}` as a service (port "
        f"{targets.CODE_PORT}) and point the webserver's and daemon's `workspace.yaml` at it:\n\n"
        f"```yaml\nload_from:\n  - grpc_server: {{host: <service address>, port: {targets.CODE_PORT}, "
        f"location_name: {s.location}}}\n```\n"
    )


def dagster_plus_notes(plan: Plan, out: str) -> str:
    """NOTES.md for Dagster+: the secrets, then `dagster-cloud ci` with the rendered build.yaml."""
    s = plan.settings
    lines = [
        "export DAGSTER_CLOUD_ORGANIZATION=<org> DAGSTER_CLOUD_API_TOKEN=<token>",
        "export DAGSTER_BUILD_STATEDIR=$(mktemp -d)",
        f"dagster-cloud ci init --project-dir . --deployment {s.env} \\",
        f"  --dagster-cloud-yaml-path {shlex.quote(out + '/build.yaml')}",
        f"dagster-cloud ci set-build-output --image-tag {shlex.quote(s.image.tag)}",
        "dagster-cloud ci deploy",
    ]
    if s.agent == "k8s" and (plan.secret_vars or plan.aws_vars):
        named = ", ".join(f"`{v}`" for v in (*plan.secret_vars, *plan.aws_vars))
        create = (
            f"Create the Secret `{s.secret_name}` in the agent's namespace, holding {named} (the AWS keys "
            "only without a service-account role), as `env_secrets` names it:\n\n"
            + _fence(_kubectl_secret("<agent namespace>", s.secret_name, [(v, v) for v in plan.secret_vars]))
        )
    elif s.agent == "ecs" and plan.secret_vars:
        create = (
            "Create the secrets the context names (the agent's task execution role must be allowed to "
            "read them):\n\n"
            + _fence([_ssm_put(s.secret_ref(v), v) for v in plan.secret_vars] if s.secret_prefix is None
                     else [f"# create {s.secret_ref(v)} with the value of ${v}" for v in plan.secret_vars])
        )  # fmt: skip
    else:
        create = ""
    return (
        f"# Deploying environment `{s.env}` on Dagster+ ({s.agent} agent)\n\n{_warnings(plan)}"
        f"The Dagster+ deployment `{s.env}` serves environment `{s.env}` (`MLOPS_ENV` in the container "
        "context); a branch deployment of it writes under its own `branches/<branch>` prefix.\n\n"
        f"Push `{s.image.ref}` to its registry. {create and create + chr(10)}"
        f"Then, from the project folder:\n\n{_fence(lines)}"
    )
