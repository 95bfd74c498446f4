"""`<p>__drift_sensor`: new, quality-passed partitions against the champion's profile -> retrain once.

A tick reads only what is new since its cursor: the dataset materializations after the last storage
id it saw (a partition that failed its blocking checks is never materialized, so it is never seen), the
champion's stored drift profile (checked against its sha256) and the new partitions' Parquet files.
The decision is the fast path (`decide_drift`: `detect_drift` on the profile with the spec's methods
and thresholds; drift when more than `max_drifted_share` of the columns drift). The drift report,
requested as a run, records that same decision beside Evidently's report for humans. A bad drift
setting is logged and given as the tick's skip reason, and the cursor still moves. A retrain is
requested with a run key derived from (partition, champion version), so it fires once, and not again
within `monitoring.drift.cooldown`.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from mlops_dagster.environments import sensor_status
from mlops_dagster.io.parquet import ParquetIOManager, read_parquet
from mlops_dagster.keys import Tags, dataset_key, drift_report_job_name, drift_sensor_name
from mlops_dagster.spec.models import PipelineSpec

PAGE = 100
TAG_LIMIT = 250  # Dagster tag values are short: the full list is in the run's metadata


@dataclass
class DriftCursor:
    last_storage_id: int = 0
    last_fired_at: float = 0.0
    last_fired_key: str = ""
    held_by_cooldown: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> "DriftCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            int(data.get("last_storage_id", 0)),
            float(data.get("last_fired_at", 0.0)),
            str(data.get("last_fired_key", "")),
            list(data.get("held_by_cooldown", [])),
        )

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@dataclass(frozen=True)
class PartitionDrift:
    partition: str | None
    share: float
    drifted: list[str]
    fire: bool


def new_partitions(
    instance: dg.DagsterInstance, key: dg.AssetKey, after: int
) -> tuple[list[str | None], int]:
    """Partitions materialized after storage id `after` (oldest first), and the newest storage id."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=PAGE, ascending=True
    )
    partitions: list[str | None] = []
    last = after
    for record in result.records:
        last = max(last, record.storage_id)
        partition = record.partition_key
        if partition not in partitions:
            partitions.append(partition)
    return partitions, last


def evaluate_partition(
    spec: PipelineSpec, io: ParquetIOManager, profile: Any, columns: list[str], partition: str | None
) -> PartitionDrift:
    """The pipeline's drift decision on one partition (the same one its drift report records)."""
    from mlops_dagster.monitoring.decision import DriftSettings, decide_drift

    frame = read_parquet(io.path_for(dataset_key(spec.name), partition))
    settings = DriftSettings.from_spec(spec.monitoring.drift)
    decision = decide_drift(profile, frame, settings, columns=columns)
    return PartitionDrift(partition, decision.share_drifted, decision.drifted_columns, decision.drift)


