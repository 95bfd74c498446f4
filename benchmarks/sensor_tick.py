"""Drift sensor tick: one evaluation of each of 100 drift sensors, each seeing one new 50,000-row partition.

Run from the repo root:

    .venv/bin/python benchmarks/sensor_tick.py [--pipelines 100] [--rows 50000] [--profile]

Setup (timed separately, not part of the result): 100 generated pipeline specs in a temporary folder
(daily-partitioned `uri` source, 10 numeric + 2 categorical feature columns, LogisticRegression or
Ridge, no expectations, no feature groups), one persistent instance in a temporary DAGSTER_HOME, and a
temporary BentoML store. Three small history partitions (2,000 rows each) are materialized for all
pipelines (one in-process run per partition), each pipeline's `<p>__retrain` job trains and promotes a
champion (with its drift profile), and each drift sensor is ticked once so that its cursor is past the
history. Then one new partition of `--rows` rows lands for every pipeline (half of them drifted: 6 of
the 10 numeric columns shifted and one categorical column re-weighted) and is materialized.

Timed: for each pipeline, `dg.build_sensor_context(...)` + `sensor(context)`, i.e. what the daemon
does per tick: read the new dataset materializations, the champion record, the champion's drift
profile (sha256-checked) and card, the new partition's Parquet file, the drift decision
(`monitoring.decision.decide_drift`: `detect_drift` on the profile plus the dataset rule) and, when it
fires, the champion pool's limit (`ensure_champion_pool`). A second pass over the same cursors, with
timers wrapped around those calls, gives the breakdown per phase.
"""

# ruff: noqa: E402  (the environment must be set before bentoml or dagster is imported)

import os
import tempfile
from pathlib import Path

