"""`<p>__performance_sensor`: the champion fails in service -> roll it back, alert, and retrain.

Defined for a pipeline with `monitoring.performance`, a `feedback:` source and the `batch` serving
target (`watches_performance`): then `<p>/live_performance` scores the champion's predictions
against late labels, one materialization per partition. A tick:

1. One indexed query: a live-performance record newer than the cursor's storage id. With none, and
   no breach held back by the cooldown, it skips (most ticks end here).
2. The champion and its own holdout score of the metric (for `max_drop`).
3. The latest record id per partition (one query), then the records of the newest partitions, a few
   first, until `window` partitions hold evidence for the champion (at most `MAX_SCAN`
   partitions); `monitoring.performance.decide_performance` decides.
4. When the latest `window` partitions with evidence all breach, the event is (champion version,
   last breached partition). Once per event (the run keys, and the cursor) and not within
   `cooldown` of the last automatic action (the cursor, or the registry's own record of the last
   automatic rollback when the cursor was reset), it requests `<p>__performance_rollback` (the
   champion alone, action `rollback` from that version, the readable reason) and `<p>__retrain`,
   both tagged `mlops/trigger: performance`, and sends an alert. The rollback goes to the previous
   good champion (`registry.records.rollback_target`: never a version rolled back for
   performance); with none, it only alerts. A breach held by the cooldown is decided again once
   the cooldown is over, with or without new records.

A malformed record is no evidence (logged), an unreadable cursor starts afresh: a bad state never
fails ticks forever. The rollback run names the version it rolls back from, so a retrain that
promoted a new champion before it ran is not undone (champion.py records a keep instead).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlops_dagster.alerts import Alert, Notifier
from mlops_dagster.environments import sensor_status
from mlops_dagster.keys import Meta, Tags, champion_key, live_performance_key, performance_sensor_name
from mlops_dagster.registry import records
from mlops_dagster.registry.records import PERFORMANCE_TRIGGER, VersionRecord
from mlops_dagster.spec.models import PipelineSpec

if TYPE_CHECKING:
    from mlops_dagster.monitoring.performance import PartitionScore, PerformanceDecision, PerformanceSettings

MAX_CHUNK = 64  # records read per query, newest partitions first (the first query reads `first`)
MAX_SCAN = 400  # partitions read back at most (more than a year of daily partitions)
TAG_LIMIT = 250  # Dagster tag values are short: the full list is in the rollback's reasons
ALERT_BUDGET_SECONDS = 20.0  # Dagster gives up on a tick after 60 s
_now = time.time  # the cooldown's clock; tests replace it


def watches_performance(spec: PipelineSpec) -> bool:
    """Whether the pipeline has what the sensor reads: a threshold, late labels and batch predictions."""
    return (
        spec.monitoring.performance is not None
        and spec.feedback is not None
        and "batch" in spec.serving.targets
    )


@dataclass
class PerformanceCursor:
    """`last_storage_id`: the newest live-performance record seen. `last_event`, `last_acted_at`: the
    last event acted on (a rollback requested, or an alert alone when there was nothing to roll back
    to), `<version>:<partition>`, and when. `held`: an event waiting for the cooldown to end."""

    last_storage_id: int = 0
    last_acted_at: float = 0.0
    last_event: str = ""
    held: str = ""

    @classmethod
    def parse(cls, raw: str | None) -> PerformanceCursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(
                int(data.get("last_storage_id", 0)),
                float(data.get("last_acted_at", 0.0)),
                str(data.get("last_event", "")),
                str(data.get("held", "")),
            )
        except (ValueError, TypeError, AttributeError):  # an unreadable cursor starts afresh
            return cls()

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def newest_record(instance: dg.DagsterInstance, key: dg.AssetKey, after: int) -> int:
    """The storage id of the newest record of `key` after storage id `after`; 0 when there is none.

    One indexed query, the whole cost of most ticks (nothing new since the last one).
    """
    records_filter = dg.AssetRecordsFilter(asset_key=key, after_storage_id=after)
    found = instance.fetch_materializations(records_filter, limit=1).records
    return found[0].storage_id if found else 0


@dataclass
class LiveHistory:
    """The `<p>/live_performance` records: the latest per partition, newest partition first."""

    instance: dg.DagsterInstance
    key: dg.AssetKey
    partitioned: bool
    latest: dict[str, int] = field(default_factory=dict)  # partition -> storage id of its latest record

    @classmethod
    def read(cls, instance: dg.DagsterInstance, key: dg.AssetKey, partitioned: bool) -> LiveHistory:
        """One query when partitioned: the latest storage id per partition (unpartitioned: none yet)."""
        if not partitioned:
            return cls(instance, key, False)
        storage = instance.event_log_storage
        latest = storage.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION)
        return cls(instance, key, True, dict(latest))

    def newest_first(self, first: int) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(partition, metadata) of the latest record per partition, newest partition first.

        Read in chunks of `first` records, then twice as many each time (up to `MAX_CHUNK`): a tick
        usually needs only the newest few, and deserializing records is most of its cost.
        Unpartitioned, each record is one evaluation, labelled by its time.
        """
        if not self.partitioned:
            yield from self._unpartitioned(first)
            return
        order = sorted(self.latest, reverse=True)[:MAX_SCAN]
        start, size = 0, max(1, first)
        while start < len(order):
            chunk = order[start : start + size]
            start, size = start + size, min(2 * size, MAX_CHUNK)
            ids = [self.latest[p] for p in chunk]
            found = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=self.key, storage_ids=ids), limit=len(ids)
            ).records
            by_partition = {r.partition_key: r.asset_materialization for r in found}
            for partition in chunk:
                event = by_partition.get(partition)
                if event is not None:
                    yield partition, event.metadata

    def _unpartitioned(self, first: int) -> Iterator[tuple[str, Mapping[str, Any]]]:
        cursor, seen, size = None, 0, max(1, first)
        while seen < MAX_SCAN:
            result = self.instance.fetch_materializations(self.key, limit=size, cursor=cursor)
            size = min(2 * size, MAX_CHUNK)
            for record in result.records:
                seen += 1
                event = record.asset_materialization
                if event is not None:
                    when = datetime.fromtimestamp(record.timestamp, tz=UTC)
                    yield when.isoformat(timespec="milliseconds"), event.metadata
            if not result.has_more:
                return
            cursor = result.cursor


