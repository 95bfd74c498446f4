"""Headless demo (`make demo`): land the simulated history, materialize it, train, gate, print the champions.

Runs against the persistent instance in $DAGSTER_HOME (the same one `make dev` shows), so everything it
does is visible afterwards in the UI's asset catalog and runs list.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from assets import feed

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the UI keeps the full logs


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


def main() -> int:
    if not os.environ.get("DAGSTER_HOME"):
        print(
            "DAGSTER_HOME is not set: run `make demo`, which keeps the instance in .dagster_home/",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    from definitions import defs
    from mlops_dagster.registry.records import current_champion
    from mlops_dagster.registry.store import card_path, read_card

    instance = dg.DagsterInstance.get()
    for line in land_and_load(defs, instance):
        print(line)
    for pipeline in feed.PIPELINES:
        ok = retrain(defs, instance, pipeline)
        print(f"{pipeline}__retrain: {'succeeded' if ok else 'FAILED'}")
        if not ok:
            return 1
    print()
    for pipeline in feed.PIPELINES:
        champion = current_champion(instance, pipeline)
        if champion is None:
            print(f"{pipeline}: no champion (the candidate did not pass the gates)")
            continue
        metric = read_card(pipeline, champion.version)["metric"]
        print(
            f"{pipeline}: champion {champion.version} ({champion.decision}; "
            f"holdout {metric}={champion.metrics[metric]:.3f})"
        )
        print(f"  model card: {card_path(pipeline, champion.version)}")
    print(f"\nregistry: mlops-dagster registry list churn   (instance: {Path(os.environ['DAGSTER_HOME'])})")
    print(f"make demo wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