_TMP = tempfile.TemporaryDirectory(prefix="mlops-sensor-tick-")
ROOT = Path(_TMP.name)
os.environ["DAGSTER_HOME"] = str(ROOT / "dagster_home")
os.environ["BENTOML_HOME"] = str(ROOT / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
(ROOT / "dagster_home").mkdir()
(ROOT / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

import argparse
import cProfile
import functools
import io
import platform
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import date, timedelta
from importlib.metadata import version
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

TARGET_SECONDS = 10.0  # per tick; Dagster's default sensor evaluation timeout is 60 s
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
START = date(2026, 1, 1)
NUMERIC = [f"x{i}" for i in range(10)]
CATEGORIES = {"plan": ["basic", "standard", "premium"], "region": ["north", "south", "east", "west"]}
DRIFTED_NUMERIC = NUMERIC[:6]  # with `plan` re-weighted: 7 of 12 columns drift, above the 0.3 share


# --------------------------------------------------------------------------------------------------
# specs and data


def pipeline_names(n: int) -> list[str]:
    return [f"p{i:03d}" for i in range(n)]


def is_drifted(index: int) -> bool:
    """Half of the pipelines get a drifted new partition (alternating in pairs, so both estimators)."""
    return (index // 2) % 2 == 0


def spec_yaml(name: str, index: int) -> str:
    if index % 2 == 0:
        model = (
            "  task: classification\n  estimator: sklearn.linear_model.LogisticRegression\n"
            "  params: {max_iter: 200}\n  metric: roc_auc\n"
        )
    else:
        model = (
            "  task: regression\n  estimator: sklearn.linear_model.Ridge\n"
            "  params: {alpha: 1.0}\n  metric: r2\n"
        )
    return (
        f"name: {name}\n"
        f"description: sensor_tick benchmark pipeline {index}\n"
        'owners: ["team:bench"]\n'
        "dataset:\n"
        "  source:\n"
        f'    uri: "data/{name}/{{partition}}.parquet"\n'
        '  partitions: {daily: {start: "2026-01-01", end: "2026-07-01"}}\n'
        "  entity: entity_id\n"
        "  timestamp: event_time\n"
        "  label: y\n"
        f"model:\n{model}"
        "monitoring:\n"
        "  drift: {max_drifted_share: 0.3, cooldown: 6h}\n"
    )


def write_specs(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        (folder / f"{name}.yaml").write_text(spec_yaml(name, i))


def make_batch(rows: int, day: date, seed: int, classification: bool, drifted: bool) -> pd.DataFrame:
    """One day of data: a stationary distribution, or the same with 7 of the 12 features drifted."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(rows, len(NUMERIC)))
    if drifted:
        x[:, : len(DRIFTED_NUMERIC)] += 1.0  # one standard deviation
    frame = pd.DataFrame(x, columns=NUMERIC)
    plan_p = [0.2, 0.3, 0.5] if drifted else [0.5, 0.3, 0.2]
    frame["plan"] = rng.choice(CATEGORIES["plan"], size=rows, p=plan_p)
    frame["region"] = rng.choice(CATEGORIES["region"], size=rows)
    signal = x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 2] + (frame["plan"] == "premium").to_numpy() * 0.5
    noise = rng.normal(0.0, 1.0, size=rows)
    label = (signal + noise > 0).astype(np.int64) if classification else signal + noise
    seconds = np.sort(rng.integers(0, 86_400, size=rows))
    frame.insert(0, "entity_id", np.arange(rows, dtype=np.int64) + seed * 10_000_000)
    frame.insert(1, "event_time", pd.Timestamp(day) + pd.to_timedelta(seconds, unit="s"))
    frame["y"] = label
    return frame


def land(folder: Path, names: list[str], day: date, rows: int, drifted: Callable[[int], bool]) -> None:
    for i, name in enumerate(names):
        target = folder / "data" / name / f"{day.isoformat()}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        seed = i * 1_000 + (day - START).days
        make_batch(rows, day, seed, i % 2 == 0, drifted(i)).to_parquet(target, index=False)


# --------------------------------------------------------------------------------------------------
# setup


def materialize_partition(
    defs: dg.Definitions, instance: dg.DagsterInstance, names: list[str], day: date
) -> None:
    """One in-process run materializing this partition of every pipeline's dataset (checks included)."""
    result = dg.materialize(
        list(defs.assets or []),  # type: ignore[arg-type]
        selection=[dg.AssetKey([n, "dataset"]) for n in names],
        instance=instance,
        resources=defs.resources,
        partition_key=day.isoformat(),
        run_config=QUIET,
        raise_on_error=False,
    )
    if not result.success:
        raise SystemExit(f"materializing the {day} partitions failed")


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, cursor: str | None) -> Any:
    sensor = defs.resolve_sensor_def(f"{name}__drift_sensor")
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"mlops_io_manager": (defs.resources or {})["mlops_io_manager"]},
    )
    return sensor(context)


def fired(result: Any) -> bool:
    return isinstance(result, dg.SensorResult) and any(
        (r.job_name or "").endswith("__retrain") for r in result.run_requests or []
    )


def setup(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    folder: Path,
    names: list[str],
    history_days: int,
    history_rows: int,
    rows: int,
) -> tuple[dict[str, str], date, dict[str, float]]:
    """History, champions, first ticks, then the new partition; returns the cursors and phase times."""
    from mlops_dagster.registry.records import current_champion

    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    days = [START + timedelta(days=d) for d in range(history_days)]
    for day in days:
        land(folder, names, day, history_rows, lambda _i: False)
        materialize_partition(defs, instance, names, day)
    phases["history partitions"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for name in names:
        job = defs.resolve_job_def(f"{name}__retrain")
        ok = job.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False).success
        if not ok or current_champion(instance, name) is None:
            raise SystemExit(f"{name}__retrain did not promote a champion")
    phases["retrain + promote"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cursors: dict[str, str] = {}
    for name in names:
        result = tick(defs, instance, name, None)
        if not isinstance(result, dg.SensorResult) or not result.cursor:
            raise SystemExit(f"{name}__drift_sensor: no cursor after the history ({result})")
        if fired(result):
            raise SystemExit(f"{name}__drift_sensor fired on the history it was trained on")
        cursors[name] = result.cursor
    phases["first ticks (history)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    new_day = START + timedelta(days=history_days)
    land(folder, names, new_day, rows, lambda i: is_drifted(i))
    phases[f"land {len(names)} x {rows:,} rows"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    materialize_partition(defs, instance, names, new_day)
    phases["materialize new partitions"] = time.perf_counter() - t0
    return cursors, new_day, phases


# --------------------------------------------------------------------------------------------------
# phase timers (second pass only)


class PhaseTimers:
    """Wraps the calls a tick makes; a call nested in another timed call counts for the outer one."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.calls: dict[str, int] = {}  # a timer never called means the tick no longer makes that call
        self.current: dict[str, float] = {}
        self.depth = 0
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.calls[label] += 1
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
        self._undo.append((owner, attr, original))
        self.times.setdefault(label, [])
        self.calls.setdefault(label, 0)

    def start(self) -> None:
        self.current = {}

    def stop(self) -> dict[str, float]:
        for label in self.times:
            self.times[label].append(self.current.get(label, 0.0))
        return self.current

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)


def instrument() -> PhaseTimers:
    """Timers on the module attributes the tick looks up when it runs (its imports are inside the sensor
    function, so a wrapped attribute is what it calls)."""
    from mlops_dagster.monitoring import decision
    from mlops_dagster.registry import pool, records, reference, store
    from mlops_dagster.sensors import drift

    timers = PhaseTimers()
    timers.wrap(drift, "new_partitions", "new dataset materializations (event log)")
    timers.wrap(records, "current_champion", "champion record (event log)")
    timers.wrap(reference, "load_reference_profile", "drift profile (BentoML store + sha256 + JSON)")
    timers.wrap(store, "read_card", "model card (drift columns)")
    timers.wrap(drift, "read_parquet", "new partition's Parquet file")
    timers.wrap(decision, "decide_drift", "decide_drift (detect_drift on the profile + the dataset rule)")
    timers.wrap(pool, "ensure_champion_pool", "champion pool limit (ticks that fire only)")
    return timers


# --------------------------------------------------------------------------------------------------
# report


def machine() -> str:
    return (
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"dagster {dg.__version__}, bentoml {version('bentoml')}, pandas {pd.__version__}, "
        f"pyarrow {version('pyarrow')}, numpy {np.__version__}, scipy {version('scipy')}, "
        f"scikit-learn {version('scikit-learn')}"
    )


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the new partition")
    parser.add_argument("--history-days", type=int, default=3)
    parser.add_argument("--history-rows", type=int, default=2_000)
    parser.add_argument("--profile", action="store_true", help="cProfile one tick and print it")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from mlops_dagster import build_definitions

    started = time.perf_counter()
    names = pipeline_names(args.pipelines)
    folder = ROOT / "specs"
    write_specs(folder, names)
    defs = build_definitions(folder)
    instance = dg.DagsterInstance.get()
    build_s = time.perf_counter() - started
    cursors, new_day, phases = setup(
        defs, instance, folder, names, args.history_days, args.history_rows, args.rows
    )
    setup_s = time.perf_counter() - started
    sensors = {n: defs.resolve_sensor_def(f"{n}__drift_sensor") for n in names}
    io_manager = (defs.resources or {})["mlops_io_manager"]

    def one_tick(name: str) -> tuple[Any, float]:
        t0 = time.perf_counter()
        context = dg.build_sensor_context(
            instance=instance, cursor=cursors[name], resources={"mlops_io_manager": io_manager}
        )
        result = sensors[name](context)
        return result, time.perf_counter() - t0

    # Timed pass: one tick per sensor, nothing wrapped.
    ticks: dict[str, float] = {}
    outcomes: dict[str, Any] = {}
    t_all = time.perf_counter()
    for name in names:
        outcomes[name], ticks[name] = one_tick(name)
    total_s = time.perf_counter() - t_all

    expected = {n for i, n in enumerate(names) if is_drifted(i)}
    did_fire = {n for n in names if fired(outcomes[n])}
    for name in names:
        result = outcomes[name]
        if not isinstance(result, dg.SensorResult):
            raise SystemExit(f"{name}: the tick skipped ({result}); it should have seen {new_day}")

    # Second pass, same cursors: where a tick's time goes.
    timers = instrument()
    second: list[float] = []
    try:
        for name in names:
            timers.start()
            _, dt = one_tick(name)
            timers.stop()
            second.append(dt)
    finally:
        timers.restore()
    unused = [label for label, n in timers.calls.items() if not n]
    if unused:
        raise SystemExit(f"phase timers never called (the tick's calls moved; update instrument()): {unused}")

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        one_tick(names[0])
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(35)
        print(out.getvalue())

    values = list(ticks.values())
    slowest = max(ticks, key=lambda n: ticks[n])
    print(f"Machine: {machine()}")
    print(
        f"Setup (not timed below): {setup_s:.1f} s for {args.pipelines} pipelines: "
        f"build_definitions {build_s:.1f} s, "
        + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in phases.items())
    )
    print(
        f"Each sensor sees 1 new partition ({new_day}, {args.rows:,} rows x 15 columns, 12 drift columns); "
        f"champion profile from {args.history_days} x {args.history_rows:,} rows\n"
    )
    print("| drift sensor ticks | value |")
    print("| --- | ---: |")
    print(f"| sensors evaluated (one tick each) | {len(values)} |")
    print(f"| total s, all ticks | {total_s:.2f} |")
    print(f"| median s per tick | {statistics.median(values):.3f} |")
    print(f"| p95 s per tick | {percentile(values, 95):.3f} |")
    print(f"| max s per tick | {max(values):.3f} ({slowest}) |")
    print(f"| target per tick (Dagster's default timeout: 60 s) | <= {TARGET_SECONDS:g} |")
    print(f"| fired (retrain + drift report requested) | {len(did_fire)} of {len(names)} |")
    print(f"| drifted partitions landed | {len(expected)} |")
    print(f"| missed drift / false alarms | {len(expected - did_fire)} / {len(did_fire - expected)} |")
    print()
    med_tick = statistics.median(second)
    print(f"Breakdown of a typical tick (second pass, same cursors; median over {len(second)} ticks):\n")
    print("| phase | median ms | share of median tick |")
    print("| --- | ---: | ---: |")
    accounted = 0.0
    for label, series in timers.times.items():
        med = statistics.median(series)
        accounted += med
        print(f"| {label} | {med * 1000:.1f} | {med / med_tick:.0%} |")
    other = med_tick - accounted
    print(
        f"| the rest (sensor context, column selection, logging, SensorResult) | {other * 1000:.1f} | "
        f"{other / med_tick:.0%} |"
    )
    print(f"| **whole tick** (second pass) | **{med_tick * 1000:.1f}** | 100% |")
    verdict = "met" if max(values) <= TARGET_SECONDS else "NOT met"
    print(f"\nTarget <= {TARGET_SECONDS:g} s per tick: {verdict} (max {max(values):.3f} s).")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    finally:
        sys.stdout.flush()
        _TMP.cleanup()
