"""Headless demo (`make demo`): the whole loop on the simulated feed, with a timeline at the end.

1. land 28 days of history, materialize them, train and gate the first champions;
2. normal days: the drift sensor sees no drift, nothing retrains;
3. a drift day: the drift sensor fires, the retrain runs (trigger `drift`), the gates promote a new
   champion whose model card names the trigger; Evidently's report of that day is written;
4. a quality incident: blocking checks fail, the batch is quarantined, the quality sensor alerts,
   nothing trains on it;
5. a bad release: the churn history is re-delivered with a leak (support calls recorded after the
   outcome), the weekly retrain promotes a model that looks excellent on its holdout, and on the next
   live days its predictions, joined with the late labels, score badly: the performance sensor rolls
   the champion back by itself and the packages follow.

Every day with a champion, the batch predictions, the late labels and the live performance of each
pipeline that declares them are materialized (what `<p>__automation_sensor` requests).

It runs against the persistent instance in $DAGSTER_HOME (the one `make dev` shows), executing in
process what the daemon would launch, so every run, check and decision is in the UI afterwards.
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
from typing import Any

import dagster as dg

from assets import feed

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the UI keeps the full logs
SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # failures are summarised
CURSORS = "demo_sensor_cursors.json"
Say = Callable[[str], None]


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def load_day(defs: dg.Definitions, instance: dg.DagsterInstance, pipeline: str, day: str) -> Any:
    """What the landing sensor's run does: materialize one dataset partition (checks included)."""
    return dg.materialize(
        list(defs.assets or []),
        selection=[dg.AssetKey([pipeline, "dataset"])],
        instance=instance,
        resources=defs.resources,
        partition_key=day,
        run_config=SILENT,
        tags={"mlops/trigger": "landing"},
        raise_on_error=False,
    )


def land_history(defs: dg.Definitions, instance: dg.DagsterInstance, say: Say) -> None:
    feed.bootstrap(28)
    today = feed.current_day()
    assert today is not None
    for pipeline in feed.PIPELINES:
        done = set(instance.get_materialized_partitions(dg.AssetKey([pipeline, "dataset"])))
        days = [d.isoformat() for d in _days(feed.START, today) if d.isoformat() not in done]
        failed = [d for d in days if not load_day(defs, instance, pipeline, d).success]
        say(
            f"{pipeline}/dataset: {len(days) - len(failed)} landed day(s) materialized"
            + (f", {len(failed)} refused by quality checks" if failed else "")
        )


def run_job(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    name: str,
    tags: dict[str, str],
    partition: str | None = None,
) -> Any:
    job = defs.resolve_job_def(name)
    return job.execute_in_process(
        instance=instance, tags=tags, partition_key=partition, run_config=QUIET, raise_on_error=False
    )


def _failures(result: Any) -> list[str]:
    """`step: error` for each failed step of a run."""
    out = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            error = data.error
            while error is not None and error.cause is not None:  # the user's error, not Dagster's wrapper
                error = error.cause
            cause = data.user_failure_data.description if data.user_failure_data else None
            message = cause or (error.message.strip().splitlines()[0] if error else "failed")
            out.append(f"{event.step_key}: {message[:200]}")
    return out


def retrain_outcome(
    instance: dg.DagsterInstance, pipeline: str, result: Any, before: str | None
) -> list[str]:
    """What a retrain run did, in words that cannot contradict each other: the decision, then the steps
    that failed (a new champion whose packaging failed is still the champion; its sensor retries it)."""
    from mlops_dagster.registry.records import current_champion, decision_history

    after = current_champion(instance, pipeline)
    failed = _failures(result)
    if after is not None and after.version != before:
        lines = [f"{champion_line(instance, pipeline)}: new champion"]
        lines += [
            f"packaging step FAILED ({f}); {pipeline}__packaging_sensor requests it again" for f in failed
        ]
        return lines
    if failed:
        return [f"retrain run FAILED before a decision ({'; '.join(failed)}); champion unchanged"]
    kept = decision_history(instance, pipeline, limit=1)
    why = "; ".join(r for r in (kept[0].reasons if kept else []) if r.startswith("FAIL")) or "see the UI"
    return [f"champion kept, the candidate did not pass the gates: {why}"]


