"""The reference a version carries for drift: a profile for fast decisions, a sample for reports.

Both are computed once, from the training data, when the candidate is trained, and stored with the
version (sha256 in its card): drift checks then read only the new data, never the training set again.
"""

from __future__ import annotations

import io

import pandas as pd

PROFILE_FILE = "drift_profile.json"
SAMPLE_FILE = "reference_sample.parquet"
SAMPLE_ROWS = 5_000


def reference_files(training_rows: pd.DataFrame, columns: list[str]) -> dict[str, bytes]:
    """The drift profile (JSON) and a seeded sample (Parquet) of the training rows' drift columns."""
    from mlops_dagster.monitoring import build_profile

    frame = training_rows[columns]
    profile = build_profile(frame, columns=columns)
    sample = frame.sample(n=min(SAMPLE_ROWS, len(frame)), random_state=0) if len(frame) else frame
    buf = io.BytesIO()
    sample.reset_index(drop=True).to_parquet(buf, index=False)
    return {PROFILE_FILE: profile.to_json().encode(), SAMPLE_FILE: buf.getvalue()}


def load_reference_profile(pipeline: str, version: str):  # type: ignore[no-untyped-def]
    """The drift profile of a version, checked against the sha256 in its card."""
    from mlops_dagster.monitoring import DriftProfile
    from mlops_dagster.registry.store import read_file

    return DriftProfile.from_json(read_file(pipeline, version, PROFILE_FILE).decode())


def load_reference_sample(pipeline: str, version: str) -> pd.DataFrame:
    from mlops_dagster.registry.store import read_file

    return pd.read_parquet(io.BytesIO(read_file(pipeline, version, SAMPLE_FILE)))
