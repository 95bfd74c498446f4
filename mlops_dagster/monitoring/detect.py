"""`detect_drift`: Evidently's `DataDriftPreset` decisions, from a `DriftProfile`, in numpy.

For every profiled column the column's kind is decided on the current batch as Evidently does (see
`kinds`), the default test is chosen as Evidently chooses it, and the score and verdict reproduce
Evidently's (see `stattests`). Dataset drift is Evidently's rule too: the share of drifted columns is
at least `drift_share`.

Where Evidently raises or skips, this module decides, and says so in `ColumnDrift.note`:

- a profiled column missing from the current batch: drifted, method "missing";
- a column with no non-null value in the current batch: drifted, method "all_null" (Evidently raises
  "An empty column ... was provided");
- numbers in the reference and strings in the current batch, or the reverse (or datetimes): drifted,
  method "type_changed" (Evidently would test mismatched categories, or fail);
- a constant reference (std 0): the Wasserstein distance is normed by Evidently's floor of 0.001, so
  any change of value drifts and the same constant does not; with few distinct values the column is
  tested on value frequencies anyway, as in Evidently;
- a sketched (large, high-cardinality) reference column that Evidently would test as categories
  because the current batch holds at most 10 distinct integers: the reference frequency of each current
  value is exact at sketch knots and 0 elsewhere (noted as approximate).

Nulls (and +-inf) are dropped before every test, as Evidently drops them: a surge of missing values is
not drift by itself; a change of the null share by 10 points or more is noted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops_dagster.errors import DataError
from mlops_dagster.monitoring.kinds import (
    CAT,
    DEFAULT_THRESHOLDS,
    FEW_VALUES,
    METHODS,
    NUM,
    NUMERIC_ONLY_METHODS,
    SHARE_METHODS,
    TEXT,
    default_method,
    family_of,
    is_drift,
    is_numeric_family,
    kind_of,
)
from mlops_dagster.monitoring.profile import ColumnProfile, DriftProfile, build_profile
from mlops_dagster.monitoring.stattests import (
    BINNED_MIN_DISTINCT,
    CurrentNumbers,
    aligned_counts,
    binned_percents,
    chisquare_pvalue,
    is_finite,
    jensenshannon,
    ks_pvalue,
    psi,
    sketch_counts,
    wasserstein_norm,
    z_pvalue,
)
from mlops_dagster.monitoring.summaries import category_key, finite_sorted

NULL_SHARE_NOTE = 0.1  # note a change of the null share by at least this much (Evidently ignores nulls)


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict on one column.

    Attributes:
        column: The column name.
        method: "ks", "chisquare", "z", "wasserstein", "jensenshannon" or "psi"; or "missing",
            "all_null", "type_changed" when the column could not be tested (then always drifted).
        score: The p-value (ks, chisquare, z) or distance (the others); None when not computed or not
            finite.
        threshold: Drift when p-value <= threshold (ks), < threshold (chisquare, z), or distance >=
            threshold; None when no test ran.
        drifted: The verdict.
        kind: "num" or "cat", as the column was tested (for untested columns: the reference's kind).
        note: Why the verdict is not a plain test result (bad input, approximation), or None.
    """

    column: str
    method: str
    score: float | None
    threshold: float | None
    drifted: bool
    kind: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)


@dataclass(frozen=True)
class DriftResult:
    """Drift of a current batch against a reference.

    Attributes:
        dataset_drift: share_drifted >= drift_share (and at least one column tested).
        share_drifted: Drifted columns / tested columns (0.0 with no column).
        columns: Verdict per column, in the profile's column order.
        drift_share: The share the dataset decision used.
    """

    dataset_drift: bool
    share_drifted: float
    columns: dict[str, ColumnDrift]
    drift_share: float = 0.5

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns."""
        return [name for name, c in self.columns.items() if c.drifted]

    @property
    def number_drifted(self) -> int:
        """How many columns drifted."""
        return sum(c.drifted for c in self.columns.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (columns as a list, in order)."""
        return {
            "dataset_drift": self.dataset_drift,
            "share_drifted": self.share_drifted,
            "drift_share": self.drift_share,
            "number_drifted": self.number_drifted,
            "columns": [c.to_dict() for c in self.columns.values()],
        }