def follow_champion(defs: dg.Definitions, instance: dg.DagsterInstance, pipeline: str, say: Say) -> None:
    """What the daemon does with `<p>__packaging_sensor`: package the champion when the packages lag."""
    outcome = tick(defs, instance, f"{pipeline}__packaging_sensor")
    if not isinstance(outcome, dg.RunRequest):
        return
    result = dg.materialize(
        list(defs.assets or []),
        selection=list(outcome.asset_selection or []),
        instance=instance,
        resources=defs.resources,
        tags=dict(outcome.tags),
        run_config=SILENT,
        raise_on_error=False,
    )
    version = outcome.tags.get("mlops/champion_version", "")[:12]
    state = "packaged" if result.success else f"packaging FAILED ({'; '.join(_failures(result))})"
    say(f"  {pipeline}__packaging_sensor: champion {version} {state}")


def live_assets(defs: dg.Definitions, pipeline: str) -> list[dg.AssetKey]:
    """The pipeline's predictions, feedback and live performance, those its spec declares."""
    wanted = [dg.AssetKey([pipeline, name]) for name in ("predictions", "feedback", "live_performance")]
    defined = {key for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) for key in a.keys}
    return [key for key in wanted if key in defined]


def score_day(defs: dg.Definitions, instance: dg.DagsterInstance, pipeline: str, day: str, say: Say) -> None:
    """What `<p>__automation_sensor` requests for a landed day: predictions, then labels and live score."""
    from mlops_dagster.keys import Meta

    keys = live_assets(defs, pipeline)
    dataset = dg.AssetKey([pipeline, "dataset"])
    if not keys or day not in instance.get_materialized_partitions(dataset):
        return
    result = dg.materialize(
        list(defs.assets or []),
        selection=keys,
        instance=instance,
        resources=defs.resources,
        partition_key=day,
        run_config=SILENT,
        tags={"mlops/trigger": "automation"},
        raise_on_error=False,
    )
    if not result.success:
        say(f"  {pipeline} live scoring of {day} FAILED ({'; '.join(_failures(result))})")
        return
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey([pipeline, "live_performance"]), asset_partitions=[day]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return
    md = {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}
    live, holdout = md.get(Meta.LIVE_METRIC), md.get(Meta.HOLDOUT_METRIC)
    if live is None:
        say(f"  {pipeline}/live_performance {day}: no score ({md.get(Meta.NOTE, 'see the UI')})")
        return
    say(
        f"  {pipeline}/live_performance {day}: live {md.get(Meta.METRIC_NAME)}={live:.3f} on "
        f"{md.get(Meta.SAMPLES)} labelled predictions"
        + (f" (champion holdout {holdout:.3f})" if isinstance(holdout, float) else "")
    )


def watch_performance(defs: dg.Definitions, instance: dg.DagsterInstance, pipeline: str, say: Say) -> None:
    """What the daemon does with `<p>__performance_sensor`: run the rollback it requests."""
    from mlops_dagster.registry.records import current_champion

    name = f"{pipeline}__performance_sensor"
    if name not in {s.name for s in defs.sensors or []}:
        return
    outcome = tick(defs, instance, name)
    for request in outcome.run_requests if isinstance(outcome, dg.SensorResult) else []:
        if not request.job_name.endswith("__performance_rollback"):
            say(
                f"  {name} requested {request.job_name} (trigger performance); the demo leaves it: "
                "the training data still holds the leak"
            )
            continue
        before = current_champion(instance, pipeline)
        config = request.run_config["ops"]
        job = defs.resolve_job_def(request.job_name)
        result = job.execute_in_process(
            instance=instance,
            tags=dict(request.tags),
            run_config={**QUIET, "ops": config},
            raise_on_error=False,
        )
        after = current_champion(instance, pipeline)
        reason = next(iter(config.values()))["config"]["reason"]
        if not result.success or after is None or before is None or after.version == before.version:
            say(
                f"  {name}: rollback run did not move the champion ({'; '.join(_failures(result)) or 'kept'})"
            )
            continue
        say(f"  {name}: {reason}")
        say(f"  {name}: ROLLED BACK {before.version[:12]} -> {after.version[:12]} by itself")
        say(f"  {champion_line(instance, pipeline)}")
        follow_champion(defs, instance, pipeline, say)


