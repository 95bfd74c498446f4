"""A small churn-like pipeline on a uri (or python) source, for the built-in check tests: good daily
batches, a module-wide DAGSTER_HOME, and helpers to land, materialize and retrain."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from mlops_dagster import ParquetIOManager, build_definitions
from mlops_dagster.io.quarantine import Quarantine
from mlops_dagster.keys import candidate_key, champion_key, dataset_key, training_set_key
from mlops_dagster.registry import records

GOOD_DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
ROWS = 60
SPEC = """
name: {name}
dataset:
  source: {source}
  partitions: {{daily: {{start: "2026-01-01", end: "2026-03-01"}}}}
  entity: customer_id
  timestamp: event_time
  label: churned
quality:
{quality}
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  params: {{max_iter: 1000}}
  metric: roc_auc
{features}
gates:
  min: {{roc_auc: 0.55}}
  max_regression: 0.2
"""


def good_frame(day: str, n: int = ROWS) -> pd.DataFrame:
    """A good batch for one day: unique customers, timestamps inside the day, a learnable label."""
    d = date.fromisoformat(day)
    rng = np.random.default_rng(d.toordinal())
    tenure = rng.integers(0, 120, n)
    charges = rng.uniform(10, 150, n).round(2)
    plan = rng.choice(["basic", "standard", "premium"], n)
    risk = -0.04 * tenure + 0.02 * charges + (plan == "basic") * 0.8 + rng.normal(scale=0.7, size=n)
    return pd.DataFrame(
        {
            "customer_id": d.toordinal() * 1000 + np.arange(n),
            "event_time": pd.Timestamp(d) + pd.to_timedelta(np.arange(n) * (1440 // n), unit="min"),
            "tenure_months": tenure,
            "monthly_charges": charges,
            "plan": plan,
            "churned": (risk > np.median(risk)).astype(int),
        }
    )


FEATURES = "  features: [tenure_months, monthly_charges, plan]"


def spec_text(name: str, source: str, quality: str = "  expectations: []", features: str = FEATURES) -> str:
    return SPEC.format(name=name, source=source, quality=quality, features=features)


@dataclass
class Env:
    root: Path
    defs: dg.Definitions
    instance: dg.DagsterInstance
    quarantine: Quarantine = field(init=False)

    def __post_init__(self) -> None:
        self.quarantine = Quarantine(ParquetIOManager().root())

    def land(self, pipeline: str, day: str, batch: pd.DataFrame | bytes) -> Path:
        path = self.root / pipeline / f"{day}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(batch, bytes):
            path.write_bytes(batch)
        else:
            batch.to_parquet(path, index=False)
        return path

    def load(self, pipeline: str, day: str) -> dg.ExecuteInProcessResult:
        return self.materialize([dataset_key(pipeline)], day)

    def materialize(self, keys: list[dg.AssetKey], partition: str | None = None) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            list(self.defs.assets),
            selection=keys,
            instance=self.instance,
            resources=self.defs.resources,
            partition_key=partition,
            raise_on_error=False,
        )

    def train(self, pipeline: str) -> dg.ExecuteInProcessResult:
        """training set -> candidate -> champion (no packaging)."""
        keys = [training_set_key(pipeline), candidate_key(pipeline), champion_key(pipeline)]
        return self.materialize(keys)

    def champion(self, pipeline: str) -> str | None:
        current = records.current_champion(self.instance, pipeline)
        return current.version if current else None

    def materialized(self, pipeline: str) -> set[str]:
        return set(self.instance.get_materialized_partitions(dataset_key(pipeline)))


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The check evaluations of a run, by check name."""
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


@contextmanager
def module_env(base: Path, specs: dict[str, str]) -> Iterator[Env]:
    """A DAGSTER_HOME of its own (restored afterwards), the spec files, definitions and an instance."""
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        root = base / "project"
        root.mkdir()
        for name, text in specs.items():
            (root / f"{name}.yaml").write_text(text)
        with dg.DagsterInstance.ephemeral() as instance:
            yield Env(root, build_definitions(root), instance)
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved
