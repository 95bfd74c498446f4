"""`DriftProfile`: what drift checks need to know about a reference dataset, so they never re-read it.

Per column it keeps the dtype, Evidently's kind for it ("num" or "cat"), the non-null count, the null
count, the number of distinct values and either

- for numbers, a `NumericSummary`: the distinct values with their exact counts when the reference is
  small (at most 1,000 values, the size up to which Evidently uses exact tests) or has at most 2,000
  distinct values; otherwise a quantile sketch of about 1,100 knots (every 0.1% plus finer steps in
  both tails) with, at each knot, the exact number of reference values below and at-or-below it, and
  the exact sum of the gaps between the reference values inside each bin and the bin's right knot.
  That is enough for the Wasserstein-1 distance to the current data to be exact bin by bin (only a sign
  change of the CDF difference inside one bin of 0.1% of the reference is approximated) and for
  Kolmogorov-Smirnov, chi-square, Z, Jensen-Shannon and PSI to be exact on small or low-cardinality
  references; or
- for bool, category and string columns, the frequency of every category.

A profile serialises to canonical JSON (sorted keys, no whitespace, shortest round-trip floats), whose
sha256 identifies it: `save_profile` returns that hash and `load_profile` refuses a file that does
not match the recorded one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from mlops_dagster.errors import DataError, IntegrityError
from mlops_dagster.monitoring.kinds import CAT, TEXT, UNTESTED, family_of, is_numeric_family, kind_of
from mlops_dagster.monitoring.summaries import (
    CategoryKey,
    NumericSummary,
    category_key,
    distinct_count,
    finite_sorted,
    summarise_numbers,
)

FORMAT = "mlops_dagster/drift-profile@1"


@dataclass(frozen=True)
class ColumnProfile:
    """One reference column.

    Attributes:
        name: Column name.
        dtype: The pandas dtype name in the reference.
        family: Its dtype family ("float", "int", "bool", "category", "string", "object").
        kind: Evidently's kind for the reference column: "num" or "cat" (a string column with more than
            half distinct values, which Evidently calls text, is profiled as "cat" when asked for).
        count: Non-null (and, for numbers, finite) values.
        nulls: Null or infinite values (Evidently drops both before testing).
        nunique: Distinct non-null values.
        numeric: The distribution, for numeric columns.
        categories: (value, count) of every category, sorted, for the other columns.
    """

    name: str
    dtype: str
    family: str
    kind: str
    count: int
    nulls: int
    nunique: int
    numeric: NumericSummary | None = None
    categories: tuple[tuple[CategoryKey, int], ...] | None = None

    @cached_property
    def category_counts(self) -> dict[CategoryKey, int] | None:
        """The value -> count mapping (categories, or the exact distinct numbers), or None for a sketch."""
        if self.categories is not None:
            return dict(self.categories)
        if self.numeric is not None and self.numeric.exact:
            knots, below, upto, _ = self.numeric.arrays
            return dict(zip(knots.tolist(), (upto - below).tolist(), strict=True))
        return None


@dataclass(frozen=True)
class DriftProfile:
    """Everything `detect_drift` needs about a reference dataset. Build it with `build_profile`.

    Attributes:
        rows: Rows in the reference data.
        columns: One profile per profiled column, in the reference's column order.
    """

    rows: int
    columns: tuple[ColumnProfile, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise DataError(
                f"drift profile: duplicate column names {sorted({n for n in names if names.count(n) > 1})}"
            )

    @property
    def names(self) -> list[str]:
        """The profiled column names, in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnProfile:
        """The profile of one column; KeyError if it was not profiled."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, floats in shortest round-trip form."""
        return json.dumps(_profile_to_dict(self), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> DriftProfile:
        """Read a profile written by `to_json`. Raises DataError if it is not one."""
        try:
            return _profile_from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"drift profile: not a valid {FORMAT} document ({e})") from e

    @cached_property
    def sha256(self) -> str:
        """Hex sha256 of the canonical JSON (`to_json()` in UTF-8)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def build_profile(df: pd.DataFrame, columns: Sequence[str] | None = None) -> DriftProfile:
    """Profile a reference DataFrame for drift checks.

    Args:
        df: The reference data.
        columns: Columns to profile. None profiles the columns Evidently's `DataDriftPreset` tests: float
            columns, int columns, bool, category and string columns, minus text-like string columns (more
            than half distinct values), columns with no non-null value, and dtypes Evidently does not
            type (datetimes, nullable `Int64`/`Float64`/`boolean`, unsigned ints, non-string objects).
            Listed columns are profiled whatever Evidently would do (text as categories, nullable and
            unsigned numbers as numbers), except datetimes and empty columns, which are DataErrors.

    Returns:
        The profile.

    Raises:
        DataError: `df` is empty, or a listed column is missing, empty or of an unsupported dtype.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"build_profile expects a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise DataError("drift profile: the reference data is empty (0 rows); nothing to profile.")
    if df.columns.has_duplicates:
        raise DataError(f"drift profile: the reference data has duplicate column names {_dupes(df.columns)}")
    explicit = columns is not None
    names = list(df.columns) if columns is None else list(columns)
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise DataError(
            f"drift profile: the reference data has no column {missing}; it has {list(df.columns)}"
        )
    profiles = [_profile_column(name, df[name], explicit) for name in names]
    return DriftProfile(rows=len(df), columns=tuple(p for p in profiles if p is not None))