def bad_release(defs: dg.Definitions, instance: dg.DagsterInstance, say: Say) -> None:
    """The churn history is re-delivered with a leak; the weekly retrain promotes a model trained on it."""
    from mlops_dagster.registry.records import current_champion

    dataset = dg.AssetKey(["churn", "dataset"])
    days = sorted(instance.get_materialized_partitions(dataset))
    feed.restate_with_leak([date.fromisoformat(d) for d in days])
    say(
        f"bad release: the churn history ({len(days)} days) is re-delivered with support_calls recorded "
        "after the outcome, a leak present only in the training data"
    )
    refused = [d for d in days if not load_day(defs, instance, "churn", d).success]
    say(f"  churn/dataset: {len(days) - len(refused)} day(s) re-materialized, {len(refused)} refused")
    before = current_champion(instance, "churn")
    result = run_job(defs, instance, "churn__retrain", {"mlops/trigger": "schedule"})
    for line in retrain_outcome(instance, "churn", result, before.version if before else None):
        say(f"  churn__retrain (weekly schedule): {line}")
    follow_champion(defs, instance, "churn", say)
    tick(defs, instance, "churn__drift_sensor")  # the re-delivered days are the new champion's reference


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, sensor_name: str) -> Any:
    """One evaluation of a sensor, with its cursor kept between `make demo` runs."""
    path = Path(instance.root_directory) / CURSORS
    cursors = json.loads(path.read_text()) if path.exists() else {}
    sensor = defs.resolve_sensor_def(sensor_name)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursors.get(sensor_name), resources=dict(defs.resources or {})
    )
    result = sensor(context)
    if isinstance(result, dg.SensorResult) and result.cursor:
        path.write_text(json.dumps({**cursors, sensor_name: result.cursor}))
    return result


def champion_line(instance: dg.DagsterInstance, pipeline: str) -> str:
    from mlops_dagster.registry.records import current_champion
    from mlops_dagster.registry.store import read_card

    champion = current_champion(instance, pipeline)
    if champion is None:
        return f"{pipeline}: no champion"
    card = read_card(pipeline, champion.version)
    metric = card["metric"]
    return (
        f"{pipeline}: champion {champion.version[:12]} ({champion.decision}, trigger "
        f"{champion.trigger or card['trigger']}; "
        f"holdout {metric}={champion.metrics[metric]:.3f})"
    )


