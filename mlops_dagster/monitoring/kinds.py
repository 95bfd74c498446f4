"""Column kinds and default drift methods, mirroring Evidently 0.7.23's `DataDriftPreset`.

Evidently decides a column's type with `evidently.core.datasets.infer_column_type`, on the *current*
data (the report's first input), and picks the test with
`evidently.legacy.calculations.stattests.registry._get_default_stattest`:

- float dtypes are numerical; int dtypes are categorical with at most 10 distinct values, else
  numerical; bool and category dtypes are categorical; strings (object or `string`) are text when more
  than half of the non-null values are distinct, else categorical; anything else (datetimes, nullable
  `Int64`/`Float64`/`boolean`, unsigned ints, objects that are not strings) is not tested.
- with at most 1,000 non-null reference values: numerical columns get Kolmogorov-Smirnov, unless the
  reference and current data together hold at most 5 distinct values (then chi-square above 2 values,
  the two-proportion Z-test otherwise); categorical columns get chi-square above 2 distinct values,
  the Z-test otherwise.
- above 1,000: numerical columns get the Wasserstein distance normed by the reference's standard
  deviation (Jensen-Shannon over the value frequencies when there are at most 5 distinct values in
  both); categorical columns get Jensen-Shannon.

This module decides only from dtypes and counts; nothing here imports Evidently.
"""

from __future__ import annotations

from typing import Final, Literal

Kind = Literal["num", "cat"]
Family = Literal["float", "int", "bool", "category", "string", "object", "datetime", "other"]

NUM: Final = "num"
CAT: Final = "cat"
TEXT: Final = "text"
UNTESTED: Final = "untested"

INTEGER_CARDINALITY_LIMIT: Final = 10  # evidently.core.datasets.INTEGER_CARDINALITY_LIMIT
SMALL_REFERENCE_ROWS: Final = 1000  # <= this many non-null reference values: p-value tests
FEW_VALUES: Final = 5  # numerical columns with <= this many distinct values are tested as categories
SMALL_CATEGORY_SET: Final = 2  # categorical: chi-square above this many values, Z-test at or below

METHODS: Final = ("chisquare", "jensenshannon", "ks", "psi", "wasserstein", "z")
DEFAULT_THRESHOLDS: Final[dict[str, float]] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
P_VALUE_METHODS: Final = frozenset({"ks", "chisquare", "z"})
NUMERIC_ONLY_METHODS: Final = frozenset({"ks", "wasserstein"})
SHARE_METHODS: Final = frozenset({"jensenshannon", "psi"})  # compare shares of values (or of bins)


def family_of(dtype_name: str) -> tuple[Family, bool]:
    """The dtype family of a pandas dtype name, and whether Evidently itself infers a type for it.

    Nullable (`Int64`, `Float64`, `boolean`) and unsigned (`uint8`...) dtypes are "untyped" for
    Evidently 0.7.23 (its checks are `name.startswith("int")` / `("float")`): it skips them. They get
    their numpy counterpart's family here with `native=False`, so they are tested only when asked for.
    """
    if dtype_name.startswith("float"):
        return "float", True
    if dtype_name.startswith("int"):
        return "int", True
    if dtype_name in ("bool", "category"):
        return ("bool" if dtype_name == "bool" else "category"), True
    if dtype_name in ("string", "str"):
        return "string", True
    if dtype_name == "object":
        return "object", True
    if dtype_name.startswith("datetime"):
        return "datetime", True
    if dtype_name.startswith(("uint", "Int", "UInt")):
        return "int", False
    if dtype_name.startswith("Float"):
        return "float", False
    if dtype_name == "boolean":
        return "bool", False
    return "other", False


def is_numeric_family(family: str) -> bool:
    """Whether the family's values are numbers (bool is kept apart: Evidently calls it categorical)."""
    return family in ("float", "int")


def kind_of(family: str, *, nunique: int, count: int, strings: bool) -> str:
    """Evidently's column type for a column of this family, as "num", "cat", "text" or "untested".

    Args:
        family: The dtype family (see `family_of`).
        nunique: Distinct non-null values in the column.
        count: Non-null values in the column.
        strings: For the "object" family, whether its values are strings (Evidently looks at the first
            and last non-null value).
    """
    if family == "float":
        return NUM
    if family == "int":
        return CAT if nunique <= INTEGER_CARDINALITY_LIMIT else NUM
    if family in ("bool", "category"):
        return CAT
    if family == "string" or (family == "object" and strings):
        return TEXT if nunique > count * 0.5 else CAT
    return UNTESTED


def default_method(kind: str, reference_count: int, n_values: int) -> str:
    """Evidently's default test for a column (`_get_default_stattest`).

    Args:
        kind: "num" or "cat".
        reference_count: Non-null (finite) values in the reference column.
        n_values: Distinct non-null values in the reference and current columns together.
    """
    if reference_count <= SMALL_REFERENCE_ROWS:
        if kind == NUM and n_values > FEW_VALUES:
            return "ks"
        return "chisquare" if n_values > SMALL_CATEGORY_SET else "z"
    if kind == NUM and n_values > FEW_VALUES:
        return "wasserstein"
    return "jensenshannon"


def is_drift(method: str, score: float, threshold: float) -> bool:
    """Evidently's verdict: K-S drifts at p <= threshold, chi-square and Z at p < threshold, distances
    (Wasserstein, Jensen-Shannon, PSI) at score >= threshold. A NaN score never drifts."""
    if method == "ks":
        return bool(score <= threshold)
    if method in P_VALUE_METHODS:
        return bool(score < threshold)
    return bool(score >= threshold)
