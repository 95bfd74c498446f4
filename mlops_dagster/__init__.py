"""mlops_dagster: declare a model once, get the governed MLOps loop as a Dagster asset graph."""

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