def detect_drift(
    reference: pd.DataFrame | DriftProfile,
    current: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    drift_share: float = 0.5,
) -> DriftResult:
    """Test every column of a current batch for drift against a reference, as Evidently's preset does.

    Args:
        reference: The reference data, or its `DriftProfile` (`build_profile`), which is faster and
            never re-reads the reference. A DataFrame is profiled first, so both give the same result.
        current: The current batch.
        columns: Columns to test; None tests every profiled column (for a DataFrame reference: the
            columns `build_profile` picks by default).
        methods: Per column, a method instead of Evidently's default: "ks", "chisquare", "z",
            "wasserstein", "jensenshannon" or "psi".
        thresholds: Per column, a threshold instead of the method's default (0.05 for p-values, 0.1 for
            distances).
        drift_share: The dataset drifts when at least this share of the tested columns drifted.

    Returns:
        The verdict per column and for the dataset.

    Raises:
        DataError: The current batch is empty, or a listed column is not in the reference profile.
        ValueError: An unknown method, a method that needs numbers on a string column, or an option
            naming a column that is not in the profile (options for profiled columns left out by
            `columns` are ignored).
    """
    if not isinstance(current, pd.DataFrame):
        raise TypeError(
            f"detect_drift expects the current batch as a pandas DataFrame, got {type(current).__name__}"
        )
    if len(current) == 0:
        raise DataError(
            "drift: the current batch is empty (0 rows); there is nothing to compare with the reference."
        )
    if current.columns.has_duplicates:
        raise DataError("drift: the current batch has duplicate column names; each column must be unique.")
    if not 0.0 <= drift_share <= 1.0:
        raise ValueError(f"drift: drift_share must be between 0 and 1, got {drift_share}")
    profile = reference if isinstance(reference, DriftProfile) else build_profile(reference, columns)
    names = profile.names if columns is None else list(columns)
    unknown = [c for c in names if c not in profile.names]
    if unknown:
        raise DataError(
            f"drift: column(s) {unknown} are not in the reference profile (it has {profile.names})"
        )
    methods = dict(methods or {})
    thresholds = dict(thresholds or {})
    for option, keys in (("methods", methods), ("thresholds", thresholds)):
        stray = [k for k in keys if k not in profile.names]  # profiled but not tested now: ignored
        if stray:
            raise ValueError(
                f"drift: `{option}` names column(s) {stray} that are not in the reference profile "
                f"(it has {profile.names})"
            )
    bad = {c: m for c, m in methods.items() if m not in METHODS}
    if bad:
        raise ValueError(f"drift: unknown method(s) {bad}; choose from {list(METHODS)}")
    results = {
        name: _column_drift(profile.column(name), current, methods.get(name), thresholds.get(name))
        for name in names
    }
    drifted = sum(r.drifted for r in results.values())
    share = drifted / len(results) if results else 0.0
    return DriftResult(
        dataset_drift=bool(results) and share >= drift_share,
        share_drifted=share,
        columns=results,
        drift_share=drift_share,
    )


def _column_drift(
    ref: ColumnProfile, frame: pd.DataFrame, method: str | None, threshold: float | None
) -> ColumnDrift:
    name = ref.name
    if name not in frame.columns:
        return ColumnDrift(
            name, "missing", None, None, True, ref.kind, "column missing from the current batch"
        )
    series = frame[name]
    family, _ = family_of(series.dtype.name)
    numbers: CurrentNumbers | None = None
    counts: dict[Any, int] | None = None
    if is_numeric_family(family):
        numbers = CurrentNumbers(finite_sorted(series), is_int=family == "int")
        count = numbers.n
    elif family in ("bool", "category", "string", "object"):
        counts = _value_counts(series)
        count = sum(counts.values())
    else:
        count = int(series.notna().sum())
    notes: list[str] = []
    if count == 0:
        note = (
            f"all {len(series)} values are null in the current batch "
            f"({_share(ref.nulls, ref.count + ref.nulls)} null in the reference)"
        )
        return ColumnDrift(name, "all_null", None, None, True, ref.kind, note)
    changed = _type_change(ref, family, counts)
    if changed:
        return ColumnDrift(name, "type_changed", None, None, True, ref.kind, changed)
    # Evidently types the column on the current batch.
    if numbers is not None:
        kind = kind_of(family, nunique=numbers.distinct(), count=count, strings=False)
    else:
        kind = CAT
        if counts is not None and kind_of(family, nunique=len(counts), count=count, strings=True) == TEXT:
            notes.append(
                "more than half the current values are distinct: Evidently would run its text drift test"
            )
    if kind == NUM and ref.numeric is None:
        kind = CAT
    if method is None:
        method = default_method(kind, ref.count, _n_values(ref, kind, numbers, counts))
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS[method]
    score, approximate = _score(ref, method, kind, numbers, counts)
    if approximate:
        notes.append(f"{method} computed from the reference's quantile sketch: approximate")
    if method == "wasserstein" and ref.numeric is not None and ref.numeric.std == 0:
        notes.append("constant reference (std 0): the distance is normed by 0.001, as in Evidently")
    ref_null, cur_null = ref.nulls / (ref.count + ref.nulls), 1 - count / len(series)
    if abs(cur_null - ref_null) >= NULL_SHARE_NOTE:
        notes.append(
            f"null share {_share(ref.nulls, ref.count + ref.nulls)} in the reference, "
            f"{_share(len(series) - count, len(series))} now (the tests ignore nulls, as Evidently's do)"
        )
    finite = is_finite(score)
    return ColumnDrift(
        column=name,
        method=method,
        score=float(score) if finite else None,
        threshold=float(threshold),
        drifted=is_drift(method, score, threshold),
        kind=kind,
        note="; ".join(notes) or None,
    )


