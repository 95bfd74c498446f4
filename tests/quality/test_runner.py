"""run_expectations: one GX validation per call, outcomes in order, JSON-able, no copy, nothing left behind.

Great Expectations is slow to import, so most cases share one run over one small frame
(the module-scoped `outcomes` fixture) and each test reads its own outcome.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import math
import tracemalloc
import weakref
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from mlops_dagster.quality import ExpectationOutcome, check_names, run_expectations
from mlops_dagster.quality.runner import to_jsonable
from mlops_dagster.spec.models import ExpectationSpec

NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"


def exp(kind: str, /, **kwargs: object) -> ExpectationSpec:
    return ExpectationSpec(type=kind, **kwargs)


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            "age": [25.0, None, 40.0, None, 31.0, 52.0, 19.0, 33.0, 47.0, 28.0],
            "score": [0.1, 0.5, np.inf, 0.7, -np.inf, 0.2, 0.3, 0.9, 0.4, 0.6],
            "plan": ["basic", "pro", "basic", "gold", "basic", "pro", "silver", "basic", "pro", "basic"],
            "event_time": pd.to_datetime(["2026-01-01"] * 2 + [f"2026-01-{d:02d}" for d in range(3, 11)]),
        }
    )


EXPECTATIONS = [
    exp(NOT_NULL, column="age"),  # 2 nulls
    exp(BETWEEN, column="age", min_value=18, max_value=50),  # 52 is out
    exp("expect_column_values_to_be_in_set", column="plan", value_set=["basic", "pro"]),  # gold, silver
    exp("expect_column_values_to_be_unique", column="event_time"),  # two rows share a timestamp
    exp("expect_column_values_to_be_of_type", column="plan", type_="int64"),
    exp(NOT_NULL, column="no_such_column"),
    exp(BETWEEN, column="score", min_value=0, max_value=1),  # +inf and -inf
    exp("expect_column_values_to_be_unique", column="customer_id"),  # passes
    exp("expect_table_row_count_to_be_between", min_value=1, max_value=100),  # passes, observed 10
    exp(NOT_NULL, column="age"),  # the same expectation again: its own outcome
    exp("expect_column_values_to_not_be_nul", column="age"),  # invalid spec: a failed outcome
]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, ExpectationOutcome]:
    df = frame()
    result = run_expectations(df, EXPECTATIONS)
    assert [o.check_name for o in result] == check_names(EXPECTATIONS)
    assert [o.expectation_type for o in result] == [e.type for e in EXPECTATIONS]
    return {o.check_name: o for o in result}


def test_outcomes_are_json_serialisable(outcomes):
    for outcome in outcomes.values():
        text = json.dumps(vars(outcome), allow_nan=False)  # strict JSON: no NaN, no Infinity
        assert json.loads(text)["check_name"] == outcome.check_name
        assert len(outcome.unexpected_sample) <= 20


def test_not_null_with_nulls(outcomes):
    o = outcomes[f"{NOT_NULL}__age"]
    assert (o.success, o.column, o.error) == (False, "age", None)
    assert o.unexpected_count == 2
    assert o.unexpected_percent == pytest.approx(20.0)
    assert o.unexpected_sample == [None, None]  # NaN -> None
    assert o.result["element_count"] == 10
    assert outcomes[f"{NOT_NULL}__age_2"] == ExpectationOutcome(
        **{**vars(o), "check_name": f"{NOT_NULL}__age_2"}
    )


def test_between(outcomes):
    o = outcomes[f"{BETWEEN}__age"]
    assert (o.success, o.unexpected_count, o.unexpected_sample) == (False, 1, [52.0])
    assert o.unexpected_percent == pytest.approx(12.5)  # of the 8 non-null values


def test_infinite_values(outcomes):
    o = outcomes[f"{BETWEEN}__score"]
    assert (o.success, o.unexpected_count) == (False, 2)
    assert o.unexpected_sample == ["inf", "-inf"]


def test_in_set(outcomes):
    o = outcomes["expect_column_values_to_be_in_set__plan"]
    assert (o.success, o.unexpected_count) == (False, 2)
    assert sorted(o.unexpected_sample) == ["gold", "silver"]


def test_unique_with_timestamps(outcomes):
    o = outcomes["expect_column_values_to_be_unique__event_time"]
    assert (o.success, o.unexpected_count) == (False, 2)
    assert o.unexpected_sample == ["2026-01-01T00:00:00", "2026-01-01T00:00:00"]  # timestamps -> ISO


def test_of_type(outcomes):
    o = outcomes["expect_column_values_to_be_of_type__plan"]
    assert o.success is False and o.error is None


def test_passing(outcomes):
    o = outcomes["expect_column_values_to_be_unique__customer_id"]
    assert (o.success, o.unexpected_count, o.unexpected_sample, o.error) == (True, 0, [], None)
    o = outcomes["expect_table_row_count_to_be_between"]
    assert (o.success, o.observed_value, o.column) == (True, 10, None)


def test_missing_column_is_a_failed_outcome(outcomes):
    o = outcomes[f"{NOT_NULL}__no_such_column"]
    assert o.success is False
    assert o.error is not None and "'no_such_column' not in the DataFrame" in o.error
    assert "customer_id, age, score, plan, event_time" in o.error  # what the frame does have


def test_invalid_spec_is_a_failed_outcome(outcomes):
    o = outcomes["expect_column_values_to_not_be_nul__age"]
    assert o.success is False
    assert o.error is not None and "did you mean 'expect_column_values_to_not_be_null'" in o.error


def test_empty_frame_fails_every_expectation():
    result = run_expectations(frame().iloc[:0], EXPECTATIONS[:3])
    assert [o.success for o in result] == [False, False, False]
    assert all(o.error and "DataFrame is empty (0 rows" in o.error for o in result)
    assert run_expectations(frame(), []) == []


def test_frame_is_passed_by_reference_and_released(monkeypatch, capfd):
    """GX's batch holds the caller's DataFrame itself, and nothing holds it after the call."""
    from great_expectations.execution_engine.pandas_batch_data import PandasBatchData

    seen: list[int] = []
    original = PandasBatchData.__init__

    def spy(self, execution_engine, dataframe):  # type: ignore[no-untyped-def]
        seen.append(id(dataframe))
        original(self, execution_engine, dataframe)

    monkeypatch.setattr(PandasBatchData, "__init__", spy)
    import great_expectations as gx
    from great_expectations.data_context import project_manager

    mine = gx.get_context(mode="ephemeral")  # a context the caller had: GX's global is given back
    df = frame()
    run_expectations(df, EXPECTATIONS[:2])
    assert seen and set(seen) == {id(df)}
    assert project_manager.get_current_project() is mine

    ref = weakref.ref(df)
    del df
    gc.collect()
    assert ref() is None, "a GX context still references the DataFrame after run_expectations returned"
    err = capfd.readouterr().err
    assert "Calculating Metrics" not in err and "%|" not in err  # no progress bars


def test_no_copy_of_the_frame_in_memory():
    """Peak allocation during a run stays far below the frame's size (a copy would be >= 100%).

    Table and aggregate expectations only: GX's own pandas column-map metrics filter nulls with
    `df[df[column].notnull()]`, a transient full copy that plain GX makes as well.
    """
    rng = np.random.default_rng(0)
    df = pd.DataFrame({f"x{i}": rng.normal(size=20_000) for i in range(50)})  # 8 MB
    expectations = [
        exp("expect_table_row_count_to_be_between", min_value=1),
        exp("expect_column_max_to_be_between", column="x1", max_value=100),
        exp("expect_table_columns_to_match_set", column_set=list(df.columns)),
    ]
    run_expectations(df, expectations)  # warm: first-use imports and caches
    gc.collect()
    tracemalloc.start()
    try:
        result = run_expectations(df, expectations)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(o.success for o in result)
    size = int(df.memory_usage(index=True).sum())
    assert peak < 0.5 * size, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB frame"


@pytest.mark.parametrize(
    "value, expected",
    [
        (np.int64(3), 3),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (float("nan"), None),
        (np.nan, None),
        (float("inf"), "inf"),
        (-np.inf, "-inf"),
        (pd.NaT, None),
        (pd.NA, None),
        (None, None),
        (pd.Timestamp("2026-01-02 03:04:05"), "2026-01-02T03:04:05"),
        (np.datetime64("2026-01-02"), "2026-01-02T00:00:00"),
        (np.datetime64("NaT"), None),
        (np.timedelta64(90, "s"), "P0DT0H1M30S"),
        (np.float64(2.5), 2.5),
        (dt.date(2026, 1, 2), "2026-01-02"),
        (pd.Timedelta(hours=1), "P0DT1H0M0S"),
        (Decimal("1.5"), 1.5),
        (b"ab", "ab"),
        ({"a": [np.int8(1), (np.nan, 2)], 3: {4}}, {"a": [1, [None, 2]], "3": [4]}),
        (np.array([1.0, np.nan]), [1.0, None]),
        (object, str(object)),
    ],
)
def test_to_jsonable(value, expected):
    got = to_jsonable(value)
    assert got == expected
    json.dumps(got, allow_nan=False)
    if isinstance(expected, float):
        assert not math.isnan(got)


def test_numbers_arriving_as_text_are_named_under_numeric_bounds():
    """GX only says the types differ; the outcome names the column, its dtype and the values at fault."""
    df = pd.DataFrame({"age": [31, 44.5, "forty", None, "52", np.int64(7)]}, dtype=object)
    spec = ExpectationSpec.model_validate(
        {"type": "expect_column_values_to_be_between", "column": "age", "min_value": 0, "max_value": 120}
    )
    (o,) = run_expectations(df, [spec])
    assert o.success is False
    assert o.error is not None
    assert "column 'age' is object, not numeric: 2 value(s) are not numbers (e.g. 'forty', '52')" in o.error
    assert "Great Expectations raised:" in o.error  # GX's own words are kept
    assert (o.unexpected_count, o.unexpected_percent, o.unexpected_sample) == (2, 40.0, ["forty", "52"])
    json.dumps(o.result)
    # Text bounds on a text column are GX's business: no numeric diagnosis there.
    words = pd.DataFrame({"plan": ["a", "b", 3]}, dtype=object)
    text = ExpectationSpec.model_validate(
        {"type": "expect_column_values_to_be_between", "column": "plan", "min_value": "a", "max_value": "z"}
    )
    (t,) = run_expectations(words, [text])
    assert t.error is None or "not numeric" not in t.error
