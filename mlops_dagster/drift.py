"""Public drift API (CONTRACT.md section 3): `from mlops_dagster.drift import detect_drift`.

`detect_drift(reference, current)` takes the reference as a DataFrame or as a `DriftProfile` built once
with `build_profile` (and stored with `save_profile` / `load_profile`, which checks its sha256). It
mirrors the decisions of Evidently 0.7.23's `DataDriftPreset` in numpy and scipy; importing this module
does not import Evidently.

`decide_drift(reference, current, DriftSettings(...))` is the pipeline's decision on top of it (more
than `max_drifted_share` of the columns drifted, with per-column methods and thresholds): the drift
sensor retrains on it and the `<p>/drift_report` asset records it.
"""

from mlops_dagster.monitoring import (
    ColumnDrift,
    DriftDecision,
    DriftProfile,
    DriftResult,
    DriftSettings,
    DriftSettingsError,
    build_profile,
    decide_drift,
    detect_drift,
    load_profile,
    save_profile,
)

__all__ = [
    "ColumnDrift",
    "DriftDecision",
    "DriftProfile",
    "DriftResult",
    "DriftSettings",
    "DriftSettingsError",
    "build_profile",
    "decide_drift",
    "detect_drift",
    "load_profile",
    "save_profile",
]
