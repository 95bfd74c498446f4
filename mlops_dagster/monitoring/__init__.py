"""Drift monitoring: fast, Evidently-compatible drift decisions from a precomputed reference profile.

`build_profile` summarises a reference DataFrame once; `detect_drift` tests a current batch against it
(or against a DataFrame) with Evidently 0.7.23's `DataDriftPreset` choices of column kind, method,
threshold and dataset rule, in numpy, without importing Evidently. Evidently's HTML report lives in
`mlops_dagster.monitoring.report`, imported on its own.
"""

from mlops_dagster.monitoring.detect import ColumnDrift, DriftResult, detect_drift
from mlops_dagster.monitoring.profile import (
    ColumnProfile,
    DriftProfile,
    build_profile,
    load_profile,
    save_profile,
)
from mlops_dagster.monitoring.summaries import NumericSummary

__all__ = [
    "ColumnDrift",
    "ColumnProfile",
    "DriftProfile",
    "DriftResult",
    "NumericSummary",
    "build_profile",
    "detect_drift",
    "load_profile",
    "save_profile",
]
