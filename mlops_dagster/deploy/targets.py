"""The documents each target needs, as plain data built from a `Plan` (nothing is written here).

- `k8s`: values for the official `dagster/dagster` Helm chart and the Namespace to install into.
- `ecs`: the instance's `dagster.yaml` (EcsRunLauncher, PostgreSQL storage, S3 compute logs) and the
  code server's task definition (`aws ecs register-task-definition --cli-input-json`).
- `dagster-plus`: `build.yaml` (the code location, in the format `dagster-cloud ci` reads) and the
  agent's `container_context.yaml`.

Secrets are referenced by name (a Kubernetes Secret key, an ECS `valueFrom`, an `env:` source), never
written: the plan holds no secret value to write.
"""

from __future__ import annotations

from typing import Any

from mlops_dagster.deploy.plan import APP_DIR, CODE_PORT, DEFINITIONS_FILE, PG_PASSWORD_VAR, Plan, ecs_units
from mlops_dagster.spec.compute import ComputeSpec

PG_PASSWORD_KEY = "postgresql-password"  # the key the chart reads from global.postgresqlSecretName
ECS_CODE_SERVER = {"cpu": "512", "memory": "1024"}  # the code server only loads definitions
ECS_PG_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USER")
ECS_ROLE_VARS = ("DAGSTER_ECS_EXECUTION_ROLE_ARN", "DAGSTER_ECS_TASK_ROLE_ARN")
RUN_CONTAINER = "run"
CODE_CONTAINER = "user-code"


def k8s_resources(compute: ComputeSpec | None) -> dict[str, Any]:
    """Container resources as the `dagster-k8s/config` tags ask for them (requests; memory limit; gpu)."""
    from mlops_dagster.factory.compute_tags import K8S_CONFIG_TAG, compute_tags

    tags = compute_tags(compute)
    return dict(tags[K8S_CONFIG_TAG]["container_config"]["resources"]) if tags else {}


def _pull_policy(plan: Plan) -> str:
    return "Always" if plan.settings.image.mutable else "IfNotPresent"


def grpc_args() -> list[str]:
    """`dagster api grpc` arguments after the chart's `-h 0.0.0.0 -p <port>`: the image's definitions."""
    return ["--python-file", f"{APP_DIR}/{DEFINITIONS_FILE}", "--working-directory", APP_DIR]


def helm_values(plan: Plan) -> dict[str, Any]:
    """Values for the `dagster/dagster` chart: one user deployment, K8sRunLauncher, external PostgreSQL."""
    s = plan.settings
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plan.plain_env.items()]
    for var in plan.secret_vars:
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": s.secret_name, "key": var}}})
    for var in plan.aws_vars:  # optional: without the keys, boto3 uses the pod's service-account role
        ref = {"name": s.secret_name, "key": var, "optional": True}
        env.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    deployment: dict[str, Any] = {
        "name": s.location,
        "image": {"repository": s.image.repository, "tag": s.image.tag, "pullPolicy": _pull_policy(plan)},
        "dagsterApiGrpcArgs": grpc_args(),
        "port": CODE_PORT,
        "env": env,
        "includeConfigInLaunchedRuns": {"enabled": True},  # runs get the same env and resources
    }
    resources = k8s_resources(plan.compute)
    if resources:
        deployment["resources"] = resources
    if plan.s3:
        logs: dict[str, Any] = {
            "type": "S3ComputeLogManager",
            "config": {"s3ComputeLogManager": {"bucket": plan.s3[0], "prefix": plan.logs_prefix}},
        }
    else:
        logs = {"type": "NoOpComputeLogManager", "config": {}}
    telemetry_env = {k: v for k, v in plan.plain_env.items() if k != "MLOPS_ENV"}
    return {
        "global": {"postgresqlSecretName": s.pg_secret_name},
        "dagster-user-deployments": {"enabled": True, "enableSubchart": True, "deployments": [deployment]},
        "dagsterWebserver": {"env": dict(telemetry_env)},
        "dagsterDaemon": {"env": dict(telemetry_env)},
        "runLauncher": {
            "type": "K8sRunLauncher",
            "config": {
                "k8sRunLauncher": {
                    "imagePullPolicy": _pull_policy(plan),
                    "loadInclusterConfig": True,
                    "failPodOnRunFailure": True,
                }
            },
        },
        "postgresql": {
            "enabled": False,
            "postgresqlHost": s.postgres_host,
            "postgresqlUsername": s.postgres_user,
            "postgresqlDatabase": s.postgres_db,
            "service": {"port": s.postgres_port},
        },
        "generatePostgresqlPasswordSecret": False,
        "computeLogManager": logs,
        "telemetry": {"enabled": False},
    }


