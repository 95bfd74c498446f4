"""Which keys a values file for the official `dagster/dagster` Helm chart may hold: our own compact
description of the chart's documented structure, for the parts `deploy render` writes.

Written from the chart's `values.yaml` and `values.schema.json` (dagster 1.13, November 2026), not
copied from them. Every top-level section is known (a typo there is caught); the sections we render
(user deployments, run launcher, compute logs, PostgreSQL, global, telemetry, webserver and daemon
environment) are described key by key. Leaves that are Kubernetes objects (`resources`, `env` items,
probes...) are only shaped here: `deploy check` validates them in the Deployment the chart would make,
with kubernetes-validate. Leaves that become instance config (`dagster.yaml`) are typed by Dagster's
config system, through the mapping in `chart.py`. What is left is typed here (names, ports, switches).

Helm merges these values over the chart's defaults, so a section may be partial; a list item (a user
deployment) is not merged and must be complete.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops_dagster.spec.source_map import Loc


class Node:
    """One place in the key tree."""


@dataclass(frozen=True)
class Keys(Node):
    """A mapping with known keys; `required` must be present; `one_of` groups need at least one key."""

    fields: Mapping[str, Node]
    required: frozenset[str] = frozenset()
    one_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class MapOf(Node):
    """A mapping with free keys, each value a `value`."""

    value: Node


@dataclass(frozen=True)
class Items(Node):
    """A list of `item`."""

    item: Node


@dataclass(frozen=True)
class Scalar(Node):
    """A scalar of one of `types`; `choices` or `pattern` restrict strings."""

    types: tuple[type, ...]
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    nullable: bool = False


@dataclass(frozen=True)
class Opaque(Node):
    """Checked elsewhere (Kubernetes or Dagster): only its kind (mapping, list or any) is checked here."""

    kind: type | None = None


@dataclass(frozen=True)
class Either(Node):
    """The first of `options` whose kind matches the value."""

    options: tuple[Node, ...] = field(default_factory=tuple)


STR = Scalar((str,))
BOOL = Scalar((bool,))
INT = Scalar((int,))
NAME = Scalar((str,), pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
K8S_MAP, K8S_LIST, ANY = Opaque(dict), Opaque(list), Opaque()
PULL_POLICY = Scalar((str,), choices=("Always", "IfNotPresent", "Never"))
STR_MAP = MapOf(STR)
ENV = Either((STR_MAP, Items(K8S_MAP)))  # a map (the chart writes a ConfigMap) or a list of EnvVar
IMAGE = Keys(
    {"repository": STR, "tag": Scalar((str, int)), "pullPolicy": PULL_POLICY},
    required=frozenset({"repository", "tag", "pullPolicy"}),
)
POD_KEYS: dict[str, Node] = {  # what the chart puts on a pod and its main container, as given
    "annotations": STR_MAP, "labels": STR_MAP, "nodeSelector": STR_MAP, "affinity": K8S_MAP,
    "tolerations": K8S_LIST, "podSecurityContext": K8S_MAP, "securityContext": K8S_MAP,
    "resources": K8S_MAP, "livenessProbe": K8S_MAP, "readinessProbe": K8S_MAP, "startupProbe": K8S_MAP,
    "volumeMounts": K8S_LIST, "volumes": K8S_LIST, "schedulerName": STR,
    "env": ENV, "envConfigMaps": Items(K8S_MAP), "envSecrets": Items(K8S_MAP),
}  # fmt: skip

USER_DEPLOYMENT = Keys(
    {
        **POD_KEYS,
        "name": NAME,
        "image": IMAGE,
        "port": INT,
        "dagsterApiGrpcArgs": Items(STR),
        "codeServerArgs": Items(STR),
        "includeConfigInLaunchedRuns": Keys({"enabled": BOOL}, required=frozenset({"enabled"})),
        "deploymentNamespace": STR,
        "initContainers": K8S_LIST,
        "sidecarContainers": K8S_LIST,
    },
    required=frozenset({"name", "image", "port"}),
    one_of=("dagsterApiGrpcArgs", "codeServerArgs"),
)
K8S_RUN_LAUNCHER = Keys(  # typed by Dagster's K8sRunLauncher config through chart.py
    {
        k: ANY
        for k in (
            "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
            "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
            "failPodOnRunFailure", "resources", "schedulerName", "securityContext",
        )
    }
    | {
        "runK8sConfig": Keys(
            {k: ANY for k in ("containerConfig", "podSpecConfig", "podTemplateSpecMetadata",
                              "jobSpecConfig", "jobMetadata")}  # fmt: skip
        )
    }
)  # fmt: skip
S3_LOGS = Keys(  # typed by Dagster's S3ComputeLogManager config through chart.py
    {
        k: ANY
        for k in (
            "bucket", "localDir", "prefix", "useSsl", "verify", "verifyCertPath", "endpointUrl",
            "skipEmptyFiles", "uploadInterval", "uploadExtraArgs", "showUrlOnly", "region",
        )
    },
    required=frozenset({"bucket"}),
)  # fmt: skip
LOG_MANAGERS = {
    "S3ComputeLogManager": "s3ComputeLogManager",
    "AzureBlobComputeLogManager": "azureBlobComputeLogManager",
    "GCSComputeLogManager": "gcsComputeLogManager",
    "CustomComputeLogManager": "customComputeLogManager",
    "NoOpComputeLogManager": None,
}
LAUNCHERS = {"K8sRunLauncher": "k8sRunLauncher", "CeleryK8sRunLauncher": "celeryK8sRunLauncher",
             "CustomRunLauncher": "customRunLauncher"}  # fmt: skip
WEBSERVER_KEYS = (
    "replicaCount", "image", "nameOverride", "pathPrefix", "service", "workspace", "deploymentLabels",
    "readinessProbe", "enableReadOnly", "dbStatementTimeout", "dbPoolRecycle", "logLevel",
    "initContainerResources",
)  # fmt: skip
DAEMON_KEYS = (
    "enabled", "image", "runCoordinator", "heartbeatTolerance", "deploymentLabels", "runMonitoring",
    "runRetries", "sensors", "schedules", "initContainerResources",
)  # fmt: skip

VALUES = Keys(
    {
        "global": Keys(
            {k: STR for k in ("postgresqlSecretName", "dagsterHome", "serviceAccountName",
                              "celeryConfigSecretName", "dagsterInstanceConfigMap", "nameOverride",
                              "fullnameOverride")}  # fmt: skip
        ),
        "dagster-user-deployments": Keys(
            {"enabled": BOOL, "enableSubchart": BOOL, "imagePullSecrets": K8S_LIST,
             "deployments": Items(USER_DEPLOYMENT)}  # fmt: skip
        ),
        "dagsterWebserver": Keys({**POD_KEYS, **{k: ANY for k in WEBSERVER_KEYS}}),
        "dagsterDaemon": Keys({**POD_KEYS, **{k: ANY for k in DAEMON_KEYS}}),
        "runLauncher": Keys(
            {
                "type": Scalar((str,), choices=tuple(LAUNCHERS)),
                "config": Keys({"k8sRunLauncher": K8S_RUN_LAUNCHER, "celeryK8sRunLauncher": K8S_MAP,
                                "customRunLauncher": K8S_MAP}),  # fmt: skip
            }
        ),
        "computeLogManager": Keys(
            {
                "type": Scalar((str,), choices=tuple(LOG_MANAGERS)),
                "config": Keys({"s3ComputeLogManager": S3_LOGS, "azureBlobComputeLogManager": K8S_MAP,
                                "gcsComputeLogManager": K8S_MAP,
                                "customComputeLogManager": K8S_MAP}),  # fmt: skip
            }
        ),
        "postgresql": Keys(
            {
                "enabled": BOOL, "image": K8S_MAP, "postgresqlHost": STR, "postgresqlUsername": STR,
                "postgresqlPassword": STR, "postgresqlDatabase": STR, "postgresqlParams": K8S_MAP,
                "postgresqlScheme": STR, "service": Keys({"port": INT}, required=frozenset({"port"})),
            }  # fmt: skip
        ),
        "generatePostgresqlPasswordSecret": BOOL,
        "generateCeleryConfigSecret": BOOL,
        "telemetry": Keys({"enabled": BOOL}, required=frozenset({"enabled"})),
        "imagePullSecrets": K8S_LIST,
        "serviceAccount": K8S_MAP,
        **{k: ANY for k in ("rabbitmq", "redis", "flower", "ingress", "scheduler", "pythonLogs", "busybox",
                            "migrate", "retention", "concurrency", "additionalInstanceConfig")},  # fmt: skip
    }
)


def _kind_name(node: Node) -> str:
    if isinstance(node, Keys | MapOf) or (isinstance(node, Opaque) and node.kind is dict):
        return "a mapping"
    if isinstance(node, Items) or (isinstance(node, Opaque) and node.kind is list):
        return "a list"
    if isinstance(node, Scalar):
        return " or ".join({str: "a string", bool: "true or false", int: "an integer"}[t] for t in node.types)
    return "a value"


def _matches_kind(node: Node, value: Any) -> bool:
    if isinstance(node, Keys | MapOf):
        return isinstance(value, dict)
    if isinstance(node, Items):
        return isinstance(value, list)
    if isinstance(node, Opaque):
        return node.kind is None or isinstance(value, node.kind)
    if isinstance(node, Scalar):
        if value is None:
            return node.nullable
        if isinstance(value, bool):
            return bool in node.types
        return isinstance(value, node.types)
    return any(_matches_kind(o, value) for o in node.options) if isinstance(node, Either) else False


def check_keys(node: Node, value: Any, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """Problems of `value` against `node`, each as (key path, message)."""
    if isinstance(node, Either):
        for option in node.options:
            if _matches_kind(option, value):
                return check_keys(option, value, loc)
        return [(loc, f"expected {' or '.join(_kind_name(o) for o in node.options)}, got {value!r}")]
    if not _matches_kind(node, value):
        return [(loc, f"expected {_kind_name(node)}, got {value!r}")]
    out: list[tuple[Loc, str]] = []
    if isinstance(node, Scalar) and isinstance(value, str):
        if node.choices and value not in node.choices:
            out.append((loc, f"{value!r} is not one of {', '.join(node.choices)}"))
        if node.pattern and not re.match(node.pattern, value):
            out.append((loc, f"{value!r} is not a valid Kubernetes name (lowercase letters, digits, '-')"))
    elif isinstance(node, Items):
        for i, item in enumerate(value):
            out.extend(check_keys(node.item, item, (*loc, i)))
    elif isinstance(node, MapOf):
        for key, item in value.items():
            out.extend(check_keys(node.value, item, (*loc, key)))
    elif isinstance(node, Keys):
        for key, item in value.items():
            child = node.fields.get(key)
            if child is None:
                close = difflib.get_close_matches(str(key), list(node.fields), n=2, cutoff=0.6)
                known = ", ".join(sorted(node.fields))
                hint = f"did you mean {' or '.join(close)}?" if close else f"known: {known}"
                out.append(((*loc, key), f"unknown key ({hint})"))
            else:
                out.extend(check_keys(child, item, (*loc, key)))
        for key in sorted(node.required - set(value)):
            out.append(((*loc, key), "required field is missing"))
        if node.one_of and not any(k in value for k in node.one_of):
            out.append((loc, f"needs one of {', '.join(node.one_of)} (what the code server runs)"))
    return out


def check_values(values: Any) -> list[tuple[Loc, str]]:
    """Keys and shapes of a whole values file, plus the chart's cross-field rules we rely on."""
    out = check_keys(VALUES, values)
    if out or not isinstance(values, dict):
        return out
    for section, kinds, what in (
        ("computeLogManager", LOG_MANAGERS, "compute log manager"),
        ("runLauncher", LAUNCHERS, "run launcher"),
    ):
        part = values.get(section) or {}
        key = kinds.get(str(part.get("type"))) if "type" in part else None
        if key and key not in (part.get("config") or {}):
            out.append(((section, "config", key), f"required for {what} type {part['type']}"))
    pg = values.get("postgresql") or {}
    if pg.get("postgresqlPassword") and values.get("generatePostgresqlPasswordSecret") is False:
        out.append(
            (("postgresql", "postgresqlPassword"), "a password written in values; keep it only in the "
             "Secret named by global.postgresqlSecretName (key postgresql-password)")
        )  # fmt: skip
    return out
