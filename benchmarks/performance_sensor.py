"""Performance sensor tick: one evaluation of each of 100 `<p>__performance_sensor`s over a live history.

Run from the repo root:

    .venv/bin/python benchmarks/performance_sensor.py [--pipelines 100] [--days 30] [--rounds 5]

Setup (timed separately): 100 generated pipeline specs (daily partitions, `feedback:`, the `batch`
target, `monitoring.performance` with window 3 and min_samples 50) in a temporary folder, one
persistent SQLite instance in a temporary DAGSTER_HOME. Per pipeline, two champion decisions (A, then
B) and `--days` partitions of `<p>/live_performance` history recorded as the asset records them (the
same materialization events and metadata keys, reported with `report_runless_asset_event`): both
versions in the first week after B's promotion, B alone after; every 5th partition with too few labels
(no evidence); the last 7 partitions scored twice (labels arriving late). Each sensor is ticked once
to move its cursor past the history. Then 3 new partitions land for every pipeline, breaching the
`min` for half of them.

Timed, alternating for `--rounds` rounds, median of the totals:
(a) the plugin: per pipeline, `dg.build_sensor_context(...)` + the sensor call, as the daemon does it
    (the latest record per partition, the champion, the records of the newest partitions until 3
    hold evidence, the decision; for the breaching half also the champion history, the rollback
    target, the alert through a log notifier, the champion pool, two run requests);
(b) the floor: per pipeline, Dagster fetching one materialization record of `<p>/live_performance`
    (`instance.fetch_materializations(key, limit=1)`), the least any sensor reading the asset does;
(c) the same fetch inside a plain `@dg.sensor` that takes the same notifier resource, evaluated the
    same way as (a): Dagster's own cost of a sensor tick that reads the asset (building a
    `ConfigurableResource` for the tick is about half of it);
(d) the performance sensors again with nothing new since their cursor: one query, then a skip.
A last pass with timers around the calls a tick makes gives the breakdown of a typical tick.
"""

# ruff: noqa: E402  (the environment must be set before dagster is imported)

import os
import tempfile
from pathlib import Path

_TMP = tempfile.TemporaryDirectory(prefix="mlops-performance-sensor-")
ROOT = Path(_TMP.name)
os.environ["DAGSTER_HOME"] = str(ROOT / "dagster_home")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
(ROOT / "dagster_home").mkdir()
(ROOT / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

import argparse
import functools
import logging
import math
import platform
import statistics
import sys
import time
import warnings
from datetime import date, timedelta
from typing import Any

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_dagster import Notifier, build_definitions
from mlops_dagster.keys import Meta, champion_key, live_performance_key

START = date(2026, 1, 1)
WINDOW = 3
SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn("version"), dg.TableColumn("metric", "float"), dg.TableColumn("samples", "int")]
)


def spec_yaml(name: str) -> str:
    return (
        f"name: {name}\n"
        "dataset:\n"
        f'  source: {{uri: "data/{name}/{{partition}}.parquet"}}\n'
        '  partitions: {daily: {start: "2026-01-01", end: "2027-01-01"}}\n'
        "  entity: entity_id\n  timestamp: event_time\n  label: y\n"
        "feedback:\n"
        f'  source: {{uri: "labels/{name}/{{partition}}.parquet"}}\n'
        "  entity: entity_id\n  timestamp: event_time\n  label: y\n"
        "model:\n  task: classification\n  estimator: sklearn.linear_model.LogisticRegression\n"
        "  metric: roc_auc\n  features: [x0, x1]\n"
        "monitoring:\n"
        f"  performance: {{metric: roc_auc, min: 0.7, max_drop: 0.1, window: {WINDOW}, min_samples: 50}}\n"
        "serving:\n  targets: [batch]\n"
    )


def versions(name: str) -> tuple[str, str]:
    return f"{name}a".ljust(64, "0"), f"{name}b".ljust(64, "0")


def champion(instance: dg.DagsterInstance, name: str, version: str, previous: str | None) -> None:
    metadata = {
        Meta.VERSION: version,
        Meta.SHA256: version,
        Meta.DECISION: "promote",
        Meta.REASONS: dg.MetadataValue.json(["benchmark"]),
        Meta.PREVIOUS: previous or "",
        Meta.TRIGGER: "retrain",
        Meta.METRICS: dg.MetadataValue.json({"roc_auc": 0.86}),
    }
    instance.report_runless_asset_event(dg.AssetMaterialization(champion_key(name), metadata=metadata))


