"""`<p>__quality_sensor`: alerts once per failing partition, and retrains once it passes again.

The sensor reads check evaluations newer than its cursor (one indexed query per check key, newest
first, stopping at the cursor), so a tick costs the same however long the history is. Its cursor keeps
the partitions that are failing right now: an alert goes out when a partition starts failing (not on
every tick), and when a failing partition passes again, the retrain its bad batch held back is
requested with a `run_key`, so it fires once.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from mlops_dagster.alerts import Alert, Notifier
from mlops_dagster.factory.keys import Tags, dataset_key, quality_sensor_name
from mlops_dagster.io.quarantine import UNPARTITIONED
from mlops_dagster.spec.models import PipelineSpec

NOTIFIER_KEY = "mlops_notifier"
HISTORY_PAGE = 200


@dataclass
class QualityCursor:
    last_id: int = 0
    failing: dict[str, dict[str, Any]] = field(default_factory=dict)  # partition -> {run_id, checks}

    @classmethod
    def parse(cls, raw: str | None) -> "QualityCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(last_id=int(data.get("last_id", 0)), failing=dict(data.get("failing", {})))

    def dump(self) -> str:
        return json.dumps({"last_id": self.last_id, "failing": self.failing}, sort_keys=True)


@dataclass(frozen=True)
class Evaluation:
    id: int
    run_id: str
    check: str
    asset: str
    partition: str
    passed: bool
    description: str | None


def new_evaluations(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey], after_id: int
) -> list[Evaluation]:
    """Completed check evaluations with a storage id above `after_id`, oldest first."""
    storage = instance.event_log_storage
    found: list[Evaluation] = []
    for key in check_keys:
        cursor = None
        while True:
            page = storage.get_asset_check_execution_history(key, limit=HISTORY_PAGE, cursor=cursor)
            fresh = [r for r in page if r.id > after_id]
            for record in fresh:
                data = (
                    record.event.dagster_event.event_specific_data
                    if record.event and record.event.dagster_event
                    else None
                )
                if isinstance(data, dg.AssetCheckEvaluation):
                    found.append(
                        Evaluation(
                            record.id,
                            record.run_id,
                            key.name,
                            key.asset_key.to_user_string(),
                            data.partition or record.partition or UNPARTITIONED,
                            data.passed,
                            data.description,
                        )
                    )
            if len(page) < HISTORY_PAGE or len(fresh) < len(page):
                break
            cursor = page[-1].id
    return sorted(found, key=lambda e: e.id)


def _latest_runs(evaluations: list[Evaluation]) -> dict[tuple[str, str], list[Evaluation]]:
    """The evaluations of the newest run per (asset, partition)."""
    latest: dict[tuple[str, str], str] = {}
    for e in evaluations:
        latest[(e.asset, e.partition)] = e.run_id
    grouped: dict[tuple[str, str], list[Evaluation]] = {}
    for e in evaluations:
        if latest[(e.asset, e.partition)] == e.run_id:
            grouped.setdefault((e.asset, e.partition), []).append(e)
    return grouped


def failure_alert(spec: PipelineSpec, asset: str, partition: str, failed: list[Evaluation]) -> Alert:
    names = ", ".join(e.check for e in failed)
    return Alert(
        title=f"{asset} {partition}: {len(failed)} blocking quality check(s) failed",
        text="\n".join(f"- {e.check}: {e.description or 'failed'}" for e in failed)
        + "\nThe batch is quarantined; nothing trains on it.",
        severity="error",
        pipeline=spec.name,
        asset_key=asset,
        partition=partition,
        details={"failed_checks": [e.check for e in failed], "run_id": failed[0].run_id},
        dedupe_key=f"{spec.name}:{asset}:{partition}:quality:{names}",
    )


def build_quality_sensor(
    spec: PipelineSpec, check_keys: Sequence[dg.AssetCheckKey], retrain_job: Any
) -> dg.SensorDefinition:
    status = (
        dg.DefaultSensorStatus.RUNNING if spec.monitoring.quality_sensor else dg.DefaultSensorStatus.STOPPED
    )

    @dg.sensor(
        name=quality_sensor_name(spec.name),
        job=retrain_job,
        minimum_interval_seconds=30,
        default_status=status,
        description=(
            f"Alerts once per `{spec.name}` partition whose blocking quality checks fail, and "
            "requests a retrain once a failed partition passes again."
        ),
    )
    def _quality_sensor(  # the parameter name is the resource key (NOTIFIER_KEY)
        context: dg.SensorEvaluationContext, mlops_notifier: Notifier
    ) -> dg.SensorResult | dg.SkipReason:
        notifier = mlops_notifier
        cursor = QualityCursor.parse(context.cursor)
        evaluations = new_evaluations(context.instance, check_keys, cursor.last_id)
        if not evaluations:
            return dg.SkipReason("no new quality check evaluations")
        requests, alerts = [], 0
        for (asset, partition), evals in _latest_runs(evaluations).items():
            failed = [e for e in evals if not e.passed]
            slot = f"{asset}|{partition}"
            if failed:
                if slot not in cursor.failing:  # alert once per failing partition
                    notifier.send(failure_alert(spec, asset, partition, failed), log=context.log)
                    alerts += 1
                cursor.failing[slot] = {"run_id": failed[0].run_id, "checks": [e.check for e in failed]}
            elif slot in cursor.failing:
                cursor.failing.pop(slot)
                requests.append(
                    dg.RunRequest(
                        run_key=f"quality-recovered:{asset}:{partition}:{evals[0].run_id}",
                        tags={
                            Tags.TRIGGER: "quality_recovered",
                            Tags.PIPELINE: spec.name,
                            "mlops/recovered_partition": partition,
                        },
                    )
                )
        cursor.last_id = evaluations[-1].id
        context.log.info(
            f"{len(evaluations)} evaluation(s); {alerts} alert(s); {len(requests)} retrain(s); "
            f"failing now: {sorted(cursor.failing) or 'none'}"
        )
        return dg.SensorResult(run_requests=requests, cursor=cursor.dump())

    return _quality_sensor


def dataset_check_keys(spec: PipelineSpec, check_names: Sequence[str]) -> list[dg.AssetCheckKey]:
    return [dg.AssetCheckKey(dataset_key(spec.name), name) for name in check_names]
