"""Rendered configuration through Dagster's own config system: instance config and container context.

This is the one module of the package that reaches into Dagster internals, for two things Dagster
has no public API for (dagster 1.13):

- validating a value against a config schema *without resolving* its `env:` sources (the only
  public entry, `dagster.validate_run_config`, needs a job and reads the variables, which do not
  exist where `deploy check` runs): `dagster._config.validate_config`;
- the schema of `dagster.yaml` itself, which `DagsterInstance` reads from
  `dagster._core.instance.config.dagster_instance_config_schema`.

Each configurable class an instance names (`module` / `class` / `config`) is then imported and its
config checked against the class's own `config_type()`, as loading the instance would.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

from mlops_dagster.spec.source_map import Loc

CONFIGURABLE_KEYS = (
    "local_artifact_storage", "compute_logs", "run_storage", "event_log_storage", "schedule_storage",
    "scheduler", "run_coordinator", "run_launcher",
)  # fmt: skip
_AT_PATH = re.compile(r" at path root(?::[^\s:.]+|\[\d+\])*")


def _stack_loc(stack: Any) -> Loc:
    loc: list[str | int] = []
    for entry in getattr(stack, "entries", []):
        for attr in ("field_name", "list_index", "map_key"):
            if hasattr(entry, attr):
                loc.append(getattr(entry, attr))
                break
    return tuple(loc)


def config_errors(schema: Any, value: Any, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """Problems of `value` against a Dagster config `schema`, each as (key path, message)."""
    # No public API validates without resolving `env:` sources (see the module docstring).
    from dagster._config import validate_config

    result = validate_config(schema, value)
    if result.success:
        return []
    out: list[tuple[Loc, str]] = []
    for error in result.errors or []:
        where = (*loc, *_stack_loc(error.stack))
        data: Any = error.error_data
        reason = error.reason.value
        if reason == "FIELD_NOT_DEFINED":
            out.append(((*where, data.field_name), "unknown key"))
        elif reason == "FIELDS_NOT_DEFINED":
            out.extend(((*where, name), "unknown key") for name in data.field_names)
        elif reason == "MISSING_REQUIRED_FIELD":
            out.append(((*where, data.field_name), "required field is missing"))
        elif reason == "MISSING_REQUIRED_FIELDS":
            out.extend(((*where, name), "required field is missing") for name in data.field_names)
        else:
            out.append((where, _AT_PATH.sub("", error.message)))
    return out


def class_config_errors(entry: Mapping[str, Any], loc: Loc) -> list[tuple[Loc, str]]:
    """Problems of one `module` / `class` / `config` entry: the class must import and take its config."""
    module, name = entry.get("module"), entry.get("class")
    try:
        cls = getattr(importlib.import_module(str(module)), str(name))
    except ImportError as e:
        return [((*loc, "module"), f"cannot import {module}: {e}")]
    except AttributeError:
        return [((*loc, "class"), f"{module} has no class {name}")]
    config_type = getattr(cls, "config_type", None)
    if config_type is None:
        return [((*loc, "class"), f"{module}.{name} is not a configurable Dagster class")]
    return config_errors(config_type(), entry.get("config") or {}, (*loc, "config"))


def instance_errors(config: Any) -> list[tuple[Loc, str]]:
    """Problems of a whole `dagster.yaml`, as loading a `DagsterInstance` from it would find them."""
    # No public API exposes the dagster.yaml schema (see the module docstring).
    from dagster._core.instance.config import dagster_instance_config_schema

    if not isinstance(config, dict):
        return [((), "expected a mapping of instance settings")]
    out = config_errors(dagster_instance_config_schema(), config)
    split = [k for k in ("run_storage", "event_log_storage", "schedule_storage") if k in config]
    if "storage" in config and split:
        out.append((("storage",), f"`storage` cannot be combined with {', '.join(split)}"))
    if out:
        return out
    for key in CONFIGURABLE_KEYS:
        if isinstance(config.get(key), dict):
            out.extend(class_config_errors(config[key], (key,)))
    return out


def container_context_errors(context: Any, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """Problems of a Dagster+ container context (`k8s:` or `ecs:`), against the launchers' own schemas
    (they include the agent's keys: server and run resources, server_k8s_config...)."""
    if not isinstance(context, dict) or not context:
        return [(loc, "expected a mapping with `k8s:` or `ecs:`")]
    out: list[tuple[Loc, str]] = []
    for key, value in context.items():
        if key == "k8s":
            from dagster_k8s.job import DagsterK8sJobConfig

            out.extend(config_errors(DagsterK8sJobConfig.config_type_container_context(), value, (*loc, key)))
        elif key == "ecs":
            from dagster_aws.ecs.container_context import ECS_CONTAINER_CONTEXT_SCHEMA

            out.extend(config_errors(ECS_CONTAINER_CONTEXT_SCHEMA, value, (*loc, key)))
        elif key == "env_vars":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                out.append(((*loc, key), "expected a list of KEY or KEY=VALUE strings"))
        else:
            out.append(((*loc, key), "unknown key (expected k8s, ecs or env_vars)"))
    return out
