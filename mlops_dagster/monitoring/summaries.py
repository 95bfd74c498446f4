"""Summaries of one column's values: the numeric summary a drift profile keeps, and helpers to build it.

`NumericSummary` keeps, for the finite values of a numeric reference column, either every distinct value
with its count (small or low-cardinality references) or a quantile sketch of about 1,100 knots (every
0.1% of the values plus log-spaced knots in both tails) with the exact counts below and at each knot and
the exact sum of gaps inside each bin. See `profile` for how a profile uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from mlops_dagster.monitoring.kinds import SMALL_REFERENCE_ROWS

EXACT_DISTINCT_LIMIT = 2000  # at most this many distinct numbers: keep them all, with exact counts
SKETCH_STEPS = 1000  # quantile knots every 1/SKETCH_STEPS of the reference...
SKETCH_TAIL_KNOTS = 50  # ...plus this many log-spaced knots in each tail, down to one value

CategoryKey = str | int | float | bool


@dataclass(frozen=True)
class NumericSummary:
    """The distribution of one numeric reference column (finite values only).

    Attributes:
        exact: True when `knots` are all the distinct values (no value lies between two knots).
        knots: Increasing values: the distinct values, or quantiles including the minimum and maximum.
        count_below: At each knot, how many reference values are strictly below it.
        count_upto: At each knot, how many reference values are at or below it.
        inner_gap: Per bin between knots j and j+1, the sum of (knot j+1 - v) over the reference values
            v strictly inside the bin (all 0.0 when exact).
        mean: Mean of the values.
        std: Population standard deviation (ddof=0), as Evidently norms the Wasserstein distance.
    """

    exact: bool
    knots: tuple[float, ...]
    count_below: tuple[int, ...]
    count_upto: tuple[int, ...]
    inner_gap: tuple[float, ...]
    mean: float
    std: float

    @cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(knots, count_below, count_upto, inner_gap) as numpy arrays (float64, int64, int64, float64)."""
        return (
            np.asarray(self.knots, dtype=np.float64),
            np.asarray(self.count_below, dtype=np.int64),
            np.asarray(self.count_upto, dtype=np.int64),
            np.asarray(self.inner_gap, dtype=np.float64),
        )


def finite_sorted(series: pd.Series) -> np.ndarray:
    """The finite values of a numeric column as a new sorted float64 array (nulls and +-inf dropped)."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "fiu":
        raw = series.to_numpy(copy=False)
    else:  # nullable extension dtypes
        raw = series.to_numpy(dtype=np.float64, na_value=np.nan)
    if raw.dtype.kind == "f":
        finite = np.isfinite(raw)
        values = raw[finite] if not finite.all() else raw.astype(np.float64, copy=True)
        del finite
        if values.dtype != np.float64:
            values = values.astype(np.float64)
    else:
        values = raw.astype(np.float64)
    values.sort()
    return values


def distinct_count(sorted_values: np.ndarray) -> int:
    """Distinct values in a sorted array."""
    if sorted_values.size == 0:
        return 0
    return int(np.count_nonzero(sorted_values[1:] != sorted_values[:-1])) + 1


def run_bounds(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each run of equal values in a sorted array: its start index and end index (exclusive)."""
    n = sorted_values.size
    starts = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    ends = np.append(starts[1:], n)
    return starts, ends


def summarise_numbers(values: np.ndarray, nunique: int) -> NumericSummary:
    """The `NumericSummary` of sorted finite values."""
    count = values.size
    mean = float(values.mean())
    std = float(values.std())
    if count <= SMALL_REFERENCE_ROWS or nunique <= EXACT_DISTINCT_LIMIT:
        starts, ends = run_bounds(values)
        knots = values[starts]
        return NumericSummary(
            exact=True,
            knots=tuple(knots.tolist()),
            count_below=tuple(starts.tolist()),
            count_upto=tuple(ends.tolist()),
            inner_gap=(0.0,) * (knots.size - 1),
            mean=mean,
            std=std,
        )
    tail = np.geomspace(1.0 / count, 1.0 / SKETCH_STEPS, SKETCH_TAIL_KNOTS)
    grid = np.unique(np.concatenate((np.linspace(0.0, 1.0, SKETCH_STEPS + 1), tail, 1.0 - tail)))
    ranks = np.unique(np.rint(grid * (count - 1)).astype(np.int64))
    knots = np.unique(values[ranks])
    below = np.searchsorted(values, knots, side="left")
    upto = np.searchsorted(values, knots, side="right")
    # Sum over the values strictly inside bin j of (knots[j+1] - v), from centred prefix sums.
    prefix = np.concatenate(([0.0], np.cumsum(values - mean)))
    start, end = upto[:-1], below[1:]
    gap = (end - start) * (knots[1:] - mean) - (prefix[end] - prefix[start])
    return NumericSummary(
        exact=False,
        knots=tuple(knots.tolist()),
        count_below=tuple(below.tolist()),
        count_upto=tuple(upto.tolist()),
        inner_gap=tuple(np.maximum(gap, 0.0).tolist()),
        mean=mean,
        std=std,
    )


def category_key(value: Any) -> CategoryKey:
    """A category as a JSON-native value (numpy scalars unwrapped, other objects as their str)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, str):
        return value
    return str(value)
