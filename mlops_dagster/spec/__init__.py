"""Pipeline and feature-group specs: pydantic models, YAML loading and validation."""

from mlops_dagster.spec.loader import load_specs
from mlops_dagster.spec.models import (
    FeatureGroupSpec,
    ModelSpec,
    PipelineSpec,
)
from mlops_dagster.spec.resolve import resolve_object, validate_deep

__all__ = [
    "FeatureGroupSpec",
    "ModelSpec",
    "PipelineSpec",
    "load_specs",
    "resolve_object",
    "validate_deep",
]
