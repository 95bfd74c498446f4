"""`<p>__performance_sensor` on a real instance: it reads `<p>/live_performance` and champion records (as
runs record them; reported here as runless events) and decides when to roll back, alert and retrain."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.alerts import Alert
from mlops_dagster.keys import Meta, Tags, champion_key, live_performance_key
from mlops_dagster.sensors import performance as performance_sensor

P = "shop"
SENSOR = f"{P}__performance_sensor"
A, B, C = "a" * 64, "b" * 64, "c" * 64
DAYS = [f"2026-02-{d:02d}" for d in range(1, 11)]
SPEC = """
name: shop
dataset:
  source: {{uri: "data/{{partition}}.parquet"}}
  partitions: {{daily: {{start: "2026-01-01", end: "2026-03-01"}}}}
  entity: customer_id
  timestamp: event_time
  label: churned
{feedback}
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  metric: roc_auc
  features: [tenure_months, monthly_charges]
monitoring:
{performance}
serving:
  targets: {targets}
"""
FEEDBACK = """feedback:
  source: {uri: "labels/{partition}.parquet"}
  entity: customer_id
  timestamp: event_time
  label: churned"""
PERFORMANCE = (
    "  performance: {metric: roc_auc, min: 0.7, max_drop: 0.2, window: 2, min_samples: 20, cooldown: 6h}"
)


class Recorder:
    """Stands in for the `Notifier` resource: keeps the alerts."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert, log: Any = None, *, deadline: float | None = None) -> bool:
        self.alerts.append(alert)
        return True


def _defs(
    tmp_path: Path, feedback: str = FEEDBACK, performance: str = PERFORMANCE, targets: str = "[batch]"
) -> Any:
    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    text = SPEC.format(feedback=feedback, performance=performance or "  drift: {}", targets=targets)
    (folder / f"{P}.yaml").write_text(text)
    return build_definitions(folder)


def _champion(
    instance: dg.DagsterInstance,
    version: str,
    decision: str = "promote",
    previous: str | None = None,
    trigger: str = "retrain",
    holdout: float = 0.85,
) -> None:
    """A champion decision as the champion asset records it."""
    metadata = {
        Meta.VERSION: version,
        Meta.SHA256: version,
        Meta.DECISION: decision,
        Meta.REASONS: dg.MetadataValue.json([f"{decision} {version[:8]}"]),
        Meta.PREVIOUS: previous or "",
        Meta.TRIGGER: trigger,
        Meta.METRICS: dg.MetadataValue.json({"roc_auc": holdout}),
    }
    instance.report_runless_asset_event(dg.AssetMaterialization(champion_key(P), metadata=metadata))


def _live(instance: dg.DagsterInstance, day: str, served: dict[str, tuple[float, int]]) -> None:
    """One `<p>/live_performance` materialization: the metric per version that served in `day`."""
    samples = sum(n for _, n in served.values())
    overall = sum(m * n for m, n in served.values()) / samples
    table = dg.MetadataValue.table(
        records=[dg.TableRecord({"version": v, "metric": m, "samples": n}) for v, (m, n) in served.items()],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("version"),
                dg.TableColumn("metric", "float"),
                dg.TableColumn("samples", "int"),
            ]
        ),
    )
    metadata = {
        Meta.METRIC_NAME: "roc_auc",
        Meta.LIVE_METRIC: overall,
        Meta.HOLDOUT_METRIC: 0.85,
        Meta.SAMPLES: samples,
        Meta.LABEL_COVERAGE: 1.0,
        Meta.EVIDENCE: samples >= 20,
        Meta.MODEL_VERSIONS: dg.MetadataValue.json(sorted(served)),
        Meta.LIVE_BY_VERSION: table,
    }
    event = dg.AssetMaterialization(live_performance_key(P), partition=day, metadata=metadata)
    instance.report_runless_asset_event(event)


def _tick(defs: Any, instance: dg.DagsterInstance, cursor: str | None, notifier: Recorder) -> Any:
    sensor = defs.resolve_sensor_def(SENSOR)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"mlops_notifier": notifier}
    )
    return sensor(context)


