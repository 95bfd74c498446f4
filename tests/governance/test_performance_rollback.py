"""The automatic rollback end to end, on real training: champion A, then B; B fails live; the performance
sensor's rollback run returns the champion to A (decision `rollback`, trigger `performance`, in the audit
log), the packaging sensor rebuilds the edge bundle for A, and the retrain it requested on the same data
gives B again, which the gates keep out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from mlops_dagster import Notifier, build_definitions
from mlops_dagster.audit import read_log, verify_log
from mlops_dagster.keys import (
    Tags,
    candidate_key,
    champion_key,
    dataset_key,
    edge_bundle_key,
    training_set_key,
)
from mlops_dagster.registry import records
from mlops_dagster.sensors.packaging import packaged_version
from tests.governance.test_performance_sensor import _live
from tests.quality.small_pipeline import good_frame

P = "shop"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SPEC = """
name: shop
dataset:
  source: {uri: "data/{partition}.parquet"}
  partitions: {daily: {start: "2026-01-01", end: "2026-03-01"}}
  entity: customer_id
  timestamp: event_time
  label: churned
feedback:
  source: {uri: "labels/{partition}.parquet"}
  entity: customer_id
  timestamp: event_time
  label: churned
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  params: {max_iter: 1000}
  metric: roc_auc
  features: [tenure_months, monthly_charges, plan]
gates:
  min: {roc_auc: 0.5}
  max_regression: 0.5
monitoring:
  performance: {metric: roc_auc, min: 0.7, window: 2, min_samples: 20, cooldown: 6h}
serving:
  targets: [edge, batch]
"""


def _materialize(defs: Any, instance: dg.DagsterInstance, keys: list[dg.AssetKey], **kwargs: Any) -> None:
    result = dg.materialize(
        list(defs.assets),
        selection=keys,
        instance=instance,
        resources=defs.resources,
        run_config=QUIET,
        **kwargs,
    )
    assert result.success


def _train(defs: Any, instance: dg.DagsterInstance, folder: Path, days: list[str]) -> str:
    for day in days:
        path = folder / "data" / f"{day}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        good_frame(day).to_parquet(path, index=False)
        _materialize(defs, instance, [dataset_key(P)], partition_key=day)
    _materialize(defs, instance, [training_set_key(P), candidate_key(P), champion_key(P)])
    champion = records.current_champion(instance, P)
    assert champion is not None
    return champion.version


def _tick(defs: Any, instance: dg.DagsterInstance, name: str, **resources: Any) -> Any:
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=resources or None)
    return defs.resolve_sensor_def(name)(context)


def test_rollback_on_live_performance_end_to_end(storage: Path, tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / f"{P}.yaml").write_text(SPEC)
    defs = build_definitions(folder)
    with dg.DagsterInstance.get() as instance:
        first = _train(defs, instance, folder, ["2026-01-01", "2026-01-02", "2026-01-03"])
        second = _train(defs, instance, folder, ["2026-01-04", "2026-01-05", "2026-01-06"])
        assert second != first
        _materialize(defs, instance, [edge_bundle_key(P)])
        assert packaged_version(instance, edge_bundle_key(P)) == second
        assert isinstance(_tick(defs, instance, f"{P}__packaging_sensor"), dg.SkipReason)

        # B does badly in service on two days with enough labels.
        for day in ("2026-01-07", "2026-01-08"):
            _live(instance, day, {second: (0.55, 120)})
        result = _tick(defs, instance, f"{P}__performance_sensor", mlops_notifier=Notifier(kind="log"))
        rollback, retrain = result.run_requests

        # The rollback run, as the daemon launches it.
        job = defs.resolve_job_def(rollback.job_name)
        ran = job.execute_in_process(instance=instance, run_config=rollback.run_config, tags=rollback.tags)
        assert ran.success
        champion = records.current_champion(instance, P)
        assert champion.version == first and champion.decision == "rollback" and champion.previous == second
        assert champion.trigger == "performance"
        assert instance.get_run_by_id(ran.run_id).tags[Tags.TRIGGER] == "performance"
        assert any("0.5500 (n=120)" in r and "min 0.7" in r for r in champion.reasons)
        entry = read_log(P)[-1]
        assert (entry["action"], entry["version"], entry["previous"]) == ("rollback", first, second)
        assert entry["trigger"] == "performance" and entry["run_id"] == ran.run_id
        assert verify_log(P, instance=instance) == []

        # The packaging follows the champion back to A.
        package = _tick(defs, instance, f"{P}__packaging_sensor")
        assert isinstance(package, dg.RunRequest) and package.run_key == f"package:{P}:{first}"
        assert list(package.asset_selection) == [edge_bundle_key(P)]
        _materialize(defs, instance, list(package.asset_selection), tags=dict(package.tags))
        assert packaged_version(instance, edge_bundle_key(P)) == first

        # The retrain on the same data gives B again (content-addressed): kept out, with the reason.
        retrained = defs.resolve_job_def(retrain.job_name).execute_in_process(
            instance=instance, run_config=QUIET, tags=retrain.tags
        )
        assert retrained.success
        assert records.latest_candidate(instance, P).version == second
        kept = records.decision_history(instance, P, limit=1)[0]
        assert kept.version == second and kept.decision == "keep"
        assert kept.reasons[0].startswith(f"FAIL {second} was rolled back for live performance on")
        assert records.current_champion(instance, P).version == first
        assert read_log(P)[-1]["action"] == "keep" and verify_log(P, instance=instance) == []
