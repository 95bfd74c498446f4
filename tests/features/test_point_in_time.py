"""Point-in-time correctness: no feature value from a row's future may reach the training set."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_dagster.features.pit import point_in_time_join

PROJECT = Path(__file__).parents[1] / "projects" / "planted_future"


def test_join_takes_latest_value_at_or_before_each_row():
    rows = pd.DataFrame(
        {"user": [1, 1, 2], "ts": pd.to_datetime(["2026-01-02", "2026-01-05", "2026-01-03"]), "y": [0, 1, 0]}
    )
    feats = pd.DataFrame(
        {
            "user": [1, 1, 1, 2],
            "ts": pd.to_datetime(["2026-01-01", "2026-01-04", "2026-01-06", "2026-01-04"]),
            "f": [10.0, 40.0, 60.0, 99.0],
        }
    )
    out = point_in_time_join(rows, "user", "ts", [("g", feats, "user", "ts", ["f"])])
    by = {(u, t.day): f for u, t, f in zip(out["user"], out["ts"], out["f"], strict=True)}
    assert by[(1, 2)] == 10.0  # 01-04 and 01-06 are in its future
    assert by[(1, 5)] == 40.0  # not the 01-06 value
    assert np.isnan(by[(2, 3)])  # the only value for user 2 is from the future: nothing, not a leak


def test_exact_timestamp_matches_are_allowed():
    rows = pd.DataFrame({"user": [1], "ts": pd.to_datetime(["2026-01-02"])})
    feats = pd.DataFrame({"user": [1], "ts": pd.to_datetime(["2026-01-02"]), "f": [7.0]})
    assert point_in_time_join(rows, "user", "ts", [("g", feats, "user", "ts", ["f"])])["f"].iloc[0] == 7.0


SPEC = """
name: planted
dataset:
  source: {{uri: data.parquet}}
  entity: user
  timestamp: ts
  label: y
features: [leaky]
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  metric: roc_auc
  features: [score]
"""

GROUPS = """
feature_groups:
  - name: leaky
    inputs: [planted]
    transform: {transform}
    entity: user
    timestamp: ts
    consumers: [planted]
"""


def _project(tmp_path: Path, transform: str = "transforms:with_future_rows") -> Path:
    tmp_path = tmp_path / "project"
    tmp_path.mkdir()
    rng = np.random.default_rng(0)
    n = 400
    ts = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.permutation(30 * 24 * 60)[:n], unit="min")
    score = rng.normal(size=n)
    pd.DataFrame(
        {
            "user": rng.integers(0, 40, n),
            "ts": ts,
            "score": score,
            "y": (score + rng.normal(scale=0.5, size=n) > 0).astype(int),
        }
    ).to_parquet(tmp_path / "data.parquet")
    (tmp_path / "planted.yaml").write_text(SPEC.format())
    (tmp_path / "groups.yaml").write_text(GROUPS.format(transform=transform))
    return tmp_path


@pytest.fixture
def planted_path(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(PROJECT))
    yield
    sys.modules.pop("transforms", None)


def _violations(training: pd.DataFrame) -> int:
    row_epoch = (training["ts"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    return int((training["known_at"] > row_epoch).sum())


def test_planted_future_values_never_reach_the_training_set(tmp_path, storage, helpers, planted_path):  # type: ignore[no-untyped-def]
    from mlops_dagster import build_definitions

    defs = build_definitions(_project(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    keys = [
        dg.AssetKey(["planted", "dataset"]),
        dg.AssetKey(["features", "leaky"]),
        dg.AssetKey(["planted", "training_set"]),
    ]
    result = helpers.keys(defs, instance, keys)
    assert result.success
    training = result.output_for_node("planted__training_set")
    features = result.output_for_node("features__leaky")
    assert len(training) == 400
    assert _violations(training) == 0  # no row sees a value that became known after its own time
    assert not (training["score_feature"] == -9_999.0).any()  # values planted after the data: never
    # Each row has an honest feature row at its exact time, which is the latest one known then.
    assert np.allclose(training["score_feature"], training["score"])

    # The check above can fail: a join that looks forward in time leaks future values.
    naive = pd.merge_asof(
        training[["user", "ts"]].sort_values("ts"),
        features.sort_values("ts")[["user", "ts", "known_at"]],
        on="ts",
        by="user",
        direction="forward",
        allow_exact_matches=False,
    )
    assert _violations(naive) > 0
