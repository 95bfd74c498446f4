"""Headless demo (`make demo`): land the simulated history, materialize it, train, gate, print the champions.

Runs against the persistent instance in $DAGSTER_HOME (the same one `make dev` shows), so everything it
does is visible afterwards in the UI's asset catalog and runs list.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from assets import feed

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the UI keeps the full logs
SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # failures are summarised below


def _materialized_partitions(instance: dg.DagsterInstance, key: dg.AssetKey) -> set[str]:
    return set(instance.get_materialized_partitions(key))


def land_and_load(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[str]:
    """Bootstrap the feed if needed and materialize every landed day not yet in the dataset assets."""
    feed.bootstrap(28)
    today = feed.current_day()
    assert today is not None
    lines = []
    for pipeline in feed.PIPELINES:
        key = dg.AssetKey([pipeline, "dataset"])
        done = _materialized_partitions(instance, key)
        days = [d.isoformat() for d in _days(feed.START, today) if d.isoformat() not in done]
        if not days:
            lines.append(f"{pipeline}/dataset: all {len(done)} landed day(s) already materialized")
            continue
        failed = []
        for day in days:
            result = dg.materialize(
                list(defs.assets or []),
                selection=[key],
                instance=instance,
                resources=defs.resources,
                partition_key=day,
                run_config=QUIET,
                tags={"mlops/trigger": "demo"},
                raise_on_error=False,
            )
            if not result.success:
                failed.append(day)
        if failed:
            lines.append(f"{pipeline}/dataset: {len(failed)} partition(s) failed their checks: {failed}")
        lines.append(
            f"{pipeline}/dataset: materialized {len(days) - len(failed)} of {len(days)} day(s) "
            f"{days[0]} .. {days[-1]}"
        )
    return lines


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def retrain(defs: dg.Definitions, instance: dg.DagsterInstance, pipeline: str) -> bool:
    job = defs.resolve_job_def(f"{pipeline}__retrain")
    result = job.execute_in_process(
        instance=instance, tags={"mlops/trigger": "demo"}, run_config=QUIET, raise_on_error=False
    )
    return result.success


def quality_incident(defs: dg.Definitions, instance: dg.DagsterInstance, say: Callable[[str], None]) -> None:
    """Land a `quality_incident` day: failed checks, a quarantined batch, one alert, no new candidate."""
    from mlops_dagster.io.quarantine import Quarantine
    from mlops_dagster.registry.records import candidate_history

    before = {p: len(candidate_history(instance, p)) for p in feed.PIPELINES}
    day = feed.advance_day("quality_incident").isoformat()
    say(f"landed {day} with scenario quality_incident")
    for pipeline in feed.PIPELINES:
        key = dg.AssetKey([pipeline, "dataset"])
        result = dg.materialize(
            list(defs.assets or []),
            selection=[key],
            instance=instance,
            resources=defs.resources,
            partition_key=day,
            run_config=SILENT,
            tags={"mlops/trigger": "demo"},
            raise_on_error=False,
        )
        failed = [
            e.event_specific_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
        ]
        say(
            f"{pipeline}/dataset {day}: {'materialized' if result.success else 'REFUSED'}; "
            f"{len(failed)} blocking check(s) failed"
        )
        for evaluation in failed:
            say(f"    {evaluation.check_name}: {evaluation.description}")
        entry = Quarantine.for_io_manager(defs.resources["mlops_io_manager"]).get(key, day)
        if entry is not None:
            say(f"    quarantined at {entry.path}")
    for pipeline in feed.PIPELINES:  # one tick of each quality sensor: the alert goes to the log
        sensor = defs.resolve_sensor_def(f"{pipeline}__quality_sensor")
        context = dg.build_sensor_context(
            instance=instance,
            cursor=_sensor_cursor(instance, sensor.name),
            resources={"mlops_notifier": defs.resources["mlops_notifier"]},
        )
        outcome = sensor(context)
        if isinstance(outcome, dg.SensorResult) and outcome.cursor:
            _save_sensor_cursor(instance, sensor.name, outcome.cursor)
        say(
            f"{pipeline}__quality_sensor: alert sent to the log (see above); retrains requested: "
            f"{len(outcome.run_requests or []) if isinstance(outcome, dg.SensorResult) else 0}"
        )
    after = {p: len(candidate_history(instance, p)) for p in feed.PIPELINES}
    new = sum(after.values()) - sum(before.values())
    say(f"new candidates since the incident: {new} (nothing trains on it)")


_CURSORS = "demo_quality_sensor_cursors.json"


def _sensor_cursor(instance: dg.DagsterInstance, name: str) -> str | None:
    path = Path(instance.root_directory) / _CURSORS
    return json.loads(path.read_text()).get(name) if path.exists() else None


def _save_sensor_cursor(instance: dg.DagsterInstance, name: str, cursor: str) -> None:
    path = Path(instance.root_directory) / _CURSORS
    data = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**data, name: cursor}))


def main() -> int:
    if not os.environ.get("DAGSTER_HOME"):
        print(
            "DAGSTER_HOME is not set: run `make demo`, which keeps the instance in .dagster_home/",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    timeline: list[str] = []

    def say(line: str) -> None:
        print(line)
        timeline.append(f"{time.perf_counter() - started:6.1f} s  {line}")

    from definitions import defs
    from mlops_dagster.registry.records import current_champion
    from mlops_dagster.registry.store import card_path, read_card

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    instance = dg.DagsterInstance.get()
    for line in land_and_load(defs, instance):
        say(line)
    for pipeline in feed.PIPELINES:
        ok = retrain(defs, instance, pipeline)
        say(f"{pipeline}__retrain: {'succeeded' if ok else 'FAILED'}")
        if not ok:
            return 1
    for pipeline in feed.PIPELINES:
        champion = current_champion(instance, pipeline)
        if champion is None:
            say(f"{pipeline}: no champion (the candidate did not pass the gates)")
            continue
        metric = read_card(pipeline, champion.version)["metric"]
        say(
            f"{pipeline}: champion {champion.version} ({champion.decision}; "
            f"holdout {metric}={champion.metrics[metric]:.3f})"
        )
        print(f"  model card: {card_path(pipeline, champion.version)}")
    quality_incident(defs, instance, say)
    print("\nTimeline")
    print("\n".join(timeline))
    print(f"\nregistry:   mlops-dagster registry list churn   (instance: {Path(os.environ['DAGSTER_HOME'])})")
    print("quarantine: mlops-dagster quarantine list")
    print(f"make demo wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