def k8s_namespace(plan: Plan) -> dict[str, Any]:
    """The Namespace the release goes into."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": plan.settings.k8s_namespace,
            "labels": {
                "app.kubernetes.io/part-of": "mlops-dagster",
                "mlops-dagster/environment": plan.settings.env,
            },
        },
    }


def _ecs_secrets(plan: Plan, extra: tuple[str, ...] = ()) -> list[dict[str, str]]:
    return [{"name": v, "valueFrom": plan.settings.secret_ref(v)} for v in (*extra, *plan.secret_vars)]


def _ecs_resources(compute: ComputeSpec | None) -> dict[str, str]:
    if compute is None:
        return {}
    cpu, memory = ecs_units(compute)
    return {k: str(v) for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}


def ecs_instance(plan: Plan) -> dict[str, Any]:
    """`dagster.yaml` for the webserver and daemon tasks: EcsRunLauncher, PostgreSQL, S3 compute logs.

    Connection settings and role ARNs come from the tasks' environment (`env:` sources), the password
    from a secret: the file holds names only.
    """
    s = plan.settings
    launcher: dict[str, Any] = {
        "task_definition": {
            "requires_compatibilities": ["FARGATE"],
            "log_group": f"/mlops-dagster/{s.env}",
            "execution_role_arn": {"env": ECS_ROLE_VARS[0]},
            "task_role_arn": {"env": ECS_ROLE_VARS[1]},
        },
        "container_name": RUN_CONTAINER,
        "use_current_ecs_task_config": True,  # cluster, subnets, security groups: the daemon's own
        "secrets": _ecs_secrets(plan, (PG_PASSWORD_VAR,)),
        "secrets_tag": None,  # only the secrets listed above, no Secrets Manager tag lookup
        "env_vars": [f"{k}={v}" for k, v in plan.plain_env.items()] + list(ECS_PG_VARS),
    }
    resources = _ecs_resources(plan.compute)
    if resources:
        launcher["run_resources"] = resources
    config: dict[str, Any] = {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": {"env": "DAGSTER_PG_HOST"},
                    "db_name": {"env": "DAGSTER_PG_DB"},
                    "username": {"env": "DAGSTER_PG_USER"},
                    "password": {"env": PG_PASSWORD_VAR},
                    "port": 5432,
                }
            }
        },
        "run_launcher": {"module": "dagster_aws.ecs", "class": "EcsRunLauncher", "config": launcher},
        "run_coordinator": {"module": "dagster", "class": "QueuedRunCoordinator"},  # its public home in 1.13
        "run_monitoring": {"enabled": True},
        "telemetry": {"enabled": False},
    }
    if plan.s3:
        config["compute_logs"] = {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": {"bucket": plan.s3[0], "prefix": plan.logs_prefix},
        }
    return config


def ecs_code_server_task(plan: Plan) -> dict[str, Any]:
    """The code server's task definition (input of `aws ecs register-task-definition`, roles given on
    the command line)."""
    s = plan.settings
    environment = [{"name": k, "value": v} for k, v in plan.plain_env.items()]
    environment.append({"name": "DAGSTER_CURRENT_IMAGE", "value": s.image.ref})
    container: dict[str, Any] = {
        "name": CODE_CONTAINER,
        "image": s.image.ref,
        "essential": True,
        "portMappings": [{"containerPort": CODE_PORT, "protocol": "tcp"}],
        "environment": environment,
        "healthCheck": {
            "command": ["CMD", "dagster", "api", "grpc-health-check", "-p", str(CODE_PORT)],
            "interval": 30,
            "timeout": 10,
            "retries": 3,
            "startPeriod": 120,
        },
    }
    secrets = _ecs_secrets(plan)
    if secrets:
        container["secrets"] = secrets
    return {
        "family": f"mlops-{s.env}-{s.location}",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        **ECS_CODE_SERVER,
        "containerDefinitions": [container],
    }


def container_context(plan: Plan) -> dict[str, Any]:
    """The Dagster+ agent's container context for the location (`k8s:` or `ecs:`)."""
    s = plan.settings
    env_vars = [f"{k}={v}" for k, v in plan.plain_env.items()]
    if s.agent == "ecs":
        ecs: dict[str, Any] = {"env_vars": env_vars}
        secrets = _ecs_secrets(plan)
        if secrets:
            ecs["secrets"] = secrets
        ecs["server_resources"] = dict(ECS_CODE_SERVER)
        resources = _ecs_resources(plan.compute)
        if resources:
            ecs["run_resources"] = resources
        return {"ecs": ecs}
    k8s: dict[str, Any] = {"env_vars": env_vars}
    if plan.secret_vars or plan.aws_vars:
        k8s["env_secrets"] = [s.secret_name]
    resources = k8s_resources(plan.compute)
    if resources:
        k8s["run_k8s_config"] = {"container_config": {"resources": resources}}
    return {"k8s": k8s}


def build_yaml(plan: Plan) -> dict[str, Any]:
    """The location for `dagster-cloud ci` (`--dagster-cloud-yaml-path`): code, build, registry, context.

    `build.registry` is the image's repository: `dagster-cloud ci set-build-output --image-tag TAG`
    records `<registry>:<TAG>` as the location's image.
    """
    s = plan.settings
    location = {
        "location_name": s.location,
        "code_source": {"python_file": DEFINITIONS_FILE},
        "working_directory": APP_DIR,
        "build": {"directory": ".", "registry": s.image.repository},
        "container_context": container_context(plan),
    }
    return {"locations": [location]}