def live(instance: dg.DagsterInstance, name: str, day: date, served: dict[str, tuple[float, int]]) -> None:
    """One partition's `<p>/live_performance` record, with the keys the asset writes."""
    samples = sum(n for _, n in served.values())
    metadata = {
        Meta.METRIC_NAME: "roc_auc",
        Meta.LIVE_METRIC: sum(m * n for m, n in served.values()) / samples,
        Meta.HOLDOUT_METRIC: 0.86,
        Meta.SAMPLES: samples,
        Meta.LABEL_COVERAGE: 0.8,
        Meta.EVIDENCE: samples >= 50,
        Meta.MODEL_VERSIONS: dg.MetadataValue.json(sorted(served)),
        Meta.LIVE_BY_VERSION: dg.MetadataValue.table(
            records=[
                dg.TableRecord({"version": v, "metric": m, "samples": n}) for v, (m, n) in served.items()
            ],
            schema=SCHEMA,
        ),
    }
    key = live_performance_key(name)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(key, partition=day.isoformat(), metadata=metadata)
    )


def history(instance: dg.DagsterInstance, name: str, days: int) -> None:
    a, b = versions(name)
    champion(instance, name, a, None)
    champion(instance, name, b, a)
    for d in range(days):
        day = START + timedelta(days=d)
        samples = 12 if d % 5 == 4 else 400
        served = {a: (0.86, samples // 2), b: (0.85, samples // 2)} if d < 7 else {b: (0.85, samples)}
        live(instance, name, day, served)
    for d in range(max(0, days - 7), days):  # late labels: the last week scored again
        live(instance, name, START + timedelta(days=d), {b: (0.84, 500)})


def breaching(index: int) -> bool:
    return index % 2 == 0


class Timers:
    """Wraps module attributes the tick calls; a call nested in another timed one counts for the outer."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.current: dict[str, float] = {}
        self.depth = 0
        self.undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return original(*args, **kwargs)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.current[label] = self.current.get(label, 0.0) + time.perf_counter() - t0
                self.depth -= 1

        setattr(owner, attr, timed)
        self.undo.append((owner, attr, original))
        self.times.setdefault(label, [])

    def lap(self) -> None:
        for label in self.times:
            self.times[label].append(self.current.get(label, 0.0))
        self.current = {}

    def restore(self) -> None:
        for owner, attr, original in reversed(self.undo):
            setattr(owner, attr, original)


def instrument() -> Timers:
    from mlops_dagster.monitoring import performance as decision
    from mlops_dagster.registry import pool, records
    from mlops_dagster.sensors import performance as sensor

    timers = Timers()
    timers.wrap(sensor, "newest_record", "a record newer than the cursor? (one query)")
    timers.wrap(sensor.LiveHistory, "read", "latest record id per partition (one query)")
    timers.wrap(records, "current_champion", "champion record")
    timers.wrap(sensor, "champion_scores", "records of the newest partitions")
    timers.wrap(decision, "decide_performance", "decide_performance")
    timers.wrap(records, "champion_history", "champion history (breaching ticks)")
    timers.wrap(pool, "ensure_champion_pool", "champion pool limit (breaching ticks)")
    return timers


def plain_sensor(key: dg.AssetKey) -> dg.SensorDefinition:
    """(c): a sensor that reads the latest record of the asset and nothing else."""

    @dg.sensor(name=f"{key.to_python_identifier()}__floor", minimum_interval_seconds=60)
    def _floor(context: dg.SensorEvaluationContext, mlops_notifier: Notifier) -> dg.SkipReason:
        context.instance.fetch_materializations(key, limit=1)
        return dg.SkipReason("read")

    return _floor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--days", type=int, default=30, help="live-performance partitions of history")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the ticks' info lines: not what is timed

    t0 = time.perf_counter()
    names = [f"p{i:03d}" for i in range(args.pipelines)]
    folder = ROOT / "specs"
    folder.mkdir()
    for name in names:
        (folder / f"{name}.yaml").write_text(spec_yaml(name))
    defs = build_definitions(folder)
    instance = dg.DagsterInstance.get()
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in names:
        history(instance, name, args.days)
    history_s = time.perf_counter() - t0

    notifier = Notifier(kind="log")
    sensors = {n: defs.resolve_sensor_def(f"{n}__performance_sensor") for n in names}

    def tick(name: str, cursor: str | None) -> Any:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"mlops_notifier": notifier}
        )
        return sensors[name](context)

    cursors: dict[str, str] = {}
    for name in names:
        result = tick(name, None)
        if not isinstance(result, dg.SensorResult) or result.run_requests or not result.cursor:
            raise SystemExit(
                f"{name}: the history tick should move the cursor and request nothing ({result})"
            )
        cursors[name] = result.cursor
    new_days = [START + timedelta(days=args.days + d) for d in range(WINDOW)]
    for i, name in enumerate(names):
        for day in new_days:
            live(instance, name, day, {versions(name)[1]: (0.55 if breaching(i) else 0.85, 400)})
    setup_s = time.perf_counter() - t0 + build_s

    keys = [live_performance_key(n) for n in names]
    plain_sensors = [plain_sensor(key) for key in keys]

    def run_plugin() -> tuple[float, list[float], dict[str, Any]]:
        per, outcomes = [], {}
        start = time.perf_counter()
        for name in names:
            t = time.perf_counter()
            outcomes[name] = tick(name, cursors[name])
            per.append(time.perf_counter() - t)
        return time.perf_counter() - start, per, outcomes

    def run_fetch() -> float:
        start = time.perf_counter()
        for key in keys:
            instance.fetch_materializations(key, limit=1)
        return time.perf_counter() - start

    def run_plain_sensor() -> float:
        start = time.perf_counter()
        for sensor in plain_sensors:
            sensor(dg.build_sensor_context(instance=instance, resources={"mlops_notifier": notifier}))
        return time.perf_counter() - start

    _, _, warm = run_plugin()  # warm-up; its cursors are past the new partitions
    quiet_cursors = {n: r.cursor for n, r in warm.items()}

    def run_quiet() -> float:
        start = time.perf_counter()
        for name in names:
            if not isinstance(tick(name, quiet_cursors[name]), dg.SkipReason):
                raise SystemExit(f"{name}: a tick with nothing new should skip")
        return time.perf_counter() - start

    run_fetch(), run_plain_sensor(), run_quiet()
    totals: dict[str, list[float]] = {"a": [], "d": [], "b": [], "c": []}
    per_tick: list[float] = []
    outcomes: dict[str, Any] = {}
    for _ in range(args.rounds):
        total, per, outcomes = run_plugin()
        totals["a"].append(total)
        per_tick += per
        totals["d"].append(run_quiet())
        totals["b"].append(run_fetch())
        totals["c"].append(run_plain_sensor())

    acted = {n for n, r in outcomes.items() if isinstance(r, dg.SensorResult) and r.run_requests}
    expected = {n for i, n in enumerate(names) if breaching(i)}
    if acted != expected:
        raise SystemExit(
            f"wrong decisions: missed {sorted(expected - acted)}, false {sorted(acted - expected)}"
        )
    for name in acted:
        jobs = sorted(r.job_name or "" for r in outcomes[name].run_requests)
        if jobs != [f"{name}__performance_rollback", f"{name}__retrain"]:
            raise SystemExit(f"{name}: unexpected run requests {jobs}")

    timers = instrument()
    second: list[float] = []
    try:
        for name in names:
            t = time.perf_counter()
            tick(name, cursors[name])
            second.append(time.perf_counter() - t)
            timers.lap()
    finally:
        timers.restore()
    never = [label for label, series in timers.times.items() if not any(series)]
    if never:
        raise SystemExit(f"timers never called (the tick's calls moved; update instrument()): {never}")

    med = {k: statistics.median(v) for k, v in totals.items()}
    n = len(names)
    print(
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"dagster {dg.__version__}; SQLite instance (persistent DAGSTER_HOME)"
    )
    print(
        f"Setup (not timed below): {setup_s:.1f} s: build_definitions {build_s:.1f} s, history "
        f"{history_s:.1f} s ({n} pipelines x ({args.days} + 7 late) live-performance records + 2 champion "
        f"records); each sensor then sees {WINDOW} new partitions, breaching for {len(expected)} of them\n"
    )
    print(
        f"| {n} sensors, one tick each (median of {args.rounds} rounds) | total s | ms per pipeline "
        "| ratio to (b) | ratio to (c) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = [
        (f"(a) `<p>__performance_sensor` ticks, {WINDOW} new partitions each", "a"),
        ("(d) the same sensors, nothing new since their cursor (most ticks)", "d"),
        ("(b) floor: one `fetch_materializations(limit=1)` per pipeline", "b"),
        ("(c) a plain `@dg.sensor` doing that fetch, with the notifier resource", "c"),
    ]
    for label, k in rows:
        print(
            f"| {label} | {med[k]:.3f} | {med[k] / n * 1000:.2f} | {med[k] / med['b']:.2f}x "
            f"| **{med[k] / med['c']:.2f}x** |"
        )
    p95 = sorted(per_tick)[max(0, math.ceil(0.95 * len(per_tick)) - 1)]
    print(
        f"\nPer tick (a), all rounds: median {statistics.median(per_tick) * 1000:.1f} ms, p95 "
        f"{p95 * 1000:.1f} ms, max {max(per_tick) * 1000:.1f} ms; "
        f"acted (rollback + retrain + alert) on {len(acted)} of {n}, all breaching, no false alarm.\n"
    )
    tick_mean = statistics.mean(second)
    print(f"Breakdown of a tick (a last pass with timers; mean over {n} ticks, half of them breaching):\n")
    print("| phase | mean ms | share of mean tick |")
    print("| --- | ---: | ---: |")
    accounted = 0.0
    for label, series in timers.times.items():
        m = statistics.mean(series)
        accounted += m
        print(f"| {label} | {m * 1000:.2f} | {m / tick_mean:.0%} |")
    rest = tick_mean - accounted
    print(
        f"| the rest (sensor context, alert, run requests, cursor) | {rest * 1000:.2f} "
        f"| {rest / tick_mean:.0%} |"
    )
    print(f"| **whole tick** | **{tick_mean * 1000:.2f}** | 100% |")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    finally:
        sys.stdout.flush()
        _TMP.cleanup()
