"""Pipeline and feature-group specs: pydantic models, YAML loading and validation.

One path for every spec: `read_spec_files` reads YAML into specs that know their file:line,
`resolve_specs` links pipelines to their feature groups and runs every check that needs no heavy
import, `load_specs` is the two together, and `validate_deep` adds the checks that import sklearn
and Great Expectations (`mlops-dagster validate`).
"""

from mlops_dagster.spec.checks import resolve_specs
from mlops_dagster.spec.environments import EnvironmentSpec, check_environments
from mlops_dagster.spec.loader import SpecFiles, load_specs, read_spec_files
from mlops_dagster.spec.models import (
    FeatureGroupSpec,
    ModelSpec,
    PipelineSpec,
)
from mlops_dagster.spec.resolve import resolve_object, validate_deep
from mlops_dagster.spec.source_map import SourceMap

__all__ = [
    "EnvironmentSpec",
    "FeatureGroupSpec",
    "ModelSpec",
    "PipelineSpec",
    "SourceMap",
    "SpecFiles",
    "check_environments",
    "load_specs",
    "read_spec_files",
    "resolve_object",
    "resolve_specs",
    "validate_deep",
]
