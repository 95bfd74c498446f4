"""What the built-in dataset checks compare a batch with: the champion's training data, as recorded.

At training time the candidate records, beside the raw dataset schema, a profile of the dataset columns
it trained on (`build_profile`: share of nulls, categorical domain, numeric range, in the manner of TFDV
and Deequ) and, for classification, the label classes (`label_classes`). At check time
`champion_baseline` reads them back from the current champion's candidate record. Pure pandas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import dagster as dg

PROFILE_FORMAT = 1
MAX_DOMAIN = 100  # a categorical column with more distinct values gets no inferred domain
MIN_REPEATS = 5  # ... and so does one whose values repeat fewer times on average (ids, free text)


@dataclass(frozen=True)
class Baseline:
    """The current champion's version and what it was trained on; all None when there is no champion.

    Attributes:
        version: The champion's version.
        schema: Raw dataset column -> dtype (`mlops/dataset_schema`).
        profile: The dataset profile (`build_profile`), None for a champion trained before profiles.
        classes: Classification label values (`label_classes`), None when not recorded.
    """

    version: str | None = None
    schema: dict[str, str] | None = None
    profile: dict[str, Any] | None = None
    classes: list[Any] | None = None


def champion_baseline(instance: dg.DagsterInstance, pipeline: str) -> Baseline:
    """The current champion's baseline, from its candidate record (one registry lookup)."""
    from mlops_dagster.keys import Meta
    from mlops_dagster.registry.records import candidate_metadata, current_champion

    champion = current_champion(instance, pipeline)
    if champion is None:
        return Baseline()
    record = candidate_metadata(instance, pipeline, champion.version) or {}
    schema, profile, classes = (
        record.get(k) for k in (Meta.DATASET_SCHEMA, Meta.DATASET_PROFILE, Meta.CLASSES)
    )
    return Baseline(
        version=champion.version,
        schema=dict(schema) if isinstance(schema, dict) else None,
        profile=dict(profile) if isinstance(profile, dict) and profile.get("columns") else None,
        classes=list(classes) if isinstance(classes, list) else None,
    )


def value_key(value: Any) -> str:
    """How values are compared with a recorded domain: 1, 1.0 and numpy's 1 are the same class."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _plain(value: Any) -> Any:
    """A JSON value for a recorded class: numpy scalars become Python ones, others their text."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, bool | int | float | str) else str(value)


def label_classes(labels: pd.Series) -> list[Any]:
    """The distinct non-null label values, JSON-able, sorted by their text."""
    values = {value_key(v): _plain(v) for v in labels.dropna().unique()}
    return [values[k] for k in sorted(values)]


def is_categorical(series: pd.Series) -> bool:
    return (
        pd.api.types.is_bool_dtype(series)
        or pd.api.types.is_object_dtype(series)
        or pd.api.types.is_string_dtype(series)
        or isinstance(series.dtype, pd.CategoricalDtype)
    )


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _column_profile(series: pd.Series) -> dict[str, Any]:
    rows = len(series)
    present = series.dropna()
    entry: dict[str, Any] = {"dtype": str(series.dtype), "null_share": (rows - len(present)) / rows}
    if is_categorical(series):
        keys = sorted({value_key(v) for v in present.unique()})
        if keys and len(keys) <= MAX_DOMAIN and len(keys) * MIN_REPEATS <= len(present):
            entry["domain"] = keys
    elif is_numeric(series):
        values = present.to_numpy(dtype="float64", na_value=np.nan)
        finite = values[np.isfinite(values)]
        if len(finite):
            entry["min"], entry["max"] = float(finite.min()), float(finite.max())
    return entry


def build_profile(frame: pd.DataFrame, columns: Sequence[str], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The training profile of `columns` of `frame`: null share of each; the domain of categorical columns
    with few distinct values; min and max of numeric ones. Columns in `exclude` (pii) keep only their null
    share, so no raw value of theirs is recorded.

    Returns:
        `{"format": 1, "rows": n, "columns": {column: {"dtype", "null_share"[, "domain" | "min", "max"]}}}`;
        no columns for an empty frame.
    """
    skip = set(exclude)
    profiled: dict[str, Any] = {}
    if len(frame):
        for column in columns:
            if column in frame.columns:
                series = frame[column]
                profiled[column] = (
                    {"dtype": str(series.dtype), "null_share": float(series.isna().mean())}
                    if column in skip
                    else _column_profile(series)
                )
    return {"format": PROFILE_FORMAT, "rows": len(frame), "columns": profiled}
