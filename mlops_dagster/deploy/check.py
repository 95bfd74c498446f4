"""`mlops-dagster deploy check DIR`: validate rendered configuration offline, each file with its own
tool's schema or config system.

| file                    | checked with                                                            |
|-------------------------|-------------------------------------------------------------------------|
| `values.yaml`           | our description of the chart's keys (`helm_values.py`); the instance    |
|                         | config the chart makes of it, through Dagster's config system; each     |
|                         | user deployment's Deployment, with kubernetes-validate (strict, 1.31)   |
| other Kubernetes YAML   | kubernetes-validate, strict, Kubernetes 1.31                            |
| `dagster.yaml`          | Dagster's instance schema and each configured class's `config_type()`   |
| `task-definition.json`  | botocore's model of ECS `RegisterTaskDefinition`                        |
| `build.yaml`            | dagster-cloud-cli's own model of the file (what `dagster-cloud ci` reads)|
| `container_context.yaml`| the k8s / ECS launchers' container-context schemas                      |

Each problem is a `file:line key.path: message`; the launchers and kubernetes-validate are imported
only here, when the command runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops_dagster.deploy.plan import DeployError
from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec.source_map import Loc, SourceMap
from mlops_dagster.spec.yaml_reader import read_yaml

K8S_VERSION = "1.31"
Problems = list[tuple[Loc, str]]


def k8s_errors(obj: Any) -> Problems:
    """kubernetes-validate's verdict on one object (strict: unknown fields are errors)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [(tuple(e.path), f"{e.message} (Kubernetes {K8S_VERSION})")]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        return [((), f"not a known Kubernetes {K8S_VERSION} object: {e}")]
    return []


def check_values(values: Any) -> Problems:
    """Keys, instance config and user-deployment objects of a chart values file."""
    from mlops_dagster.deploy import chart, dagster_config, helm_values

    out = helm_values.check_values(values)
    if out:  # the mapping below assumes the shapes the key check guarantees
        return out
    instance, origin = chart.instance_config(values)
    for loc, message in dagster_config.instance_errors(instance):
        target = chart.values_origin(origin, loc)
        out.append((target, f"{message} (as dagster.yaml {'.'.join(map(str, loc))})"))
    user = values.get("dagster-user-deployments") or {}
    if user.get("enabled", True):
        for i, dep in enumerate(user.get("deployments") or []):
            obj, offset = chart.user_deployment(values, dep)
            for path, message in k8s_errors(obj):
                sub = chart.values_path(dep, offset, path)
                where = ("dagster-user-deployments", "deployments", i, *sub)
                out.append((where, f"{message}, in its Deployment"))
    return out


def check_task_definition(data: Any) -> Problems:
    """An ECS task definition against botocore's model of `RegisterTaskDefinition` (roles may come from
    the command line, as the NOTES do it)."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(data, shape)
    if not report.has_errors():
        return []
    out: Problems = []
    for line in report.generate_report().splitlines():
        match = re.search(r"(?:in|for parameter) ([A-Za-z][\w.\[\]]*)", line)
        loc: Loc = ()
        if match and match.group(1) != "input":
            loc = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[A-Za-z]\w*|\d+", match.group(1)))
        out.append((loc, line.strip()))
    return out


def check_build_yaml(data: Any, folder: Path) -> Problems:
    """`build.yaml` with dagster-cloud-cli's own model, and each location's container context."""
    import pydantic
    from dagster_cloud_cli.config.models import DagsterCloudYaml

    from mlops_dagster.deploy.dagster_config import container_context_errors

    try:
        parsed = DagsterCloudYaml.model_validate(data)
    except pydantic.ValidationError as e:
        out: Problems = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            kind = err["type"]
            out.append((loc, "unknown key" if kind == "extra_forbidden" else
                        "required field is missing" if kind == "missing" else err["msg"]))  # fmt: skip
        return out
    out = []
    for i, location in enumerate(parsed.locations):
        build = location.build.directory if location.build else None
        if build and not (folder / build).is_dir():
            out.append((("locations", i, "build", "directory"), f"no folder {build!r} next to build.yaml"))
        if location.container_context is not None:
            where = ("locations", i, "container_context")
            out.extend(container_context_errors(location.container_context, where))
    return out


def _dagster_plus_agreement(folder: Path, context: Any) -> Problems:
    """container_context.yaml must say what build.yaml inlines (both are rendered from one source)."""
    build = folder / "build.yaml"
    if not build.is_file():
        return []
    data, _ = read_yaml(build)
    locations = (data or {}).get("locations") or []
    inline = [loc.get("container_context") for loc in locations if isinstance(loc, dict)]
    if inline and all(c != context for c in inline):
        return [((), "differs from the container_context in build.yaml; re-render instead of editing one")]
    return []


def _issues(smap: SourceMap, problems: Problems) -> list[SpecIssue]:
    return [smap.issue(loc, message) for loc, message in problems]


def check_dir(folder: Path) -> tuple[list[str], list[SpecIssue]]:
    """Validate every rendered file in `folder`.

    Returns:
        What was checked (one line per file) and the problems found.

    Raises:
        DeployError: `folder` is not a folder, or holds no rendered configuration.
    """
    from mlops_dagster.deploy.dagster_config import container_context_errors, instance_errors

    if not folder.is_dir():
        raise DeployError(f"{folder} is not a folder (give the --out folder of `deploy render`)")
    checks: dict[str, tuple[str, Callable[[Any], Problems]]] = {
        "values.yaml": ("Helm chart keys, instance config (Dagster), Deployments (Kubernetes)", check_values),
        "dagster.yaml": ("instance config (Dagster)", instance_errors),
        "task-definition.json": ("ECS RegisterTaskDefinition (botocore)", check_task_definition),
        "build.yaml": (
            "dagster-cloud ci locations (dagster-cloud-cli)",
            lambda d: check_build_yaml(d, folder),
        ),
        "container_context.yaml": (
            "container context (dagster-k8s / dagster-aws)",
            lambda d: container_context_errors(d) + _dagster_plus_agreement(folder, d),
        ),
    }
    done: list[str] = []
    issues: list[SpecIssue] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file()):
        try:
            data, smap = read_yaml(path)  # JSON is YAML: the same reader gives lines for both
        except SpecError as e:
            issues.extend(e.issues)
            continue
        if path.name in checks:
            what, check = checks[path.name]
        elif isinstance(data, dict) and "apiVersion" in data and "kind" in data:
            what, check = f"{data.get('kind')} (Kubernetes {K8S_VERSION}, strict)", k8s_errors
        else:
            continue
        issues.extend(_issues(smap, check(data)))
        done.append(f"{path.name}: {what}")
    if not done and not issues:
        raise DeployError(
            f"{folder} holds no rendered configuration (values.yaml, dagster.yaml, build.yaml, ...): "
            "run `mlops-dagster deploy render --out` first"
        )
    return done, issues