def save_profile(profile: DriftProfile, path: str | os.PathLike[str]) -> str:
    """Write the profile's canonical JSON to `path` (local or fsspec URL) and return its sha256."""
    from upath import UPath

    target = UPath(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(profile.to_json().encode("utf-8"))
    return profile.sha256


def load_profile(path: str | os.PathLike[str], expected_sha256: str) -> DriftProfile:
    """Read a profile saved by `save_profile`, after checking its bytes against the recorded sha256.

    Raises:
        IntegrityError: The file's sha256 is not `expected_sha256`; the profile is not used.
        DataError: The file is not a drift profile.
    """
    from upath import UPath

    data = UPath(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.strip().lower():
        raise IntegrityError(
            f"drift profile {path}: sha256 {actual} does not match the record {expected_sha256}; "
            "refusing to use it"
        )
    return DriftProfile.from_json(data)


def _profile_column(name: Any, series: pd.Series, explicit: bool) -> ColumnProfile | None:
    if not isinstance(name, str):
        raise DataError(f"drift profile: column name {name!r} is not a string; rename the column")
    family, native = family_of(series.dtype.name)
    if family in ("datetime", "other"):
        if explicit:
            raise DataError(
                f"drift profile: column {name!r} has dtype {series.dtype}; drift is tested on numbers, "
                "booleans, categories and strings only"
            )
        return None
    if is_numeric_family(family):
        values = finite_sorted(series)
        count = int(values.size)
        nunique = distinct_count(values)
        evidently_kind = kind_of(family, nunique=nunique, count=count, strings=False)
        kind = evidently_kind
        summary = summarise_numbers(values, nunique) if count else None
        categories = None
    else:
        counts = series.value_counts(dropna=True, sort=False)
        counts = counts[counts.to_numpy() > 0]
        merged: dict[CategoryKey, int] = {}
        for key, n in zip(counts.index.tolist(), counts.to_numpy().tolist(), strict=True):
            k = category_key(key)
            merged[k] = merged.get(k, 0) + int(n)
        count = int(sum(merged.values()))
        nunique = len(merged)
        evidently_kind = kind_of(family, nunique=nunique, count=count, strings=_strings(series))
        kind = CAT
        categories = tuple(sorted(merged.items(), key=_category_order))
        summary = None
    if count == 0:
        if explicit:
            raise DataError(f"drift profile: column {name!r} has no non-null value in the reference data")
        return None
    if not explicit and (not native or evidently_kind in (TEXT, UNTESTED)):
        return None
    return ColumnProfile(
        name=name,
        dtype=series.dtype.name,
        family=family,
        kind=kind,
        count=count,
        nulls=int(len(series) - count),
        nunique=nunique,
        numeric=summary,
        categories=categories,
    )


def _category_order(item: tuple[CategoryKey, int]) -> tuple[str, Any]:
    return (type(item[0]).__name__, item[0])


def _strings(series: pd.Series) -> bool:
    """Evidently's test for an object column of strings: its first and last non-null values are str."""
    if series.dtype.name != "object":
        return series.dtype.name in ("string", "str")
    values = series.dropna()
    return bool(len(values)) and isinstance(values.iloc[0], str) and isinstance(values.iloc[-1], str)


def _dupes(names: Iterable[Any]) -> list[str]:
    seen: set[Any] = set()
    dupes: set[str] = set()
    for n in names:
        if n in seen:
            dupes.add(str(n))
        seen.add(n)
    return sorted(dupes)


def _profile_to_dict(profile: DriftProfile) -> dict[str, Any]:
    columns = []
    for c in profile.columns:
        col: dict[str, Any] = {
            "name": c.name,
            "dtype": c.dtype,
            "family": c.family,
            "kind": c.kind,
            "count": c.count,
            "nulls": c.nulls,
            "nunique": c.nunique,
            "numeric": None,
            "categories": None if c.categories is None else [[k, n] for k, n in c.categories],
        }
        if c.numeric is not None:
            s = c.numeric
            col["numeric"] = {
                "exact": s.exact,
                "knots": list(s.knots),
                "count_below": list(s.count_below),
                "count_upto": list(s.count_upto),
                "inner_gap": list(s.inner_gap),
                "mean": s.mean,
                "std": s.std,
            }
        columns.append(col)
    return {"format": FORMAT, "rows": profile.rows, "columns": columns}


def _profile_from_dict(data: dict[str, Any]) -> DriftProfile:
    if data.get("format") != FORMAT:
        raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
    columns = []
    for c in data["columns"]:
        numeric = None
        if c["numeric"] is not None:
            s = c["numeric"]
            knots = tuple(float(v) for v in s["knots"])
            below = tuple(int(v) for v in s["count_below"])
            upto = tuple(int(v) for v in s["count_upto"])
            gap = tuple(float(v) for v in s["inner_gap"])
            if not (len(knots) == len(below) == len(upto) == len(gap) + 1 and knots):
                raise ValueError(f"column {c['name']!r}: numeric summary arrays have inconsistent lengths")
            numeric = NumericSummary(
                bool(s["exact"]), knots, below, upto, gap, float(s["mean"]), float(s["std"])
            )
        categories = None
        if c["categories"] is not None:
            categories = tuple((k, int(n)) for k, n in c["categories"])
        columns.append(
            ColumnProfile(
                name=c["name"],
                dtype=str(c["dtype"]),
                family=str(c["family"]),
                kind=str(c["kind"]),
                count=int(c["count"]),
                nulls=int(c["nulls"]),
                nunique=int(c["nunique"]),
                numeric=numeric,
                categories=categories,
            )
        )
    return DriftProfile(rows=int(data["rows"]), columns=tuple(columns))
