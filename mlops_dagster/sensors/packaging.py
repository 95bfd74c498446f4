"""`<p>__packaging_sensor`: the bento and the edge bundle converge to the champion, with no manual step.

Each tick compares state, not events: the version recorded on the latest `<p>/bento` and
`<p>/edge_bundle` materializations (`Meta.VERSION`) with the current champion's. When one differs it
requests those assets, with the run key `package:<p>:<version>` (one request per champion version) and
the tags `mlops/trigger: champion`, `mlops/champion_version: <version>`. So a promote or rollback by
hand, a retrain killed (kill -9) right after the champion's materialization, or a failed packaging run
are all caught up by the next tick, whatever happened in between; a cursor or "newly updated" edge
would miss the states a crash leaves behind, which is why this is a sensor and not an
`AutomationCondition` on the assets.

- A run already packaging it (a retrain, or this sensor's own run) is waited for, but only while it
  is younger than `stuck_after`: a run whose process was killed stays STARTED forever in an instance
  without run monitoring, and must not hold the packaging back.
- After a failed run the request is made again with the attempt in the run key
  (`package:<p>:<version>:<n>`), after a back-off that doubles from `retry_after` up to `retry_max`.
"""

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg

from mlops_dagster.environments import sensor_status
from mlops_dagster.keys import Meta, Tags, bento_key, edge_bundle_key, packaging_sensor_name, retrain_job_name
from mlops_dagster.spec.models import PipelineSpec

TRIGGER = "champion"
IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)
FAILED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def packaging_keys(spec: PipelineSpec) -> list[dg.AssetKey]:
    """The packaging assets of the pipeline's serving targets."""
    targets = spec.serving.targets
    return [
        *([bento_key(spec.name)] if "cloud" in targets else []),
        *([edge_bundle_key(spec.name)] if "edge" in targets else []),
    ]


def packaged_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The champion version the latest materialization of a packaging asset packages, if any."""
    event = instance.get_latest_materialization_event(key)
    mat = event.asset_materialization if event is not None else None
    value = mat.metadata.get(Meta.VERSION) if mat is not None else None
    return str(getattr(value, "value", value)) if value is not None else None


def _busy_run(
    instance: dg.DagsterInstance, spec: PipelineSpec, keys: Sequence[dg.AssetKey], since: float
) -> str | None:
    """A live-looking run (created after `since`) that is packaging this pipeline, or None."""
    records = instance.get_run_records(
        dg.RunsFilter(
            statuses=list(IN_FLIGHT),
            tags={Tags.PIPELINE: spec.name},
            created_after=datetime.fromtimestamp(since, tz=UTC),
        )
    )
    for record in records:
        run = record.dagster_run
        if run.job_name == retrain_job_name(spec.name) and not run.asset_selection:
            return run.run_id
        if run.asset_selection and set(run.asset_selection) & set(keys):
            return run.run_id
    return None


def _backoff_left(
    records: Sequence[dg.RunRecord], now: float, retry_after: float, retry_max: float
) -> float:
    """Seconds to wait before retrying after the consecutive failed runs at the head of `records`."""
    failures = 0
    for record in records:  # newest first
        if record.dagster_run.status not in FAILED:
            break
        failures += 1
    if not failures:
        return 0.0
    ended = records[0].end_time or records[0].create_timestamp.timestamp()
    return max(0.0, ended + min(retry_after * 2 ** (failures - 1), retry_max) - now)


def build_packaging_sensor(
    spec: PipelineSpec,
    *,
    minimum_interval_seconds: int = 15,
    stuck_after: float = 1800.0,
    retry_after: float = 60.0,
    retry_max: float = 3600.0,
) -> dg.SensorDefinition:
    """The sensor that requests `<p>/bento` / `<p>/edge_bundle` until they package the champion.

    Args:
        spec: the pipeline; its `serving.targets` choose the assets.
        minimum_interval_seconds: the tick interval.
        stuck_after: a packaging run in progress for longer than this is taken for dead (seconds).
        retry_after: the first back-off after a failed packaging run (seconds), doubled per failure.
        retry_max: the longest back-off (seconds).
    """
    keys = packaging_keys(spec)

    @dg.sensor(
        name=packaging_sensor_name(spec.name),
        asset_selection=dg.AssetSelection.assets(*keys),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=sensor_status(spec, dg.DefaultSensorStatus.RUNNING),
        description=(
            f"Requests {', '.join(k.to_user_string() for k in keys)} whenever the champion version they "
            f"package differs from `{spec.name}`'s champion (promote, rollback, a crashed or failed run)."
        ),
    )
    def _packaging_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        from mlops_dagster.registry.records import current_champion

        instance = context.instance
        champion = current_champion(instance, spec.name)
        if champion is None:
            return dg.SkipReason(f"{spec.name} has no champion yet")
        version = champion.version
        stale = [k for k in keys if packaged_version(instance, k) != version]
        if not stale:
            return dg.SkipReason(f"packaging is at champion {version}")
        now = time.time()
        busy = _busy_run(instance, spec, stale, now - stuck_after)
        if busy:
            return dg.SkipReason(f"run {busy} is packaging {spec.name}; waiting for it")
        tags = {Tags.PIPELINE: spec.name, Tags.TRIGGER: TRIGGER, Tags.CHAMPION: version}
        ours = instance.get_run_records(dg.RunsFilter(tags=tags))
        wait = _backoff_left(ours, now, retry_after, retry_max)
        if wait > 0:
            return dg.SkipReason(
                f"packaging run {ours[0].dagster_run.run_id} for {version} failed; retrying in {wait:.0f} s"
            )
        attempt = len(ours)
        return dg.RunRequest(
            run_key=f"package:{spec.name}:{version}" + (f":{attempt}" if attempt else ""),
            asset_selection=stale,
            tags=tags,
        )

    return _packaging_sensor