def champion_scores(
    history: LiveHistory, version: str, settings: PerformanceSettings
) -> list[PartitionScore]:
    """The champion's scores, newest partitions first, read until `window` of them are evidence."""
    from mlops_dagster.monitoring.performance import champion_score, judge

    scores, evidence = [], 0
    for partition, metadata in history.newest_first(first=settings.window + 2):
        score = champion_score(partition, metadata, version, settings.metric)
        scores.append(score)
        evidence += judge(score, settings, None).evidence
        if evidence >= settings.window:
            break
    return scores


def holdout_score(
    instance: dg.DagsterInstance, pipeline: str, champion: VersionRecord, metric: str
) -> float | None:
    """The champion's own holdout score of `metric`: its record's, else its candidate's (None if neither)."""
    value = champion.metrics.get(metric)
    if value is None:
        metrics = (records.candidate_metadata(instance, pipeline, champion.version) or {}).get(Meta.METRICS)
        value = metrics.get(metric) if isinstance(metrics, dict) else None
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def last_automatic_rollback(history: list[VersionRecord]) -> float:
    """When the latest rollback for performance was recorded (epoch seconds; 0 when never)."""
    return max(
        (r.timestamp for r in history if r.decision == "rollback" and r.trigger == PERFORMANCE_TRIGGER),
        default=0.0,
    )


def run_requests(
    spec: PipelineSpec,
    retrain_job: Any,
    rollback_job: Any,
    champion: VersionRecord,
    decision: PerformanceDecision,
    event: str,
) -> list[dg.RunRequest]:
    """The rollback (from `champion`, with the decision as its reason) and the retrain, once per event."""
    tags = {
        Tags.TRIGGER: PERFORMANCE_TRIGGER,
        Tags.PIPELINE: spec.name,
        Tags.ROLLED_BACK_FROM: champion.version,
        Tags.BREACHED_PARTITIONS: ",".join(decision.breached)[:TAG_LIMIT],
    }
    config = {
        "action": "rollback",
        "version": champion.version,
        "reason": f"automatic rollback by {performance_sensor_name(spec.name)}: {decision.reason}",
    }
    op = champion_key(spec.name).to_python_identifier()
    return [
        dg.RunRequest(
            run_key=f"performance-rollback:{spec.name}:{event}",
            job_name=rollback_job.name,
            run_config={"ops": {op: {"config": config}}},
            tags=tags,
        ),
        dg.RunRequest(
            run_key=f"performance-retrain:{spec.name}:{event}", job_name=retrain_job.name, tags=tags
        ),
    ]


def breach_alert(
    spec: PipelineSpec, champion: VersionRecord, target: VersionRecord | None, decision: PerformanceDecision
) -> Alert:
    """The alert of a breach: the rollback and retrain requested, or why nothing could be rolled back."""
    metric = spec.monitoring.performance.metric if spec.monitoring.performance else "metric"
    last = decision.breached[-1] if decision.breached else None
    if target is not None:
        title = f"{spec.name}: live {metric} breached; rolling {champion.version} back to {target.version}"
        then = (
            f"Requested: a rollback of {champion_key(spec.name).to_user_string()} to {target.version} "
            f"(the packaging follows it) and a retrain."
        )
    else:
        title = f"{spec.name}: live {metric} breached; no earlier version to roll back to"
        then = (
            f"Champion {champion.version} stays in service: no earlier champion that was not itself "
            "rolled back for performance. Nothing was requested; a person must decide."
        )
    return Alert(
        title=title,
        text=f"{decision.reason}\n{then}",
        severity="error",
        pipeline=spec.name,
        asset_key=live_performance_key(spec.name).to_user_string(),
        partition=last,
        details={
            "champion": champion.version,
            "rollback_to": target.version if target else None,
            "breached_partitions": decision.breached,
            "live": {v.partition: v.metric for v in decision.window},
            "floor": decision.floor,
        },
        dedupe_key=f"{spec.name}:performance:{champion.version}:{last}",
    )


