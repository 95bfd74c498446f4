"""Drift: `detect_drift` on a reference profile vs Evidently's `DataDriftPreset`, 500,000 rows x 12 columns.

Run from the repo root:

    .venv/bin/python benchmarks/drift.py [--rows 500000] [--reference-rows 100000] [--rounds 5]

Data (seeded): a reference of 100,000 rows and a current batch of 500,000 rows, 12 columns: 10 numeric
(4 normal, 2 lognormal, 2 beta, 2 Poisson counts with > 10 distinct values, all numerical for Evidently)
and 2 string columns (5 and 30 categories). In the current batch 3 numeric columns and 1 string column
have drifted, by different amounts.

(a) ours:      `build_profile(reference)` once (timed separately), then `detect_drift(profile, current)`,
               warmed up once (lazy scipy imports), then `--rounds` timed calls; the median is reported.
(b) Evidently: `Report([DataDriftPreset()], include_tests=True).run(current, reference)` once on the same
               frames (its import is timed separately and excluded).

Peak memory of (a) is measured in a separate call under tracemalloc (the peak of memory allocated during
the call) and set against the current batch: its column arrays, and its full size with the strings.
Agreement: per-column verdicts (Evidently's ValueDrift tests, FAIL = drifted), methods and the dataset
verdict (its DriftedColumnsCount test). `--skip-evidently` runs (a) only.
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
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlops_dagster.drift import build_profile, detect_drift  # noqa: E402

TARGET_SPEEDUP = 100.0
TARGET_MEMORY = 1.5
EVIDENTLY_METHODS = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}


def make_frame(rows: int, seed: int, drifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    shift = 1.0 if drifted else 0.0
    cities = [f"city_{i:02d}" for i in range(30)]
    weights = 1.0 / np.arange(1, 31) ** (1.4 if drifted else 1.0)
    return pd.DataFrame(
        {
            "n0": rng.normal(0.0, 1.0, rows),
            "n1": rng.normal(10.0, 2.0, rows),
            "n2": rng.normal(-5.0, 0.5, rows) + 0.25 * shift,  # drift: half a std
            "n3": rng.normal(100.0, 15.0, rows),
            "l0": rng.lognormal(0.0, 0.75, rows),
            "l1": rng.lognormal(2.0, 1.0 + 0.3 * shift, rows),  # drift: heavier tail
            "b0": rng.beta(2.0, 5.0, rows),
            "b1": rng.beta(5.0, 2.0, rows),
            "p0": rng.poisson(30.0, rows),
            "p1": rng.poisson(50.0 + 3.0 * shift, rows),  # drift: +3 on a std of ~7
            "plan": rng.choice(["basic", "standard", "premium", "family", "trial"], rows).astype(object),
            "city": rng.choice(cities, rows, p=weights / weights.sum()).astype(object),  # drift: mix
        }
    )


def ours(profile: Any, current: pd.DataFrame, rounds: int) -> tuple[Any, float, float, list[float]]:
    started = time.perf_counter()
    result = detect_drift(profile, current)  # warm-up (lazy scipy imports, when a test needs them)
    first = time.perf_counter() - started
    times = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        result = detect_drift(profile, current)
        times.append(time.perf_counter() - started)
    return result, first, statistics.median(times), times


def peak_memory(profile: Any, current: pd.DataFrame) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    detect_drift(profile, current)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def evidently(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[dict[str, Any], bool, float, float]:
    started = time.perf_counter()
    from evidently import Report
    from evidently.presets import DataDriftPreset

    imported = time.perf_counter() - started
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
    elapsed = time.perf_counter() - started
    data = snapshot.dict()
    columns: dict[str, Any] = {}
    by_id = {}
    for metric in data["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            by_id[metric["id"]] = config["column"]
            columns[config["column"]] = [EVIDENTLY_METHODS[config["method"]], float(metric["value"]), False]
    dataset = False
    for test in data["tests"]:
        metric_id = test["metric_config"]["metric_id"]
        if metric_id in by_id:
            columns[by_id[metric_id]][2] = test["status"] == "FAIL"
        elif test["metric_config"]["params"]["type"].endswith(":DriftedColumnsCount"):
            dataset = test["status"] == "FAIL"
    return columns, dataset, elapsed, imported


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args()

    reference = make_frame(args.reference_rows, seed=0, drifted=False)
    current = make_frame(args.rows, seed=1, drifted=True)
    arrays_mb = current.memory_usage(index=False, deep=False).sum() / 1e6
    full_mb = current.memory_usage(index=False, deep=True).sum() / 1e6

    started = time.perf_counter()
    profile = build_profile(reference)
    build_s = time.perf_counter() - started
    result, first_s, median_s, times = ours(profile, current, args.rounds)
    peak_mb = peak_memory(profile, current) / 1e6

    print(
        f"# Drift: {args.rows:,} current rows x {current.shape[1]} columns vs a {args.reference_rows:,}-row "
        f"reference profile\n\nPython {platform.python_version()}, {os.cpu_count()} cores, numpy "
        f"{np.__version__}, pandas {pd.__version__}, scipy {version('scipy')}, "
        f"evidently {version('evidently')}\n"
    )
    print(f"profile: {len(profile.to_json()) / 1e3:.0f} kB of JSON, sha256 {profile.sha256[:12]}...")
    print(f"ours: rounds {', '.join(f'{t:.3f}' for t in times)} s; first call (warm-up) {first_s:.3f} s\n")

    rows = [
        ("(a) ours: `build_profile(reference)` (once per reference)", f"{build_s:.3f}"),
        ("(a) ours: `detect_drift(profile, current)` (median)", f"{median_s:.3f}"),
    ]
    agreement_lines: list[str] = []
    if not args.skip_evidently:
        columns, dataset, evidently_s, import_s = evidently(reference, current)
        rows.append(
            (f"(b) Evidently `DataDriftPreset` run (import {import_s:.1f} s excluded)", f"{evidently_s:.2f}")
        )
        rows.append(
            (
                f"**speed-up (b) / (a) decision** (target >= {TARGET_SPEEDUP:.0f}x)",
                f"**{evidently_s / median_s:.0f}x**",
            )
        )
        same = sum(result.columns[c].drifted == d for c, (_, _, d) in columns.items())
        same_method = sum(result.columns[c].method == m for c, (m, _, _) in columns.items())
        agreement_lines.append(
            f"Agreement: column verdicts {same}/{len(columns)}, methods {same_method}/{len(columns)}, "
            f"dataset verdict {'same' if dataset == result.dataset_drift else 'DIFFERENT'} "
            f"(drift: {dataset}, share {result.share_drifted:.2f})."
        )
        agreement_lines.append("\n| column | method | Evidently score | ours | drifted (Evidently / ours) |")
        agreement_lines.append("| --- | --- | ---: | ---: | --- |")
        for name, (method, score, drifted) in columns.items():
            mine = result.columns[name]
            agreement_lines.append(
                f"| {name} | {method} | {score:.6g} | {mine.score:.6g} | {drifted} / {mine.drifted} |"
            )
    rows.append(
        (
            f"(a) peak traced memory of one decision, MB (batch: {arrays_mb:.1f} MB of column arrays, "
            f"{full_mb:.1f} MB with strings)",
            f"{peak_mb:.1f}",
        )
    )
    rows.append(
        (
            f"**peak / batch arrays** (target <= {TARGET_MEMORY}x)",
            f"**{peak_mb / arrays_mb:.2f}x** ({peak_mb / full_mb:.2f}x of the full size)",
        )
    )
    print("| what | value |\n| --- | ---: |")
    for what, value in rows:
        print(f"| {what} | {value} |")
    print()
    print("\n".join(agreement_lines))


if __name__ == "__main__":
    main()
