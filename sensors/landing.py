"""Demo plumbing: a job that advances the simulated day, and a sensor that loads what has landed.

`demo__advance_day` lands the next simulated day (with a chosen scenario) for both pipelines.
`demo__landing_sensor` sees the days the feed has recorded and materializes those dataset partitions,
one run per pipeline and day (quality checks are evaluated and recorded per partition).
"""

from datetime import date, timedelta
from typing import Literal

import dagster as dg

from assets import feed

PIPELINES = feed.PIPELINES


class AdvanceDayConfig(dg.Config):
    """Which scenario the next simulated day brings."""

    scenario: Literal["normal", "drift", "quality_incident"] = "normal"


@dg.op(description="Land the next simulated day's batches for both demo pipelines.")
def advance_simulated_day(context: dg.OpExecutionContext, config: AdvanceDayConfig) -> str:
    day = feed.advance_day(config.scenario)
    context.log.info(f"landed {day.isoformat()} ({config.scenario}) in {feed.landing_dir()}")
    return day.isoformat()


@dg.job(
    name="demo__advance_day",
    description="Advance the demo's simulated day (choose the scenario).",
    tags={"mlops/trigger": "demo"},
)
def advance_day_job() -> None:
    advance_simulated_day()


def landed_days_after(cursor: str | None) -> list[str]:
    """Days the feed has landed (bootstrap or advance) after the cursor day, in order."""
    today = feed.current_day()
    if today is None:
        return []
    start = date.fromisoformat(cursor) + timedelta(days=1) if cursor else feed.START
    days = []
    while start <= today:
        days.append(start.isoformat())
        start += timedelta(days=1)
    return days


@dg.sensor(
    name="demo__landing_sensor",
    asset_selection=dg.AssetSelection.assets(*(dg.AssetKey([p, "dataset"]) for p in PIPELINES)),
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Materialize the dataset partitions of newly landed simulated days.",
)
def landing_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    days = landed_days_after(context.cursor)
    if not days:
        return dg.SkipReason("no new simulated day has landed")
    requests = [
        dg.RunRequest(
            run_key=f"{p}:{day}",
            asset_selection=[dg.AssetKey([p, "dataset"])],
            partition_key=day,
            tags={"mlops/trigger": "landing"},
        )
        for day in days
        for p in PIPELINES
    ]
    return dg.SensorResult(run_requests=requests, cursor=days[-1])


def demo_definitions() -> dg.Definitions:
    return dg.Definitions(jobs=[advance_day_job], sensors=[landing_sensor])