def build_performance_sensor(spec: PipelineSpec, retrain_job: Any, rollback_job: Any) -> dg.SensorDefinition:
    """`<p>__performance_sensor` (call only when `watches_performance(spec)`)."""
    performance = spec.monitoring.performance
    if performance is None:
        raise ValueError(f"{spec.name}: no monitoring.performance: there is nothing to watch")
    partitioned = spec.dataset.partitions is not None
    key = live_performance_key(spec.name)
    floor = " or ".join(
        [
            *([f"below {performance.min:g}"] if performance.min is not None else []),
            *(
                [f"more than {performance.max_drop:g} below its holdout score"]
                if performance.max_drop is not None
                else []
            ),
        ]
    )

    @dg.sensor(
        name=performance_sensor_name(spec.name),
        jobs=[retrain_job, rollback_job],
        minimum_interval_seconds=60,
        default_status=sensor_status(spec, dg.DefaultSensorStatus.RUNNING),
        description=(
            f"Rolls `{spec.name}`'s champion back, alerts and retrains when its live {performance.metric} "
            f"is {floor} in {performance.window} consecutive partitions with at least "
            f"{performance.min_samples} labels each (cooldown {performance.cooldown})."
        ),
    )
    def _performance_sensor(  # the parameter name is the resource key (NOTIFIER_KEY)
        context: dg.SensorEvaluationContext, mlops_notifier: Notifier
    ) -> dg.SensorResult | dg.SkipReason:
        from mlops_dagster.monitoring.performance import PerformanceSettings, decide_performance
        from mlops_dagster.registry.pool import ensure_champion_pool

        deadline = time.monotonic() + ALERT_BUDGET_SECONDS
        cursor = PerformanceCursor.parse(context.cursor)
        newest = newest_record(context.instance, key, cursor.last_storage_id)
        now, cooldown = _now(), performance.cooldown.total_seconds()
        if not newest:
            if not cursor.held:
                return dg.SkipReason(f"no new {key.to_user_string()} records")
            if now - cursor.last_acted_at < cooldown:
                return dg.SkipReason(f"breach {cursor.held} held by the {performance.cooldown} cooldown")
        cursor.last_storage_id = max(cursor.last_storage_id, newest)
        champion = records.current_champion(context.instance, spec.name)
        if champion is None:
            cursor.held = ""
            return dg.SensorResult(skip_reason=f"{spec.name} has no champion yet", cursor=cursor.dump())
        settings = PerformanceSettings.from_spec(performance)
        holdout = holdout_score(context.instance, spec.name, champion, settings.metric)
        history = LiveHistory.read(context.instance, key, partitioned)
        decision = decide_performance(champion_scores(history, champion.version, settings), settings, holdout)
        unused = [f"{v.partition} ({v.why})" for v in decision.verdicts if not v.evidence]
        if unused:
            more = f" and {len(unused) - 5} more" if len(unused) > 5 else ""
            context.log.info(f"{spec.name}: no evidence in {'; '.join(unused[:5])}{more}")
        context.log.info(f"{spec.name} champion {champion.version}: {decision.reason}")
        if not decision.act:
            cursor.held = ""
            return dg.SensorResult(skip_reason=decision.reason, cursor=cursor.dump())
        event = f"{champion.version}:{decision.breached[-1]}"
        if event == cursor.last_event:
            cursor.held = ""
            return dg.SensorResult(skip_reason=f"breach {event} already acted on", cursor=cursor.dump())
        decisions = records.champion_history(context.instance, spec.name, limit=1000)
        cursor.last_acted_at = max(cursor.last_acted_at, last_automatic_rollback(decisions))
        if now - cursor.last_acted_at < cooldown:
            cursor.held = event
            message = (
                f"breach {event}, within the {performance.cooldown} cooldown of the last automatic action"
            )
            context.log.warning(f"{spec.name}: {message}; holding it")
            return dg.SensorResult(skip_reason=message, cursor=cursor.dump())
        target = records.rollback_target(decisions)
        cursor.last_event, cursor.held, cursor.last_acted_at = event, "", now  # an alert alone counts too
        alert = breach_alert(spec, champion, target, decision)
        mlops_notifier.send(alert, log=context.log, deadline=deadline)
        if target is None:
            context.log.error(alert.title)
            return dg.SensorResult(skip_reason=alert.title, cursor=cursor.dump())
        pool = ensure_champion_pool(context.instance, spec.name)  # the rollback and retrain queue on it
        if pool.problem:
            context.log.warning(f"{spec.name}: {pool.problem}")
        requests = run_requests(spec, retrain_job, rollback_job, champion, decision, event)
        return dg.SensorResult(run_requests=requests, cursor=cursor.dump())

    return _performance_sensor