def _skip(result: Any) -> str:
    """The skip message of a tick that requested nothing."""
    if isinstance(result, dg.SkipReason):
        return result.skip_message or ""
    assert not result.run_requests, result.run_requests
    return result.skip_reason.skip_message if result.skip_reason else ""


def test_defined_only_with_performance_feedback_and_batch(storage: Path, tmp_path: Path) -> None:
    defs = _defs(tmp_path)
    sensor = defs.resolve_sensor_def(SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {j.name for j in sensor.jobs} == {f"{P}__retrain", f"{P}__performance_rollback"}
    rollback = defs.resolve_job_def(f"{P}__performance_rollback")
    assert set(rollback.asset_layer.selected_asset_keys) == {champion_key(P)}
    for feedback, performance in (("", PERFORMANCE), (FEEDBACK, "")):
        other = _defs(tmp_path, feedback=feedback, performance=performance)
        assert SENSOR not in {s.name for s in other.sensors}
        assert f"{P}__performance_rollback" not in {j.name for j in other.jobs}
    assert SENSOR not in {s.name for s in _defs(tmp_path, feedback="", targets="[]").sensors}


def test_breach_requests_rollback_and_retrain_once(storage: Path, tmp_path: Path) -> None:
    defs, instance, notifier = _defs(tmp_path), dg.DagsterInstance.ephemeral(), Recorder()
    _champion(instance, A)
    _champion(instance, B, previous=A)
    assert _skip(_tick(defs, instance, None, notifier)) == f"no new {P}/live_performance records"
    _live(instance, DAYS[0], {A: (0.9, 200), B: (0.85, 40)})
    _live(
        instance, DAYS[1], {A: (0.9, 100), B: (0.6, 60)}
    )  # B breaches here, though the partition looks fine
    first = _tick(defs, instance, None, notifier)
    assert "within thresholds" in _skip(first) and not notifier.alerts
    _live(instance, DAYS[2], {B: (0.5, 10)})  # too few labels: no evidence
    _live(instance, DAYS[3], {B: (0.64, 80)})
    fired = _tick(defs, instance, first.cursor, notifier)

    rollback, retrain = fired.run_requests
    assert rollback.job_name == f"{P}__performance_rollback" and retrain.job_name == f"{P}__retrain"
    assert rollback.run_key == f"performance-rollback:{P}:{B}:{DAYS[3]}"
    assert retrain.run_key == f"performance-retrain:{P}:{B}:{DAYS[3]}"
    for request in (rollback, retrain):
        assert request.tags[Tags.TRIGGER] == "performance" and request.tags[Tags.PIPELINE] == P
        assert request.tags[Tags.ROLLED_BACK_FROM] == B
        assert request.tags[Tags.BREACHED_PARTITIONS] == f"{DAYS[1]},{DAYS[3]}"
    config = rollback.run_config["ops"][f"{P}__champion"]["config"]
    assert config["action"] == "rollback" and config["version"] == B
    for text in (
        "0.6000 (n=60)",
        "0.6400 (n=80)",
        "min 0.7",
        "holdout 0.8500 - max_drop 0.2",
        DAYS[1],
        DAYS[3],
    ):
        assert text in config["reason"]
    assert "1 partition(s) without evidence" in config["reason"]
    (alert,) = notifier.alerts
    assert alert.severity == "error" and alert.details["rollback_to"] == A and alert.partition == DAYS[3]

    # A retried tick (same cursor) makes the same run keys, which Dagster runs once, and the same
    # alert, with the same dedupe key for receivers to fold; later ticks skip.
    again = _tick(defs, instance, first.cursor, notifier)
    assert [r.run_key for r in again.run_requests] == [rollback.run_key, retrain.run_key]
    assert [a.dedupe_key for a in notifier.alerts] == [alert.dedupe_key] * 2
    assert isinstance(_tick(defs, instance, fired.cursor, notifier), dg.SkipReason)
    # A record re-materialized for a partition already judged: the same event, not acted on twice.
    _live(instance, DAYS[3], {B: (0.64, 80)})
    assert "already acted on" in _skip(_tick(defs, instance, fired.cursor, notifier))
    # A further breach before the rollback ran: within the cooldown, held.
    _live(instance, DAYS[4], {B: (0.6, 80)})
    held = _tick(defs, instance, fired.cursor, notifier)
    assert "cooldown" in _skip(held) and json.loads(held.cursor)["held"] == f"{B}:{DAYS[4]}"
    assert len(notifier.alerts) == 2


def test_cooldown_holds_then_acts_and_no_earlier_version_alerts_only(
    storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = {"now": time.time()}  # the registry records real times
    monkeypatch.setattr(performance_sensor, "_now", lambda: clock["now"])
    defs, instance, notifier = _defs(tmp_path), dg.DagsterInstance.ephemeral(), Recorder()
    _champion(instance, A)
    _champion(instance, B, previous=A)
    for day in DAYS[:2]:
        _live(instance, day, {B: (0.5, 50)})
    fired = _tick(defs, instance, None, notifier)
    assert len(fired.run_requests) == 2
    # The rollback ran: A is champion again, recorded with the trigger. A fails too, 1 hour later.
    _champion(instance, A, decision="rollback", previous=B, trigger="performance")
    for day in DAYS[2:4]:
        _live(instance, day, {A: (0.55, 50)})
    clock["now"] += 3600
    held = _tick(defs, instance, fired.cursor, notifier)
    assert "cooldown" in _skip(held) and json.loads(held.cursor)["held"] == f"{A}:{DAYS[3]}"
    # With its cursor lost, the sensor still finds the last automatic rollback in the registry.
    assert "cooldown" in _skip(_tick(defs, instance, None, notifier))
    assert "held by" in _skip(_tick(defs, instance, held.cursor, notifier))  # nothing new: still held

    # After the cooldown the held breach is acted on, with no new record: there is no earlier version
    # than A that was not rolled back for performance (B), so it alerts and requests nothing.
    clock["now"] += 6 * 3600
    alone = _tick(defs, instance, held.cursor, notifier)
    assert "no earlier version" in _skip(alone)
    last = notifier.alerts[-1]
    assert (
        len(notifier.alerts) == 2
        and last.details["rollback_to"] is None
        and "a person must decide" in last.text
    )
    assert isinstance(_tick(defs, instance, alone.cursor, notifier), dg.SkipReason)  # alerted once
    assert len(notifier.alerts) == 2


def test_never_rolls_back_to_a_version_rolled_back_for_performance(
    storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = time.time() + 7 * 3600  # past the cooldown of the automatic rollback recorded below
    monkeypatch.setattr(performance_sensor, "_now", lambda: later)
    defs, instance, notifier = _defs(tmp_path), dg.DagsterInstance.ephemeral(), Recorder()
    _champion(instance, A)
    _champion(instance, B, previous=A)
    _champion(instance, A, decision="rollback", previous=B, trigger="performance")
    _champion(instance, B, previous=A, trigger="manual")  # a person brought it back by hand
    _champion(instance, C, previous=B)
    for day in DAYS[:2]:
        _live(instance, day, {C: (0.4, 30)})
    result = _tick(defs, instance, None, notifier)
    assert [r.tags[Tags.ROLLED_BACK_FROM] for r in result.run_requests] == [C, C]
    assert notifier.alerts[0].details["rollback_to"] == A  # not B, the version before C


def test_a_bad_state_never_fails_the_tick(storage: Path, tmp_path: Path) -> None:
    defs, instance, notifier = _defs(tmp_path), dg.DagsterInstance.ephemeral(), Recorder()
    assert "no new" in _skip(_tick(defs, instance, "{not json", notifier))  # an unreadable cursor: afresh
    _live(instance, DAYS[0], {C: (0.5, 50)})
    assert "no champion yet" in _skip(_tick(defs, instance, "{not json", notifier))
    _champion(instance, A)
    garbage = {
        Meta.LIVE_BY_VERSION: dg.MetadataValue.json([{"version": A, "metric": "n/a"}]),
        Meta.SAMPLES: "x",
    }
    instance.report_runless_asset_event(
        dg.AssetMaterialization(live_performance_key(P), partition=DAYS[1], metadata=garbage)
    )
    _live(instance, DAYS[2], {A: (0.5, 50)})
    result = _tick(defs, instance, None, notifier)  # a malformed record is no evidence, not a failure
    assert "1 of 2 partition(s) with evidence" in _skip(result) and not notifier.alerts
    assert json.loads(result.cursor)["last_storage_id"] > 0