def _score(
    ref: ColumnProfile,
    method: str,
    kind: str,
    numbers: CurrentNumbers | None,
    counts: dict[Any, int] | None,
) -> tuple[float, bool]:
    """(score, approximate) of one method."""
    if method in NUMERIC_ONLY_METHODS:
        if ref.numeric is None or numbers is None:
            raise ValueError(f"drift: method {method!r} needs numbers; column {ref.name!r} holds categories")
        if method == "ks":
            return ks_pvalue(ref.numeric, ref.count, numbers)
        return wasserstein_norm(ref.numeric, ref.count, numbers)
    ref_counts = ref.category_counts
    if counts is None and numbers is not None:
        counts = numbers.counts()
    if method in SHARE_METHODS:
        binned = kind == NUM and ref.nunique > BINNED_MIN_DISTINCT
        if (
            ref.numeric is not None
            and numbers is not None
            and (binned or (ref_counts is None and method == "psi"))
        ):
            ref_share, cur_share, approximate = binned_percents(
                ref.numeric, ref.count, ref.family == "int", numbers
            )
        elif ref_counts is None:
            # Categories now (few distinct integers) against a sketched reference: its frequency of each
            # current value is exact where the value is a knot, taken as 0 elsewhere, and the rest of the
            # reference is one more bucket, absent now (a Jensen-Shannon term linear in its mass).
            assert ref.numeric is not None and counts is not None
            keys = list(counts)
            r = sketch_counts(ref.numeric, keys)
            c = np.fromiter(counts.values(), dtype=np.float64, count=len(keys))
            r, c = np.append(r, ref.count - r.sum()), np.append(c, 0.0)
            ref_share, cur_share, approximate = r / ref.count, c / c.sum(), True
        else:
            assert counts is not None
            _, r, c = aligned_counts(ref_counts, counts)
            ref_share, cur_share, approximate = r / ref.count, c / c.sum(), False
        score = (
            jensenshannon(ref_share, cur_share) if method == "jensenshannon" else psi(ref_share, cur_share)
        )
        return score, approximate
    if ref_counts is None or counts is None:
        raise ValueError(
            f"drift: method {method!r} needs category counts; column {ref.name!r} has too many distinct "
            "reference values to keep them (use ks, wasserstein, jensenshannon or psi)"
        )
    if method == "chisquare":
        return chisquare_pvalue(ref_counts, counts), False
    return z_pvalue(ref_counts, counts), False


def _n_values(
    ref: ColumnProfile, kind: str, numbers: CurrentNumbers | None, counts: dict[Any, int] | None
) -> int:
    """Distinct non-null values in the reference and current columns together (Evidently's n_values)."""
    if kind == NUM and ref.nunique > FEW_VALUES:
        return ref.nunique  # more than FEW_VALUES: the exact number does not matter
    if numbers is not None and counts is None:
        if numbers.distinct() > FEW_VALUES:
            return numbers.distinct()
        counts = numbers.counts()
    ref_counts = ref.category_counts or {}
    return len(ref_counts.keys() | (counts or {}).keys())


def _value_counts(series: pd.Series) -> dict[Any, int]:
    counts = series.value_counts(dropna=True, sort=False)
    out: dict[Any, int] = {}
    for key, n in zip(counts.index.tolist(), counts.to_numpy().tolist(), strict=True):
        if n > 0:
            k = category_key(key)
            out[k] = out.get(k, 0) + int(n)
    return out


def _type_change(ref: ColumnProfile, family: str, counts: dict[Any, int] | None) -> str | None:
    """Why the current column cannot be compared with the reference, or None."""
    ref_numbers = ref.numeric is not None or all(
        isinstance(k, bool | int | float) for k in (ref.category_counts or {})
    )
    if is_numeric_family(family):
        cur_numbers = True
    elif counts is not None:
        cur_numbers = all(isinstance(k, bool | int | float) for k in counts)
    else:
        return f"the current column has dtype {family}; the reference had {ref.dtype}"
    if ref_numbers == cur_numbers:
        return None
    now, then = ("numbers", "strings") if cur_numbers else ("strings", "numbers")
    return f"the column holds {now} in the current batch but {then} in the reference ({ref.dtype})"


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"
