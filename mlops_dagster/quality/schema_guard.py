"""The built-in schema guard: every batch against the schema the current champion was trained on.

Independent of the user's expectations. It names each change precisely ("column `tenure_months`:
int64 -> object") and also checks what no model can train on: an empty batch, null entity keys,
duplicate entity+timestamp rows, timestamps outside the partition, infinite numbers.
Pure pandas: no Great Expectations here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from mlops_dagster.spec.models import PipelineSpec

GUARD_CHECK_NAME = "mlops_schema_guard"


@dataclass(frozen=True)
class GuardResult:
    passed: bool
    problems: list[str] = field(default_factory=list)
    schema: dict[str, str] = field(default_factory=dict)


def dtype_family(dtype: str) -> str:
    """Coarse dtype families: ints and floats are compatible (nulls turn ints into floats); naive and
    timezone-aware datetimes are not (they can neither be compared nor stored in one column)."""
    d = dtype.lower()
    if d.startswith(("int", "uint", "float")) or d in ("int64", "float64"):
        return "number"
    if d.startswith("bool"):
        return "bool"
    if d.startswith("datetime"):
        return "datetime with timezone" if "," in d else "datetime"
    if d in ("object", "string", "category", "str") or d.startswith(("string", "category")):
        return "text"
    return d


def _rename_hint(new: list[str]) -> str:
    return f" (renamed to one of {new}?)" if new else ""


def _schema_problems(dtypes: dict[str, str], champion: dict[str, str], allow_new: bool) -> list[str]:
    problems = []
    missing = [c for c in champion if c not in dtypes]
    new = [c for c in dtypes if c not in champion]
    for col in missing:
        problems.append(f"column `{col}`: missing (the champion was trained with it){_rename_hint(new)}")
    if new and not allow_new:
        problems.extend(
            f"column `{c}`: new, not in the champion's schema "
            "(set quality.allow_new_columns: true to accept new columns)"
            for c in new
        )
    for col, was in champion.items():
        if col in dtypes:
            now = dtypes[col]
            if dtype_family(now) != dtype_family(was):
                problems.append(f"column `{col}`: {was} -> {now}")
    return problems


def _window(partition: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    day = date.fromisoformat(partition)
    return pd.Timestamp(day), pd.Timestamp(day + timedelta(days=1))


def guard_batch(
    df: pd.DataFrame,
    spec: PipelineSpec,
    partition: str | None,
    champion_schema: dict[str, str] | None,
    allow_new_columns: bool = False,
) -> GuardResult:
    """Check one raw dataset batch; returns every problem found (not just the first)."""
    ds = spec.dataset
    roles = {
        ds.entity: "entity",
        ds.timestamp: "timestamp",
        ds.label: "label",
        **{c: "feature" for c in spec.model.features or []},
    }
    return guard_frame(df, roles, ds.entity, ds.timestamp, partition, champion_schema, allow_new_columns)


def guard_frame(
    df: pd.DataFrame,
    roles: dict[str, str],
    entity: str,
    timestamp: str,
    partition: str | None,
    champion_schema: dict[str, str] | None,
    allow_new_columns: bool = False,
) -> GuardResult:
    """Check one raw batch whose columns play `roles` (column -> `entity`, `label`, ...): each present
    and not all null, dtypes as in `champion_schema`, keys usable (the dataset's and the feedback's)."""
    repeated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if repeated:  # only a python source can return this; every other check would be ambiguous
        return GuardResult(
            False,
            [f"column(s) {repeated} appear more than once in the batch"],
            {str(c): "duplicated" for c in repeated},
        )
    schema = {str(c): str(t) for c, t in df.dtypes.items()}
    if df.empty:
        return GuardResult(False, ["the batch is empty (0 rows)"], schema)
    problems: list[str] = []
    new = [c for c in schema if c not in champion_schema] if champion_schema else []
    for col, role in roles.items():
        if col not in df.columns:
            problems.append(f"column `{col}` ({role}): missing from the batch{_rename_hint(new)}")
        elif df[col].isna().all():
            problems.append(f"column `{col}` ({role}): all values are null")
    ts, unparsed, mixed = None, 0, False
    if timestamp in df.columns:
        ts = df[timestamp]
        if not pd.api.types.is_datetime64_any_dtype(ts):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # format inference, mixed time zones: reported below
                ts = pd.to_datetime(ts, errors="coerce")
            unparsed = int(ts.isna().sum() - df[timestamp].isna().sum())
            # Mixed UTC offsets (local time across a DST change) parse to an object column of
            # Timestamps that cannot be compared with the partition's bounds.
            mixed = not pd.api.types.is_datetime64_any_dtype(ts)
    if champion_schema:
        already = {c for c in roles if c not in df.columns}  # reported above with their role
        # Compare the dtypes the batch is stored with: a text timestamp (any CSV source) is parsed
        # on the way in, so the champion's schema always has it as a datetime.
        stored = dict(schema)
        if ts is not None and not unparsed and not mixed:
            stored[timestamp] = str(ts.dtype)
        problems.extend(
            _schema_problems(
                stored, {c: t for c, t in champion_schema.items() if c not in already}, allow_new_columns
            )
        )
    if entity in df.columns and (nulls := int(df[entity].isna().sum())):
        problems.append(f"column `{entity}` (entity): {nulls} null value(s)")
    if ts is not None:
        if unparsed > 0:
            problems.append(f"column `{timestamp}` (timestamp): {unparsed} value(s) are not datetimes")
        if mixed:
            problems.append(f"column `{timestamp}` (timestamp): values with mixed time zones / UTC offsets")
        elif partition is not None:
            start, end = _window(partition)
            if ts.dt.tz is not None:  # partitions are UTC days
                ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
            outside = int(((ts < start) | (ts >= end)).sum())
            if outside:
                problems.append(
                    f"column `{timestamp}` (timestamp): {outside} row(s) outside partition "
                    f"{partition} [{start.date()}, {end.date()})"
                )
        if entity in df.columns:
            dupes = int(df.duplicated(subset=[entity, timestamp]).sum())
            if dupes:
                problems.append(f"columns `{entity}` + `{timestamp}`: {dupes} duplicate row(s)")
    for col in df.columns:
        if pd.api.types.is_float_dtype(df[col]):
            infinite = int(np.isinf(df[col].to_numpy()).sum())
            if infinite:
                problems.append(f"column `{col}`: {infinite} infinite value(s)")
    return GuardResult(not problems, problems, schema)
