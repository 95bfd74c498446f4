"""Data quality: 10 GX expectations on 500,000 rows x 12 columns, plain GX vs the plugin.

Run from the repo root:

    .venv/bin/python benchmarks/quality.py [--rows 500000] [--rounds 5]

(a) plain GX:   an ephemeral context, a pandas datasource / dataframe asset / whole-frame batch
                definition, a suite of the 10 expectations, one ValidationDefinition run over the
                DataFrame (SUMMARY results, 20 unexpected values), written directly against GX.
(b) plugin:     `mlops_dagster.quality.run_expectations(df, specs)` with the same 10 expectations as
                `ExpectationSpec`s (GX expectations built from the spec, one validation, outcomes mapped
                back to JSON-serialisable `ExpectationOutcome`s).
(c) in Dagster: the `<p>/dataset` asset of a pipeline spec with the same expectations, whose python
                source returns the same DataFrame, materialized in-process; the time is that of the
                `run_expectations` call inside the run's step (the whole run is reported beside it).
                Skipped when `mlops_dagster.factory.quality_checks` does not exist.
(d) built-in:   the dataset step's other checks, the ones beside GX (`mlops_label` and the inferred
                `mlops_inferred_presence` / `_domain` / `_range`, via `factory.dataset.builtin_results`)
                against a champion whose recorded training profile is this same frame (built as the
                candidate builds it). In (c) there is no champion, so there they only note that.
                Information: the target is on (b) and (c), the plugin's cost around GX.

Everything runs in one process, warmed up once, then alternated for `--rounds` rounds; the table
reports medians and the ratio to (a) (target <= 1.2). Peak memory is measured in separate passes with
tracemalloc (timed rounds run without it): the peak of memory allocated during the validation,
against the DataFrame's own size, shows whether a second copy of the frame was made.
"""

import os

# Telemetry off before any of these libraries is imported.
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlops_dagster.quality import run_expectations  # noqa: E402
from mlops_dagster.spec.models import ExpectationSpec  # noqa: E402

TARGET_RATIO = 1.2
PLANS = ["basic", "standard", "premium", "family"]
REGIONS = ["north", "south", "east", "west", "center", "islands"]
CHANNELS = ["web", "store", "phone"]
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}

