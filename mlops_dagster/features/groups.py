"""Running a feature group's transform and enforcing what the group declares (keys, columns, pii)."""

from __future__ import annotations

import pandas as pd

from mlops_dagster.errors import TransformError
from mlops_dagster.quality.pii import hash_columns
from mlops_dagster.spec.models import FeatureGroupSpec
from mlops_dagster.spec.resolve import resolve_object


def hash_pii(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Replace each pii column with the sha256 of its values (nulls stay null)."""
    return hash_columns(df, columns)


def run_transform(group: FeatureGroupSpec, source: pd.DataFrame) -> pd.DataFrame:
    """Call the group's transform on its input rows and check the result against the spec.

    Raises:
        TransformError: when the transform raises, returns no DataFrame, or drops a key column or
            a declared feature column.
    """
    fn = resolve_object(group.transform)
    try:
        out = fn(source)
    except Exception as e:
        raise TransformError(
            f"features/{group.name}: transform {group.transform} raised {type(e).__name__}: {e}"
        ) from e
    if not isinstance(out, pd.DataFrame):
        raise TransformError(
            f"features/{group.name}: transform {group.transform} returned "
            f"{type(out).__name__}, expected a DataFrame"
        )
    missing = [c for c in (group.entity, group.timestamp, *(group.columns or [])) if c not in out.columns]
    if missing:
        raise TransformError(
            f"features/{group.name}: transform {group.transform} output lacks column(s) "
            f"{missing}; it has {list(out.columns)}"
        )
    if out.empty:
        raise TransformError(f"features/{group.name}: transform {group.transform} returned no rows")
    out = out.reset_index(drop=True)
    if not pd.api.types.is_datetime64_any_dtype(out[group.timestamp]):
        out[group.timestamp] = pd.to_datetime(out[group.timestamp])
    return hash_pii(out, group.pii)


def feature_columns(group: FeatureGroupSpec, frame: pd.DataFrame) -> list[str]:
    """Columns of a group's output that models may use: not the keys, never pii."""
    skip = {group.entity, group.timestamp, *group.pii}
    return [c for c in frame.columns if c not in skip]
