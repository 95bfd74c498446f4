"""Drift monitoring: fast, Evidently-compatible drift decisions from a precomputed reference profile.

`build_profile` summarises a reference DataFrame once; `detect_drift` tests a current batch against it
(or against a DataFrame) with Evidently 0.7.23's `DataDriftPreset` choices of column kind, method,
threshold and dataset rule, in numpy, without importing Evidently. `decide_drift` applies a pipeline's
`monitoring.drift` settings and its dataset rule (`decision`): the one decision the drift sensor and the
drift report share. Evidently's HTML report lives in
`mlops_dagster.monitoring.report`, imported on its own.
"""

from mlops_dagster.monitoring.decision import DriftDecision, DriftSettings, DriftSettingsError, decide_drift
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
    "DriftDecision",
    "DriftProfile",
    "DriftResult",
    "DriftSettings",
    "DriftSettingsError",
    "NumericSummary",
    "build_profile",
    "decide_drift",
    "detect_drift",
    "load_profile",
    "save_profile",
]
