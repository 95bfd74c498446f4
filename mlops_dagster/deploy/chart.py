"""What the `dagster/dagster` chart makes of a values file, for `deploy check` to validate offline.

- `instance_config`: the `dagster.yaml` the chart renders into its instance ConfigMap (run launcher,
  PostgreSQL storage, compute logs, telemetry), as its instance templates map the values; each
  instance key remembers the values key it came from, so Dagster's config errors name the values key.
- `user_deployment`: the Kubernetes Deployment the chart renders for one user deployment (container
  args, env, envFrom, resources, probes, pod settings), to validate with kubernetes-validate; and
  `values_path`, which maps a path in that object back to the values key.

Only the parts we render and check are mapped; the chart itself stays the authority on the rest.
"""

from __future__ import annotations

from typing import Any

from mlops_dagster.spec.source_map import Loc

RELEASE = "mlops"  # a stand-in release name: names only, nothing is checked against it
DEFAULT_PG_SECRET = f"{RELEASE}-dagster-postgresql-secret"
CONTAINER_NAME = "dagster-user-deployments"
_K8S_LAUNCHER_KEYS = {  # values key -> K8sRunLauncher config key (as the chart's template maps them)
    "loadInclusterConfig": "load_incluster_config", "kubeconfigFile": "kubeconfig_file",
    "jobNamespace": "job_namespace", "imagePullPolicy": "image_pull_policy", "envVars": "env_vars",
    "volumeMounts": "volume_mounts", "volumes": "volumes", "labels": "labels", "resources": "resources",
    "failPodOnRunFailure": "fail_pod_on_run_failure", "schedulerName": "scheduler_name",
    "securityContext": "security_context",
}  # fmt: skip
_RUN_K8S_CONFIG_KEYS = {
    "containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}  # fmt: skip
_S3_LOG_KEYS = {
    "bucket": "bucket", "localDir": "local_dir", "prefix": "prefix", "useSsl": "use_ssl",
    "verify": "verify", "verifyCertPath": "verify_cert_path", "endpointUrl": "endpoint_url",
    "skipEmptyFiles": "skip_empty_files", "uploadInterval": "upload_interval",
    "uploadExtraArgs": "upload_extra_args", "showUrlOnly": "show_url_only", "region": "region",
}  # fmt: skip
_S3_WHERE: Loc = ("computeLogManager", "config", "s3ComputeLogManager")
_CONTAINER_KEYS = ("resources", "securityContext", "volumeMounts")
_POD_KEYS = {"nodeSelector": "nodeSelector", "affinity": "affinity", "tolerations": "tolerations",
             "volumes": "volumes", "initContainers": "initContainers", "schedulerName": "schedulerName",
             "securityContext": "podSecurityContext"}  # fmt: skip


def pg_secret(values: dict[str, Any]) -> str:
    """The Secret holding the PostgreSQL password: `global.postgresqlSecretName`, else the chart's."""
    return (values.get("global") or {}).get("postgresqlSecretName") or DEFAULT_PG_SECRET


def _names(items: Any) -> list[Any]:
    return [i["name"] for i in items or [] if isinstance(i, dict) and "name" in i]


def instance_config(values: dict[str, Any]) -> tuple[dict[str, Any], dict[Loc, Loc]]:
    """The chart's `dagster.yaml` for `values`, and instance key path -> values key path."""
    config: dict[str, Any] = {}
    origin: dict[Loc, Loc] = {}
    launcher = values.get("runLauncher") or {}
    if launcher.get("type", "K8sRunLauncher") == "K8sRunLauncher":
        given = (launcher.get("config") or {}).get("k8sRunLauncher") or {}
        where: Loc = ("runLauncher", "config", "k8sRunLauncher")
        cfg: dict[str, Any] = {
            "load_incluster_config": True,
            "job_namespace": "default",
            "image_pull_policy": "Always",
            "service_account_name": f"{RELEASE}-dagster",
            "dagster_home": (values.get("global") or {}).get("dagsterHome", "/opt/dagster/dagster_home"),
            "instance_config_map": f"{RELEASE}-dagster-instance",
            "postgres_password_secret": pg_secret(values),
        }
        for key, target in _K8S_LAUNCHER_KEYS.items():
            if given.get(key) is not None:
                cfg[target] = given[key]
                origin[("run_launcher", "config", target)] = (*where, key)
        for key, target in (("envConfigMaps", "env_config_maps"), ("envSecrets", "env_secrets")):
            if given.get(key):
                cfg[target] = _names(given[key])
                origin[("run_launcher", "config", target)] = (*where, key)
        if given.get("image"):
            image = given["image"]
            ref = f"{image.get('repository')}:{image.get('tag')}" if isinstance(image, dict) else image
            cfg["job_image"] = ref
            origin[("run_launcher", "config", "job_image")] = (*where, "image")
        run_k8s = given.get("runK8sConfig") or {}
        if run_k8s:
            cfg["run_k8s_config"] = {_RUN_K8S_CONFIG_KEYS[k]: v for k, v in run_k8s.items() if v}
            for k in run_k8s:
                target = _RUN_K8S_CONFIG_KEYS[k]
                origin[("run_launcher", "config", "run_k8s_config", target)] = (*where, "runK8sConfig", k)
        config["run_launcher"] = {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": cfg}
        origin[("run_launcher",)] = ("runLauncher",)
    pg = values.get("postgresql") or {}
    db = {
        "username": pg.get("postgresqlUsername", "test"),
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg.get("postgresqlHost", ""),
        "db_name": pg.get("postgresqlDatabase", "test"),
        "port": (pg.get("service") or {}).get("port", 5432),
        "params": pg.get("postgresqlParams", {}),
    }
    if pg.get("postgresqlScheme"):
        db["scheme"] = pg["postgresqlScheme"]
    for storage, module, cls in (
        ("run_storage", "dagster_postgres.run_storage", "PostgresRunStorage"),
        ("event_log_storage", "dagster_postgres.event_log", "PostgresEventLogStorage"),
        ("schedule_storage", "dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
    ):
        config[storage] = {"module": module, "class": cls, "config": {"postgres_db": dict(db)}}
        for key, source in (("username", "postgresqlUsername"), ("hostname", "postgresqlHost"),
                            ("db_name", "postgresqlDatabase"), ("params", "postgresqlParams"),
                            ("scheme", "postgresqlScheme")):  # fmt: skip
            origin[(storage, "config", "postgres_db", key)] = ("postgresql", source)
        origin[(storage, "config", "postgres_db", "port")] = ("postgresql", "service", "port")
    logs = values.get("computeLogManager") or {}
    if logs.get("type") == "S3ComputeLogManager":
        given = (logs.get("config") or {}).get("s3ComputeLogManager") or {}
        s3: dict[str, Any] = {"verify": given.get("verify") is not False}
        for key, target in _S3_LOG_KEYS.items():
            if given.get(key) is not None:
                s3[target] = given[key]
                origin[("compute_logs", "config", target)] = (*_S3_WHERE, key)
        config["compute_logs"] = {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": s3,
        }
    telemetry = values.get("telemetry") or {}
    config["telemetry"] = {"enabled": telemetry.get("enabled", True)}
    origin[("telemetry", "enabled")] = ("telemetry", "enabled")
    return config, origin


def values_origin(origin: dict[Loc, Loc], loc: Loc) -> Loc:
    """The values key path an instance key path came from (its closest mapped parent)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            return (*origin[loc[:n]], *loc[n:])
    return ()


def _probe(probe: Any, port: Any) -> Any:
    """A probe as the chart writes it: without `enabled`, with the gRPC health check when no handler."""
    if not isinstance(probe, dict):
        return probe
    out = {k: v for k, v in probe.items() if k != "enabled"}
    if not any(k in out for k in ("exec", "httpGet", "tcpSocket", "grpc")):
        out["exec"] = {"command": ["dagster", "api", "grpc-health-check", "-p", str(port)]}
    return out


def user_deployment(values: dict[str, Any], dep: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The Deployment the chart renders for user deployment `dep`, and how many env entries the chart
    puts before the deployment's own."""
    image = dep.get("image") or {}
    ref = f"{image.get('repository')}:{image.get('tag')}"
    port = dep.get("port")
    env: list[Any] = [
        {"name": "DAGSTER_CURRENT_IMAGE", "value": ref},
        {"name": "DAGSTER_PG_PASSWORD",
         "valueFrom": {"secretKeyRef": {"name": pg_secret(values), "key": "postgresql-password"}}},
    ]  # fmt: skip
    if (dep.get("includeConfigInLaunchedRuns") or {"enabled": True}).get("enabled", True):
        env.append({"name": "DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT", "value": "{}"})
    offset = len(env)
    if isinstance(dep.get("env"), list):
        env.extend(dep["env"])
    env_from: list[Any] = [{"configMapRef": {"name": f"{RELEASE}-user-deployments-shared-env"}}]
    env_from += [{"configMapRef": c} for c in dep.get("envConfigMaps") or []]
    env_from += [{"secretRef": s} for s in dep.get("envSecrets") or []]
    if dep.get("dagsterApiGrpcArgs"):
        args = ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(port), *dep["dagsterApiGrpcArgs"]]
    else:
        extra = dep.get("codeServerArgs") or []
        args = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", str(port), *extra]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": ref,
        "imagePullPolicy": image.get("pullPolicy"),
        "args": args,
        "env": env,
        "envFrom": env_from,
        "readinessProbe": _probe(dep.get("readinessProbe") or {}, port),
    }
    container.update({k: dep[k] for k in _CONTAINER_KEYS if dep.get(k)})
    for key in ("livenessProbe", "startupProbe"):
        if dep.get(key):
            container[key] = _probe(dep[key], port)
    labels = {"component": "user-deployments", "deployment": str(dep.get("name"))}
    pod: dict[str, Any] = {"containers": [container, *(dep.get("sidecarContainers") or [])]}
    pod.update({k: dep[v] for k, v in _POD_KEYS.items() if dep.get(v)})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{RELEASE}-dagster-user-deployments-{dep.get('name')}", "labels": labels,
                     "annotations": dep.get("annotations") or {}},  # fmt: skip
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, **(dep.get("labels") or {})},
                             "annotations": dep.get("annotations") or {}},  # fmt: skip
                "spec": pod,
            },
        },
    }, offset


