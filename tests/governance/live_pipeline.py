"""Small pipelines serving `batch` predictions, with late labels (`feedback:`), for the governance tests.

Built on the quality tests' churn-like batches (`tests.quality.small_pipeline`): daily dataset files,
feedback files (CSV, other column names than the dataset's), a champion trained on the first days.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from mlops_dagster import ParquetIOManager
from mlops_dagster.keys import (
    candidate_key,
    champion_key,
    feature_key,
    feedback_key,
    predictions_key,
    training_set_key,
)
from tests.quality.small_pipeline import GOOD_DAYS, Env, good_frame
from tests.run_output import failure_text

SPEC = """
name: {name}
dataset:
  source: {{uri: "{name}/{{partition}}.parquet"}}
  partitions: {{daily: {{start: "2026-01-01", end: "2026-03-01"}}}}
  entity: {entity}
  timestamp: event_time
  label: churned
  pii: {pii}
features: {groups}
{feedback}
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  params: {{max_iter: 1000}}
  metric: roc_auc
  features: [tenure_months, monthly_charges, plan]
gates:
  min: {{roc_auc: 0.55}}
  max_regression: 0.2
monitoring:
  performance: {{metric: {metric}, min: 0.6, min_samples: {min_samples}}}
serving:
  targets: [batch]
"""

FEEDBACK = """feedback:
  source: {{uri: "{name}_labels/{{partition}}.csv"}}
  entity: cust
  timestamp: ts
  label: outcome
  expectations: {expectations}
"""

# A feature group computed from the dataset, joined as of each row's event time (as for training).
GROUPS = """
feature_groups:
  - name: {name}_ratio
    inputs: [{name}]
    transform: governance_transforms:charges_ratio
    entity: customer_id
    timestamp: event_time
    consumers: [{name}]
    columns: [charges_per_month_of_tenure]
"""

TRANSFORMS = """
import pandas as pd


def charges_ratio(df: pd.DataFrame) -> pd.DataFrame:
    out = df[["customer_id", "event_time"]].copy()
    out["charges_per_month_of_tenure"] = df["monthly_charges"] / (df["tenure_months"] + 1)
    return out
"""


def spec_text(
    name: str,
    *,
    feedback: bool = True,
    expectations: str = "[]",
    entity: str = "customer_id",
    pii: str = "[]",
    groups: bool = False,
    metric: str = "roc_auc",
    min_samples: int = 30,
) -> str:
    return SPEC.format(
        name=name,
        entity=entity,
        pii=pii,
        groups=f"[{name}_ratio]" if groups else "[]",
        feedback=FEEDBACK.format(name=name, expectations=expectations) if feedback else "",
        metric=metric,
        min_samples=min_samples,
    )


def groups_text(name: str) -> str:
    return GROUPS.format(name=name)


def with_email(batch: pd.DataFrame) -> pd.DataFrame:
    """The batch keyed by a raw e-mail address (pii) instead of the numeric customer id."""
    emails = batch["customer_id"].map(lambda i: f"customer{i}@example.com")
    return batch.drop(columns="customer_id").assign(email=emails)


def labels_for(batch: pd.DataFrame, entity: str = "customer_id", share: float = 1.0) -> pd.DataFrame:
    """The feedback of a dataset batch: its true labels for the first `share` of rows, renamed."""
    rows = batch.head(int(round(len(batch) * share)))
    return rows[[entity, "event_time", "churned"]].rename(
        columns={entity: "cust", "event_time": "ts", "churned": "outcome"}
    )


@dataclass
class Live:
    """An `Env` (tests.quality.small_pipeline) with the live-performance steps."""

    env: Env

    @property
    def defs(self) -> dg.Definitions:
        return self.env.defs

    @property
    def instance(self) -> dg.DagsterInstance:
        return self.env.instance

    def run(self, keys: list[dg.AssetKey], partition: str | None = None) -> dg.ExecuteInProcessResult:
        return self.env.materialize(keys, partition)

    def land(self, name: str, day: str, batch: pd.DataFrame) -> None:
        self.env.land(name, day, batch)
        result = self.env.load(name, day)
        assert result.success, failure_text(result)

    def land_labels(self, name: str, day: str, labels: pd.DataFrame | bytes) -> Path:
        path = self.env.root / f"{name}_labels" / f"{day}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(labels, bytes):
            path.write_bytes(labels)
        else:
            labels.to_csv(path, index=False)
        return path

    def train(self, name: str, groups: bool = False) -> None:
        """Features (if any) -> training set -> candidate -> champion."""
        keys = [feature_key(f"{name}_ratio")] if groups else []
        keys += [training_set_key(name), candidate_key(name), champion_key(name)]
        result = self.run(keys)
        assert result.success, failure_text(result)
        assert self.env.champion(name) is not None

    def first_days(self, name: str, frame=good_frame, groups: bool = False) -> None:  # type: ignore[no-untyped-def]
        """The good days landed, and a champion trained on them."""
        for day in GOOD_DAYS:
            self.land(name, day, frame(day))
        self.train(name, groups)

    def stored(self, key: dg.AssetKey, partition: str) -> pd.DataFrame:
        return pd.read_parquet(ParquetIOManager().path_for(key, partition))

    def predictions(self, name: str, day: str) -> pd.DataFrame:
        return self.stored(predictions_key(name), day)

    def feedback(self, name: str, day: str) -> pd.DataFrame:
        return self.stored(feedback_key(name), day)

    def latest(self, key: dg.AssetKey, partition: str) -> dict[str, object]:
        """The metadata values of the latest materialization of a partition."""
        events = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        assert events, f"{key.to_user_string()} {partition} was never materialized"
        mat = events[0].asset_materialization
        assert mat is not None
        return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
