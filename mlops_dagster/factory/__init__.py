"""Factory: pure functions from specs to Dagster definitions."""

from mlops_dagster.factory.build import build_definitions, pipeline_assets, retrain_job

__all__ = ["build_definitions", "pipeline_assets", "retrain_job"]