# The 10 expectations, as a spec would list them. All hold on the generated data; three hold only
# thanks to `mostly`, so their unexpected counts and samples are computed and reported too.
EXPECTATIONS: list[dict[str, Any]] = [
    {"type": "expect_column_values_to_not_be_null", "column": "customer_id"},
    {"type": "expect_column_values_to_be_unique", "column": "customer_id"},
    {"type": "expect_column_values_to_be_between", "column": "age", "min_value": 18, "max_value": 90},
    {"type": "expect_column_values_to_not_be_null", "column": "discount", "mostly": 0.95},
    {
        "type": "expect_column_values_to_be_between",
        "column": "score",
        "min_value": -3,
        "max_value": 3,
        "mostly": 0.99,
    },
    {"type": "expect_column_values_to_be_in_set", "column": "plan", "value_set": PLANS},
    {
        "type": "expect_column_values_to_be_in_set",
        "column": "region",
        "value_set": REGIONS[:5],
        "mostly": 0.9,
    },
    {"type": "expect_column_values_to_be_of_type", "column": "monthly_charges", "type_": "float64"},
    {
        "type": "expect_column_mean_to_be_between",
        "column": "monthly_charges",
        "min_value": 20,
        "max_value": 120,
    },
    {"type": "expect_table_row_count_to_be_between", "min_value": 1, "max_value": 10_000_000},
]
# Table and aggregate expectations only: no column-map metric (see the memory notes).
AGGREGATE_ONLY = [8, 9]


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """12 columns: ids, a timestamp, 7 numeric (two with nulls), 3 categorical, a 0/1 label."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, rows).astype("float64")
    age[rng.random(rows) < 0.01] = np.nan
    discount = rng.random(rows).round(2)
    discount[rng.random(rows) < 0.02] = np.nan
    region_p = [0.2, 0.2, 0.2, 0.2, 0.15, 0.05]
    return pd.DataFrame(
        {
            "customer_id": rng.permutation(rows).astype("int64"),
            "event_time": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.integers(0, 86_400 * 180, rows), "s"),
            "age": age,
            "tenure_months": rng.integers(0, 120, rows),
            "monthly_charges": rng.gamma(4.0, 15.0, rows),
            "score": rng.normal(0.0, 1.0, rows),
            "support_calls": rng.poisson(1.5, rows),
            "discount": discount,
            "plan": rng.choice(PLANS, rows),
            "region": rng.choice(REGIONS, rows, p=region_p),
            "channel": rng.choice(CHANNELS, rows),
            "churned": rng.integers(0, 2, rows),
        }
    )


# --- (a) plain Great Expectations --------------------------------------------------------------------


def plain_gx(df: pd.DataFrame, expectations: list[dict[str, Any]]) -> Any:
    """What a user writes against GX 1.x: context, datasource, suite, one validation run."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    classes = {
        "expect_column_values_to_not_be_null": gx.expectations.ExpectColumnValuesToNotBeNull,
        "expect_column_values_to_be_unique": gx.expectations.ExpectColumnValuesToBeUnique,
        "expect_column_values_to_be_between": gx.expectations.ExpectColumnValuesToBeBetween,
        "expect_column_values_to_be_in_set": gx.expectations.ExpectColumnValuesToBeInSet,
        "expect_column_values_to_be_of_type": gx.expectations.ExpectColumnValuesToBeOfType,
        "expect_column_mean_to_be_between": gx.expectations.ExpectColumnMeanToBeBetween,
        "expect_table_row_count_to_be_between": gx.expectations.ExpectTableRowCountToBeBetween,
    }
    # Same context settings as the plugin (in-memory stores, no docs site, no progress bars):
    # the default ephemeral context also draws tqdm bars on stderr, which only adds time.
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        ),
    )
    batch_definition = (
        context.data_sources.add_pandas("bench")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(
        gx.ExpectationSuite(
            name="bench",
            expectations=[
                classes[e["type"]](**{k: v for k, v in e.items() if k != "type"}) for e in expectations
            ],
        )
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="bench", data=batch_definition, suite=suite)
    )
    result = validation.run(batch_parameters={"dataframe": df}, result_format=RESULT_FORMAT)
    context.data_sources.delete("bench")  # the context is process-global in GX: let the frame go
    return result


# --- (c) inside a Dagster run --------------------------------------------------------------------------

FEED = '''"""The benchmark's python source: hands the benchmark's DataFrame to the dataset asset."""

FRAME = None


def load(context):
    return FRAME
'''

PIPELINE = """\
name: bench
dataset:
  source:
    python: bench_quality_feed:load
  entity: customer_id
  timestamp: event_time
  label: churned
model:
  task: classification
  estimator: sklearn.ensemble.HistGradientBoostingClassifier
  metric: roc_auc
"""


