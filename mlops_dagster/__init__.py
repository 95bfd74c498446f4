"""mlops_dagster: declare a model once, get the governed MLOps loop as a Dagster asset graph.

The public names below are imported on first use (PEP 562), so a module that needs only the shared
names (`mlops_dagster.keys`: the registry, the CLI, the sensors) loads neither the factory nor the
component. `dir(mlops_dagster)` lists them, which is how `dg` finds `MLPipelineComponent`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Alert": "mlops_dagster.alerts",
    "Notifier": "mlops_dagster.alerts",
    "MLPipelineComponent": "mlops_dagster.component",
    "DataError": "mlops_dagster.errors",
    "IntegrityError": "mlops_dagster.errors",
    "MlopsDagsterError": "mlops_dagster.errors",
    "RegistryError": "mlops_dagster.errors",
    "SpecError": "mlops_dagster.errors",
    "TransformError": "mlops_dagster.errors",
    "build_definitions": "mlops_dagster.factory.build",
    "ParquetIOManager": "mlops_dagster.io.parquet",
    "load_specs": "mlops_dagster.spec.loader",
    "FeatureGroupSpec": "mlops_dagster.spec.models",
    "PipelineSpec": "mlops_dagster.spec.models",
}

__all__ = [
    "Alert",
    "DataError",
    "FeatureGroupSpec",
    "IntegrityError",
    "MLPipelineComponent",
    "MlopsDagsterError",
    "Notifier",
    "ParquetIOManager",
    "PipelineSpec",
    "RegistryError",
    "SpecError",
    "TransformError",
    "build_definitions",
    "load_specs",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlops_dagster' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from mlops_dagster.alerts import Alert, Notifier
    from mlops_dagster.component import MLPipelineComponent
    from mlops_dagster.errors import (
        DataError,
        IntegrityError,
        MlopsDagsterError,
        RegistryError,
        SpecError,
        TransformError,
    )
    from mlops_dagster.factory.build import build_definitions
    from mlops_dagster.io.parquet import ParquetIOManager
    from mlops_dagster.spec.loader import load_specs
    from mlops_dagster.spec.models import FeatureGroupSpec, PipelineSpec