def values_path(dep: dict[str, Any], offset: int, path: Loc) -> Loc:
    """The key under one user deployment that a path in its rendered Deployment comes from."""
    parts = list(path)
    for prefix in (["metadata"], ["spec", "template", "metadata"]):
        n = len(prefix)
        if parts[:n] == prefix and parts[n : n + 1] in (["labels"], ["annotations"]):
            return tuple(parts[n:])
    if parts[:3] != ["spec", "template", "spec"]:
        return ()
    rest = parts[3:]
    if rest[:1] == ["containers"] and len(rest) > 1:
        index, sub = rest[1], rest[2:]
        if index != 0:
            return ("sidecarContainers", int(index) - 1, *sub)
        if sub[:1] == ["env"] and len(sub) > 1 and int(sub[1]) >= offset:
            return ("env", int(sub[1]) - offset, *sub[2:])
        if sub[:1] == ["envFrom"] and len(sub) > 1 and int(sub[1]) >= 1:
            maps = len(dep.get("envConfigMaps") or [])
            j = int(sub[1]) - 1
            return ("envConfigMaps", j, *sub[2:]) if j < maps else ("envSecrets", j - maps, *sub[2:])
        if sub[:1] and sub[0] in (*_CONTAINER_KEYS, "livenessProbe", "startupProbe", "readinessProbe"):
            return tuple(sub)
        return ()
    if rest[:1] and rest[0] in _POD_KEYS:
        return (_POD_KEYS[str(rest[0])], *rest[1:])
    return ()
