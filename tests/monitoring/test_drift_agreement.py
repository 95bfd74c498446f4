"""`detect_drift` on a profile agrees with Evidently 0.7.23's `DataDriftPreset` on a corpus of scenarios.

Each scenario is a seeded (reference, current) pair. Evidently runs once per scenario, through the new
API (`Report([DataDriftPreset()], include_tests=True).run(current, reference)`); its per-column verdicts
are the "drift" tests of its `ValueDrift` metrics (FAIL = drifted) and its dataset verdict is the
`DriftedColumnsCount` test (share < drift_share; FAIL = dataset drift). `detect_drift` runs on
`build_profile(reference)`. The per-column verdicts must agree on at least 95% of all columns, the
methods on every column, and the dataset verdict on every scenario; disagreements are printed with
both scores (`pytest -s`). Evidently is imported once, by the module-scoped fixture.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_dagster.drift import build_profile, detect_drift

EVIDENTLY_METHODS = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}
CITIES = ("paris", "lyon", "nice", "lille", "nantes", "brest")


def _frame(
    rng: np.random.Generator,
    n: int,
    *,
    mu: float = 0.0,
    sigma: float = 1.0,
    skew: float = 0.75,
    lam: float = 20.0,
    level_p: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1),
    flag_p: float = 0.3,
    city_p: tuple[float, ...] = (0.3, 0.25, 0.2, 0.1, 0.1, 0.05),
    new_city: float = 0.0,
    score_hi: float = 100.0,
    beta: tuple[float, float] = (2.0, 5.0),
    nulls: float = 0.0,
) -> pd.DataFrame:
    """Eight columns of different kinds; each keyword moves one of them."""
    cities = rng.choice(CITIES, n, p=city_p).astype(object)
    if new_city:
        cities[rng.random(n) < new_city] = "rennes"
    frame = pd.DataFrame(
        {
            "amount": rng.normal(mu, sigma, n),  # float: K-S / Wasserstein
            "spend": rng.lognormal(0.0, skew, n),  # skewed float
            "visits": rng.poisson(lam, n),  # int with > 10 values: numerical
            "level": rng.choice(4, n, p=level_p),  # int with 4 values: categorical
            "flag": rng.random(n) < flag_p,  # bool: categorical, binary
            "city": cities,  # strings: categorical
            "score": np.round(rng.uniform(0.0, score_hi, n), 1),  # float with many ties
            "ratio": rng.beta(*beta, n),  # bounded float
        }
    )
    if nulls:
        for column in ("amount", "spend", "score", "ratio"):
            frame.loc[rng.random(n) < nulls, column] = np.nan
        frame.loc[rng.random(n) < nulls, "city"] = None
    return frame


Builder = Callable[[np.random.Generator], tuple[pd.DataFrame, pd.DataFrame]]


def _pair(n_ref: int, n_cur: int, **current: Any) -> Builder:
    def build(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
        return _frame(rng, n_ref), _frame(rng, n_cur, **current)

    return build


def _custom(n_ref: int, n_cur: int, column: Callable[[np.random.Generator, int, bool], Any]) -> Builder:
    """The base frame plus one extra column `x`, drawn by `column(rng, n, is_current)`."""

    def build(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
        ref, cur = _frame(rng, n_ref), _frame(rng, n_cur)
        ref["x"] = column(rng, n_ref, False)
        cur["x"] = column(rng, n_cur, True)
        return ref, cur

    return build


def _half_drifted(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Exactly 4 of 8 columns drift strongly: share 0.5 >= drift_share 0.5 is dataset drift.
    return _frame(rng, 4000), _frame(rng, 4000, mu=2.0, skew=1.5, lam=30.0, flag_p=0.7)


def _few_floats(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    # 5 distinct floats in the reference, a 6th value in the current batch: n_values crosses 5.
    values = [0.5, 1.5, 2.5, 3.5, 4.5] + ([5.5] if current else [])
    return rng.choice(values, n)


def _int_kind_switch(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    # 8 distinct ints in the reference (categorical), 14 in the current batch (numerical for Evidently).
    return rng.integers(0, 14 if current else 8, n)


def _int_kind_switch_back(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    # 14 distinct ints in the reference (numerical), 8 in the current batch (categorical for Evidently).
    return rng.integers(0, 8 if current else 14, n)


def _floats_to_few_ints(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    # Continuous reference (a sketch), integers with 5 values now: Evidently tests categories.
    values = rng.normal(0.0, 1.0, n)
    return np.clip(np.round(values), -2, 2).astype(np.int64) if current else values


def _bimodal(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    weight = 0.6 if current else 0.5
    left = rng.random(n) < weight
    return np.where(left, rng.normal(-2.0, 0.5, n), rng.normal(2.0, 0.5, n))


def _pareto(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    return rng.pareto(3.0, n)


def _heavier_tail(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    return rng.exponential(1.0, n) * (1.0 + 0.5 * (rng.random(n) < (0.2 if current else 0.0)))


def _uniform_to_triangle(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    return rng.triangular(0.0, 0.5, 1.0, n) if current else rng.uniform(0.0, 1.0, n)


def _constant(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    return np.full(n, 3.0)


def _zipf_categories(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    weights = 1.0 / np.arange(1, 61) ** (1.3 if current else 1.1)
    return rng.choice([f"sku{i:02d}" for i in range(60)], n, p=weights / weights.sum()).astype(object)


def _as_category(rng: np.random.Generator, n: int, current: bool) -> pd.Categorical:
    return pd.Categorical(rng.choice(["s", "m", "l", "xl"], n, p=[0.2, 0.4, 0.3, 0.1] if current else None))


def _wide_ints(rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    return rng.integers(0, 200, n) + (3 if current else 0)


SCENARIOS: dict[str, Builder] = {
    "none": _pair(5000, 5000),
    "none_small_reference": _pair(600, 3000),
    "none_big_current": _pair(3000, 20000),
    "mean_shift_small": _pair(5000, 5000, mu=0.05),
    "mean_shift_small_small_reference": _pair(800, 4000, mu=0.1),
    "mean_shift_large": _pair(5000, 5000, mu=1.0),
    "mean_shift_large_small_reference": _pair(500, 2000, mu=1.0),
    "mean_shift_borderline": _pair(8000, 8000, mu=0.1),
    "variance_change": _pair(5000, 5000, sigma=1.5),
    "variance_change_small_reference": _pair(900, 5000, sigma=1.5),
    "new_category": _pair(5000, 5000, new_city=0.2),
    "new_category_small_reference": _pair(700, 3000, new_city=0.05),
    "category_mix_change": _pair(5000, 5000, city_p=(0.1, 0.1, 0.2, 0.2, 0.2, 0.2)),
    "category_mix_change_small_reference": _pair(600, 3000, city_p=(0.25, 0.25, 0.2, 0.1, 0.1, 0.1)),
    "missing_values_surge": _pair(5000, 5000, nulls=0.4),
    "missing_values_surge_small_reference": _pair(800, 3000, nulls=0.4),
    "one_column_drifted": _pair(5000, 5000, lam=26.0),
    "many_columns_drifted": _pair(
        5000, 5000, mu=1.0, skew=1.2, lam=30.0, level_p=(0.1, 0.2, 0.3, 0.4), flag_p=0.6, beta=(5.0, 2.0)
    ),
    "half_of_the_columns_drifted": _half_drifted,
    "binary_shift": _pair(5000, 5000, flag_p=0.4),
    "binary_shift_small_reference": _pair(1000, 5000, flag_p=0.4),
    "integer_levels_shift": _pair(5000, 5000, level_p=(0.3, 0.3, 0.2, 0.2)),
    "integer_levels_shift_small_reference": _pair(500, 3000, level_p=(0.25, 0.25, 0.25, 0.25)),
    "skew_change": _pair(5000, 5000, skew=1.0),
    "skew_change_small_reference": _pair(800, 3000, skew=1.0),
    "ties_range_change": _pair(5000, 5000, score_hi=110.0),
    "reference_of_1000_rows": _pair(1000, 10000, mu=0.08),
    "reference_of_1001_rows": _pair(1001, 10000, mu=0.08),
    "big_reference_small_current": _pair(20000, 2000, mu=0.15, sigma=1.1),
    "few_float_values": _custom(5000, 5000, _few_floats),
    "few_float_values_small_reference": _custom(600, 3000, _few_floats),
    "int_kind_switch": _custom(5000, 5000, _int_kind_switch),
    "int_kind_switch_back": _custom(5000, 5000, _int_kind_switch_back),
    "int_kind_switch_back_small_reference": _custom(700, 3000, _int_kind_switch_back),
    "floats_to_few_ints": _custom(5000, 3000, _floats_to_few_ints),
    "bimodal_weight_change": _custom(5000, 5000, _bimodal),
    "pareto_tail_no_drift": _custom(10000, 10000, _pareto),
    "heavier_tail": _custom(5000, 5000, _heavier_tail),
    "uniform_to_triangle": _custom(5000, 5000, _uniform_to_triangle),
    "constant_column": _custom(5000, 5000, _constant),
    "constant_column_small_reference": _custom(500, 2000, _constant),
    "zipf_categories": _custom(8000, 8000, _zipf_categories),
    "category_dtype": _custom(5000, 5000, _as_category),
    "wide_integers_shift": _custom(5000, 5000, _wide_ints),
}


@dataclass(frozen=True)
class Outcome:
    scenario: str
    evidently: dict[str, tuple[str, float, bool]]  # column -> (method, score, drifted)
    evidently_dataset: bool
    ours: dict[str, tuple[str, float | None, bool]]
    ours_dataset: bool


def _run_evidently(report_cls: Any, preset_cls: Any, reference: pd.DataFrame, current: pd.DataFrame) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = report_cls([preset_cls()], include_tests=True).run(current, reference)
    data = snapshot.dict()
    columns: dict[str, tuple[str, float, bool]] = {}
    by_id: dict[str, str] = {}
    for metric in data["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            by_id[metric["id"]] = config["column"]
            columns[config["column"]] = (EVIDENTLY_METHODS[config["method"]], float(metric["value"]), False)
    dataset = None
    for test in data["tests"]:
        metric_id = test["metric_config"]["metric_id"]
        if metric_id in by_id:
            method, score, _ = columns[by_id[metric_id]]
            columns[by_id[metric_id]] = (method, score, test["status"] == "FAIL")
        elif test["metric_config"]["params"]["type"].endswith(":DriftedColumnsCount"):
            dataset = test["status"] == "FAIL"
    assert dataset is not None, "no DriftedColumnsCount test in the snapshot"
    return columns, dataset


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    results = {}
    for seed, (name, build) in enumerate(SCENARIOS.items()):
        reference, current = build(np.random.default_rng(1000 + seed))
        evidently, evidently_dataset = _run_evidently(Report, DataDriftPreset, reference, current)
        ours = detect_drift(build_profile(reference), current)
        results[name] = Outcome(
            scenario=name,
            evidently=evidently,
            evidently_dataset=evidently_dataset,
            ours={c: (d.method, d.score, d.drifted) for c, d in ours.columns.items()},
            ours_dataset=ours.dataset_drift,
        )
    return results


def _disagreements(outcome: Outcome) -> list[str]:
    lines = []
    for column, (method, score, drifted) in outcome.evidently.items():
        ours = outcome.ours.get(column)
        if ours is None or ours[0] != method or ours[2] != drifted:
            lines.append(
                f"{outcome.scenario}/{column}: evidently {method} {score:.6g} {drifted}; ours {ours}"
            )
    return lines


def test_corpus_is_varied() -> None:
    assert len(SCENARIOS) >= 30
    sizes = [build(np.random.default_rng(0))[0].shape[0] for build in SCENARIOS.values()]
    assert sum(n <= 1000 for n in sizes) >= 5 and sum(n > 1000 for n in sizes) >= 20


def test_same_columns_tested(outcomes: dict[str, Outcome]) -> None:
    for outcome in outcomes.values():
        assert sorted(outcome.ours) == sorted(outcome.evidently), outcome.scenario


def test_column_verdicts_agree_on_95_percent(outcomes: dict[str, Outcome]) -> None:
    total = sum(len(o.evidently) for o in outcomes.values())
    lines = [line for o in outcomes.values() for line in _disagreements(o)]
    agreement = 1 - len(lines) / total
    print(f"\nper-column agreement: {total - len(lines)}/{total} = {agreement:.1%}")
    for line in lines:
        print("  disagreement:", line)
    assert agreement >= 0.95, "\n".join(lines)


def test_methods_agree_everywhere(outcomes: dict[str, Outcome]) -> None:
    wrong = [
        f"{o.scenario}/{c}: evidently {m}, ours {o.ours[c][0]}"
        for o in outcomes.values()
        for c, (m, _, _) in o.evidently.items()
        if o.ours[c][0] != m
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_dataset_verdict_agrees(outcomes: dict[str, Outcome], scenario: str) -> None:
    outcome = outcomes[scenario]
    assert outcome.ours_dataset == outcome.evidently_dataset, _disagreements(outcome)


def test_corpus_has_both_verdicts(outcomes: dict[str, Outcome]) -> None:
    verdicts = [o.evidently_dataset for o in outcomes.values()]
    assert any(verdicts) and not all(verdicts)
    methods = {m for o in outcomes.values() for m, _, _ in o.evidently.values()}
    assert methods == {"ks", "chisquare", "z", "wasserstein", "jensenshannon"}
