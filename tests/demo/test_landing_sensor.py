"""The demo's landing sensor: one ranged run per pipeline for newly landed days, each day once."""

from __future__ import annotations

import dagster as dg

from assets import feed
from sensors.landing import advance_day_job, landing_sensor


def _evaluate(cursor: str | None):  # type: ignore[no-untyped-def]
    context = dg.build_sensor_context(cursor=cursor, instance=dg.DagsterInstance.ephemeral())
    return landing_sensor(context)


def test_skips_before_anything_landed(storage):  # type: ignore[no-untyped-def]
    assert isinstance(_evaluate(None), dg.SkipReason)


def test_requests_ranges_then_only_new_days(storage):  # type: ignore[no-untyped-def]
    feed.bootstrap(5)
    result = _evaluate(None)
    assert result.cursor == "2026-01-05"
    assert len(result.run_requests) == 10
    assert {r.run_key for r in result.run_requests} >= {"churn:2026-01-01", "demand:2026-01-05"}
    assert {r.partition_key for r in result.run_requests} == {f"2026-01-0{d}" for d in range(1, 6)}
    assert isinstance(_evaluate(result.cursor), dg.SkipReason)

    assert advance_day_job.execute_in_process(
        run_config={"ops": {"advance_simulated_day": {"config": {"scenario": "drift"}}}}
    ).success
    assert feed.scenario_of("2026-01-06") == "drift"
    again = _evaluate(result.cursor)
    assert {r.run_key for r in again.run_requests} == {"churn:2026-01-06", "demand:2026-01-06"}