class DagsterCase:
    """The `bench/dataset` asset, materialized in-process; times its `run_expectations` call."""

    def __init__(self, df: pd.DataFrame, expectations: list[dict[str, Any]], workdir: Path):
        import dagster as dg
        import yaml

        import mlops_dagster.quality.runner as runner_module
        from mlops_dagster import build_definitions

        (workdir / "home").mkdir()
        (workdir / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(workdir / "home")
        (workdir / "bench_quality_feed.py").write_text(FEED)
        sys.path.insert(0, str(workdir))
        import bench_quality_feed  # type: ignore[import-not-found]

        bench_quality_feed.FRAME = df
        spec = workdir / "bench.yaml"
        spec.write_text(
            PIPELINE + yaml.safe_dump({"quality": {"expectations": expectations}}, sort_keys=False)
        )
        self.dg = dg
        self.defs = build_definitions(spec)
        self.key = dg.AssetKey(["bench", "dataset"])
        self.instance = dg.DagsterInstance.ephemeral()
        self.check_times: list[float] = []
        self.check_peaks: list[int] = []
        self.trace_memory = False
        original = runner_module.run_expectations

        def timed_run_expectations(frame: pd.DataFrame, specs: Any) -> list[Any]:
            if self.trace_memory:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
            t0 = time.perf_counter()
            outcomes = original(frame, specs)
            if self.trace_memory:  # a traced run is slower: its time is not a timing
                self.check_peaks.append(tracemalloc.get_traced_memory()[1] - base)
            else:
                self.check_times.append(time.perf_counter() - t0)
            return outcomes

        # The asset imports `run_expectations` from its module when its step runs: wrap it there.
        runner_module.run_expectations = timed_run_expectations  # type: ignore[assignment]

    def run(self) -> float:
        """One materialization; returns the whole run's wall time (the check time is recorded)."""
        t0 = time.perf_counter()
        result = self.dg.materialize(
            list(self.defs.assets or []),  # type: ignore[arg-type]
            selection=[self.key],
            instance=self.instance,
            resources=self.defs.resources,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=True,
        )
        elapsed = time.perf_counter() - t0
        checks = result.get_asset_check_evaluations()
        failed = [c.check_name for c in checks if not c.passed]
        if failed:
            raise SystemExit(f"(c) checks failed inside the Dagster run: {failed}")
        return elapsed


# --- (d) the built-in checks against a champion's training profile -----------------------------------

BUILTIN_PIPELINE = """\
name: bench_builtin
dataset:
  source:
    uri: data/{partition}.parquet
  entity: customer_id
  timestamp: event_time
  label: churned
model:
  task: classification
  estimator: sklearn.ensemble.HistGradientBoostingClassifier
  metric: roc_auc
"""


class BuiltinCase:
    """`builtin_results` on the frame, with a `Baseline` as the champion's candidate record holds it."""

    def __init__(self, df: pd.DataFrame, workdir: Path):
        import dagster as dg

        from mlops_dagster import load_specs
        from mlops_dagster.quality.baseline import Baseline, build_profile, label_classes

        path = workdir / "bench_builtin.yaml"
        path.write_text(BUILTIN_PIPELINE)
        (self.spec,) = load_specs(path)
        ds = self.spec.dataset
        columns = [c for c in df.columns if c not in (ds.entity, ds.timestamp, ds.label)]
        t0 = time.perf_counter()
        profile = build_profile(df, columns, exclude=self.spec.pii_columns)  # the candidate's step does this
        self.profile_s = time.perf_counter() - t0
        self.baseline = Baseline(
            version="bench",
            schema={c: str(t) for c, t in df.dtypes.items()},
            profile=profile,
            classes=label_classes(df[ds.label]),
        )
        self.df = df
        self.key = dg.AssetKey(["bench_builtin", "dataset"])

    def run(self) -> list[Any]:
        from mlops_dagster.factory.dataset import builtin_results

        results = builtin_results(self.spec, self.key, self.df, None, self.baseline)
        failed = [r.check_name for r in results if not r.passed]
        if failed or len(results) != 4:
            raise SystemExit(f"(d) expected 4 passing built-in checks, got {len(results)}, failed {failed}")
        return results


# --- measurement ---------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def traced_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated while `fn` runs, above what was allocated before it started."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def machine() -> str:
    import dagster as dg
    import great_expectations as gx

    return (
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"great_expectations {gx.__version__}, pandas {pd.__version__}, numpy {np.__version__}, "
        f"dagster {dg.__version__}, mlops_dagster {version('mlops_dagster')}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    df = make_frame(args.rows)
    frame_mb = df.memory_usage(index=True, deep=True).sum() / 1e6
    arrays_mb = df.memory_usage(index=True).sum() / 1e6  # what a DataFrame copy allocates
    specs = [ExpectationSpec(**e) for e in EXPECTATIONS]

    t0 = time.perf_counter()
    import great_expectations  # noqa: F401

    gx_import = time.perf_counter() - t0

    dagster: DagsterCase | None = None
    skipped = ""
    try:
        import mlops_dagster.factory.quality_checks  # noqa: F401
    except ImportError as e:
        skipped = f"(c) skipped: mlops_dagster.factory.quality_checks is not available ({e})"
    tmp = tempfile.TemporaryDirectory(prefix="bench-quality-")

    # Warm-up: first-use imports, registries, caches; and a sanity check of the outcomes.
    plain = plain_gx(df, EXPECTATIONS)
    outcomes = run_expectations(df, specs)
    assert plain.success and all(o.success for o in outcomes), [o for o in outcomes if not o.success]
    run_times: list[float] = []
    if not skipped:
        try:  # the factory is written by others: report why (c) cannot run rather than stop here
            dagster = DagsterCase(df, EXPECTATIONS, Path(tmp.name))
            dagster.run()
        except Exception as e:
            skipped = f"(c) skipped: the Dagster run failed: {type(e).__name__}: {e}"
            dagster = None
    if dagster is not None and not dagster.check_times:
        skipped = "(c) skipped: the dataset step did not call mlops_dagster.quality.runner.run_expectations"
        dagster = None
    if dagster is not None:
        dagster.check_times.clear()
    builtin = BuiltinCase(df, Path(tmp.name))
    builtin.run()

    times: dict[str, list[float]] = {"a": [], "b": [], "d": []}
    for _ in range(args.rounds):
        times["a"].append(timed(lambda: plain_gx(df, EXPECTATIONS)))
        times["b"].append(timed(lambda: run_expectations(df, specs)))
        times["d"].append(timed(builtin.run))
        if dagster is not None:
            run_times.append(dagster.run())

    # Memory, in passes of their own (tracemalloc slows allocation-heavy code down).
    peaks = {
        "a": traced_peak(lambda: plain_gx(df, EXPECTATIONS)),
        "b": traced_peak(lambda: run_expectations(df, specs)),
        "a_agg": traced_peak(lambda: plain_gx(df, [EXPECTATIONS[i] for i in AGGREGATE_ONLY])),
        "b_agg": traced_peak(lambda: run_expectations(df, [specs[i] for i in AGGREGATE_ONLY])),
        "d": traced_peak(builtin.run),
    }
    if dagster is not None:
        gc.collect()
        tracemalloc.start()
        dagster.trace_memory = True
        try:
            dagster.run()
        finally:
            dagster.trace_memory = False
            tracemalloc.stop()
        peaks["c"] = dagster.check_peaks[-1]

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"Machine: {machine()}")
    print(
        f"Data: {args.rows:,} rows x {df.shape[1]} columns ({frame_mb:.1f} MB in memory, deep), "
        f"{len(EXPECTATIONS)} expectations, {args.rounds} rounds after one warm-up; "
        f"great_expectations import {gx_import:.1f} s (not in the timings)."
    )
    print()
    print(
        "| what | median s | min s | ratio to (a) | peak traced MB (10 exp.) | peak traced MB (aggregates) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| (a) plain GX: context + datasource + suite + one validation | {med['a']:.3f} "
        f"| {min(times['a']):.3f} "
        f"| 1.00 | {peaks['a'] / 1e6:.1f} | {peaks['a_agg'] / 1e6:.1f} |"
    )
    print(
        f"| (b) `run_expectations(df, specs)` | {med['b']:.3f} | {min(times['b']):.3f} "
        f"| **{med['b'] / med['a']:.2f}** | {peaks['b'] / 1e6:.1f} | {peaks['b_agg'] / 1e6:.1f} |"
    )
    if dagster is not None:
        c = dagster.check_times
        print(
            f"| (c) the checks inside a Dagster run (`bench/dataset` step) | {statistics.median(c):.3f} "
            f"| {min(c):.3f} | **{statistics.median(c) / med['a']:.2f}** | {peaks['c'] / 1e6:.1f} | |"
        )
    print(
        f"| (d) built-in checks vs a champion profile (label + inferred presence/domain/range) "
        f"| {med['d']:.3f} | {min(times['d']):.3f} | {med['d'] / med['a']:.2f} | {peaks['d'] / 1e6:.1f} | |"
    )
    print()
    print(
        f"DataFrame: {arrays_mb:.1f} MB of column arrays (what `df.copy()` allocates; the strings of the "
        f"object columns are shared), {frame_mb:.1f} MB with them. Target ratio <= {TARGET_RATIO}."
    )
    if dagster is not None:
        print(
            f"(c) whole materialization of `bench/dataset` (source, schema guard, checks, Parquet write, "
            f"events): median {statistics.median(run_times):.3f} s."
        )
    else:
        print(skipped)
    print(
        f"(d) is information, not the target: all of a batch's checks against a champion, (b) + (d), take "
        f"{med['b'] + med['d']:.3f} s, {(med['b'] + med['d']) / med['a']:.2f}x plain GX's 10 expectations; "
        f"the champion's profile of this frame (`build_profile`, in the candidate step) took "
        f"{builtin.profile_s:.3f} s."
    )
    print(f"Process peak RSS: {peak_rss_mb():.0f} MB.")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
