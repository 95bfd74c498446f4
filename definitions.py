"""The demo project: two pipelines (churn, demand) sharing a feature group, built from pipelines/*.yaml.

Loading this file imports no ML library: sklearn, BentoML, Great Expectations and Evidently load inside
runs only.
"""

from pathlib import Path

from mlops_dagster import build_definitions
from sensors import demo_definitions

PROJECT = Path(__file__).resolve().parent

defs = build_definitions(PROJECT / "pipelines", extra=[demo_definitions()])