def build_drift_sensor(spec: PipelineSpec, retrain_job: Any, report_job: Any) -> dg.SensorDefinition:
    drift = spec.monitoring.drift
    status = dg.DefaultSensorStatus.RUNNING if drift.enabled else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name=drift_sensor_name(spec.name),
        jobs=[retrain_job, report_job],
        minimum_interval_seconds=60,
        default_status=sensor_status(spec, status),
        description=(
            f"Drift of each new `{spec.name}` partition against the champion's reference profile; "
            f"retrains when more than {drift.max_drifted_share:.0%} of the columns drift "
            f"(cooldown {drift.cooldown})."
        ),
    )
    def _drift_sensor(  # the parameter name is the IO manager's resource key
        context: dg.SensorEvaluationContext, mlops_io_manager: dg.ResourceParam[ParquetIOManager]
    ) -> dg.SensorResult | dg.SkipReason:
        from mlops_dagster.errors import DataError
        from mlops_dagster.monitoring.decision import DriftSettings, DriftSettingsError
        from mlops_dagster.registry.pool import ensure_champion_pool
        from mlops_dagster.registry.records import current_champion
        from mlops_dagster.registry.reference import load_reference_profile
        from mlops_dagster.registry.store import read_card

        cursor = DriftCursor.parse(context.cursor)
        partitions, last = new_partitions(context.instance, dataset_key(spec.name), cursor.last_storage_id)
        if not partitions:
            return dg.SkipReason("no new quality-passed partitions")
        cursor.last_storage_id = last  # moves even when a setting is bad: a tick never fails forever
        problems = DriftSettings.from_spec(drift).problems()
        if problems:
            message = f"{spec.name}: drift not decided for {len(partitions)} partition(s): "
            message += "; ".join(problems)
            context.log.error(message)
            return dg.SensorResult(skip_reason=message, cursor=cursor.dump())
        champion = current_champion(context.instance, spec.name)
        if champion is None:
            return dg.SensorResult(
                skip_reason=f"no champion yet for {spec.name}: nothing to compare "
                f"{len(partitions)} new partition(s) with",
                cursor=cursor.dump(),
            )
        card = read_card(spec.name, champion.version)
        data_end = card.get("data_end")  # partitions up to here are the champion's own training data
        partitions = [p for p in partitions if not (p and data_end and p <= data_end)]
        if not partitions:
            return dg.SensorResult(
                skip_reason=f"the new partitions are all in champion {champion.version}'s training data",
                cursor=cursor.dump(),
            )
        profile = load_reference_profile(spec.name, champion.version)  # refuses a corrupt profile
        columns = list(card.get("drift_columns") or [])
        requests: list[dg.RunRequest] = []
        now = time.time()
        errors: list[str] = []
        for partition in partitions:
            try:
                outcome = evaluate_partition(spec, mlops_io_manager, profile, columns, partition)
            except (DriftSettingsError, DataError) as e:  # this partition is skipped, not retried forever
                errors.append(f"{partition}: {e}")
                context.log.error(f"{spec.name} {partition}: drift not decided: {e}")
                continue
            context.log.info(
                f"{spec.name} {partition}: {len(outcome.drifted)}/{len(columns)} columns drifted "
                f"({outcome.share:.0%}): {outcome.drifted}"
            )
            if not outcome.fire:
                continue
            run_key = f"drift:{spec.name}:{partition}:{champion.version}"
            if now - cursor.last_fired_at < drift.cooldown.total_seconds():
                cursor.held_by_cooldown = [*cursor.held_by_cooldown, run_key][-20:]
                context.log.info(
                    f"{run_key}: drift, but within the {drift.cooldown} cooldown since "
                    f"{cursor.last_fired_key}; not retraining"
                )
                continue
            tags = {
                Tags.TRIGGER: "drift",
                Tags.PIPELINE: spec.name,
                Tags.PARTITION: partition or "",
                Tags.CHAMPION: champion.version,
                Tags.DRIFT_SHARE: f"{outcome.share:.4f}",
                Tags.DRIFTED_COLUMNS: ",".join(outcome.drifted)[:TAG_LIMIT],
            }
            requests.append(dg.RunRequest(run_key=run_key, job_name=retrain_job.name, tags=tags))
            requests.append(
                dg.RunRequest(
                    run_key=f"drift-report:{spec.name}:{partition}:{champion.version}",
                    job_name=report_job.name,
                    partition_key=partition,
                    tags=tags,
                )
            )
            cursor.last_fired_at, cursor.last_fired_key = now, run_key
        if requests:
            pool = ensure_champion_pool(context.instance, spec.name)  # the retrain's champion step waits
            if pool.problem:
                context.log.warning(f"{spec.name}: {pool.problem}")
        more = f" | and {len(errors) - 3} more (see the tick's log)" if len(errors) > 3 else ""
        skip = f"drift not decided for {len(errors)} partition(s): {' | '.join(errors[:3])}{more}"
        return dg.SensorResult(
            run_requests=requests, cursor=cursor.dump(), skip_reason=skip if errors and not requests else None
        )

    return _drift_sensor


def report_job_for(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition | None) -> Any:
    from mlops_dagster.keys import drift_report_key

    return dg.define_asset_job(
        name=drift_report_job_name(spec.name),
        selection=dg.AssetSelection.assets(drift_report_key(spec.name)),
        partitions_def=partitions_def,
        description=f"Evidently drift report of a `{spec.name}` partition.",
        tags={Tags.PIPELINE: spec.name},
    )