def new_day(defs: dg.Definitions, instance: dg.DagsterInstance, scenario: str, say: Say) -> str:
    """Land the next simulated day, load it, and let each drift sensor look at it."""
    from mlops_dagster.registry.records import current_champion

    landed_at = time.perf_counter()
    day = feed.advance_day(scenario).isoformat()
    say(f"landed {day} ({scenario})")
    for pipeline in feed.PIPELINES:
        result = load_day(defs, instance, pipeline, day)
        if not result.success:
            failed = [
                e.event_specific_data
                for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
            ]
            say(
                f"  {pipeline}/dataset {day}: REFUSED, {len(failed)} blocking check(s) failed, "
                "batch quarantined"
            )
            for evaluation in failed:
                say(f"      {evaluation.check_name}: {evaluation.description}")
    for pipeline in feed.PIPELINES:
        outcome = tick(defs, instance, f"{pipeline}__drift_sensor")
        requests = outcome.run_requests if isinstance(outcome, dg.SensorResult) else []
        if not requests:
            say(f"  {pipeline}__drift_sensor: no retrain")
            continue
        before = current_champion(instance, pipeline)
        for request in requests:
            result = run_job(defs, instance, request.job_name, dict(request.tags), request.partition_key)
            fired = (
                f"  {pipeline}__drift_sensor fired ({request.tags['mlops/drifted_columns']}, share "
                f"{float(request.tags['mlops/drift_share']):.0%})"
            )
            if not request.job_name.endswith("__retrain"):
                say(f"{fired}: drift report run {'succeeded' if result.success else 'FAILED'}")
                continue
            say(f"{fired}: retrain run")
            for line in retrain_outcome(instance, pipeline, result, before.version if before else None):
                say(f"  {line}")
            follow_champion(defs, instance, pipeline, say)
        after = current_champion(instance, pipeline)
        if after is not None and (before is None or after.version != before.version):
            say(f"  drift batch landed -> {pipeline} new champion in {time.perf_counter() - landed_at:.1f} s")
    for pipeline in feed.PIPELINES:
        score_day(defs, instance, pipeline, day, say)
        watch_performance(defs, instance, pipeline, say)
    for pipeline in feed.PIPELINES:
        outcome = tick(defs, instance, f"{pipeline}__quality_sensor")
        if isinstance(outcome, dg.SensorResult) and "failing" in (outcome.cursor or ""):
            failing = json.loads(outcome.cursor)["failing"]
            if any(day in slot for slot in failing):
                say(f"  {pipeline}__quality_sensor: alert sent (see the log line above); nothing retrains")
    return day


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
        print(line, flush=True)
        timeline.append(f"{time.perf_counter() - started:6.1f} s  {line}")

    from definitions import defs
    from mlops_dagster.registry.records import candidate_history
    from mlops_dagster.registry.store import card_path, read_card

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    instance = dg.DagsterInstance.get()
    land_history(defs, instance, say)
    for pipeline in feed.PIPELINES:
        from mlops_dagster.registry.records import current_champion

        before = current_champion(instance, pipeline)
        result = run_job(defs, instance, f"{pipeline}__retrain", {"mlops/trigger": "demo"})
        for line in retrain_outcome(instance, pipeline, result, before.version if before else None):
            say(f"{pipeline}__retrain: {line}")
        follow_champion(defs, instance, pipeline, say)
    for pipeline in feed.PIPELINES:  # the sensors' first look: the history itself does not drift
        tick(defs, instance, f"{pipeline}__drift_sensor")
    for scenario in ("normal", "normal", "drift", "quality_incident", "bad_release", "normal", "normal"):
        if scenario == "bad_release":
            bad_release(defs, instance, say)
            continue
        before = {p: len(candidate_history(instance, p)) for p in feed.PIPELINES}
        new_day(defs, instance, scenario, say)
        trained = sum(len(candidate_history(instance, p)) - before[p] for p in feed.PIPELINES)
        say(f"  new candidates: {trained}")
    print()
    for pipeline in feed.PIPELINES:
        from mlops_dagster.registry.records import current_champion

        champion = current_champion(instance, pipeline)
        if champion:
            print(
                f"{champion_line(instance, pipeline)}\n  model card: {card_path(pipeline, champion.version)}"
                f"\n  card trigger: {read_card(pipeline, champion.version)['trigger']}"
            )
    print("\nTimeline")
    print("\n".join(timeline))
    print(f"\nregistry:   mlops-dagster registry list churn   (instance: {Path(os.environ['DAGSTER_HOME'])})")
    print("quarantine: mlops-dagster quarantine list")
    print(f"make demo wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
